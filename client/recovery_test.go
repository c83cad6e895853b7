package client_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/client"
)

// Tests of recovery (recovery.go) against real Towers keeping history.

// hrec collects deliveries with offsets, recovery outcomes and gaps.
type hrec struct {
	*recorder
	dels       chan client.Delivery
	recoveries chan client.Recovery
	gaps       chan client.Recovery
}

func newHrec() *hrec {
	return &hrec{
		recorder:   newRecorder(),
		dels:       make(chan client.Delivery, 1024),
		recoveries: make(chan client.Recovery, 64),
		gaps:       make(chan client.Recovery, 64),
	}
}

func (r *hrec) options(codec client.Codec) []client.Option {
	return []client.Option{
		client.WithCodec(codec),
		client.WithDeliveryHandler(func(d client.Delivery) { r.dels <- d }),
		client.WithStateHandler(func(s client.State, _ error) { r.states <- s }),
		client.WithRecoveryHandler(func(rc client.Recovery) { r.recoveries <- rc }),
		client.WithGapHandler(func(rc client.Recovery) { r.gaps <- rc }),
		client.WithBackoff(5*time.Millisecond, 50*time.Millisecond),
		client.WithDialTimeout(time.Second),
	}
}

func (r *hrec) delivery(t *testing.T) client.Delivery {
	t.Helper()
	select {
	case d := <-r.dels:
		return d
	case <-time.After(wait):
		t.Fatal("no delivery")
		return client.Delivery{}
	}
}

// expect reads the next delivery and requires topic, offset and data.
func (r *hrec) expect(t *testing.T, topic string, offset uint64, data string) {
	t.Helper()
	d := r.delivery(t)
	if d.Topic != topic || d.Offset != offset || string(d.Data) != data {
		t.Fatalf("got delivery %s #%d %s, want %s #%d %s", d.Topic, d.Offset, d.Data, topic, offset, data)
	}
}

func (r *hrec) recovery(t *testing.T, ch chan client.Recovery, what string) client.Recovery {
	t.Helper()
	select {
	case rc := <-ch:
		return rc
	case <-time.After(wait):
		t.Fatalf("no %s event", what)
		return client.Recovery{}
	}
}

func publishAt(t *testing.T, tw *firetower.Tower, topic string, i int) firetower.Position {
	t.Helper()
	p, err := tw.PublishOffset(context.Background(), topic, []byte(strconv.Itoa(i)))
	if err != nil {
		t.Fatalf("PublishOffset: %v", err)
	}
	return p
}

// The acceptance scenario: the client's Tower goes away, 100 messages are
// published meanwhile (through another Tower of the same LocalManager, which
// keeps the streams), the Tower comes back at the same address: the client
// resubscribes with its position and gets exactly those 100, in order, then
// live ones.
func TestRecoverAfterReconnect(t *testing.T) {
	const topic = "/chat/room"
	for _, codec := range []client.Codec{client.JSON, client.Msgpack} {
		t.Run(codec.String(), func(t *testing.T) {
			m := firetower.NewLocalManager()
			hist := firetower.WithHistory(1000, time.Hour)
			pub := startTower(t, "127.0.0.1:0", firetower.WithManager(m), firetower.WithNodeID(2), hist)
			tw1 := startTower(t, "127.0.0.1:0", firetower.WithManager(m), firetower.WithNodeID(1), hist)
			addr := tw1.Addr()
			r := newHrec()
			c := dial(t, tw1, r.options(codec)...)
			ctx := tctx(t)
			got, err := c.SubscribeWith(ctx, client.SubscribeOptions{}, topic)
			if err != nil {
				t.Fatal(err)
			}
			first, ok := got[topic]
			if !ok || first.Recovered || first.Top.Epoch == "" || first.Top.Offset != 0 {
				t.Fatalf("first subscribe: %+v (%v)", first, got)
			}
			p1 := publishAt(t, pub, topic, 1)
			r.expect(t, topic, 1, "1")
			if pos, ok := c.Position(topic); !ok || pos != (client.Position{Epoch: p1.Epoch, Offset: 1}) {
				t.Fatalf("Position = %+v, %v; want %s/1", pos, ok, p1.Epoch)
			}
			r.waitState(t, client.StateOpen)

			stopTower(t, tw1)
			r.waitState(t, client.StateReconnecting)
			for i := 2; i <= 101; i++ {
				publishAt(t, pub, topic, i)
			}
			startTower(t, addr, firetower.WithManager(m), firetower.WithNodeID(1), hist)
			r.waitState(t, client.StateOpen)

			rc := r.recovery(t, r.recoveries, "recovery")
			want := client.Recovery{Topic: topic, Since: client.Position{Epoch: p1.Epoch, Offset: 1},
				Top: client.Position{Epoch: p1.Epoch, Offset: 101}, Recovered: true}
			if rc != want {
				t.Fatalf("recovery %+v, want %+v", rc, want)
			}
			for i := 2; i <= 101; i++ {
				r.expect(t, topic, uint64(i), strconv.Itoa(i))
			}
			publishAt(t, pub, topic, 102)
			r.expect(t, topic, 102, "102")
			if pos, _ := c.Position(topic); pos.Offset != 102 {
				t.Fatalf("Position after live = %+v, want offset 102", pos)
			}
			if last, ok := c.LastRecovery(topic); !ok || last != want {
				t.Fatalf("LastRecovery = %+v, %v", last, ok)
			}
			select {
			case g := <-r.gaps:
				t.Fatalf("gap event on a recovered topic: %+v", g)
			default:
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			checkNoLeak(t)
		})
	}
}

// A server restart loses the streams (a new LocalManager, a new epoch): the
// client is told of the gap, takes the new epoch and goes on with live
// deliveries.
func TestGapAfterServerRestart(t *testing.T) {
	const topic = "news"
	for _, codec := range []client.Codec{client.JSON, client.Msgpack} {
		t.Run(codec.String(), func(t *testing.T) {
			hist := firetower.WithHistory(100, time.Hour)
			tw1 := startTower(t, "127.0.0.1:0", hist)
			addr := tw1.Addr()
			r := newHrec()
			c := dial(t, tw1, r.options(codec)...)
			ctx := tctx(t)
			if err := c.Subscribe(ctx, topic); err != nil {
				t.Fatal(err)
			}
			var old firetower.Position
			for i := 1; i <= 3; i++ {
				old = publishAt(t, tw1, topic, i)
				r.expect(t, topic, uint64(i), strconv.Itoa(i))
			}
			stopTower(t, tw1)
			r.waitState(t, client.StateReconnecting)
			tw2 := startTower(t, addr, hist)
			for i := 1; i <= 2; i++ { // published before the client is back: lost to it
				publishAt(t, tw2, topic, i)
			}
			g := r.recovery(t, r.gaps, "gap")
			if g.Recovered || g.Topic != topic || g.Since != (client.Position{Epoch: old.Epoch, Offset: 3}) ||
				g.Top.Epoch == old.Epoch || g.Top.Epoch == "" {
				t.Fatalf("gap %+v (old epoch %s)", g, old.Epoch)
			}
			if rc := r.recovery(t, r.recoveries, "recovery"); rc != g {
				t.Fatalf("recovery event %+v differs from the gap %+v", rc, g)
			}
			r.waitState(t, client.StateOpen)
			if pos, _ := c.Position(topic); pos != g.Top {
				t.Fatalf("Position after the gap = %+v, want the ack's %+v", pos, g.Top)
			}
			// Live deliveries go on in the new epoch.
			p := publishAt(t, tw2, topic, 99)
			r.expect(t, topic, p.Offset, "99")
			if pos, _ := c.Position(topic); pos.Epoch != p.Epoch || pos.Offset != p.Offset {
				t.Fatalf("Position = %+v, want %+v", pos, p)
			}
			select {
			case extra := <-r.gaps:
				t.Fatalf("a second gap: %+v", extra)
			default:
			}
		})
	}
}

// last: N gives the latest N publications after the ack, then live ones;
// topics outside the history prefixes have no position.
func TestSubscribeLast(t *testing.T) {
	for _, codec := range []client.Codec{client.JSON, client.Msgpack} {
		t.Run(codec.String(), func(t *testing.T) {
			tw := startTower(t, "127.0.0.1:0", firetower.WithHistory(20, time.Hour, "/chat/"))
			for i := 1; i <= 30; i++ {
				publishAt(t, tw, "/chat/a", i)
			}
			r := newHrec()
			c := dial(t, tw, r.options(codec)...)
			got, err := c.SubscribeWith(tctx(t), client.SubscribeOptions{Last: 5}, "/chat/a", "other")
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got["/chat/a"].Top.Offset != 30 || got["/chat/a"].Recovered {
				t.Fatalf("positions %+v", got)
			}
			for i := 26; i <= 30; i++ {
				r.expect(t, "/chat/a", uint64(i), strconv.Itoa(i))
			}
			if _, ok := c.Position("other"); ok {
				t.Fatal("a position for a topic without history")
			}
			if err := tw.Publish(context.Background(), "other", []byte(`"x"`)); err != nil {
				t.Fatal(err)
			}
			r.expect(t, "other", 0, `"x"`)
			publishAt(t, tw, "/chat/a", 31)
			r.expect(t, "/chat/a", 31, "31")
			if ps := c.Positions(); len(ps) != 1 || ps["/chat/a"].Offset != 31 {
				t.Fatalf("Positions = %+v", ps)
			}
			if err := c.Unsubscribe(tctx(t), "/chat/a"); err != nil {
				t.Fatal(err)
			}
			if _, ok := c.Position("/chat/a"); ok {
				t.Fatal("position kept after Unsubscribe")
			}
		})
	}
}

// The seam seen from the client: a publisher publishes without pause while
// the client's connection is cut again and again; the client sees every
// offset exactly once, in order, and every resubscription recovers.
func TestRecoverUnderConcurrentPublishing(t *testing.T) {
	const topic = "ticks"
	const most = 100000 // the publisher's bound; the stream keeps them all
	tw := startTower(t, "127.0.0.1:0", firetower.WithHistory(most, time.Hour))
	r := newHrec()
	c := dial(t, tw, r.options(client.JSON)...)
	ctx := tctx(t)
	if err := c.Subscribe(ctx, topic); err != nil {
		t.Fatal(err)
	}
	r.waitState(t, client.StateOpen)

	stop := make(chan struct{})
	var once sync.Once
	halt := func() { once.Do(func() { close(stop) }) }
	var wg sync.WaitGroup
	var published atomic.Uint64
	// The publisher stays at most window publishes ahead of what the
	// client has read, so that it keeps publishing through every cut.
	const window = 500
	credit := make(chan struct{}, window)
	for range window {
		credit <- struct{}{}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i <= most; i++ {
			select {
			case <-stop:
				return
			case <-credit:
			}
			if _, err := tw.PublishOffset(context.Background(), topic, []byte(strconv.Itoa(i))); err != nil {
				t.Errorf("PublishOffset: %v", err)
				return
			}
			published.Store(uint64(i))
		}
	}()
	t.Cleanup(func() { halt(); wg.Wait() })

	deadline := time.After(6 * wait)
	next, cuts, recovered, cutAt := uint64(1), 0, 0, uint64(300)
	for {
		if recovered == 5 {
			halt()
			wg.Wait()
			if next > published.Load() {
				break
			}
		}
		select {
		case d := <-r.dels:
			if d.Offset != next || string(d.Data) != strconv.FormatUint(next, 10) {
				t.Fatalf("got #%d %s, want #%d", d.Offset, d.Data, next)
			}
			next++
			select {
			case credit <- struct{}{}:
			default:
			}
		case rc := <-r.recoveries:
			if !rc.Recovered {
				t.Fatalf("not recovered: %+v", rc)
			}
			recovered++
		case <-deadline:
			t.Fatalf("stuck at #%d after %d cuts, %d recoveries", next, cuts, recovered)
		}
		if next >= cutAt && cuts < 5 && recovered == cuts {
			conns, err := tw.Presence(ctx, topic, 0)
			if err != nil || len(conns) != 1 {
				continue // between a cut and the resubscription
			}
			if err := tw.Disconnect(ctx, conns[0].ID, 4001, "test cut"); err != nil {
				t.Fatalf("Disconnect: %v", err)
			}
			cuts++
			cutAt = next + 300
		}
	}
	select {
	case d := <-r.dels:
		t.Fatalf("a delivery past the last publish: #%d", d.Offset)
	default:
	}
	t.Logf("%d cuts, %d recoveries, %d publishes", cuts, recovered, next-1)
}
