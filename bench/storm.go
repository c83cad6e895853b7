//go:build linux

package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/centrifugal/centrifuge"
	"github.com/gorilla/websocket"

	"github.com/firetower-go/firetower"
)

// The reconnect storm (issue 12): N clients are subscribed to history topics
// and know their position; they all drop, every topic gets `want`
// publications, and they all reconnect at once, each resubscribing with its
// position and waiting until it has recovered exactly those publications.
// The clients run in child processes (role "storm"), so that the CPU time of
// the benchmark process is the server's.
//
// A storm child speaks lines on stdin/stdout:
//
//	connect SRCIP       -> "ok": every connection dialed (from source address
//	                       SRCIP), subscribed, its position noted
//	drop                -> "ok": every connection closed
//	recover SRCIP WANT  -> "done N P50 P99 MAX FAILS FIRSTERR": every
//	                       connection redialed at once (FTBENCH_DIALERS at a
//	                       time) and resubscribed from its position; times in
//	                       microseconds from the command to the last
//	                       recovered publication of each connection
//	quit

// stormHistorySize is the stream size both servers keep per topic.
const stormHistorySize = 1000

// stormFiretower is firetower with history on every topic.
func newStormFiretower() (server, error) {
	t, err := firetower.New(
		firetower.WithAddr("127.0.0.1:0"),
		firetower.WithPublishPolicy(firetower.PublishAny),
		firetower.WithHistory(stormHistorySize, 10*time.Minute),
	)
	if err != nil {
		return nil, err
	}
	if err := t.Start(context.Background()); err != nil {
		return nil, err
	}
	return &firetowerServer{t: t}, nil
}

// stormCentrifuge is centrifuge with its memory broker, every subscription
// recoverable (SubscribeOptions.EnableRecovery) and every publish kept in
// the channel's history (WithHistory), the way its documentation sets up
// recovery.
type stormCentrifuge struct {
	*centrifugeServer
}

func newStormCentrifuge() (server, error) {
	node, err := centrifuge.New(centrifuge.Config{LogLevel: centrifuge.LogLevelNone})
	if err != nil {
		return nil, err
	}
	node.OnConnecting(func(context.Context, centrifuge.ConnectEvent) (centrifuge.ConnectReply, error) {
		return centrifuge.ConnectReply{Credentials: &centrifuge.Credentials{}}, nil
	})
	node.OnConnect(func(c *centrifuge.Client) {
		c.OnSubscribe(func(_ centrifuge.SubscribeEvent, cb centrifuge.SubscribeCallback) {
			cb(centrifuge.SubscribeReply{Options: centrifuge.SubscribeOptions{EnableRecovery: true}}, nil)
		})
	})
	if err := node.Run(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = node.Shutdown(context.Background())
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/connection/websocket", centrifuge.NewWebsocketHandler(node, centrifuge.WebsocketConfig{}))
	s := &centrifugeServer{node: node, ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
	go func() { _ = s.srv.Serve(ln) }()
	return &stormCentrifuge{s}, nil
}

func (s *stormCentrifuge) Publish(topic string, data []byte) error {
	_, err := s.node.Publish(topic, data, centrifuge.WithHistory(stormHistorySize, 10*time.Minute))
	return err
}

// stormConn is one storm client: its topic and its position.
type stormConn struct {
	topic  string
	ws     *websocket.Conn
	epoch  string
	offset uint64
}

type stormChild struct {
	addr, path, flavour string
	dialers             int
	conns               []*stormConn
}

func runStorm(stdin io.Reader, stdout io.Writer) error {
	cfg, err := loadConfigFromEnv()
	if err != nil {
		return err
	}
	s := &stormChild{addr: cfg.addr, path: cfg.path, flavour: cfg.flavour, dialers: cfg.dialers}
	for i := range cfg.conns {
		s.conns = append(s.conns, &stormConn{topic: topicName((cfg.from + i) % cfg.topics)})
	}
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "quit":
			s.drop()
			return nil
		case "connect":
			if len(f) != 2 {
				return fmt.Errorf("bad command %q", sc.Text())
			}
			_, fails, first := s.each(f[1], 0)
			if fails > 0 {
				fmt.Fprintf(stdout, "fail %d connections: %s\n", fails, oneLine(first))
				continue
			}
			fmt.Fprintln(stdout, "ok")
		case "drop":
			s.drop()
			fmt.Fprintln(stdout, "ok")
		case "recover":
			want, err := strconv.Atoi(f[len(f)-1])
			if len(f) != 3 || err != nil || want <= 0 {
				return fmt.Errorf("bad command %q", sc.Text())
			}
			times, fails, first := s.each(f[1], want)
			slices.Sort(times)
			p := func(q float64) int64 {
				if len(times) == 0 {
					return 0
				}
				return times[min(len(times)-1, int(q*float64(len(times))))].Microseconds()
			}
			if first == "" {
				first = "-"
			}
			fmt.Fprintf(stdout, "done %d %d %d %d %d %s\n", len(times), p(0.5), p(0.99), p(1), fails, oneLine(first))
		default:
			return fmt.Errorf("unknown command %q", sc.Text())
		}
	}
	return sc.Err()
}

func (s *stormChild) drop() {
	for _, c := range s.conns {
		if c.ws != nil {
			_ = c.ws.Close()
			c.ws = nil
		}
	}
}

// each (re)connects every connection, s.dialers at a time, from source
// address src; with want > 0 each resubscribes from its position and must
// recover exactly want publications. It returns the time from its start
// to each connection's end (recovered, or subscribed when want is 0).
func (s *stormChild) each(src string, want int) (times []time.Duration, fails int, first string) {
	ip := net.ParseIP(src)
	if ip == nil {
		return nil, len(s.conns), "bad source address " + src
	}
	d := websocket.Dialer{
		NetDialContext:   (&net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 30 * time.Second}).DialContext,
		HandshakeTimeout: 60 * time.Second,
	}
	url := "ws://" + s.addr + s.path
	var next atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for range min(s.dialers, len(s.conns)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(s.conns) {
					return
				}
				err := s.session(&d, url, s.conns[i], want)
				el := time.Since(start)
				mu.Lock()
				if err != nil {
					fails++
					if first == "" {
						first = err.Error()
					}
				} else {
					times = append(times, el)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return times, fails, first
}

// session dials c, subscribes (with its position when want > 0) and reads
// until the subscription is set up and, with want > 0, want publications
// after the position are recovered, in order.
func (s *stormChild) session(d *websocket.Dialer, url string, c *stormConn, want int) error {
	ws, _, err := d.Dial(url, nil)
	if err != nil {
		return err
	}
	c.ws = ws
	_ = ws.SetReadDeadline(time.Now().Add(2 * time.Minute))
	if s.flavour == flavourCentrifuge {
		return c.centrifugeSession(want)
	}
	return c.firetowerSession(want)
}

func (c *stormConn) firetowerSession(want int) error {
	req := map[string]any{"type": "subscribe", "topic": c.topic, "id": 1}
	if want > 0 {
		req["since"] = map[string]any{c.topic: map[string]any{"offset": c.offset, "epoch": c.epoch}}
	}
	if err := c.ws.WriteJSON(req); err != nil {
		return err
	}
	type pos struct {
		Epoch     string `json:"epoch"`
		Offset    uint64 `json:"offset"`
		Recovered bool   `json:"recovered"`
	}
	var m struct {
		Type      string         `json:"type"`
		Code      string         `json:"code"`
		Offset    uint64         `json:"offset"`
		Positions map[string]pos `json:"positions"`
	}
	acked, got := false, 0
	from := c.offset
	for !acked || got < want {
		_, p, err := c.ws.ReadMessage()
		if err != nil {
			return err
		}
		m.Positions = nil
		if err := json.Unmarshal(p, &m); err != nil {
			return err
		}
		switch m.Type {
		case "ack":
			ps, ok := m.Positions[c.topic]
			if !ok {
				return fmt.Errorf("ack without a position: %s", p)
			}
			if want > 0 && (!ps.Recovered || ps.Offset != from+uint64(want)) {
				return fmt.Errorf("not recovered from %d: %s", from, p)
			}
			acked = true
			c.epoch, c.offset = ps.Epoch, ps.Offset
		case "publish":
			if !acked {
				return fmt.Errorf("a delivery before the ack: %s", p)
			}
			got++
			if m.Offset != from+uint64(got) {
				return fmt.Errorf("recovered offset %d, want %d", m.Offset, from+uint64(got))
			}
		case "error":
			return fmt.Errorf("error %s", p)
		}
	}
	return nil
}

func (c *stormConn) centrifugeSession(want int) error {
	sub := map[string]any{"channel": c.topic}
	if want > 0 {
		sub["recover"], sub["epoch"], sub["offset"] = true, c.epoch, c.offset
	}
	b, _ := json.Marshal(map[string]any{"id": 2, "subscribe": sub})
	msg := append([]byte(`{"id":1,"connect":{}}`+"\n"), b...)
	if err := c.ws.WriteMessage(websocket.TextMessage, msg); err != nil {
		return err
	}
	var r struct {
		ID        int `json:"id"`
		Error     any `json:"error"`
		Subscribe *struct {
			Epoch        string `json:"epoch"`
			Offset       uint64 `json:"offset"`
			Recovered    bool   `json:"recovered"`
			Publications []struct {
				Offset uint64 `json:"offset"`
			} `json:"publications"`
		} `json:"subscribe"`
	}
	from := c.offset
	for {
		_, p, err := c.ws.ReadMessage()
		if err != nil {
			return err
		}
		for line := range bytes.SplitSeq(p, []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			if string(line) == "{}" { // application ping
				_ = c.ws.WriteMessage(websocket.TextMessage, []byte("{}"))
				continue
			}
			r.Subscribe, r.Error = nil, nil
			if err := json.Unmarshal(line, &r); err != nil {
				return err
			}
			if r.Error != nil {
				return fmt.Errorf("error reply %s", line)
			}
			if r.ID != 2 || r.Subscribe == nil {
				continue
			}
			// A recovered reply carries the publications; its own offset
			// may be left out (then the last publication's counts).
			pubs := r.Subscribe.Publications
			top := r.Subscribe.Offset
			if len(pubs) > 0 {
				top = max(top, pubs[len(pubs)-1].Offset)
			}
			if want > 0 && (!r.Subscribe.Recovered || len(pubs) != want || top != from+uint64(want) || pubs[0].Offset != from+1) {
				tail := line[max(0, len(line)-200):]
				return fmt.Errorf("not recovered from %d: %d publications, recovered %v, offset %d: ...%s", from, len(r.Subscribe.Publications), r.Subscribe.Recovered, r.Subscribe.Offset, tail)
			}
			c.epoch, c.offset = r.Subscribe.Epoch, top
			return nil
		}
	}
}

// storm is the benchmark side: the storm children of one server.
type storm struct {
	procs []*proc
}

// stormPerChild keeps each storm child under its descriptor limit.
const stormPerChild = 5000

func startStorm(addr, path, flavour string, conns, topics, dialers int) (*storm, error) {
	s := &storm{}
	for from := 0; from < conns; from += stormPerChild {
		n := min(stormPerChild, conns-from)
		p, err := startProc("storm",
			"FTBENCH_ADDR="+addr, "FTBENCH_PATH="+path, "FTBENCH_FLAVOUR="+flavour,
			"FTBENCH_FROM="+strconv.Itoa(from), "FTBENCH_CONNS="+strconv.Itoa(n),
			"FTBENCH_TOPICS="+strconv.Itoa(topics), "FTBENCH_DIALERS="+strconv.Itoa(dialers))
		if err != nil {
			s.stop()
			return nil, err
		}
		s.procs = append(s.procs, p)
	}
	return s, nil
}

// all sends each child its command (%d in cmd: the child's index, for its
// source address) and returns their answers.
func (s *storm) all(cmd func(i int) string, timeout time.Duration) ([]string, error) {
	for i, p := range s.procs {
		if err := p.send(cmd(i)); err != nil {
			return nil, err
		}
	}
	var out []string
	var errs []error
	for _, p := range s.procs {
		l, err := p.recv(timeout)
		if err == nil && strings.HasPrefix(l, "fail") {
			err = errors.New(l)
		}
		out = append(out, l)
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}

func (s *storm) stop() {
	for _, p := range s.procs {
		p.stop()
	}
}

// stormResult sums the children's "done" lines.
type stormResult struct {
	n, fails       int
	p50, p99, most time.Duration // the worst child's
	firstErr       string
}

func parseStorm(lines []string) (stormResult, error) {
	var r stormResult
	for _, l := range lines {
		f := strings.SplitN(l, " ", 7)
		if len(f) != 7 || f[0] != "done" {
			return r, fmt.Errorf("storm child: %q", l)
		}
		var v [5]int64
		for i := range v {
			x, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil {
				return r, fmt.Errorf("storm child: %q", l)
			}
			v[i] = x
		}
		r.n += int(v[0])
		r.fails += int(v[4])
		r.p50 = max(r.p50, time.Duration(v[1])*time.Microsecond)
		r.p99 = max(r.p99, time.Duration(v[2])*time.Microsecond)
		r.most = max(r.most, time.Duration(v[3])*time.Microsecond)
		if v[4] > 0 && r.firstErr == "" {
			r.firstErr = f[6]
		}
	}
	return r, nil
}

// stormSource is the source address of child i in phase (0: connect, 1:
// the storm) of run n: fresh addresses each time, so that the sockets left
// in TIME_WAIT by the previous phase never exhaust the ephemeral ports.
func stormSource(n, i, phase int) string {
	return fmt.Sprintf("127.%d.%d.%d", 1+n%250, 1+i, 1+phase)
}
