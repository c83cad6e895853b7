package firetower_test

// Soak test (issue 6): clients come and go for a while (SOAK_DURATION, default 20s;
// skipped under -short), subscribing, unsubscribing, publishing, pinging, reading
// lazily, flooding and leaving at random (seeded; SOAK_SEED replays a seed). Meanwhile
// a few steady listeners, subscribed to every topic from start to end, must receive
// every publish the server acknowledged, in order, and none it refused. Afterwards,
// with every client gone: goroutines and heap return to their baseline, and the
// counters balance (no subscription or topic left, as many OnSubscribe topic events as
// OnUnsubscribe ones, one OnDisconnect per connection admitted, every message a client
// saw dropped counted by the server).
//
// The clients are raw websocket connections (the ab* helpers of abuse_test.go), two
// goroutines each (writer, reader), at most soakSlots at a time.
//
// Helpers in this file are prefixed "soak".

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/firetower-go/firetower"
)

const (
	soakSlots   = 48 // clients connected at once, at most
	soakTopics  = 16
	soakSteady  = 4 // steady listeners
	soakLimit   = 64 << 10
	soakBurst   = 300              // pipelined publishes of a flooding client
	soakDefault = 20 * time.Second // with FIRETOWER_FULL_TESTS=1 (harness_test.go)
	soakQuick   = 4 * time.Second  // without it
)

func soakTopic(i int) string { return "/soak/t" + strconv.Itoa(i) }

// soakKey names a publisher's stream on a topic.
type soakKey struct{ topic, pub string }

// soakBook is what the clients saw, for the checks at the end.
type soakBook struct {
	mu       sync.Mutex
	acked    map[soakKey][]int        // publishes the server acknowledged (or Tower.Publish returned nil)
	refused  map[soakKey]map[int]bool // publishes answered with an error
	errs     []string
	received atomic.Int64 // deliveries read by any client
	// what the clients were told
	rateLimited, flood1008, forbidden   atomic.Int64
	opened, refusedUp, graceful, abrupt atomic.Int64
	lazy, bursts, closedByServer        atomic.Int64
	noClose                             atomic.Int64 // lazy or flooding clients whose connection ended with no close frame
	closeCodes                          sync.Map     // "close N" -> *atomic.Int64
	lazyIDs                             sync.Map     // ids of the clients that stopped reading for a while
}

func (b *soakBook) fail(format string, a ...any) {
	b.mu.Lock()
	if len(b.errs) < 20 {
		b.errs = append(b.errs, fmt.Sprintf(format, a...))
	}
	b.mu.Unlock()
}

func (b *soakBook) ack(topic, pub string, seq int) {
	b.mu.Lock()
	k := soakKey{topic, pub}
	b.acked[k] = append(b.acked[k], seq)
	b.mu.Unlock()
}

func (b *soakBook) refuse(topic, pub string, seq int) {
	b.mu.Lock()
	k := soakKey{topic, pub}
	if b.refused[k] == nil {
		b.refused[k] = map[int]bool{}
	}
	b.refused[k][seq] = true
	b.mu.Unlock()
}

func (b *soakBook) closeCode(s string) {
	v, _ := b.closeCodes.LoadOrStore(s, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// soakDelivery decodes a delivery: its topic and the publisher and number in its data
// (end is set for the final barrier).
func soakDelivery(p []byte) (topic, pub string, seq int, end bool, ok bool) {
	var m struct {
		Type, Topic string
		Data        struct {
			P   string
			S   int
			End bool
		}
	}
	if json.Unmarshal(p, &m) != nil || m.Type != "publish" {
		return "", "", 0, false, false
	}
	return m.Topic, m.Data.P, m.Data.S, m.Data.End, true
}

// soakReq is a request waiting for its answer.
type soakReq struct {
	kind   string // subscribe, unsubscribe, publish, ping
	topics []string
	seq    int
}

// soakClient is one churning client.
type soakClient struct {
	id   string
	book *soakBook
	c    net.Conn
	br   *bufio.Reader
	wmu  sync.Mutex // writes come from the writer and, for pongs, the reader

	pauseUntil atomic.Int64 // unix nanoseconds: the reader is lazy until then
	dirty      atomic.Bool  // lazy or flooding: answers may legitimately be dropped
	leaving    atomic.Bool  // closed by us: read errors are expected
	closing    atomic.Bool  // we sent a close frame

	mu         sync.Mutex
	pending    map[int]soakReq
	subscribed map[string]bool
	last       map[soakKey]int
	closeCode  int // close frame from the server, 0 if none
	done       chan struct{}
}

func (c *soakClient) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.c.SetWriteDeadline(time.Now().Add(abTimeout))
	_, err := c.c.Write(b)
	return err
}

// read runs until the connection ends.
func (c *soakClient) read() {
	defer close(c.done)
	for {
		if until := c.pauseUntil.Load(); until > 0 {
			time.Sleep(time.Until(time.Unix(0, until))) // a lazy reader's pause
			c.pauseUntil.Store(0)
		}
		_ = c.c.SetReadDeadline(time.Now().Add(abTimeout))
		f, err := abRead(c.br)
		if err != nil {
			if !c.leaving.Load() {
				c.mu.Lock()
				if c.closeCode == 0 {
					if c.dirty.Load() {
						c.book.noClose.Add(1)
					} else {
						c.book.fail("%s: connection ended without a close frame: %v", c.id, err)
					}
				}
				c.mu.Unlock()
			}
			return
		}
		switch f.op {
		case ws.OpPing:
			_ = c.write(abFrame(ws.OpPong, true, f.payload))
			continue
		case ws.OpClose:
			c.mu.Lock()
			c.closeCode = f.code()
			c.mu.Unlock()
			c.book.closeCode(fmt.Sprintf("close %d", f.code()))
			if !c.closing.Load() {
				c.book.closedByServer.Add(1)
			}
			continue // the server closes TCP next
		case ws.OpText:
		default:
			c.book.fail("%s: unexpected frame %v", c.id, f)
			return
		}
		if topic, pub, seq, _, ok := soakDelivery(f.payload); ok {
			c.book.received.Add(1)
			k := soakKey{topic, pub}
			c.mu.Lock()
			if prev := c.last[k]; seq <= prev {
				c.book.fail("%s: on %s, message %d of %s after %d: duplicate or out of order", c.id, topic, seq, pub, prev)
			}
			c.last[k] = seq
			c.mu.Unlock()
			continue
		}
		var m struct {
			Type, Code string
			ID         *int
			Topics     []string
		}
		if err := json.Unmarshal(f.payload, &m); err != nil {
			c.book.fail("%s: undecodable %q", c.id, f.payload)
			return
		}
		if m.ID == nil {
			c.book.fail("%s: answer without the request's id: %q", c.id, f.payload)
			continue
		}
		c.mu.Lock()
		req, ok := c.pending[*m.ID]
		delete(c.pending, *m.ID)
		switch {
		case !ok:
			c.book.fail("%s: answer to no request: %q", c.id, f.payload)
		case m.Type == "error":
			switch m.Code {
			case firetower.CodeRateLimited:
				c.book.rateLimited.Add(1)
			case firetower.CodeForbidden:
				c.book.forbidden.Add(1)
			default:
				c.book.fail("%s: %s %v: unexpected error %q", c.id, req.kind, req.topics, f.payload)
			}
			if req.kind == "publish" {
				c.book.refuse(req.topics[0], c.id, req.seq)
			}
		case req.kind == "subscribe" && m.Type == "ack":
			for _, tp := range req.topics {
				c.subscribed[tp] = true
			}
		case req.kind == "unsubscribe" && m.Type == "ack":
			for _, tp := range req.topics {
				delete(c.subscribed, tp)
			}
		case req.kind == "publish" && m.Type == "ack":
			c.book.ack(req.topics[0], c.id, req.seq)
		case req.kind == "ping" && m.Type == "pong":
		default:
			c.book.fail("%s: %s answered with %q", c.id, req.kind, f.payload)
		}
		c.mu.Unlock()
	}
}

// soakRun is one client's life: connect, act at random, leave.
func soakRun(addr string, book *soakBook, rng *rand.Rand, id string, stop <-chan struct{}) {
	conn, err := abDial(addr)
	if err != nil {
		book.fail("%s: dial: %v", id, err)
		return
	}
	if rng.IntN(50) == 0 { // one in 50 is refused by OnConnect
		_, resp, _ := abUpgrade(conn, abRequest(addr, "deny=1"))
		_ = conn.Close()
		if resp == nil || resp.StatusCode != 403 {
			book.fail("%s: a denied upgrade got %v, want 403", id, resp)
		}
		book.refusedUp.Add(1)
		return
	}
	br, _, err := abUpgrade(conn, abRequest(addr, "id="+id))
	if err != nil {
		_ = conn.Close()
		book.fail("%s: upgrade: %v", id, err)
		return
	}
	book.opened.Add(1)
	c := &soakClient{id: id, book: book, c: conn, br: br, pending: map[int]soakReq{},
		subscribed: map[string]bool{}, last: map[soakKey]int{}, done: make(chan struct{})}
	go c.read()

	nextID, seq := 0, 0
	send := func(r soakReq, msg map[string]any) bool {
		nextID++
		msg["id"] = nextID
		b, _ := json.Marshal(msg)
		c.mu.Lock()
		c.pending[nextID] = r
		c.mu.Unlock()
		return c.write(abText(string(b))) == nil
	}
	randTopics := func(n int) []string {
		out := make([]string, 0, n)
		for range n {
			out = append(out, soakTopic(rng.IntN(soakTopics)))
		}
		return out
	}
	publish := func() bool {
		c.mu.Lock()
		var subs []string
		for tp := range c.subscribed {
			subs = append(subs, tp)
		}
		c.mu.Unlock()
		sort.Strings(subs)
		topic := soakTopic(rng.IntN(soakTopics))
		if len(subs) > 0 && rng.IntN(100) < 85 {
			topic = subs[rng.IntN(len(subs))]
		}
		seq++
		return send(soakReq{kind: "publish", topics: []string{topic}, seq: seq},
			map[string]any{"type": "publish", "topic": topic, "data": map[string]any{"p": id, "s": seq}})
	}

	life := time.Now().Add(time.Duration(100+rng.IntN(1900)) * time.Millisecond)
	ok := true
	for ok && time.Now().Before(life) {
		select {
		case <-stop:
			life = time.Now()
			continue
		case <-c.done: // the server closed it
			ok = false
			continue
		case <-time.After(time.Duration(2+rng.IntN(18)) * time.Millisecond): // the client's pace
		}
		switch r := rng.IntN(100); {
		case r < 25:
			tps := randTopics(1 + rng.IntN(3))
			ok = send(soakReq{kind: "subscribe", topics: tps}, map[string]any{"type": "subscribe", "topics": tps})
		case r < 40:
			tps := randTopics(1 + rng.IntN(2))
			ok = send(soakReq{kind: "unsubscribe", topics: tps}, map[string]any{"type": "unsubscribe", "topics": tps})
		case r < 80:
			ok = publish()
		case r < 85:
			ok = send(soakReq{kind: "ping"}, map[string]any{"type": "ping"})
		case r < 88:
			c.dirty.Store(true)
			book.lazy.Add(1)
			book.lazyIDs.Store(id, true)
			c.pauseUntil.Store(time.Now().Add(time.Duration(200+rng.IntN(400)) * time.Millisecond).UnixNano())
		case r < 91:
			// sleepy: on the big topic, then not reading for a while: falls
			// more than the outbound limit behind and has messages dropped
			c.dirty.Store(true)
			book.lazy.Add(1)
			book.lazyIDs.Store(id, true)
			tps := []string{soakTopic(0)}
			ok = send(soakReq{kind: "subscribe", topics: tps}, map[string]any{"type": "subscribe", "topics": tps})
			c.pauseUntil.Store(time.Now().Add(time.Duration(2000+rng.IntN(2000)) * time.Millisecond).UnixNano())
		case r < 93:
			c.dirty.Store(true)
			book.bursts.Add(1)
			for i := 0; i < soakBurst && ok; i++ {
				ok = publish()
			}
		}
	}

	// leave
	select {
	case <-c.done:
	default:
		if rng.IntN(10) < 6 {
			// a polite client waits for its answers, then closes (a lazy or
			// flooding one may wait in vain: its answers may have been dropped)
			wait := abTimeout
			if c.dirty.Load() {
				wait = time.Second
			}
			waitFor(wait, func() bool {
				c.mu.Lock()
				defer c.mu.Unlock()
				return len(c.pending) == 0 || c.closeCode != 0
			})
			book.graceful.Add(1)
			c.closing.Store(true)
			_ = c.write(abFrame(ws.OpClose, true, []byte{0x03, 0xe8}))
			<-c.done // until the server closes TCP (the read deadline bounds it)
			c.mu.Lock()
			if c.closeCode != 1000 && c.closeCode != 1008 && (c.closeCode != 0 || !c.dirty.Load()) {
				book.fail("%s: close handshake answered with %d", id, c.closeCode)
			}
			if !c.dirty.Load() && c.closeCode == 1000 && len(c.pending) > 0 {
				book.fail("%s: %d answers missing after waiting for them (a well-behaved client loses nothing)", id, len(c.pending))
			}
			c.mu.Unlock()
		} else {
			book.abrupt.Add(1)
		}
	}
	c.leaving.Store(true)
	_ = conn.Close()
	<-c.done
	c.mu.Lock()
	if code := c.closeCode; code != 0 && code != 1000 && code != 1008 {
		book.fail("%s: closed by the server with %d", id, code)
	}
	if c.closeCode == 1008 {
		book.flood1008.Add(1)
	}
	// publishes with no answer: unknown outcome; the steady check allows them
	c.mu.Unlock()
}

// soakSteadyListener is subscribed to every topic from before the first publish
// until the final barrier, and reads everything at once.
type soakSteadyListener struct {
	c    net.Conn
	br   *bufio.Reader
	got  map[soakKey]map[int]bool
	err  error
	done chan struct{}
}

func soakListen(t *testing.T, tw *firetower.Tower, book *soakBook, i int) *soakSteadyListener {
	t.Helper()
	c, br := abConnect(t, tw.Addr(), "id=steady"+strconv.Itoa(i))
	all := make([]string, soakTopics)
	for i := range all {
		all[i] = soakTopic(i)
	}
	b, _ := json.Marshal(map[string]any{"type": "subscribe", "topics": all, "id": 1})
	if _, err := c.Write(abText(string(b))); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(abTimeout))
	if f, err := abRead(br); err != nil || abDecode(t, f).Type != "ack" {
		t.Fatalf("steady listener: subscribe: %v %v", f, err)
	}
	l := &soakSteadyListener{c: c, br: br, got: map[soakKey]map[int]bool{}, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		ended := map[string]bool{}
		last := map[soakKey]int{}
		for len(ended) < soakTopics {
			_ = c.SetReadDeadline(time.Now().Add(abTimeout))
			f, err := abRead(br)
			if err != nil {
				l.err = fmt.Errorf("after %d barriers: %w", len(ended), err)
				return
			}
			if f.op == ws.OpPing {
				_, _ = c.Write(abFrame(ws.OpPong, true, f.payload))
				continue
			}
			topic, pub, seq, end, ok := soakDelivery(f.payload)
			if !ok {
				l.err = fmt.Errorf("unexpected %v", f)
				return
			}
			book.received.Add(1)
			if end {
				ended[topic] = true
				continue
			}
			k := soakKey{topic, pub}
			if seq <= last[k] {
				l.err = fmt.Errorf("on %s, message %d of %s after %d", topic, seq, pub, last[k])
				return
			}
			last[k] = seq
			if l.got[k] == nil {
				l.got[k] = map[int]bool{}
			}
			l.got[k][seq] = true
		}
		_, _ = c.Write(abFrame(ws.OpClose, true, []byte{0x03, 0xe8}))
		_ = c.SetReadDeadline(time.Now().Add(abTimeout))
		if f, err := abRead(br); err != nil || f.op != ws.OpClose || f.code() != 1000 {
			l.err = fmt.Errorf("close handshake: %v %v", f, err)
		}
	}()
	return l
}

func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak test: skipped under -short")
	}
	dur := soakQuick
	if fullTests() {
		dur = soakDefault
	}
	if s := os.Getenv("SOAK_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("SOAK_DURATION=%q: %v", s, err)
		}
		dur = d
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SOAK_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("SOAK_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("soak: %v, seed %d (SOAK_SEED=%d replays the same choices; timing differs)", dur, seed, seed)

	var connects, disconnects, subEvents, unsubEvents, slowHooks atomic.Int64
	var slowIDs sync.Map // user ids (the clients' ids) of the connections OnSlowConsumer ran for
	count := func(n *atomic.Int64, topics bool) firetower.Middleware {
		return func(next firetower.Handler) firetower.Handler {
			return func(c *firetower.Context) error {
				if topics {
					n.Add(int64(len(c.Topics())))
				} else {
					n.Add(1)
				}
				return next(c)
			}
		}
	}
	tw := abServer(t,
		firetower.WithOutboundLimit(soakLimit),
		firetower.WithSlowConsumerPolicy(firetower.SlowDrop),
		firetower.OnConnect(func(next firetower.Handler) firetower.Handler {
			return func(c *firetower.Context) error {
				if c.Conn().Request().URL.Query().Get("deny") != "" {
					return firetower.ErrForbidden
				}
				connects.Add(1)
				c.Conn().SetUserID(c.Conn().Request().URL.Query().Get("id"))
				return next(c)
			}
		}),
		firetower.OnSubscribe(count(&subEvents, true)),
		firetower.OnUnsubscribe(count(&unsubEvents, true)),
		firetower.OnDisconnect(count(&disconnects, false)),
		firetower.OnSlowConsumer(count(&slowHooks, false), func(next firetower.Handler) firetower.Handler {
			return func(c *firetower.Context) error {
				slowIDs.Store(c.Conn().UserID(), true)
				return next(c)
			}
		}),
	)
	book := &soakBook{acked: map[soakKey][]int{}, refused: map[soakKey]map[int]bool{}}
	steady := make([]*soakSteadyListener, soakSteady)
	for i := range steady {
		steady[i] = soakListen(t, tw, book, i)
	}
	// the baseline, with the server fully up (it has served the listeners),
	// without the listeners' reader goroutines, which end with the soak
	base := runtime.NumGoroutine() - soakSteady
	heap0 := abHeap(true)

	stop := make(chan struct{})
	// the server publishes too
	var srvWG sync.WaitGroup
	srvStop := make(chan struct{})
	srvWG.Go(func() {
		rng := rand.New(rand.NewPCG(seed, 0xfeed))
		pad := strings.Repeat("b", 16<<10)
		for n := 1; ; n++ {
			select {
			case <-srvStop:
				return
			case <-time.After(5 * time.Millisecond): // the server's publishing pace
			}
			topic := soakTopic(rng.IntN(soakTopics))
			if err := tw.Publish(context.Background(), topic, fmt.Appendf(nil, `{"p":"srv","s":%d}`, n)); err != nil {
				book.fail("server publish: %v", err)
				return
			}
			book.ack(topic, "srv", n)
			{ // and 16 KiB messages on topic 0, 200 a second (3.2 MB/s)
				if err := tw.Publish(context.Background(), soakTopic(0), fmt.Appendf(nil, `{"p":"big","s":%d,"pad":"%s"}`, n, pad)); err != nil {
					book.fail("server publish: %v", err)
					return
				}
				book.ack(soakTopic(0), "big", n)
			}
		}
	})
	var clients atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for slot := range soakSlots {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				rng := rand.New(rand.NewPCG(seed, uint64(slot)<<32|uint64(n)))
				clients.Add(1)
				soakRun(tw.Addr(), book, rng, fmt.Sprintf("c%d.%d", slot, n), stop)
			}
		})
	}
	timer := time.NewTimer(dur)
	<-timer.C // the soak's length
	mid := tw.Stats()
	close(stop)
	wg.Wait()
	close(srvStop)
	srvWG.Wait()
	t.Logf("%d clients in %v; server at the end of the churn: %d connections, %d subscriptions, %d topics",
		clients.Load(), time.Since(start).Round(time.Millisecond), mid.Connections, mid.Subscriptions, mid.Topics)

	// the barrier: the last message on every topic
	for i := range soakTopics {
		if err := tw.Publish(context.Background(), soakTopic(i), []byte(`{"end":true}`)); err != nil {
			t.Fatal(err)
		}
	}
	for i, l := range steady {
		select {
		case <-l.done:
		case <-time.After(abTimeout):
			t.Fatalf("steady listener %d did not get the barrier", i)
		}
		if l.err != nil {
			t.Errorf("steady listener %d: %v", i, l.err)
		}
	}
	for _, e := range book.errs {
		t.Error(e)
	}

	// every acknowledged publish reached every steady listener; no refused one did
	book.mu.Lock()
	var acked, refused, missing, leaked int
	for k, seqs := range book.acked {
		for _, s := range seqs {
			acked++
			for i, l := range steady {
				if !l.got[k][s] {
					if missing++; missing <= 5 {
						t.Errorf("steady listener %d never got message %d of %s on %s, which the server acknowledged", i, s, k.pub, k.topic)
					}
				}
			}
		}
	}
	for k, seqs := range book.refused {
		for s := range seqs {
			refused++
			for i, l := range steady {
				if l.got[k][s] {
					if leaked++; leaked <= 5 {
						t.Errorf("steady listener %d got message %d of %s on %s, which the server refused", i, s, k.pub, k.topic)
					}
				}
			}
		}
	}
	book.mu.Unlock()
	if missing > 0 || leaked > 0 {
		t.Errorf("steady listeners: %d acknowledged messages missing, %d refused messages delivered", missing, leaked)
	}

	// everyone is gone: the counters balance
	waitFor(abTimeout, func() bool {
		s := tw.Stats()
		return s.Connections == 0 && s.Transport.Open == 0 && disconnects.Load() == book.opened.Load()+soakSteady
	})
	st := tw.Stats()
	if st.Connections != 0 || st.Transport.Open != 0 {
		t.Errorf("connections left: %d (TCP %d)", st.Connections, st.Transport.Open)
	}
	if st.Subscriptions != 0 || st.Topics != 0 {
		t.Errorf("after everyone left: %d subscriptions, %d topics, want 0", st.Subscriptions, st.Topics)
	}
	if subEvents.Load() != unsubEvents.Load() {
		t.Errorf("OnSubscribe topic events %d != OnUnsubscribe topic events %d", subEvents.Load(), unsubEvents.Load())
	}
	if opened := book.opened.Load() + soakSteady; connects.Load() != opened || disconnects.Load() != opened {
		t.Errorf("connections opened %d, OnConnect admitted %d, OnDisconnect %d", opened, connects.Load(), disconnects.Load())
	}
	if st.Transport.Upgraded != uint64(book.opened.Load()+soakSteady) {
		t.Errorf("upgrades %d, clients connected %d", st.Transport.Upgraded, book.opened.Load()+soakSteady)
	}
	if got := st.Transport.Rejected; got != uint64(book.refusedUp.Load()) {
		t.Errorf("rejected upgrades %d, refused clients %d", got, book.refusedUp.Load())
	}
	// drops: every one the clients saw is counted
	received := uint64(book.received.Load())
	if received > st.Deliveries {
		t.Errorf("clients read %d deliveries, the server counted %d", received, st.Deliveries)
	}
	if st.SlowDropped != st.Transport.Dropped {
		t.Errorf("SlowDropped %d != transport drops %d", st.SlowDropped, st.Transport.Dropped)
	}
	if st.SlowDropped > 0 && (slowHooks.Load() == 0 || uint64(slowHooks.Load()) > st.SlowDropped) {
		t.Errorf("OnSlowConsumer ran %d times for %d drops", slowHooks.Load(), st.SlowDropped)
	}
	// only clients that stopped reading had messages dropped
	var slowLazy, slowOther int
	slowIDs.Range(func(k, _ any) bool {
		if _, lazy := book.lazyIDs.Load(k); lazy {
			slowLazy++
		} else if slowOther++; slowOther <= 5 {
			t.Errorf("messages to %s, a client that never stopped reading, were dropped as to a slow consumer", k)
		}
		return true
	})
	t.Logf("slow-consumer drops hit %d clients that paused reading, and %d that did not", slowLazy, slowOther)
	if rl := uint64(book.rateLimited.Load()); rl > st.ReadDropped {
		t.Errorf("clients got %d rate_limited, ReadDropped is %d", rl, st.ReadDropped)
	}
	if fc := uint64(book.flood1008.Load()); fc > st.FloodClosed {
		t.Errorf("%d clients were closed with 1008, FloodClosed is %d", fc, st.FloodClosed)
	}
	codes := map[string]int64{}
	book.closeCodes.Range(func(k, v any) bool { codes[k.(string)] = v.(*atomic.Int64).Load(); return true })
	t.Logf("clients: %d connected, %d refused (403), %d left gracefully, %d abruptly, %d closed by the server; %d lazy pauses, %d bursts; close frames seen %v; "+
		"%d lazy or flooding clients saw their connection end with no close frame",
		book.opened.Load(), book.refusedUp.Load(), book.graceful.Load(), book.abrupt.Load(), book.closedByServer.Load(), book.lazy.Load(), book.bursts.Load(), codes, book.noClose.Load())
	t.Logf("publishes acknowledged %d (missing at a steady listener: %d), refused %d (delivered to a steady listener: %d; forbidden %d, rate_limited %d)",
		acked, missing, refused, leaked, book.forbidden.Load(), book.rateLimited.Load())
	t.Logf("server: deliveries %d, read by clients %d, slow-dropped %d (hook %d), read-dropped %d, flood-closed %d (seen %d); "+
		"deliveries neither read nor dropped: %d (queued for connections that left first, or read by no one before an abrupt close: not counted by the server)",
		st.Deliveries, received, st.SlowDropped, slowHooks.Load(), st.ReadDropped, st.FloodClosed, book.flood1008.Load(),
		int64(st.Deliveries)-int64(received)-int64(st.SlowDropped))
	t.Logf("hooks: OnConnect %d, OnDisconnect %d, OnSubscribe topics %d, OnUnsubscribe topics %d",
		connects.Load(), disconnects.Load(), subEvents.Load(), unsubEvents.Load())

	abWaitGoroutines(t, base)
	heap1 := abHeap(true)
	// What may stay: sync.Pool-backed buffer pools are emptied by the two
	// collections; maps and slices sized by the peak number of connections
	// (soakSlots+soakSteady) do not shrink: a few KiB per connection. 4 MiB on
	// top covers the runtime's own growth (timers, stacks of finished goroutines).
	bound := uint64(4<<20 + (soakSlots+soakSteady)*8<<10)
	t.Logf("heap in use: before %s, after %s (bound: +%s); goroutines back to %d", abMiB(heap0), abMiB(heap1), abMiB(bound), base)
	if g := abGrowth(heap0, heap1); g > bound {
		t.Errorf("heap grew by %s over the soak, want at most %s", abMiB(g), abMiB(bound))
	}
}
