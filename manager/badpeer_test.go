package manager_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/manager"
	"github.com/firetower-go/firetower/managertest"
)

// Bad peers: raw TCP connections that break the protocol in one way each.
// After every one the manager must still serve well-behaved gateways, and
// after Shutdown nothing it started may be left running.

const (
	bpWait = 10 * time.Second // bound of every wait in this file
	// bpPing is the gateways' ping interval: well below the short heartbeat
	// timeouts used here, so only the bad peers time out.
	bpPing = 100 * time.Millisecond
)

// bpGoroutines counts the goroutines, leaving out the idle workers of
// gnet's process-wide pool (ants), which gnet's Engine.Register uses and
// which expire on the pool's own schedule: they are not this package's.
func bpGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.TrimSpace(g) != "" && !strings.Contains(g, "panjf2000/ants") {
			count++
		}
	}
	return count
}

// bpNoLeak records the goroutine count now and, after every later cleanup
// of the test (it is registered first, so it runs last), polls until the
// count is back to it.
func bpNoLeak(t *testing.T) {
	t.Helper()
	base := bpGoroutines()
	t.Cleanup(func() {
		deadline := time.Now().Add(bpWait)
		for {
			n := bpGoroutines()
			if n <= base {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("goroutine leak: %d goroutines after shutdown, %d before the test\n%s", n, base, buf)
				return
			}
			time.Sleep(10 * time.Millisecond) // polling a count, bounded by the deadline
		}
	})
}

// bpServer starts a manager node on a free port, shut down at cleanup.
func bpServer(t *testing.T, cfg manager.ServerConfig) *manager.Server {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	if cfg.HeartbeatTimeout == 0 {
		cfg.HeartbeatTimeout = 2 * time.Second
	}
	s, err := manager.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*bpWait)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("manager Shutdown: %v", err)
		}
	})
	return s
}

// bpGatewayWith is bpGateway with a client configuration (the ping
// interval is bpPing unless set).
func bpGatewayWith(t *testing.T, cfg manager.ClientConfig, node uint16) (*firetower.Tower, *manager.Client) {
	t.Helper()
	if cfg.PingInterval == 0 {
		cfg.PingInterval = bpPing
	}
	mc, err := manager.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tw, err := firetower.New(
		firetower.WithAddr("127.0.0.1:0"),
		firetower.WithNodeID(node),
		firetower.WithManager(mc),
		firetower.WithPublishPolicy(firetower.PublishAny),
	)
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), bpWait)
		defer cancel()
		if err := tw.Shutdown(ctx); err != nil {
			t.Errorf("gateway %d Shutdown: %v", node, err)
		}
	})
	return tw, mc
}

// bpEnv is a manager with two well-behaved gateways (node ids 1 and 2).
type bpEnv struct {
	srv    *manager.Server
	a, b   *firetower.Tower
	ma, mb *manager.Client
	n      int
	// extra is how many bad peers may still hold a session while
	// checkServes runs (besides the two gateways).
	extra int
}

func newBPEnv(t *testing.T, cfg manager.ServerConfig) *bpEnv {
	t.Helper()
	bpNoLeak(t)
	srv := bpServer(t, cfg)
	e := &bpEnv{srv: srv}
	// the gateways have the manager's secret, if any
	e.a, e.ma = bpGatewayWith(t, manager.ClientConfig{Addrs: []string{srv.Addr()}, Secret: cfg.Secret, Logger: cfg.Logger}, 1)
	e.b, e.mb = bpGatewayWith(t, manager.ClientConfig{Addrs: []string{srv.Addr()}, Secret: cfg.Secret, Logger: cfg.Logger}, 2)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("manager %+v\ngateway 1 %+v\ngateway 2 %+v", srv.Stats(), e.ma.Stats(), e.mb.Stats())
		}
	})
	e.checkServes(t)
	return e
}

// checkServes proves the manager still serves the well-behaved gateways:
// interest, counts and delivery in both directions, on fresh topics.
func (e *bpEnv) checkServes(t *testing.T) {
	t.Helper()
	for _, dir := range []struct {
		name     string
		pub, sub *firetower.Tower
	}{{"a->b", e.a, e.b}, {"b->a", e.b, e.a}} {
		e.n++
		topic := fmt.Sprintf("probe-%d", e.n)
		c := managertest.Dial(t, dir.sub)
		c.Subscribe(topic)
		managertest.WaitCount(t, dir.pub, topic, 1)
		if n := e.srv.Count(topic); n != 1 {
			t.Fatalf("%s: manager Count(%s) = %d, want 1", dir.name, topic, n)
		}
		data := fmt.Sprintf(`{"probe":%d}`, e.n)
		if err := dir.pub.Publish(context.Background(), topic, []byte(data)); err != nil {
			t.Fatalf("%s: Publish: %v", dir.name, err)
		}
		c.ExpectDelivery(topic, data)
		c.Close()
		managertest.WaitCount(t, dir.pub, topic, 0)
	}
	if st := e.srv.Stats(); st.Nodes < 2 || st.Nodes > 2+e.extra {
		t.Fatalf("manager has %d nodes, want the 2 gateways and at most %d other (stats %+v)", st.Nodes, e.extra, st)
	}
}

// rawPeer is a TCP connection to a manager driven byte by byte.
type rawPeer struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawPeer {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, bpWait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawPeer{t: t, c: c, r: bufio.NewReader(c)}
}

func (p *rawPeer) write(b []byte) {
	p.t.Helper()
	_ = p.c.SetWriteDeadline(time.Now().Add(bpWait))
	if _, err := p.c.Write(b); err != nil {
		p.t.Fatalf("write: %v", err)
	}
}

func frame(t *testing.T, msgs ...*manager.Msg) []byte {
	t.Helper()
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = manager.AppendFrame(b, m); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func (p *rawPeer) send(msgs ...*manager.Msg) {
	p.t.Helper()
	p.write(frame(p.t, msgs...))
}

// read reads the next message from the manager.
func (p *rawPeer) read() (*manager.Msg, error) {
	_ = p.c.SetReadDeadline(time.Now().Add(bpWait))
	b, err := manager.ReadFrame(p.r, manager.DefaultMaxFrame, nil)
	if err != nil {
		return nil, err
	}
	return manager.Decode(b)
}

// hello says HELLO and expects WELCOME.
func (p *rawPeer) hello(node uint16, boot string) {
	p.t.Helper()
	p.send(&manager.Msg{Type: manager.MsgHello, Node: node, Text: boot})
	m, err := p.read()
	if err != nil {
		p.t.Fatalf("HELLO node %d: %v", node, err)
	}
	if m.Type != manager.MsgWelcome {
		p.t.Fatalf("HELLO node %d: got type %d (%q), want WELCOME", node, m.Type, m.Text)
	}
}

// expectGoAway reads until a GOAWAY, checks that its reason contains want,
// and then that the manager closes the connection.
func (p *rawPeer) expectGoAway(want string) *manager.Msg {
	p.t.Helper()
	for {
		m, err := p.read()
		if err != nil {
			p.t.Fatalf("waiting for GOAWAY %q: %v", want, err)
		}
		if m.Type != manager.MsgGoAway {
			continue // WELCOME, PONG, DELIVER sent before
		}
		if !strings.Contains(m.Text, want) {
			p.t.Fatalf("GOAWAY %q, want it to contain %q", m.Text, want)
		}
		p.expectClosed()
		return m
	}
}

// expectClosed checks that the manager closes the connection (anything
// still buffered is read and ignored).
func (p *rawPeer) expectClosed() {
	p.t.Helper()
	_ = p.c.SetReadDeadline(time.Now().Add(bpWait))
	_, err := io.Copy(io.Discard, p.r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		p.t.Fatalf("the manager did not close the connection within %v", bpWait)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(bpWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", bpWait, what)
		}
		time.Sleep(5 * time.Millisecond) // polling manager state, bounded by the deadline
	}
	return time.Since(start)
}

func lenPrefix(n uint32, payload ...byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, n), payload...)
}

func TestBadPeerGarbage(t *testing.T) {
	e := newBPEnv(t, manager.ServerConfig{})
	rnd := make([]byte, 4096)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range rnd {
		rnd[i] = byte(r.Uint32())
	}
	cases := []struct {
		name string
		b    []byte
		want string // in the GOAWAY reason
	}{
		{"http request", []byte("GET / HTTP/1.1\r\nHost: manager\r\n\r\n"), "too large"},
		{"tls client hello", []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}, "too large"},
		{"random bytes", rnd, ""},
		{"zero length", lenPrefix(0), ""},
		{"invalid msgpack", lenPrefix(4, 0xc1, 0xc1, 0xc1, 0xc1), "bad frame"},
		{"msgpack string", lenPrefix(6, 0xa5, 'h', 'e', 'l', 'l', 'o'), "bad frame"},
		{"msgpack map", lenPrefix(3, 0x81, 0x01, 0x02), "bad frame"},
		{"empty array", lenPrefix(1, 0x90), ""},
		{"truncated array", lenPrefix(3, 0x98, 0x01, 0xcd), "bad frame"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.srv.Stats().BadFrames
			p := dialRaw(t, e.srv.Addr())
			p.write(c.b)
			p.expectGoAway(c.want)
			if got := e.srv.Stats().BadFrames; got != before+1 {
				t.Errorf("BadFrames %d -> %d, want +1", before, got)
			}
			e.checkServes(t)
		})
	}
	// garbage in the middle of a session ends it and its node's counts leave
	t.Run("after hello", func(t *testing.T) {
		p := dialRaw(t, e.srv.Addr())
		p.hello(70, "garbage-boot")
		p.send(&manager.Msg{Type: manager.MsgSub, Topic: "g", Count: 5})
		waitFor(t, "the SUB of node 70", func() bool { return e.srv.Count("g") == 5 })
		p.write(lenPrefix(4, 0xc1, 0xc1, 0xc1, 0xc1))
		p.expectGoAway("bad frame")
		waitFor(t, "node 70's counts to leave", func() bool { return e.srv.Count("g") == 0 && e.srv.Stats().Nodes == 2 })
		e.checkServes(t)
	})
}

// heapAlloc returns the bytes allocated by the process so far.
func heapAlloc() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

func TestBadPeerOversizedLength(t *testing.T) {
	e := newBPEnv(t, manager.ServerConfig{})
	for _, n := range []uint32{0xFFFFFFFF, 0x80000000, manager.DefaultMaxFrame + 1} {
		for _, afterHello := range []bool{false, true} {
			t.Run(fmt.Sprintf("%#x/hello=%v", n, afterHello), func(t *testing.T) {
				p := dialRaw(t, e.srv.Addr())
				if afterHello {
					p.hello(71, "oversize-boot")
				}
				before := heapAlloc()
				// a header and a few bytes of what would be the payload
				p.write(lenPrefix(n, 0x98, 0x01, 0x02, 0x03))
				g := p.expectGoAway("too large")
				if alloc := heapAlloc() - before; alloc > 8<<20 {
					t.Errorf("%d bytes allocated while refusing a frame declared as %d bytes", alloc, n)
				}
				if !strings.Contains(g.Text, fmt.Sprint(n)) {
					t.Errorf("GOAWAY %q does not name the declared length %d", g.Text, n)
				}
				e.checkServes(t)
			})
		}
	}
	t.Run("configured limit", func(t *testing.T) {
		small := bpServer(t, manager.ServerConfig{MaxFrame: 1024})
		p := dialRaw(t, small.Addr())
		p.hello(72, "limit-boot")
		topics := make([]manager.TopicCount, 200)
		for i := range topics {
			topics[i] = manager.TopicCount{Topic: fmt.Sprintf("topic-%d", i), Count: 1}
		}
		p.send(&manager.Msg{Type: manager.MsgSync, Topics: topics})
		p.expectGoAway("limit 1024")
		if small.Count("topic-1") != 0 {
			t.Error("part of a refused SYNC was applied")
		}
	})
}

// A peer that declares a large frame the limit allows and then sends almost
// nothing must not make the manager allocate the declared size: a thousand
// such connections would otherwise cost 16 GiB. (Before HELLO the limit
// is PreAuthMaxFrame, so these peers say HELLO first.)
func TestBadPeerDeclaredFrameNotPreallocated(t *testing.T) {
	const peers = 8
	e := newBPEnv(t, manager.ServerConfig{HeartbeatTimeout: 500 * time.Millisecond})
	e.extra = peers
	ps := make([]*rawPeer, peers)
	for i := range ps {
		ps[i] = dialRaw(t, e.srv.Addr())
		ps[i].hello(uint16(80+i), "declared-boot")
	}
	before := heapAlloc()
	for _, p := range ps {
		p.write(lenPrefix(manager.DefaultMaxFrame, 0x98))
	}
	// the heartbeat timeout proves the manager read the header and waited
	// for the payload
	for _, p := range ps {
		p.expectGoAway("heartbeat timeout")
	}
	if alloc := heapAlloc() - before; alloc > peers*manager.DefaultMaxFrame/4 {
		t.Errorf("%d MiB allocated for %d peers that each declared a %d MiB frame and sent 1 byte; want memory to follow the bytes received",
			alloc>>20, peers, manager.DefaultMaxFrame>>20)
	}
	e.checkServes(t)
}

func TestBadPeerUnknownMessageType(t *testing.T) {
	e := newBPEnv(t, manager.ServerConfig{})
	for _, c := range []struct {
		name  string
		hello bool
		typ   uint8
		want  string
	}{
		{"type 0 first", false, 0, "unknown message type 0"},
		{"type 200 first", false, 200, "unknown message type 200"},
		{"type 60 after hello", true, 60, "unknown message type 60"},
		{"type 255 after hello", true, 255, "unknown message type 255"},
		{"WELCOME from a gateway", true, manager.MsgWelcome, "unexpected message type"},
		{"DELIVER from a gateway", true, manager.MsgDeliver, "unexpected message type"},
		{"COUNT reply from a gateway", true, manager.MsgCountReply, "unexpected message type"},
		{"CHALLENGE from a gateway", true, manager.MsgChallenge, "unexpected message type"},
		{"AUTH after the session opened", true, manager.MsgAuth, "unexpected message type"},
		{"DELIVER_AT from a gateway", true, manager.MsgDeliverAt, "unexpected message type"},
		{"APPEND reply from a gateway", true, manager.MsgAppendReply, "unexpected message type"},
		{"HISTORY reply from a gateway", true, manager.MsgHistoryReply, "unexpected message type"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := dialRaw(t, e.srv.Addr())
			if c.hello {
				p.hello(73, "type-boot")
				p.send(&manager.Msg{Type: manager.MsgSub, Topic: "u", Count: 1})
			}
			p.send(&manager.Msg{Type: c.typ, Topic: "u", Data: []byte("x")})
			p.expectGoAway(c.want)
			waitFor(t, "node 73 to leave", func() bool { return e.srv.Count("u") == 0 && e.srv.Stats().Nodes == 2 })
			e.checkServes(t)
		})
	}
}

func TestBadPeerFirstMessageNotHello(t *testing.T) {
	e := newBPEnv(t, manager.ServerConfig{})
	for _, m := range []*manager.Msg{
		{Type: manager.MsgSync, Topics: []manager.TopicCount{{Topic: "nh", Count: 9}}},
		{Type: manager.MsgSub, Topic: "nh", Count: 9},
		{Type: manager.MsgPub, Topic: "nh", Data: []byte("x")},
		{Type: manager.MsgCount, Topic: "nh"},
		{Type: manager.MsgPing, Seq: 1},
	} {
		t.Run(fmt.Sprint("type ", m.Type), func(t *testing.T) {
			before := e.srv.Stats()
			p := dialRaw(t, e.srv.Addr())
			// a HELLO after the bad first message must not rescue the session
			p.send(m, &manager.Msg{Type: manager.MsgHello, Node: 74, Text: "late"})
			p.expectGoAway("HELLO")
			st := e.srv.Stats()
			if st.Refused != before.Refused+1 {
				t.Errorf("Refused %d -> %d, want +1", before.Refused, st.Refused)
			}
			if st.Publishes != before.Publishes {
				t.Errorf("a PUB before HELLO was routed")
			}
			if e.srv.Count("nh") != 0 || st.Nodes != 2 {
				t.Errorf("a session without HELLO changed the cluster: count %d, nodes %d", e.srv.Count("nh"), st.Nodes)
			}
			e.checkServes(t)
		})
	}
}

func TestBadPeerDuplicateNodeID(t *testing.T) {
	e := newBPEnv(t, manager.ServerConfig{})
	// gateway 2 holds a subscription
	held := managertest.Dial(t, e.b)
	held.Subscribe("dup")
	managertest.WaitCount(t, e.a, "dup", 1)

	before := e.srv.Stats()
	p := dialRaw(t, e.srv.Addr())
	// HELLO and SYNC pipelined, as a real gateway sends them
	p.send(&manager.Msg{Type: manager.MsgHello, Node: 2, Text: "another-process"},
		&manager.Msg{Type: manager.MsgSync, Topics: []manager.TopicCount{{Topic: "dup", Count: 99}, {Topic: "other", Count: 1}}})
	g := p.expectGoAway("duplicate node id 2")
	t.Logf("GOAWAY: %q", g.Text)
	st := e.srv.Stats()
	if st.Refused != before.Refused+1 {
		t.Errorf("Refused %d -> %d, want +1", before.Refused, st.Refused)
	}
	if n := e.srv.Count("dup"); n != 1 {
		t.Errorf("Count(dup) = %d after the duplicate, want gateway 2's 1", n)
	}
	if n := e.srv.Count("other"); n != 0 {
		t.Errorf("Count(other) = %d: the refused duplicate's SYNC was applied", n)
	}
	// the first gateway 2 keeps working: it still gets deliveries on its
	// old subscription and everything else works both ways
	if err := e.a.Publish(context.Background(), "dup", []byte(`"still here"`)); err != nil {
		t.Fatal(err)
	}
	held.ExpectDelivery("dup", `"still here"`)
	e.checkServes(t)
}

// drainClient is a websocket client on a gateway that reads everything and
// counts the deliveries.
type drainClient struct {
	ws   *websocket.Conn
	got  atomic.Int64
	acks chan string
}

func dialDrain(t *testing.T, tw *firetower.Tower, topic string) *drainClient {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+tw.Addr()+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	d := &drainClient{ws: ws, acks: make(chan string, 16)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			switch s := string(b); {
			case strings.Contains(s, `"type":"publish"`):
				d.got.Add(1)
			case strings.Contains(s, `"type":"ack"`), strings.Contains(s, `"type":"error"`):
				select {
				case d.acks <- s:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() { _ = ws.Close(); wg.Wait() })
	if err := ws.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `{"type":"subscribe","topic":%q,"id":"s"}`, topic)); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-d.acks:
		if !strings.Contains(s, `"ack"`) {
			t.Fatalf("subscribe: %s", s)
		}
	case <-time.After(bpWait):
		t.Fatal("no subscribe ack")
	}
	return d
}

func TestBadPeerStopsReading(t *testing.T) {
	e := newBPEnv(t, manager.ServerConfig{QueueBytes: 256 << 10, WriteTimeout: 3 * time.Second, HeartbeatTimeout: 20 * time.Second})
	const topic = "flood"
	// a well-behaved subscriber of the same topic on gateway 2
	good := dialDrain(t, e.b, topic)
	managertest.WaitCount(t, e.a, topic, 1)

	p := dialRaw(t, e.srv.Addr())
	p.hello(75, "slow-boot")
	p.send(&manager.Msg{Type: manager.MsgSub, Topic: topic, Count: 1})
	managertest.WaitCount(t, e.a, topic, 2)
	e.extra = 1 // the slow peer, until it is reset
	// from here on p reads nothing

	stop := make(chan struct{})
	var published atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		data := []byte(`"` + strings.Repeat("x", 4000) + `"`)
		for {
			select {
			case <-stop:
				return
			default:
			}
			// A publisher with flow control: at most 1 MiB ahead of the
			// good subscriber. The slow peer falls behind without bound,
			// while the pipeline through the manager stays short: an
			// unbounded flood fills the gateway's own 16 MiB queue, its
			// pings wait behind it, and under -race the gateway may then
			// give up on the (busy, healthy) manager, which is another
			// matter than the slow peer tested here.
			if published.Load()-good.got.Load() > 256 {
				time.Sleep(100 * time.Microsecond) // pacing, not synchronisation
				continue
			}
			if e.a.Publish(context.Background(), topic, data) == nil {
				published.Add(1)
			} else {
				runtime.Gosched() // the gateway's queue is full: let it drain
			}
		}
	}()
	stopFlood := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopFlood()

	took := waitFor(t, "the slow peer's deliveries to be dropped or its session reset", func() bool {
		st := e.srv.Stats()
		return st.DroppedDeliver > 0 || st.Resets > 0
	})
	st := e.srv.Stats()
	t.Logf("after %v: %d published, stats %+v, good subscriber got %d", took, published.Load(), st, good.got.Load())

	// while the flood goes on, the manager serves the others: the good
	// subscriber of the flooded topic keeps receiving, and new interest,
	// counts and deliveries work both ways
	mark := good.got.Load()
	waitFor(t, "the good subscriber to keep receiving during the flood", func() bool { return good.got.Load() > mark+100 })
	e.checkServes(t)
	stopFlood()
	if st := e.srv.Stats(); st.DroppedDeliver == 0 && st.Resets == 0 {
		t.Errorf("nothing dropped or reset: %+v", st)
	}
}

func TestBadPeerSilent(t *testing.T) {
	const hb = 500 * time.Millisecond
	e := newBPEnv(t, manager.ServerConfig{HeartbeatTimeout: hb})
	p := dialRaw(t, e.srv.Addr())
	p.hello(76, "silent-boot")
	p.send(&manager.Msg{Type: manager.MsgSync, Topics: []manager.TopicCount{{Topic: "s1", Count: 3}, {Topic: "s2", Count: 4}}})
	sent := time.Now()
	waitFor(t, "the SYNC of node 76", func() bool { return e.srv.Count("s1") == 3 && e.srv.Count("s2") == 4 })
	resets := e.srv.Stats().Resets
	waitFor(t, "the silent peer's counts to leave", func() bool {
		return e.srv.Count("s1") == 0 && e.srv.Count("s2") == 0 && e.srv.Stats().Nodes == 2
	})
	gone := time.Since(sent)
	t.Logf("counts left %v after the peer's last message (heartbeat timeout %v)", gone, hb)
	if gone < hb {
		t.Errorf("the peer was dropped after %v, before the heartbeat timeout %v", gone, hb)
	}
	if r := e.srv.Stats().Resets; r != resets+1 {
		t.Errorf("Resets %d -> %d, want +1", resets, r)
	}
	p.expectGoAway("heartbeat")
	// the gateways ping, so they were not dropped
	e.checkServes(t)
}
