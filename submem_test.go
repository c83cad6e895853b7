package firetower_test

// Subscription memory: many connections, each subscribed to many topics of its
// own, and what one subscription costs the server's heap.
//
// The clients run in this process (2 descriptors per connection, far below the
// ~20,000 a process may hold): the minimal websocket client of scale_test.go,
// run by a few goroutines that each own some of the connections. Everything the
// clients keep is allocated before the first heap reading; what they allocate
// while subscribing is garbage by the second one.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/firetower-go/firetower"
)

const (
	smConns       = 1000 // connections
	smTopics      = 1000 // unique topics per connection
	smConnsShort  = 100  // under -short
	smTopicsShort = 100
	smConnsRace   = 200 // with the race detector: its shadow memory and speed
	smTopicsRace  = 200
	smTopicLen    = 32  // bytes of every topic name
	smPerRequest  = 100 // topics per subscribe request
	// smGoal is the most one subscription (a topic with one subscriber) may
	// cost the server's heap: issue 11's goal.
	smGoal = 256
	// smEnvSize overrides the size, "CONNSxTOPICS", to measure by hand (the
	// goal is checked only at the default full size).
	smEnvSize = "FIRETOWER_SUBMEM_SIZE"
)

// smTopic is topic j of connection i: smTopicLen bytes, unique in the test.
func smTopic(i, j int) string {
	s := fmt.Sprintf("sm/c%07d/t%07d/", i, j)
	return s + strings.Repeat("x", smTopicLen-len(s))
}

// TestSubscriptionMemory opens connections that each subscribe to topics no
// other connection has, and reports the server's heap per subscription: the
// growth of the heap in use from after the connections are open to after every
// subscription is acknowledged, divided by the subscriptions. At the full size
// (1,000 x 1,000, 32-byte topics) it must stay within smGoal. Then the clients
// unsubscribe half of their topics and close, and every topic must be gone.
func TestSubscriptionMemory(t *testing.T) {
	n, k := smConns, smTopics
	switch {
	case testing.Short():
		n, k = smConnsShort, smTopicsShort
	case scRaceEnabled():
		n, k = smConnsRace, smTopicsRace
	}
	if s := os.Getenv(smEnvSize); s != "" {
		a, b, ok := strings.Cut(s, "x")
		var err1, err2 error
		n, err1 = strconv.Atoi(a)
		k, err2 = strconv.Atoi(b)
		if !ok || err1 != nil || err2 != nil || n <= 0 || k <= 0 {
			t.Fatalf("%s=%q: want CONNSxTOPICS", smEnvSize, s)
		}
	}
	full := n == smConns && k == smTopics && !scRaceEnabled()
	subs := int64(n) * int64(k)

	limit := 5 * time.Minute
	if d, ok := t.Deadline(); ok {
		limit = min(limit, time.Until(d)-10*time.Second)
	}
	deadline := time.Now().Add(limit)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()

	tw, err := firetower.New(
		firetower.WithAddr("127.0.0.1:0"),
		firetower.WithMaxTopics(max(k, 1024)),
		// Not what this test is about: no keepalive while the clients are busy.
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

	g := min(scWorkers, n)
	workers := make([]*scWorker, g)
	for i := range workers {
		lo, hi := i*n/g, (i+1)*n/g
		workers[i] = &scWorker{first: lo, conns: make([]scConn, 0, hi-lo), hdr: make([]byte, ws.MaxHeaderSize), buf: make([]byte, 64<<10)}
	}
	defer func() {
		for _, w := range workers {
			for _, c := range w.conns {
				c.nc.Close()
			}
		}
	}()
	url := "ws://" + tw.Addr() + "/ws"
	if err := scEach(workers, func(w *scWorker) error { return w.dial(url, cap(w.conns), deadline) }); err != nil {
		t.Fatal(err)
	}
	smWaitStats(t, tw, deadline, "every connection open", func(st firetower.Stats) bool { return st.Connections == int64(n) })

	heap0, rss0 := scMemory(t)
	start := time.Now()
	if err := scEach(workers, func(w *scWorker) error { return w.subscribeMany("subscribe", 0, k, deadline) }); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	heap1, rss1 := scMemory(t)

	if st := tw.Stats(); st.Subscriptions != subs || st.Topics != subs {
		t.Fatalf("Stats: %d subscriptions on %d topics, want %d of each", st.Subscriptions, st.Topics, subs)
	}
	race := ""
	if scRaceEnabled() {
		race = " (race detector on: inflated)"
	}
	perSub := float64(heap1.inuse-heap0.inuse) / float64(subs)
	t.Logf("%d connections x %d unique topics of %d bytes = %d subscriptions in %v%s",
		n, k, smTopicLen, subs, took.Round(time.Millisecond), race)
	t.Logf("heap in use %+.1f MiB = %.0f B/subscription; heap alloc %+.0f B/subscription; %+.2f heap objects/subscription; VmRSS %+.1f MiB = %.0f B/subscription",
		float64(heap1.inuse-heap0.inuse)/(1<<20), perSub,
		float64(heap1.alloc-heap0.alloc)/float64(subs), float64(heap1.objects-heap0.objects)/float64(subs),
		float64(rss1-rss0)/(1<<20), float64(rss1-rss0)/float64(subs))
	if full && perSub > smGoal {
		t.Errorf("one subscription costs %.0f bytes of heap, want at most %d", perSub, smGoal)
	}

	// Unsubscribe the first half of every connection's topics, then close.
	if err := scEach(workers, func(w *scWorker) error { return w.subscribeMany("unsubscribe", 0, k/2, deadline) }); err != nil {
		t.Fatal(err)
	}
	left := int64(n) * int64(k-k/2)
	if st := tw.Stats(); st.Subscriptions != left || st.Topics != left {
		t.Fatalf("after unsubscribing: %d subscriptions on %d topics, want %d of each", st.Subscriptions, st.Topics, left)
	}
	for _, w := range workers {
		for _, c := range w.conns {
			c.nc.Close()
		}
	}
	smWaitStats(t, tw, deadline, "every connection closed and its topics gone", func(st firetower.Stats) bool {
		return st.Connections == 0 && st.Subscriptions == 0 && st.Topics == 0
	})
}

func smWaitStats(t *testing.T, tw *firetower.Tower, deadline time.Time, what string, ok func(firetower.Stats) bool) {
	t.Helper()
	for !ok(tw.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %+v", what, tw.Stats())
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
}

// dial opens k connections.
func (w *scWorker) dial(url string, k int, deadline time.Time) error {
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
	return nil
}

// subscribeMany sends every connection's requests of type typ (subscribe or
// unsubscribe) for its topics lo..hi-1, smPerRequest to a request, all of them
// before reading any answer, then reads and checks every ack.
func (w *scWorker) subscribeMany(typ string, lo, hi int, deadline time.Time) error {
	var req []byte
	for i, c := range w.conns {
		for j := lo; j < hi; j += smPerRequest {
			req = fmt.Appendf(req[:0], `{"type":%q,"id":%d,"topics":[`, typ, j)
			for x := j; x < min(j+smPerRequest, hi); x++ {
				if x > j {
					req = append(req, ',')
				}
				req = strconv.AppendQuote(req, smTopic(w.first+i, x))
			}
			req = append(req, "]}"...)
			if err := w.write(c, ws.OpText, req, deadline); err != nil {
				return fmt.Errorf("connection %d: %s: %w", w.first+i, typ, err)
			}
		}
	}
	for i, c := range w.conns {
		for j := lo; j < hi; j += smPerRequest {
			p, err := w.read(c, deadline)
			if err != nil {
				return fmt.Errorf("connection %d: waiting for the ack of %s %d: %w", w.first+i, typ, j, err)
			}
			var ack struct {
				Type string          `json:"type"`
				ID   json.RawMessage `json:"id"`
			}
			if err := json.Unmarshal(p, &ack); err != nil || ack.Type != "ack" || string(ack.ID) != strconv.Itoa(j) {
				return fmt.Errorf("connection %d: want the ack of %s %d, got %.200s", w.first+i, typ, j, p)
			}
		}
	}
	return nil
}
