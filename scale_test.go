package firetower_test

// Scale test: 10,000 websocket connections subscribed to one topic, every broadcast
// delivered to every one of them, intact and in order.
//
// The clients live in a child process: TestScale re-executes this test binary with
// -test.run=^TestScaleHelperClients$ and the scEnv* variables set. That keeps each
// process far below the per-process descriptor limit (about 20,000 here): the parent
// holds the server's 10,000 sockets, the child the clients' 10,000. The child uses a
// minimal client of its own (net.Conn plus gobwas/ws frame primitives) run by a few
// goroutines that each own many connections, so it stays far below the race
// detector's goroutine limit when the binary is built with -race.
//
// The child talks to the parent on stdout with lines that start with scLinePrefix:
//
//	firetower-scale: ready conns=N elapsed=D    every connection is subscribed (all acks in)
//	firetower-scale: result ok ...              every delivery verified
//	firetower-scale: result fail <reason>       something went wrong
//
// Helpers in this file are prefixed "sc" so they cannot clash with other test files.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/firetower-go/firetower"
)

// Environment of the child process.
const (
	scEnvURL      = "FIRETOWER_SCALE_URL"      // ws://host:port/ws; its presence makes the helper run
	scEnvConns    = "FIRETOWER_SCALE_CONNS"    // connections to open
	scEnvMsgs     = "FIRETOWER_SCALE_MSGS"     // broadcasts each connection must receive
	scEnvTopic    = "FIRETOWER_SCALE_TOPIC"    // the topic they subscribe to
	scEnvDeadline = "FIRETOWER_SCALE_DEADLINE" // unix milliseconds: give up and report then
)

const (
	scLinePrefix = "firetower-scale: "
	scTopic      = "/scale/broadcast"
	scMsgs       = 20
	scConns      = 10000
	scConnsShort = 500
	// scWorkers is the number of goroutines of the child; each owns 1/scWorkers of
	// the connections.
	scWorkers = 8
	// scMaxFrame bounds a frame the child accepts from the server.
	scMaxFrame = 1 << 20
)

// scMessage is the data of broadcast i of m: valid JSON of varying length with
// non-ASCII text, so "intact" means every byte, not just the count.
func scMessage(i, m int) []byte {
	return fmt.Appendf(nil, `{"seq":%d,"of":%d,"text":"broadcast %d — héllo, wörld ✓ 火塔","pad":"%s"}`,
		i, m, i, strings.Repeat("x", 10+i*7%50))
}

// scDelivery is the delivery frame a JSON client expects for data on topic.
func scDelivery(topic string, data []byte) []byte {
	q, _ := json.Marshal(topic)
	b := append([]byte(`{"type":"publish","topic":`), q...)
	b = append(b, `,"data":`...)
	b = append(b, data...)
	return append(b, '}')
}

// TestScale holds the server; the clients are in a child process (see the file
// comment). It asserts that every connection received every broadcast intact, and
// logs the server's memory per idle connection.
func TestScale(t *testing.T) {
	n := scConns
	if testing.Short() {
		n = scConnsShort
	}
	limit := 5 * time.Minute
	if d, ok := t.Deadline(); ok {
		if rem := time.Until(d) - 15*time.Second; rem < limit {
			limit = rem
		}
	}
	if limit < 30*time.Second {
		t.Fatalf("not enough time left before the test deadline: %v", limit)
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()

	tw, err := firetower.New(
		firetower.WithAddr("127.0.0.1:0"),
		// Keepalive is not what this test is about: with 10,000 clients of a
		// race-built child, setup alone may take longer than the default ping
		// interval, and the child reads each connection only when its turn comes.
		firetower.WithPingInterval(time.Hour),
		firetower.WithIdleTimeout(2*time.Hour),
	)
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), time.Minute)
		defer scancel()
		if err := tw.Shutdown(sctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})

	heap0, rss0 := scMemory(t)

	child := scStartChild(t, ctx, []string{
		scEnvURL + "=ws://" + tw.Addr() + "/ws",
		scEnvConns + "=" + strconv.Itoa(n),
		scEnvMsgs + "=" + strconv.Itoa(scMsgs),
		scEnvTopic + "=" + scTopic,
		scEnvDeadline + "=" + strconv.FormatInt(time.Now().Add(limit-10*time.Second).UnixMilli(), 10),
	})

	ready := child.waitLine(t, ctx, "ready ")
	t.Logf("child: %s", ready)

	cnt, err := tw.ConnectNum(ctx, scTopic)
	if err != nil {
		t.Fatalf("ConnectNum: %v", err)
	}
	if cnt != int64(n) {
		t.Fatalf("ConnectNum(%q) = %d after every ack, want %d", scTopic, cnt, n)
	}
	if st := tw.Stats(); st.Connections != int64(n) || st.Subscriptions != int64(n) {
		t.Fatalf("Stats: %d connections, %d subscriptions, want %d of each", st.Connections, st.Subscriptions, n)
	}

	heap1, rss1 := scMemory(t)
	race := ""
	if scRaceEnabled() {
		race = " (race detector on: inflated)"
	}
	t.Logf("server memory at %d idle connections, each subscribed to one topic%s: heap in use %+.1f MiB = %.0f B/conn; VmRSS %+.1f MiB = %.0f B/conn",
		n, race,
		float64(heap1.inuse-heap0.inuse)/(1<<20), float64(heap1.inuse-heap0.inuse)/float64(n),
		float64(rss1-rss0)/(1<<20), float64(rss1-rss0)/float64(n))
	t.Logf("heap alloc %+.0f B/conn, heap objects %+.1f per conn; allocated while connecting and subscribing: %.1f MiB = %.0f B/conn",
		float64(heap1.alloc-heap0.alloc)/float64(n), float64(heap1.objects-heap0.objects)/float64(n),
		float64(heap1.total-heap0.total)/(1<<20), float64(heap1.total-heap0.total)/float64(n))

	start := time.Now()
	for i := range scMsgs {
		if err := tw.Publish(ctx, scTopic, scMessage(i, scMsgs)); err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
	}
	result := child.waitLine(t, ctx, "result ")
	elapsed := time.Since(start)
	if !strings.HasPrefix(result, "result ok") {
		t.Fatalf("child: %s", result)
	}
	t.Logf("child: %s", result)
	t.Logf("%d broadcasts x %d connections = %d deliveries verified %v after the first publish",
		scMsgs, n, scMsgs*n, elapsed.Round(time.Millisecond))
	if err := child.wait(); err != nil {
		t.Fatalf("child process: %v", err)
	}
	st := tw.Stats()
	if st.SlowDropped != 0 || st.SlowClosed != 0 {
		t.Errorf("slow consumers: %d messages dropped, %d connections closed; want none", st.SlowDropped, st.SlowClosed)
	}
	if want := uint64(scMsgs * n); st.Deliveries != want {
		t.Errorf("Stats.Deliveries = %d, want %d", st.Deliveries, want)
	}
}

// TestScaleHelperClients is the child process of TestScale; it does nothing unless
// started by it.
func TestScaleHelperClients(t *testing.T) {
	url := os.Getenv(scEnvURL)
	if url == "" {
		t.Skip("helper process of TestScale")
	}
	if err := scRunClients(url); err != nil {
		fmt.Printf("%sresult fail %s\n", scLinePrefix, strings.ReplaceAll(err.Error(), "\n", "; "))
		t.Fatal("the clients failed: see the result line")
	}
}

// ---------------------------------------------------------------------------------------
// The parent's side.

type scHeap struct{ inuse, alloc, objects, total int64 }

// scMemory collects garbage, returns freed memory to the OS and reads the heap and
// the resident set size.
func scMemory(t *testing.T) (scHeap, int64) {
	t.Helper()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h := scHeap{inuse: int64(ms.HeapInuse), alloc: int64(ms.HeapAlloc), objects: int64(ms.HeapObjects), total: int64(ms.TotalAlloc)}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return h, 0 // not Linux: the RSS figure is 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return h, kb << 10
				}
			}
		}
	}
	return h, 0
}

func scRaceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// scChild is the clients' process.
type scChild struct {
	cmd    *exec.Cmd
	lines  chan string // prefixed lines, without the prefix; closed at EOF
	other  []string    // everything else the child printed on stdout (read after EOF)
	stderr bytes.Buffer
	eof    chan struct{}
	once   sync.Once
	err    error
}

func scStartChild(t *testing.T, ctx context.Context, env []string) *scChild {
	t.Helper()
	c := &scChild{lines: make(chan string, 16), eof: make(chan struct{})}
	c.cmd = exec.CommandContext(ctx, os.Args[0], "-test.run=^TestScaleHelperClients$", "-test.count=1", "-test.timeout=0")
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.Stderr = &c.stderr
	c.cmd.WaitDelay = 10 * time.Second
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("starting the client process: %v", err)
	}
	go func() {
		defer close(c.eof)
		defer close(c.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), scLinePrefix); ok {
				c.lines <- rest
			} else {
				c.other = append(c.other, sc.Text())
			}
		}
	}()
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill() // an error only says it is gone already
		if err := c.wait(); err != nil || t.Failed() {
			t.Logf("client process: %v", err)
			for _, l := range c.other {
				t.Logf("client stdout: %s", l)
			}
			if c.stderr.Len() > 0 {
				t.Logf("client stderr:\n%s", c.stderr.String())
			}
		}
	})
	return c
}

// waitLine returns the next prefixed line of the child, which must start with want.
func (c *scChild) waitLine(t *testing.T, ctx context.Context, want string) string {
	t.Helper()
	select {
	case l, ok := <-c.lines:
		if !ok {
			t.Fatalf("client process ended before %q: %v", strings.TrimSpace(want), c.wait())
		}
		if !strings.HasPrefix(l, want) {
			t.Fatalf("client process: want %q, got %q", strings.TrimSpace(want), l)
		}
		return l
	case <-ctx.Done():
		t.Fatalf("waiting for the client process to say %q: %v", strings.TrimSpace(want), ctx.Err())
	}
	return ""
}

// wait drains the child's stdout and waits for it to exit; it may be called again.
func (c *scChild) wait() error {
	c.once.Do(func() {
		for range c.lines {
		}
		<-c.eof
		c.err = c.cmd.Wait()
	})
	return c.err
}

// ---------------------------------------------------------------------------------------
// The child's side: a minimal websocket client over net.Conn.

type scConn struct {
	nc net.Conn
	br *bufio.Reader
}

// scWorker owns some of the child's connections and their buffers.
type scWorker struct {
	first int // index of conns[0] among all connections (its request id)
	conns []scConn
	hdr   []byte
	buf   []byte
}

func scRunClients(url string) error {
	n, err := strconv.Atoi(os.Getenv(scEnvConns))
	if err != nil || n <= 0 {
		return fmt.Errorf("bad %s: %q", scEnvConns, os.Getenv(scEnvConns))
	}
	m, err := strconv.Atoi(os.Getenv(scEnvMsgs))
	if err != nil || m < 0 {
		return fmt.Errorf("bad %s: %q", scEnvMsgs, os.Getenv(scEnvMsgs))
	}
	topic := os.Getenv(scEnvTopic)
	ms, err := strconv.ParseInt(os.Getenv(scEnvDeadline), 10, 64)
	if err != nil {
		return fmt.Errorf("bad %s: %q", scEnvDeadline, os.Getenv(scEnvDeadline))
	}
	deadline := time.UnixMilli(ms)

	want := make([][]byte, m)
	data := make([][]byte, m)
	for i := range m {
		data[i] = scMessage(i, m)
		want[i] = scDelivery(topic, data[i])
	}

	g := min(scWorkers, n)
	workers := make([]*scWorker, g)
	for i := range workers {
		lo, hi := i*n/g, (i+1)*n/g
		workers[i] = &scWorker{first: lo, conns: make([]scConn, 0, hi-lo), hdr: make([]byte, ws.MaxHeaderSize)}
	}
	defer func() {
		for _, w := range workers {
			for _, c := range w.conns {
				c.nc.Close()
			}
		}
	}()

	start := time.Now()
	if err := scEach(workers, func(w *scWorker) error { return w.connect(url, topic, cap(w.conns), deadline) }); err != nil {
		return err
	}
	fmt.Printf("%sready conns=%d elapsed=%v\n", scLinePrefix, n, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	if err := scEach(workers, func(w *scWorker) error { return w.receive(topic, want, data, deadline) }); err != nil {
		return err
	}
	fmt.Printf("%sresult ok conns=%d deliveries=%d elapsed=%v\n", scLinePrefix, n, n*m, time.Since(start).Round(time.Millisecond))
	return nil
}

// scEach runs fn for every worker, each on its own goroutine, and returns the first
// error once all are done.
func scEach(workers []*scWorker, fn func(w *scWorker) error) error {
	errs := make([]error, len(workers))
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Go(func() { errs[i] = fn(w) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// connect dials k connections, subscribes each with its index as the request id
// and reads every ack.
func (w *scWorker) connect(url, topic string, k int, deadline time.Time) error {
	d := ws.Dialer{Timeout: time.Until(deadline)}
	for i := range k {
		nc, br, _, err := d.Dial(context.Background(), url)
		if err != nil {
			return fmt.Errorf("dialing connection %d: %w", w.first+i, err)
		}
		var r io.Reader = nc
		if br != nil { // the server spoke first: keep what the handshake read
			r = io.MultiReader(br, nc)
		}
		w.conns = append(w.conns, scConn{nc: nc, br: bufio.NewReaderSize(r, 512)})
	}
	q, _ := json.Marshal(topic)
	for i, c := range w.conns {
		req := fmt.Appendf(nil, `{"type":"subscribe","topic":%s,"id":%d}`, q, w.first+i)
		if err := w.write(c, ws.OpText, req, deadline); err != nil {
			return fmt.Errorf("connection %d: subscribing: %w", w.first+i, err)
		}
	}
	for i, c := range w.conns {
		p, err := w.read(c, deadline)
		if err != nil {
			return fmt.Errorf("connection %d: waiting for the subscribe ack: %w", w.first+i, err)
		}
		var ack struct {
			Type   string          `json:"type"`
			ID     json.RawMessage `json:"id"`
			Topics []string        `json:"topics"`
		}
		if err := json.Unmarshal(p, &ack); err != nil || ack.Type != "ack" || string(ack.ID) != strconv.Itoa(w.first+i) ||
			len(ack.Topics) != 1 || ack.Topics[0] != topic {
			return fmt.Errorf("connection %d: want the ack of its subscribe, got %s", w.first+i, p)
		}
	}
	return nil
}

// receive reads every expected delivery of every connection, in order, then checks
// with an application-level ping that nothing else (a duplicate) came after them.
func (w *scWorker) receive(topic string, want, data [][]byte, deadline time.Time) error {
	var errs []error
	fail := func(i int, err error) {
		if len(errs) < 3 {
			errs = append(errs, fmt.Errorf("connection %d: %w", w.first+i, err))
		}
	}
	for i, c := range w.conns {
		for j := range want {
			p, err := w.read(c, deadline)
			if err != nil {
				fail(i, fmt.Errorf("delivery %d of %d: %w", j, len(want), err))
				break
			}
			if !bytes.Equal(p, want[j]) && !scSameDelivery(p, topic, data[j]) {
				fail(i, fmt.Errorf("delivery %d of %d: got %s, want %s", j, len(want), p, want[j]))
				break
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for i, c := range w.conns {
		if err := w.write(c, ws.OpText, []byte(`{"type":"ping","id":"end"}`), deadline); err != nil {
			return fmt.Errorf("connection %d: sending the final ping: %w", w.first+i, err)
		}
	}
	for i, c := range w.conns {
		p, err := w.read(c, deadline)
		if err != nil {
			return fmt.Errorf("connection %d: waiting for the final pong: %w", w.first+i, err)
		}
		var pong struct {
			Type string          `json:"type"`
			ID   json.RawMessage `json:"id"`
		}
		if err := json.Unmarshal(p, &pong); err != nil || pong.Type != "pong" || string(pong.ID) != `"end"` {
			return fmt.Errorf("connection %d: after the last delivery want the final pong, got %s", w.first+i, p)
		}
	}
	return nil
}

// scSameDelivery accepts a delivery that differs from the expected bytes only in
// the envelope (field order, spacing): its data must still be byte for byte.
func scSameDelivery(p []byte, topic string, data []byte) bool {
	var d struct {
		Type  string          `json:"type"`
		Topic string          `json:"topic"`
		Data  json.RawMessage `json:"data"`
	}
	return json.Unmarshal(p, &d) == nil && d.Type == "publish" && d.Topic == topic && bytes.Equal(d.Data, data)
}

// write sends one masked frame.
func (w *scWorker) write(c scConn, op ws.OpCode, p []byte, deadline time.Time) error {
	f := ws.MaskFrameInPlace(ws.NewFrame(op, true, p))
	b, err := ws.CompileFrame(f)
	if err != nil {
		return err
	}
	if err := c.nc.SetWriteDeadline(deadline); err != nil {
		return err
	}
	_, err = c.nc.Write(b)
	return err
}

// read returns the payload of the next data frame (valid until the next read),
// answering pings on the way.
func (w *scWorker) read(c scConn, deadline time.Time) ([]byte, error) {
	if err := c.nc.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	for {
		h, err := ws.ReadHeaderBuffer(c.br, w.hdr[:2])
		if err != nil {
			return nil, err
		}
		if h.Masked || h.Rsv != 0 || !h.Fin {
			return nil, fmt.Errorf("unexpected frame header %+v (masked, RSV bits or fragmented)", h)
		}
		if h.Length > scMaxFrame {
			return nil, fmt.Errorf("frame of %d bytes", h.Length)
		}
		if int64(cap(w.buf)) < h.Length {
			w.buf = make([]byte, h.Length)
		}
		p := w.buf[:h.Length]
		if _, err := io.ReadFull(c.br, p); err != nil {
			return nil, err
		}
		switch h.OpCode {
		case ws.OpText:
			return p, nil
		case ws.OpPing:
			if err := w.write(c, ws.OpPong, p, deadline); err != nil {
				return nil, err
			}
		case ws.OpPong:
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(p)
			return nil, fmt.Errorf("server closed the connection: %d %q", code, reason)
		default:
			return nil, fmt.Errorf("unexpected %v frame: %q", h.OpCode, p)
		}
	}
}
