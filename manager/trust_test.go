package manager_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/manager"
	"github.com/firetower-go/firetower/managertest"
)

// Trust: the manager port is a door. A peer that cannot prove the
// cluster secret gets no state and no traffic, topics from peers are
// validated, what an unauthenticated peer can make the manager allocate
// is tiny, and gateways neither trust a manager that cannot prove the
// secret nor hammer one that refuses them.

var trustSecret = []byte("a-cluster-secret-of-32-bytes-...")

// The handshake as auth.go documents it, written again here so that the
// test checks the documented algorithm and not the code's own helpers.
const (
	trustLabelGateway = "firetower cluster v1 gateway proof\x00"
	trustLabelManager = "firetower cluster v1 manager proof\x00"
)

func trustProof(secret []byte, label string, gatewayNonce, managerNonce []byte, node uint16, boot string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	m.Write(gatewayNonce)
	m.Write(managerNonce)
	m.Write(binary.BigEndian.AppendUint16(nil, node))
	m.Write(binary.BigEndian.AppendUint32(nil, uint32(len(boot))))
	m.Write([]byte(boot))
	return m.Sum(nil)
}

func trustNonce() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}

// authHello opens a session with the secret, as a gateway does, checking
// the manager's proof on the way.
func (p *rawPeer) authHello(node uint16, boot string, secret []byte) {
	p.t.Helper()
	gn := trustNonce()
	p.send(&manager.Msg{Type: manager.MsgHello, Node: node, Text: boot, Data: gn})
	m, err := p.read()
	if err != nil {
		p.t.Fatalf("HELLO: %v", err)
	}
	if m.Type != manager.MsgChallenge || len(m.Data) != 64 {
		p.t.Fatalf("HELLO: got type %d (%q) with %d bytes, want a CHALLENGE of 64 bytes", m.Type, m.Text, len(m.Data))
	}
	mn := m.Data[:32]
	if !hmac.Equal(m.Data[32:], trustProof(secret, trustLabelManager, gn, mn, node, boot)) {
		p.t.Fatal("the manager's proof does not check out")
	}
	p.send(&manager.Msg{Type: manager.MsgAuth, Data: trustProof(secret, trustLabelGateway, gn, mn, node, boot)})
	if m, err = p.read(); err != nil || m.Type != manager.MsgWelcome {
		p.t.Fatalf("AUTH: %v %+v, want WELCOME", err, m)
	}
}

// drain reads every message until the manager closes the connection. A
// reset (the manager closed with unread bytes) ends it too.
func (p *rawPeer) drain() []*manager.Msg {
	p.t.Helper()
	var out []*manager.Msg
	for {
		m, err := p.read()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				p.t.Fatalf("the manager did not close the connection within %v", bpWait)
			}
			return out
		}
		out = append(out, m)
	}
}

func msgTypes(ms []*manager.Msg) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "[type %d %q] ", m.Type, m.Text)
	}
	return b.String()
}

// expectOnlyGoAway checks that a peer got exactly skip messages of the
// given types and then one GOAWAY containing want, and nothing else.
func expectOnlyGoAway(t *testing.T, got []*manager.Msg, want string, before ...uint8) {
	t.Helper()
	if len(got) != len(before)+1 {
		t.Fatalf("the peer got %s; want %d message(s) and a GOAWAY %q", msgTypes(got), len(before), want)
	}
	for i, typ := range before {
		if got[i].Type != typ {
			t.Fatalf("the peer got %s; want type %d first", msgTypes(got), typ)
		}
	}
	if g := got[len(got)-1]; g.Type != manager.MsgGoAway || !strings.Contains(g.Text, want) {
		t.Fatalf("the peer got %s; want a last GOAWAY containing %q", msgTypes(got), want)
	}
}

// roomEnv is a manager with a secret and its two gateways, with one
// websocket subscriber of "room" on gateway 2.
type roomEnv struct {
	*bpEnv
	sub *managertest.Client
}

func newRoomEnv(t *testing.T, cfg manager.ServerConfig) *roomEnv {
	t.Helper()
	// Unlike newBPEnv's, these gateways ping every second and the manager
	// waits 5s for them: the checks below compare the cluster's state
	// before and after, so a gateway session must not flap when the
	// machine is busy (the bombs move 32 MiB through loopback).
	bpNoLeak(t)
	if cfg.HeartbeatTimeout == 0 {
		cfg.HeartbeatTimeout = 5 * time.Second
	}
	srv := bpServer(t, cfg)
	e := &bpEnv{srv: srv}
	gw := func(node uint16) (*firetower.Tower, *manager.Client) {
		return bpGatewayWith(t, manager.ClientConfig{Addrs: []string{srv.Addr()}, Secret: cfg.Secret, PingInterval: time.Second, Logger: cfg.Logger}, node)
	}
	e.a, e.ma = gw(1)
	e.b, e.mb = gw(2)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("manager %+v\ngateway 1 %+v\ngateway 2 %+v", srv.Stats(), e.ma.Stats(), e.mb.Stats())
		}
	})
	e.checkServes(t)
	sub := managertest.Dial(t, e.b)
	sub.Subscribe("room")
	managertest.WaitCount(t, e.a, "room", 1)
	return &roomEnv{bpEnv: e, sub: sub}
}

// unchanged checks that the cluster is as it was: the two gateways, the
// one subscriber, no publish routed since before, and it proves that the
// subscriber got nothing in between: its next delivery is a fresh probe.
func (e *roomEnv) unchanged(t *testing.T, before manager.ServerStats, what string) {
	t.Helper()
	st := e.srv.Stats()
	if st.Nodes != 2 || e.srv.Count("room") != 1 || e.srv.Count("$firetower/control") != 2 {
		t.Errorf("%s changed the cluster: %d nodes, Count(room) %d, Count($firetower/control) %d",
			what, st.Nodes, e.srv.Count("room"), e.srv.Count("$firetower/control"))
	}
	if st.Publishes != before.Publishes || st.Deliveries != before.Deliveries {
		t.Errorf("%s got publishes routed: %+v -> %+v", what, before, st)
	}
	e.n++
	probe := fmt.Sprintf(`{"after":%d}`, e.n)
	if err := e.a.Publish(context.Background(), "room", []byte(probe)); err != nil {
		t.Fatal(err)
	}
	e.sub.ExpectDelivery("room", probe)
	e.checkServes(t)
}

// rogueMessages is what a rogue node would send right after its HELLO:
// interest in everything that matters, an inflated control count, and
// publishes to real subscribers and to the control topic.
func rogueMessages() []*manager.Msg {
	return []*manager.Msg{
		{Type: manager.MsgSync, Topics: []manager.TopicCount{{Topic: "room", Count: 5}, {Topic: "$firetower/control", Count: 1 << 40}}},
		{Type: manager.MsgSub, Topic: "$firetower/node/1", Count: 1},
		{Type: manager.MsgPub, Topic: "room", Data: []byte(`"evil"`)},
		{Type: manager.MsgPub, Topic: "$firetower/control", Data: []byte(`{"op":"disconnect_user","user":"u","from":2}`)},
		{Type: manager.MsgCount, Seq: 1, Topic: "room"},
		{Type: manager.MsgPing, Seq: 2},
	}
}

// TestTrustRogueNodeWithoutSecret: with a secret, a peer that says HELLO
// without taking the challenge (an old gateway, a rogue process) is refused
// with a GOAWAY and sees nothing, changes nothing, publishes nothing; so is
// a real gateway configured without the secret. (Before: any process that
// could connect became a node.)
func TestTrustRogueNodeWithoutSecret(t *testing.T) {
	e := newRoomEnv(t, manager.ServerConfig{Secret: trustSecret})

	before := e.srv.Stats()
	p := dialRaw(t, e.srv.Addr())
	// it even claims the id of gateway 2
	p.send(append([]*manager.Msg{{Type: manager.MsgHello, Node: 2, Text: "rogue-boot"}}, rogueMessages()...)...)
	expectOnlyGoAway(t, p.drain(), "authentication required")
	if st := e.srv.Stats(); st.Refused != before.Refused+1 {
		t.Errorf("Refused %d -> %d, want +1", before.Refused, st.Refused)
	}
	e.unchanged(t, before, "a peer without the secret")

	// A gateway without the secret: refused, never connected, its
	// publishes go nowhere.
	before = e.srv.Stats()
	tw, mc := bpGatewayWith(t, manager.ClientConfig{Addrs: []string{e.srv.Addr()}}, 3)
	waitFor(t, "the gateway without the secret to be refused", func() bool { return mc.Stats().Refused >= 1 })
	if st := mc.Stats(); st.Connected != 0 || st.GoAways == 0 {
		t.Errorf("gateway without the secret: %+v, want no connection and a GOAWAY", st)
	}
	if err := tw.Publish(context.Background(), "room", []byte(`"evil"`)); err == nil {
		t.Error("a gateway without the secret published into the cluster")
	}
	e.unchanged(t, before, "a gateway without the secret")
}

// TestTrustWrongSecret: a peer that takes the challenge but answers it
// without the secret gets a GOAWAY, and nothing it sent is applied, even
// when it pipelines SYNC and PUB behind its AUTH and claims a live
// gateway's id.
func TestTrustWrongSecret(t *testing.T) {
	e := newRoomEnv(t, manager.ServerConfig{Secret: trustSecret})
	wrong := []byte("not-the-cluster-secret-at-all!!!")

	for _, c := range []struct {
		name  string
		hello *manager.Msg
		auth  func(gn, mn []byte) *manager.Msg // nil: no AUTH
		want  string
		types []uint8 // before the GOAWAY
	}{
		{"wrong secret", &manager.Msg{Type: manager.MsgHello, Node: 2, Text: "rogue"}, func(gn, mn []byte) *manager.Msg {
			return &manager.Msg{Type: manager.MsgAuth, Data: trustProof(wrong, trustLabelGateway, gn, mn, 2, "rogue")}
		}, "authentication failed", []uint8{manager.MsgChallenge}},
		{"the manager's own proof sent back", &manager.Msg{Type: manager.MsgHello, Node: 91, Text: "rogue"}, func(_, _ []byte) *manager.Msg {
			return nil // replaced below by the CHALLENGE's proof
		}, "authentication failed", []uint8{manager.MsgChallenge}},
		{"SYNC instead of AUTH", &manager.Msg{Type: manager.MsgHello, Node: 92, Text: "rogue"}, nil, "expected AUTH", []uint8{manager.MsgChallenge}},
		{"short nonce", &manager.Msg{Type: manager.MsgHello, Node: 93, Text: "rogue", Data: []byte("12345")}, nil, "authentication required", nil},
		{"empty AUTH", &manager.Msg{Type: manager.MsgHello, Node: 94, Text: "rogue"}, func(_, _ []byte) *manager.Msg {
			return &manager.Msg{Type: manager.MsgAuth}
		}, "authentication failed", []uint8{manager.MsgChallenge}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := e.srv.Stats()
			p := dialRaw(t, e.srv.Addr())
			h := *c.hello
			if h.Data == nil {
				h.Data = trustNonce()
			}
			p.send(&h)
			var got []*manager.Msg
			if len(c.types) > 0 {
				m, err := p.read()
				if err != nil || m.Type != manager.MsgChallenge {
					t.Fatalf("after HELLO: %v %+v, want CHALLENGE", err, m)
				}
				got = append(got, m)
				var next []*manager.Msg
				switch {
				case c.auth == nil:
				case c.name == "the manager's own proof sent back":
					next = append(next, &manager.Msg{Type: manager.MsgAuth, Data: m.Data[32:]})
				default:
					next = append(next, c.auth(h.Data, m.Data[:32]))
				}
				p.send(append(next, rogueMessages()...)...)
			}
			got = append(got, p.drain()...)
			expectOnlyGoAway(t, got, c.want, c.types...)
			if st := e.srv.Stats(); st.Refused != before.Refused+1 {
				t.Errorf("Refused %d -> %d, want +1", before.Refused, st.Refused)
			}
			e.unchanged(t, before, c.name)
		})
	}

	// A gateway with the wrong secret finds that the manager cannot prove
	// it, and leaves without sending its interest.
	t.Run("gateway", func(t *testing.T) {
		before := e.srv.Stats()
		_, mc := bpGatewayWith(t, manager.ClientConfig{Addrs: []string{e.srv.Addr()}, Secret: wrong}, 3)
		waitFor(t, "the gateway with the wrong secret to give up", func() bool { return mc.Stats().Refused >= 1 })
		if st := mc.Stats(); st.Connected != 0 {
			t.Errorf("gateway with the wrong secret: %+v", st)
		}
		e.unchanged(t, before, "a gateway with the wrong secret")
	})

	// A gateway with a secret and a manager without one do not agree.
	t.Run("manager without a secret", func(t *testing.T) {
		open := bpServer(t, manager.ServerConfig{})
		_, mc := bpGatewayWith(t, manager.ClientConfig{Addrs: []string{open.Addr()}, Secret: trustSecret}, 4)
		waitFor(t, "the gateway to be refused", func() bool { return mc.Stats().Refused >= 1 })
		if st := open.Stats(); st.Nodes != 0 || mc.Stats().Connected != 0 {
			t.Errorf("a gateway with a secret joined a manager without one: manager %+v, gateway %+v", st, mc.Stats())
		}
	})
}

// fakeManager accepts gateways, reads their HELLO, answers with a frame of
// its choosing, and reports the type of the next frame the gateway sends
// (0: none, the gateway closed the connection).
type fakeManager struct {
	ln      net.Listener
	accepts atomic.Int64
	next    chan uint8
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
}

func startFakeManager(t *testing.T, answer func(hello *manager.Msg) []byte) *fakeManager {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeManager{ln: ln, next: make(chan uint8, 4096), conns: map[net.Conn]struct{}{}}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.accepts.Add(1)
			f.mu.Lock()
			f.conns[c] = struct{}{}
			f.mu.Unlock()
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer c.Close()
				f.serve(c, answer)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		f.mu.Lock()
		for c := range f.conns {
			_ = c.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f
}

func (f *fakeManager) serve(c net.Conn, answer func(*manager.Msg) []byte) {
	_ = c.SetDeadline(time.Now().Add(bpWait))
	r := bufio.NewReader(c)
	p, err := manager.ReadFrame(r, manager.DefaultMaxFrame, nil)
	if err != nil {
		return
	}
	hello, err := manager.Decode(p)
	if err != nil || hello.Type != manager.MsgHello {
		return
	}
	if _, err := c.Write(answer(hello)); err != nil {
		return
	}
	var typ uint8
	if p, err := manager.ReadFrame(r, manager.DefaultMaxFrame, nil); err == nil {
		if m, err := manager.Decode(p); err == nil {
			typ = m.Type
		}
	}
	select {
	case f.next <- typ:
	default:
	}
}

// trustNode is a firetower.Node with interest in one topic.
type trustNode struct {
	delivered atomic.Int64
}

func (*trustNode) NodeID() uint16                   { return 5 }
func (n *trustNode) Deliver(string, []byte)         { n.delivered.Add(1) }
func (*trustNode) Interest() map[string]int64       { return map[string]int64{"room": 1} }
func mustFrame(t *testing.T, m *manager.Msg) []byte { return frame(t, m) }

// joinFake joins a trustNode to the managers at addr with cfg and closes
// the link at cleanup.
func joinFake(t *testing.T, cfg manager.ClientConfig) (*manager.Client, firetower.Link, *trustNode) {
	t.Helper()
	mc, err := manager.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := &trustNode{}
	l, err := mc.Join(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return mc, l, n
}

// TestTrustRogueManager: a gateway with the secret does not join a manager
// that cannot prove it (one that welcomes anybody, one whose proof is
// wrong): it sends neither its interest nor an AUTH, and leaves.
func TestTrustRogueManager(t *testing.T) {
	bpNoLeak(t)
	for _, c := range []struct {
		name   string
		answer func(t *testing.T, hello *manager.Msg) []byte
	}{
		{"WELCOME without a challenge", func(t *testing.T, _ *manager.Msg) []byte {
			return mustFrame(t, &manager.Msg{Type: manager.MsgWelcome})
		}},
		{"CHALLENGE with a forged proof", func(t *testing.T, _ *manager.Msg) []byte {
			return mustFrame(t, &manager.Msg{Type: manager.MsgChallenge, Data: append(trustNonce(), trustNonce()...)})
		}},
		{"CHALLENGE with a proof for another secret", func(t *testing.T, h *manager.Msg) []byte {
			mn := trustNonce()
			return mustFrame(t, &manager.Msg{Type: manager.MsgChallenge, Data: append(mn, trustProof([]byte("other"), trustLabelManager, h.Data, mn, h.Node, h.Text)...)})
		}},
		{"the gateway's nonce echoed", func(t *testing.T, h *manager.Msg) []byte {
			return mustFrame(t, &manager.Msg{Type: manager.MsgChallenge, Data: append(bytes.Clone(h.Data), h.Data...)})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := startFakeManager(t, func(h *manager.Msg) []byte { return c.answer(t, h) })
			mc, l, n := joinFake(t, manager.ClientConfig{Addrs: []string{f.ln.Addr().String()}, Secret: trustSecret, PingInterval: bpPing})
			for i := range 2 {
				select {
				case typ := <-f.next:
					if typ != 0 {
						t.Fatalf("attempt %d: after the manager's answer the gateway sent a message of type %d; want it to hang up", i, typ)
					}
				case <-time.After(bpWait):
					t.Fatal("the gateway did not try twice")
				}
			}
			if st := mc.Stats(); st.Connected != 0 || st.Refused < 2 || n.delivered.Load() != 0 {
				t.Errorf("stats %+v, %d deliveries; want no connection and 2 refusals", st, n.delivered.Load())
			}
			if err := l.Publish(context.Background(), "room", []byte("x")); !errors.Is(err, manager.ErrNoManager) {
				t.Errorf("Publish through a rogue manager: %v, want ErrNoManager", err)
			}
		})
	}
}

// TestTrustBackoffGrowsAfterRefusal: a manager that accepts connections and
// refuses the gateway is redialled ever more slowly, as one that is down.
// (Before: the backoff restarted on every successful TCP dial, and a
// refused gateway redialled every ~50 ms forever.) The bound counts dials
// in a window: with MinBackoff 5ms and doubling, at most about 9 fit in
// one second; restarting from 5ms every time would be well over 50.
func TestTrustBackoffGrowsAfterRefusal(t *testing.T) {
	bpNoLeak(t)
	f := startFakeManager(t, func(*manager.Msg) []byte {
		return frame(t, &manager.Msg{Type: manager.MsgGoAway, Text: "duplicate node id 5: another gateway process holds it"})
	})
	mc, _, _ := joinFake(t, manager.ClientConfig{
		Addrs: []string{f.ln.Addr().String()}, MinBackoff: 5 * time.Millisecond, MaxBackoff: 10 * time.Second,
	})
	start := f.accepts.Load()
	<-time.After(time.Second) // the measuring window
	dials := f.accepts.Load() - start
	st := mc.Stats()
	t.Logf("%d dials in the window; client stats %+v", dials, st)
	if st.Refused < 3 || st.GoAways < 3 {
		t.Fatalf("the fake manager's refusals were not seen: %+v", st)
	}
	if dials > 20 {
		t.Errorf("%d dials within a second of refusals: the backoff does not grow", dials)
	}
}

// bombSync is a frame of size bytes holding a SYNC whose topic list is an
// array of nils: each costs the peer 1 byte, and a decoder that sizes the
// list by its declared length 24 or more.
func bombSync(size int) []byte {
	n := size - 13
	p := []byte{0x98, manager.MsgSync, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xdd}
	p = binary.BigEndian.AppendUint32(p, uint32(n))
	p = append(p, bytes.Repeat([]byte{0xc0}, n)...)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(p))), p...)
}

// TestTrustPreAuthBombs: before a peer is registered (and authenticated),
// the manager accepts frames of at most PreAuthMaxFrame and its memory
// stays flat under two 16 MiB SYNC frames of nils; after HELLO, a SYNC of
// nils is refused without sizing anything by its declared length. (Before:
// two such frames before HELLO took the manager from 16 MB to 1.7 GB.)
func TestTrustPreAuthBombs(t *testing.T) {
	e := newRoomEnv(t, manager.ServerConfig{Secret: trustSecret})
	bomb := bombSync(manager.DefaultMaxFrame)
	send := func(p *rawPeer, b []byte) {
		_ = p.c.SetWriteDeadline(time.Now().Add(bpWait))
		_, _ = p.c.Write(b) // the manager may close before taking it all
	}
	for _, c := range []struct {
		name  string
		setup func(p *rawPeer)
	}{
		{"before HELLO", func(*rawPeer) {}},
		{"between HELLO and AUTH", func(p *rawPeer) {
			p.send(&manager.Msg{Type: manager.MsgHello, Node: 95, Text: "bomb", Data: trustNonce()})
			if m, err := p.read(); err != nil || m.Type != manager.MsgChallenge {
				t.Fatalf("HELLO: %v %+v", err, m)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := e.srv.Stats()
			var peers []*rawPeer
			for range 2 {
				p := dialRaw(t, e.srv.Addr())
				c.setup(p)
				peers = append(peers, p)
			}
			allocBefore := heapAlloc()
			var wg sync.WaitGroup
			for _, p := range peers {
				wg.Add(1)
				go func() { defer wg.Done(); send(p, bomb) }()
			}
			waitFor(t, "both bombs to be refused", func() bool { return e.srv.Stats().BadFrames >= before.BadFrames+2 })
			grew := heapAlloc() - allocBefore
			for _, p := range peers {
				for _, m := range p.drain() {
					if m.Type != manager.MsgGoAway || !strings.Contains(m.Text, "too large") {
						t.Errorf("bomb peer got type %d %q, want only a GOAWAY for the frame size", m.Type, m.Text)
					}
				}
			}
			wg.Wait()
			t.Logf("%d bytes allocated while refusing two %d MiB frames", grew, len(bomb)>>20)
			if grew > 4<<20 {
				t.Errorf("%d bytes allocated while refusing two %d MiB frames %s; want under 4 MiB", grew, len(bomb)>>20, c.name)
			}
			e.unchanged(t, before, "the bombs")
		})
	}
	// After the session opened, frames up to MaxFrame are read; a SYNC of
	// nils is refused by its declared length when that is over
	// MaxTopicsPerNode, and at its first nil otherwise.
	for _, c := range []struct {
		name string
		size int
		want string
	}{
		{"after the session opened, 16 MiB", manager.DefaultMaxFrame, "too many topics"},
		{"after the session opened, 1 MiB", 1 << 20, "nil"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := e.srv.Stats()
			p := dialRaw(t, e.srv.Addr())
			p.authHello(96, "bomb", trustSecret)
			b := bombSync(c.size)
			allocBefore := heapAlloc()
			send(p, b)
			expectOnlyGoAway(t, p.drain(), c.want)
			grew := heapAlloc() - allocBefore
			t.Logf("%d KiB allocated reading and refusing a %d KiB SYNC of nils", grew>>10, len(b)>>10)
			// reading the frame itself costs about twice its size;
			// decoding it by its declared length would cost 24 bytes per nil
			if grew > 3*uint64(len(b)) {
				t.Errorf("%d KiB allocated for a %d KiB SYNC of nils", grew>>10, len(b)>>10)
			}
			waitFor(t, "the session to end", func() bool { return e.srv.Stats().Nodes == 2 })
			e.unchanged(t, before, "the bomb")
		})
	}
}

// TestTrustTopicValidation: every topic a peer sends in SYNC, SUB, PUB or
// COUNT follows the client protocol's rules (1 to 256 bytes of printable
// UTF-8, no comma, no white space); a message with another one ends the
// session and nothing of it is applied. (Before: 4 MiB topic names were
// stored.) System topics are the nodes' own and pass from a gateway.
func TestTrustTopicValidation(t *testing.T) {
	e := newRoomEnv(t, manager.ServerConfig{Secret: trustSecret})
	bad := map[string]string{
		"empty":         "",
		"257 bytes":     strings.Repeat("x", 257),
		"4 MiB":         strings.Repeat("y", 4<<20),
		"space":         "two words",
		"comma":         "a,b",
		"tab":           "a\tb",
		"newline":       "a\nb",
		"invalid UTF-8": "a\xff\xfe",
		"control byte":  "a\x00b",
	}
	node := uint16(100)
	for name, topic := range bad {
		for _, m := range []*manager.Msg{
			{Type: manager.MsgSync, Topics: []manager.TopicCount{{Topic: "valid-topic", Count: 1}, {Topic: topic, Count: 1}}},
			{Type: manager.MsgSub, Topic: topic, Count: 1},
			{Type: manager.MsgPub, Topic: topic, Data: []byte(`"x"`)},
			{Type: manager.MsgCount, Topic: topic},
		} {
			t.Run(fmt.Sprintf("%s/type %d", name, m.Type), func(t *testing.T) {
				before := e.srv.Stats()
				node++
				p := dialRaw(t, e.srv.Addr())
				p.authHello(node, "topics", trustSecret)
				p.send(m)
				expectOnlyGoAway(t, p.drain(), "invalid topic")
				if n := e.srv.Count("valid-topic"); n != 0 {
					t.Errorf("part of a refused SYNC was applied: Count(valid-topic) = %d", n)
				}
				waitFor(t, "the peer's session to end", func() bool { return e.srv.Stats().Nodes == 2 })
				if st := e.srv.Stats(); st.Publishes != before.Publishes || st.Topics != before.Topics {
					t.Errorf("stats %+v -> %+v", before, st)
				}
			})
		}
	}
	e.checkServes(t)

	// a gateway's own system topics are accepted from an authenticated node
	p := dialRaw(t, e.srv.Addr())
	p.authHello(200, "system", trustSecret)
	p.send(&manager.Msg{Type: manager.MsgSub, Topic: "$firetower/node/200", Count: 1})
	waitFor(t, "the system topic interest", func() bool { return e.srv.Count("$firetower/node/200") == 1 })
}

// TestTrustTopicsPerNode: a node may have interest in at most
// MaxTopicsPerNode topics; a SYNC or SUB past it ends its session.
func TestTrustTopicsPerNode(t *testing.T) {
	const max = 8
	e := newBPEnv(t, manager.ServerConfig{MaxTopicsPerNode: max})
	sync := func(n int) *manager.Msg {
		m := &manager.Msg{Type: manager.MsgSync}
		for i := range n {
			m.Topics = append(m.Topics, manager.TopicCount{Topic: fmt.Sprintf("cap-%d", i), Count: 1})
		}
		return m
	}
	t.Run("SYNC over", func(t *testing.T) {
		p := dialRaw(t, e.srv.Addr())
		p.hello(110, "cap")
		p.send(sync(max + 1))
		expectOnlyGoAway(t, p.drain(), "too many topics")
		if e.srv.Count("cap-0") != 0 {
			t.Error("part of a refused SYNC was applied")
		}
	})
	t.Run("SUB over", func(t *testing.T) {
		p := dialRaw(t, e.srv.Addr())
		p.hello(111, "cap")
		e.extra = 1
		p.send(sync(max),
			&manager.Msg{Type: manager.MsgSub, Topic: "cap-0", Count: 3},   // an update: fine
			&manager.Msg{Type: manager.MsgSub, Topic: "cap-1"},             // a removal
			&manager.Msg{Type: manager.MsgSub, Topic: "cap-new", Count: 1}, // fits again
			&manager.Msg{Type: manager.MsgPing, Seq: 7})
		if m, err := p.read(); err != nil || m.Type != manager.MsgPong {
			t.Fatalf("%v %+v, want PONG", err, m)
		}
		if e.srv.Count("cap-0") != 3 || e.srv.Count("cap-1") != 0 || e.srv.Count("cap-new") != 1 {
			t.Fatalf("counts %d %d %d", e.srv.Count("cap-0"), e.srv.Count("cap-1"), e.srv.Count("cap-new"))
		}
		e.checkServes(t)
		p.send(&manager.Msg{Type: manager.MsgSub, Topic: "cap-over", Count: 1})
		expectOnlyGoAway(t, p.drain(), "too many topics")
		waitFor(t, "the node's counts to leave", func() bool { return e.srv.Count("cap-0") == 0 && e.srv.Stats().Nodes == 2 })
		e.extra = 0
	})
	e.checkServes(t)
}

// TestTrustPublishRefusesSystemTopics: a publish from outside the cluster
// (the manager's HTTP API) cannot use a system topic, which carries the
// nodes' control messages. (Before: a forged control message kicked a
// client.)
func TestTrustPublishRefusesSystemTopics(t *testing.T) {
	e := newRoomEnv(t, manager.ServerConfig{})
	before := e.srv.Stats()
	for topic, code := range map[string]string{
		"$firetower/control": firetower.CodeForbidden,
		"$firetower/node/2":  firetower.CodeForbidden,
		"":                   firetower.CodeInvalidTopic,
		"a b":                firetower.CodeInvalidTopic,
	} {
		n, err := e.srv.Publish(topic, []byte(`{"op":"disconnect_user","user":"u","from":1}`))
		var fe *firetower.Error
		if n != 0 || !errors.As(err, &fe) || fe.Code != code {
			t.Errorf("Publish(%q) = %d, %v; want 0 and code %s", topic, n, err, code)
		}
	}
	e.unchanged(t, before, "publishes to system topics")
	if n, err := e.srv.Publish("room", []byte(`"from outside"`)); n != 1 || err != nil {
		t.Fatalf("Publish(room) = %d, %v", n, err)
	}
	e.sub.ExpectDelivery("room", `"from outside"`)
}

// TestTrustConstructorsRefuseOpenAddresses: NewServer and NewClient refuse
// an address that is not loopback when nothing authenticates the peers.
func TestTrustConstructorsRefuseOpenAddresses(t *testing.T) {
	mtls := &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert}
	for _, c := range []struct {
		cfg manager.ServerConfig
		ok  bool
	}{
		{manager.ServerConfig{Addr: "0.0.0.0:6666"}, false},
		{manager.ServerConfig{Addr: ":6666"}, false},
		{manager.ServerConfig{Addr: "10.1.2.3:6666"}, false},
		{manager.ServerConfig{Addr: "manager.example.com:6666"}, false},
		{manager.ServerConfig{Addr: "0.0.0.0:6666", TLS: &tls.Config{}}, false},
		{manager.ServerConfig{}, true}, // 127.0.0.1:6666
		{manager.ServerConfig{Addr: "[::1]:6666"}, true},
		{manager.ServerConfig{Addr: "localhost:6666"}, true},
		{manager.ServerConfig{Addr: "0.0.0.0:6666", Secret: trustSecret}, true},
		{manager.ServerConfig{Addr: "0.0.0.0:6666", TLS: mtls}, true},
		{manager.ServerConfig{Addr: "0.0.0.0:6666", AllowInsecure: true}, true},
	} {
		_, err := manager.NewServer(c.cfg)
		if c.ok != (err == nil) || (err != nil && !errors.Is(err, manager.ErrInsecureAddr)) {
			t.Errorf("NewServer(%+v): %v", c.cfg, err)
		}
	}
	cert := tls.Certificate{Certificate: [][]byte{{1}}}
	for _, c := range []struct {
		cfg manager.ClientConfig
		ok  bool
	}{
		{manager.ClientConfig{Addrs: []string{"10.1.2.3:6666"}}, false},
		{manager.ClientConfig{Addrs: []string{"127.0.0.1:6666", "manager.example.com:6666"}}, false},
		{manager.ClientConfig{Addrs: []string{"10.1.2.3:6666"}, TLS: &tls.Config{}}, false},
		{manager.ClientConfig{Addrs: []string{"10.1.2.3:6666"}, TLS: &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true}}, false},
		{manager.ClientConfig{Addrs: []string{"127.0.0.1:6666", "localhost:6667"}}, true},
		{manager.ClientConfig{Addrs: []string{"10.1.2.3:6666"}, Secret: trustSecret}, true},
		{manager.ClientConfig{Addrs: []string{"10.1.2.3:6666"}, TLS: &tls.Config{Certificates: []tls.Certificate{cert}}}, true},
		{manager.ClientConfig{Addrs: []string{"10.1.2.3:6666"}, AllowInsecure: true}, true},
	} {
		_, err := manager.NewClient(c.cfg)
		if c.ok != (err == nil) || (err != nil && !errors.Is(err, manager.ErrInsecureAddr)) {
			t.Errorf("NewClient(%+v): %v", c.cfg, err)
		}
	}
}

// trustPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate.
type trustPKI struct {
	pool           *x509.CertPool
	server, client tls.Certificate
}

func newTrustPKI(t *testing.T) *trustPKI {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := key()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "firetower test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(serial int64, usage x509.ExtKeyUsage) tls.Certificate {
		k := key()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "firetower test"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &trustPKI{pool: pool, server: leaf(2, x509.ExtKeyUsageServerAuth), client: leaf(3, x509.ExtKeyUsageClientAuth)}
}

// TestTrustTLS: the manager port over mutual TLS, with the secret on top:
// gateways with a client certificate join and the cluster works; a gateway
// without one, and a peer that speaks plain TCP, change nothing.
func TestTrustTLS(t *testing.T) {
	bpNoLeak(t)
	pki := newTrustPKI(t)
	srv := bpServer(t, manager.ServerConfig{
		Secret: trustSecret,
		TLS: &tls.Config{Certificates: []tls.Certificate{pki.server}, ClientCAs: pki.pool,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12},
	})
	clientTLS := &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{pki.client}, MinVersion: tls.VersionTLS12}
	e := &bpEnv{srv: srv}
	e.a, e.ma = bpGatewayWith(t, manager.ClientConfig{Addrs: []string{srv.Addr()}, Secret: trustSecret, TLS: clientTLS}, 1)
	e.b, e.mb = bpGatewayWith(t, manager.ClientConfig{Addrs: []string{srv.Addr()}, Secret: trustSecret, TLS: clientTLS}, 2)
	e.checkServes(t)

	// no client certificate: the TLS handshake fails, however many tries
	_, mc := bpGatewayWith(t, manager.ClientConfig{Addrs: []string{srv.Addr()}, Secret: trustSecret,
		TLS: &tls.Config{RootCAs: pki.pool, MinVersion: tls.VersionTLS12}}, 3)
	waitFor(t, "the gateway without a certificate to try 3 times", func() bool { return mc.Stats().Dials >= 3 })
	if st := mc.Stats(); st.Connected != 0 {
		t.Errorf("a gateway without a client certificate connected: %+v", st)
	}
	// a manager certificate from another CA: the gateway does not trust it
	_, mc2 := bpGatewayWith(t, manager.ClientConfig{Addrs: []string{srv.Addr()}, Secret: trustSecret,
		TLS: &tls.Config{Certificates: []tls.Certificate{pki.client}, RootCAs: newTrustPKI(t).pool, MinVersion: tls.VersionTLS12}}, 4)
	waitFor(t, "the gateway that distrusts the manager to try 3 times", func() bool { return mc2.Stats().Dials >= 3 })
	if st := mc2.Stats(); st.Connected != 0 {
		t.Errorf("a gateway connected to a manager whose certificate it cannot verify: %+v", st)
	}
	// plain TCP
	p := dialRaw(t, srv.Addr())
	p.send(append([]*manager.Msg{{Type: manager.MsgHello, Node: 9, Text: "plain"}}, rogueMessages()...)...)
	p.expectClosed()
	if st := srv.Stats(); st.Nodes != 2 {
		t.Errorf("%d nodes, want the 2 gateways", st.Nodes)
	}
	e.checkServes(t)
}
