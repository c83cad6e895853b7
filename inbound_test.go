package firetower_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firetower-go/firetower"
)

// Client publishes under flow control: a burst is taken whole (the fast path
// on the event loop, or the workers behind a paused socket), a client that
// outruns a slow hook is slowed down by TCP, and only a client paused past
// the read timeout loses messages, each one answered and counted.

// inPublishes is n publishes to topic with ids 0..n-1 and data {"seq":i,"pad":...},
// as one buffer of masked client frames.
func inPublishes(topic string, from, n, pad int) []byte {
	padding := bytes.Repeat([]byte{'x'}, pad)
	var buf []byte
	for i := from; i < from+n; i++ {
		buf = append(buf, abText(fmt.Sprintf(`{"type":"publish","topic":%q,"data":{"seq":%d,"pad":%q},"id":%d}`, topic, i, padding, i))...)
	}
	return buf
}

// inReader reads a raw client's frames in the background: deliveries of
// topic must carry seq 0, 1, 2...; acks must carry ids 0, 1, 2...; any error
// frame or other message is a failure. Pings are skipped.
type inReader struct {
	deliveries, acks atomic.Int64
	errors           atomic.Int64
	firstErr         // the first failure
	done             chan struct{}
}

func inRead(t *testing.T, c net.Conn, br *bufio.Reader, topic string) *inReader {
	t.Helper()
	r := &inReader{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			f, err := abRead(br)
			if err != nil {
				r.fail(err)
				return
			}
			if f.op != 1 { // pings and pongs
				continue
			}
			var m struct {
				Type, Topic, Code string
				ID                json.RawMessage
				Data              struct{ Seq int64 }
			}
			if err := json.Unmarshal(f.payload, &m); err != nil {
				r.fail(fmt.Errorf("bad JSON %q: %v", f.payload, err))
				return
			}
			switch {
			case m.Type == "publish" && m.Topic == topic:
				if want := r.deliveries.Load(); m.Data.Seq != want {
					r.fail(fmt.Errorf("delivery %d carries seq %d", want, m.Data.Seq))
					return
				}
				r.deliveries.Add(1)
			case m.Type == "ack":
				if want := strconv.FormatInt(r.acks.Load(), 10); string(m.ID) != want {
					r.fail(fmt.Errorf("ack %s after %d acks", m.ID, r.acks.Load()))
					return
				}
				r.acks.Add(1)
			case m.Type == "error":
				r.errors.Add(1)
				r.fail(fmt.Errorf("error frame %s", f.payload))
				return
			default:
				r.fail(fmt.Errorf("unexpected %s", f.payload))
				return
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-r.done })
	return r
}

// waitAll waits until r has n deliveries (and n acks when acks is set).
func (r *inReader) waitAll(t *testing.T, what string, n int64, acks bool) {
	t.Helper()
	ok := waitFor(abTimeout, func() bool {
		return r.failed() != nil || (r.deliveries.Load() == n && (!acks || r.acks.Load() == n))
	})
	if err := r.failed(); err != nil {
		t.Fatalf("%s: after %d deliveries and %d acks: %v", what, r.deliveries.Load(), r.acks.Load(), err)
	}
	if !ok {
		t.Fatalf("%s: %d deliveries and %d acks of %d", what, r.deliveries.Load(), r.acks.Load(), n)
	}
}

// inSubscribe subscribes a raw client to topic and waits for the ack.
func inSubscribe(t *testing.T, c net.Conn, br *bufio.Reader, topic string) {
	t.Helper()
	if _, err := c.Write(abText(fmt.Sprintf(`{"type":"subscribe","topic":%q,"id":"s"}`, topic))); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(abTimeout))
	defer c.SetReadDeadline(time.Time{})
	f, err := abRead(br)
	if err != nil || abDecode(t, f).Type != "ack" {
		t.Fatalf("subscribe %s: %v %v", topic, f, err)
	}
}

// TestInboundPipelinedBurst: 10,000 publishes written in one write by one
// client are all delivered, in order, to another subscriber and to the
// publisher itself, with an ack for each and no error frame: on the default
// options (the event loop's fast path), with an OnRead hook (the workers),
// and with a budget small enough that the server must pause the client many
// times.
func TestInboundPipelinedBurst(t *testing.T) {
	const n = 10000
	pass := firetower.OnRead(func(next firetower.Handler) firetower.Handler {
		return func(c *firetower.Context) error { return next(c) }
	})
	for _, tc := range []struct {
		name   string
		opts   []firetower.Option
		paused bool
	}{
		{name: "Default"},
		{name: "HookOnWorkers", opts: []firetower.Option{pass}},
		{name: "SmallBudget", opts: []firetower.Option{pass, firetower.WithInboundLimit(16 << 10)}, paused: true},
		{name: "NonBlockingHook", opts: []firetower.Option{pass, firetower.WithNonBlockingHooks(firetower.HookRead)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tw := abServer(t, tc.opts...)
			const topic = "/burst"
			sc, sbr := abConnect(t, tw.Addr(), "")
			inSubscribe(t, sc, sbr, topic)
			pc, pbr := abConnect(t, tw.Addr(), "")
			inSubscribe(t, pc, pbr, topic)
			sub := inRead(t, sc, sbr, topic)
			pub := inRead(t, pc, pbr, topic)

			burst := inPublishes(topic, 0, n, 40)
			werr := make(chan error, 1)
			go func() {
				_ = pc.SetWriteDeadline(time.Now().Add(abTimeout))
				_, err := pc.Write(burst)
				werr <- err
			}()
			sub.waitAll(t, "subscriber", n, false)
			pub.waitAll(t, "publisher", n, true)
			if err := <-werr; err != nil {
				t.Fatalf("write: %v", err)
			}
			st := tw.Stats()
			t.Logf("%d publishes of %d bytes in one write: read pauses %d", n, len(burst)/n, st.ReadPauses)
			if st.ReadDropped != 0 || st.Errors != 0 || st.FloodClosed != 0 {
				t.Fatalf("dropped %d, errors %d, flood-closed %d: want none", st.ReadDropped, st.Errors, st.FloodClosed)
			}
			if tc.paused && st.ReadPauses == 0 {
				t.Fatalf("a 16 KiB budget never paused a %d-byte burst", len(burst))
			}
			abWaitStats(t, tw, "the budget to be given back", func(s firetower.Stats) bool { return s.InboundBytes == 0 })
		})
	}
}

// inBlocker is an OnRead hook that blocks the publishes of connections whose
// user id is "slow" until released; others pass.
type inBlocker struct {
	entered chan struct{}
	once    sync.Once
	release chan struct{}
	relOnce sync.Once
}

func newBlocker(t *testing.T) *inBlocker {
	b := &inBlocker{entered: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(b.open)
	return b
}

func (b *inBlocker) open() { b.relOnce.Do(func() { close(b.release) }) }

func (b *inBlocker) opts() []firetower.Option {
	return []firetower.Option{
		firetower.OnConnect(func(next firetower.Handler) firetower.Handler {
			return func(c *firetower.Context) error {
				c.Conn().SetUserID(c.Conn().Request().URL.Query().Get("user"))
				return next(c)
			}
		}),
		firetower.OnRead(func(next firetower.Handler) firetower.Handler {
			return func(c *firetower.Context) error {
				if c.Conn().UserID() == "slow" {
					b.once.Do(func() { close(b.entered) })
					<-b.release
				}
				return next(c)
			}
		}),
	}
}

// TestInboundBackpressure: a client floods faster than a blocked OnRead hook
// can take its publishes. The server stops reading it: nothing is dropped,
// no OnReadTimeout runs before the read timeout (an hour here), the queued
// requests stay within the connection's budget, the client's write cannot
// finish (it waits in TCP), and a well-behaved client beside it is served.
// Once the hook lets go, every publish is delivered in order.
func TestInboundBackpressure(t *testing.T) {
	const limit = 64 << 10
	b := newBlocker(t)
	var timeouts atomic.Int64
	opts := append(b.opts(),
		firetower.WithInboundLimit(limit),
		firetower.WithReadTimeout(time.Hour),
		// The flooder reads its own flood back, slower than the server
		// answers once it is released: room, so it is not a slow consumer.
		firetower.WithOutboundLimit(64<<20),
		firetower.OnReadTimeout(func(next firetower.Handler) firetower.Handler {
			return func(c *firetower.Context) error { timeouts.Add(1); return next(c) }
		}))
	tw := abServer(t, opts...)
	const topic = "/bp"
	fc, fbr := abConnect(t, tw.Addr(), "user=slow")
	inSubscribe(t, fc, fbr, topic)
	flood := inRead(t, fc, fbr, topic)

	// 32 MiB: far more than the kernel's socket buffers can hold.
	const pad = 1000
	n := (32 << 20) / (pad + 80)
	burst := inPublishes(topic, 0, n, pad)
	var written atomic.Int64
	werr := make(chan error, 1)
	go func() {
		_ = fc.SetWriteDeadline(time.Now().Add(10 * abTimeout))
		var err error
		for off := 0; off < len(burst) && err == nil; {
			var k int
			k, err = fc.Write(burst[off:min(off+64<<10, len(burst))])
			off += k
			written.Add(int64(k))
		}
		werr <- err
	}()
	ptRecv(t, b.entered, "the OnRead hook to hold the first publish")
	abWaitStats(t, tw, "the flooder to be paused", func(s firetower.Stats) bool { return s.Transport.Paused == 1 })

	// A well-behaved client beside it is served while it waits.
	wc, wbr := abConnect(t, tw.Addr(), "user=good")
	inSubscribe(t, wc, wbr, "/good")
	good := inRead(t, wc, wbr, "/good")
	if _, err := wc.Write(inPublishes("/good", 0, 100, 10)); err != nil {
		t.Fatal(err)
	}
	good.waitAll(t, "well-behaved client", 100, true)

	st := tw.Stats()
	cost := int64(limit + pad + 400)
	t.Logf("paused with %d of %d bytes written; queued %d bytes (limit %d)", written.Load(), len(burst), st.InboundBytes, limit)
	if st.InboundBytes > cost {
		t.Errorf("queued requests hold %d bytes, over the budget %d and one message", st.InboundBytes, limit)
	}
	if st.ReadDropped != 0 || timeouts.Load() != 0 || flood.failed() != nil {
		t.Fatalf("before the read timeout: %d dropped, %d OnReadTimeout, reader: %v", st.ReadDropped, timeouts.Load(), flood.failed())
	}
	select {
	case err := <-werr:
		t.Fatalf("the flood's write ended while the server was paused (err %v): it was not slowed down", err)
	default:
	}

	b.open()
	flood.waitAll(t, "flooder", int64(n), true)
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	st = tw.Stats()
	if st.ReadDropped != 0 || timeouts.Load() != 0 || st.Errors != 0 {
		t.Fatalf("after the flood: %d dropped, %d OnReadTimeout, %d errors", st.ReadDropped, timeouts.Load(), st.Errors)
	}
	t.Logf("%d publishes, %d read pauses, nothing lost", n, st.ReadPauses)
}

// TestInboundReadTimeout: a client paused past the read timeout is read
// again; what it sends meanwhile is dropped, and every drop is answered
// rate_limited with its id, seen by OnReadTimeout and counted in Stats, in
// request order after the answers of the requests accepted before it.
func TestInboundReadTimeout(t *testing.T) {
	b := newBlocker(t)
	var timeouts atomic.Int64
	opts := append(b.opts(),
		firetower.WithInboundLimit(4<<10),
		firetower.WithReadTimeout(50*time.Millisecond),
		firetower.OnReadTimeout(func(next firetower.Handler) firetower.Handler {
			return func(c *firetower.Context) error { timeouts.Add(1); return next(c) }
		}))
	tw := abServer(t, opts...)
	const topic = "/rt"
	c, br := abConnect(t, tw.Addr(), "user=slow")
	inSubscribe(t, c, br, topic)
	const n = 600 // under the 1,024 answers that may wait (past them: close 1008)
	if _, err := c.Write(inPublishes(topic, 0, n, 20)); err != nil {
		t.Fatal(err)
	}
	ptRecv(t, b.entered, "the OnRead hook to hold the first publish")
	abWaitStats(t, tw, "every publish to be read", func(s firetower.Stats) bool { return s.MessagesIn >= n+1 && s.ReadDropped > 0 })
	b.open()

	// Answers in request order: acks for the accepted prefix, then only
	// rate_limited (none accepted after the first drop while paused).
	_ = c.SetReadDeadline(time.Now().Add(abTimeout))
	var acked, limited int
	next := 0
	for acked+limited < n {
		f, err := abRead(br)
		if err != nil {
			t.Fatalf("after %d acks and %d rate_limited: %v", acked, limited, err)
		}
		if f.op != 1 {
			continue
		}
		m := abDecode(t, f)
		switch m.Type {
		case "publish":
			continue
		case "ack", "error":
			if string(m.ID) != strconv.Itoa(next) {
				t.Fatalf("answer for id %s, want %d", m.ID, next)
			}
			next++
			if m.Type == "ack" {
				acked++
			} else if m.Code == firetower.CodeRateLimited {
				limited++
			} else {
				t.Fatalf("unexpected error %s", f.payload)
			}
		default:
			t.Fatalf("unexpected %s", f.payload)
		}
	}
	st := tw.Stats()
	t.Logf("%d accepted, %d dropped", acked, limited)
	if limited == 0 || acked == 0 {
		t.Fatalf("%d acks and %d rate_limited: want both", acked, limited)
	}
	if st.ReadDropped != uint64(limited) || timeouts.Load() != int64(limited) {
		t.Fatalf("%d rate_limited answers, ReadDropped %d, OnReadTimeout %d: every drop must be counted once", limited, st.ReadDropped, timeouts.Load())
	}
	if st.FloodClosed != 0 {
		t.Fatalf("flood-closed %d", st.FloodClosed)
	}
}

// TestInboundTotal: several clients held by a blocked hook are paused by the
// Tower's total budget before their own; the total holds within one message
// per client, and nothing is lost once the hook lets go.
func TestInboundTotal(t *testing.T) {
	const total, clients, n = 32 << 10, 4, 500
	b := newBlocker(t)
	opts := append(b.opts(), firetower.WithInboundTotal(total), firetower.WithReadTimeout(time.Hour))
	tw := abServer(t, opts...)
	readers := make([]*inReader, clients)
	for i := range clients {
		topic := fmt.Sprintf("/total/%d", i)
		c, br := abConnect(t, tw.Addr(), "user=slow")
		inSubscribe(t, c, br, topic)
		readers[i] = inRead(t, c, br, topic)
		go func() { _, _ = c.Write(inPublishes(topic, 0, n, 100)) }()
	}
	ptRecv(t, b.entered, "the OnRead hook to hold a publish")
	abWaitStats(t, tw, "every client to be paused", func(s firetower.Stats) bool { return s.Transport.Paused == clients })
	if st := tw.Stats(); st.InboundBytes > total+clients*(200+256) || st.ReadDropped != 0 {
		t.Fatalf("queued %d bytes with a total of %d (%d dropped)", st.InboundBytes, total, st.ReadDropped)
	}
	b.open()
	for i, r := range readers {
		r.waitAll(t, fmt.Sprintf("client %d", i), n, true)
	}
	abWaitStats(t, tw, "the budget to be given back", func(s firetower.Stats) bool { return s.InboundBytes == 0 && s.Transport.Paused == 0 })
}

// TestInboundAnswersBeforeProtocolError: a publish that runs on a worker
// (an OnRead hook) and a frame that breaks the protocol, in one write: the
// publish is answered before the close frame 1002.
func TestInboundAnswersBeforeProtocolError(t *testing.T) {
	tw := abServer(t, firetower.OnRead(func(next firetower.Handler) firetower.Handler {
		return func(c *firetower.Context) error { return next(c) }
	}))
	c, br := abConnect(t, tw.Addr(), "")
	inSubscribe(t, c, br, "/pe")
	bad := abText(`{"type":"ping"}`)
	bad[0] |= 0x40 // RSV1 without an extension
	if _, err := c.Write(append(inPublishes("/pe", 0, 3, 10), bad...)); err != nil {
		t.Fatal(err)
	}
	closeFrame, frames := abReadClose(t, c, br)
	var got []string
	for _, f := range frames {
		m := abDecode(t, f)
		got = append(got, m.Type+string(m.ID))
	}
	if want := "[publish ack0 publish ack1 publish ack2]"; fmt.Sprint(got) != want {
		t.Fatalf("before the close: %v, want %s", got, want)
	}
	if closeFrame.code() != 1002 {
		t.Fatalf("closed with %v, want 1002", closeFrame)
	}
}
