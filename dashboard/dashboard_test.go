package dashboard_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/dashboard"
)

const dtTimeout = 15 * time.Second

func dtTower(t *testing.T, opts ...firetower.Option) *firetower.Tower {
	t.Helper()
	tw, err := firetower.New(append([]firetower.Option{firetower.WithAddr("127.0.0.1:0")}, opts...)...)
	if err != nil {
		t.Fatalf("firetower.New: %v", err)
	}
	if err := tw.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), dtTimeout)
		defer cancel()
		_ = tw.Shutdown(ctx)
	})
	return tw
}

// dtSubscribe opens a websocket, subscribes to topics and waits for the ack;
// a reader goroutine counts the deliveries.
type dtClient struct {
	ws   *websocket.Conn
	got  chan string // the topic of each delivery
	done chan struct{}
}

func dtSubscribe(t *testing.T, tw *firetower.Tower, topics ...string) *dtClient {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+tw.Addr()+"/ws", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c := &dtClient{ws: ws, got: make(chan string, 1024), done: make(chan struct{})}
	t.Cleanup(func() { ws.Close(); <-c.done })
	b, _ := json.Marshal(map[string]any{"type": "subscribe", "topics": topics, "id": 1})
	if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	acked := make(chan struct{})
	go func() {
		defer close(c.done)
		for {
			_, p, err := ws.ReadMessage()
			if err != nil {
				return
			}
			var m struct {
				Type  string `json:"type"`
				Topic string `json:"topic"`
			}
			_ = json.Unmarshal(p, &m)
			switch m.Type {
			case "ack":
				close(acked)
			case "publish":
				c.got <- m.Topic
			}
		}
	}()
	select {
	case <-acked:
	case <-time.After(dtTimeout):
		t.Fatalf("no ack for subscribing to %v", topics)
	}
	return c
}

// sseStream reads "snapshot" events from an event-stream body.
type sseStream struct {
	resp   *http.Response
	cancel context.CancelFunc
	events chan dashboard.Snapshot
	errc   chan error
}

func openStream(t *testing.T, url string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		resp.Body.Close()
		t.Fatalf("GET %s: status %d", url, resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("GET %s: Content-Type %q, want text/event-stream", url, ct)
	}
	s := &sseStream{resp: resp, cancel: cancel, events: make(chan dashboard.Snapshot, 64), errc: make(chan error, 1)}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	go s.read()
	return s
}

// read parses the stream strictly: fields are retry, event, id and data;
// every event is "snapshot" with an id equal to its seq and one data line.
func (s *sseStream) read() {
	defer close(s.events)
	br := bufio.NewReader(s.resp.Body)
	var event, id string
	var data []string
	sawRetry := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			s.errc <- err
			return
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if event == "" && len(data) == 0 {
				continue
			}
			if !sawRetry {
				s.errc <- fmt.Errorf("event before the retry field")
				return
			}
			if event != "snapshot" || len(data) != 1 {
				s.errc <- fmt.Errorf("event %q with %d data lines, want snapshot with 1", event, len(data))
				return
			}
			var snap dashboard.Snapshot
			if err := json.Unmarshal([]byte(data[0]), &snap); err != nil {
				s.errc <- fmt.Errorf("bad snapshot JSON: %v", err)
				return
			}
			if id != fmt.Sprint(snap.Seq) {
				s.errc <- fmt.Errorf("event id %q but seq %d", id, snap.Seq)
				return
			}
			s.events <- snap
			event, id, data = "", "", nil
			continue
		}
		name, value, _ := strings.Cut(line, ": ")
		switch name {
		case "retry":
			sawRetry = true
		case "event":
			event = value
		case "id":
			id = value
		case "data":
			data = append(data, value)
		default:
			s.errc <- fmt.Errorf("unexpected line %q", line)
			return
		}
	}
}

func (s *sseStream) next(t *testing.T) dashboard.Snapshot {
	t.Helper()
	select {
	case snap, ok := <-s.events:
		if !ok {
			t.Fatalf("stream ended: %v", <-s.errc)
		}
		return snap
	case <-time.After(dtTimeout):
		t.Fatalf("no snapshot within %v", dtTimeout)
	}
	return dashboard.Snapshot{}
}

func TestEventsAfterWorkload(t *testing.T) {
	tw := dtTower(t, firetower.WithNodeID(3))
	d := dashboard.New(tw, dashboard.Config{Interval: 20 * time.Millisecond})
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	t.Cleanup(d.Close)

	all := openStream(t, srv.URL+"/dashboard/events")
	first := all.next(t)
	if first.Seq != 1 || first.Interval != 0 || first.NodeID != 3 || first.Stats.Connections != 0 || len(first.Topics) != 0 {
		t.Fatalf("first snapshot %+v: want seq 1, no interval, node 3, nothing open", first)
	}
	if first.Rates != (dashboard.Rates{}) || first.Deltas != (dashboard.Counters{}) {
		t.Fatalf("first snapshot has rates %+v deltas %+v, want none", first.Rates, first.Deltas)
	}
	if first.Latency != nil {
		t.Fatalf("latency %+v before any write", first.Latency)
	}

	// Workload: 2 subscribers on room/a, 1 on room/b and room/a2; the server
	// publishes 4 times to room/a and 3 times to room/b.
	const pubA, pubB = 4, 3
	a1 := dtSubscribe(t, tw, "room/a")
	a2 := dtSubscribe(t, tw, "room/a")
	b := dtSubscribe(t, tw, "room/b", "other/a2")
	for i := range pubA {
		if err := tw.Publish(context.Background(), "room/a", fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range pubB {
		if err := tw.Publish(context.Background(), "room/b", fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		c *dtClient
		n int
	}{{a1, pubA}, {a2, pubA}, {b, pubB}} {
		for range c.n {
			select {
			case <-c.c.got:
			case <-time.After(dtTimeout):
				t.Fatal("a delivery is missing")
			}
		}
	}
	want := firetower.Stats{Connections: 3, Subscriptions: 4, Topics: 3, MessagesIn: 3, Publishes: pubA + pubB, Deliveries: 2*pubA + pubB}

	// Snapshots follow each other; the deltas add up to the workload and
	// the rates are the deltas over the interval.
	var sum dashboard.Counters
	var last dashboard.Snapshot
	prevSeq := first.Seq
	prevTime := first.Time
	for {
		s := all.next(t)
		if s.Seq != prevSeq+1 {
			t.Fatalf("seq %d after %d", s.Seq, prevSeq)
		}
		prevSeq = s.Seq
		if s.Interval <= 0 {
			t.Fatalf("snapshot %d: interval %v", s.Seq, s.Interval)
		}
		if gap := s.Time.Sub(prevTime).Seconds(); math.Abs(gap-s.Interval) > 0.005 {
			t.Fatalf("snapshot %d: interval %v but %v since the previous", s.Seq, s.Interval, gap)
		}
		prevTime = s.Time
		for _, c := range []struct {
			name  string
			delta uint64
			rate  float64
		}{
			{"messages_in", s.Deltas.MessagesIn, s.Rates.MessagesIn},
			{"publishes", s.Deltas.Publishes, s.Rates.Publishes},
			{"deliveries", s.Deltas.Deliveries, s.Rates.Deliveries},
		} {
			if w := float64(c.delta) / s.Interval; math.Abs(w-c.rate) > 1e-6*math.Max(1, w) {
				t.Fatalf("snapshot %d: %s rate %v, want %v (%d in %vs)", s.Seq, c.name, c.rate, w, c.delta, s.Interval)
			}
		}
		sum.MessagesIn += s.Deltas.MessagesIn
		sum.Publishes += s.Deltas.Publishes
		sum.Deliveries += s.Deltas.Deliveries
		sum.Upgrades += s.Deltas.Upgrades
		last = s
		st := s.Stats
		if st.Connections == want.Connections && st.Subscriptions == want.Subscriptions && st.Topics == want.Topics &&
			st.MessagesIn == want.MessagesIn && st.Publishes == want.Publishes && st.Deliveries == want.Deliveries {
			break
		}
		if s.Seq > 2000 {
			t.Fatalf("stats never reached %+v: %+v", want, st)
		}
	}
	if sum.MessagesIn != 3 || sum.Publishes != pubA+pubB || sum.Deliveries != 2*pubA+pubB || sum.Upgrades != 3 {
		t.Fatalf("deltas add up to %+v, want 3 messages in, %d publishes, %d deliveries, 3 upgrades", sum, pubA+pubB, 2*pubA+pubB)
	}
	wantTopics := []dashboard.Topic{{Topic: "room/a", Local: 2, Count: 2}, {Topic: "other/a2", Local: 1, Count: 1}, {Topic: "room/b", Local: 1, Count: 1}}
	if fmt.Sprint(last.Topics) != fmt.Sprint(wantTopics) || last.TopicsMatched != 3 || last.Top != 20 || last.Query != "" {
		t.Fatalf("topics %v (matched %d, top %d, q %q), want %v (3, 20, \"\")", last.Topics, last.TopicsMatched, last.Top, last.Query, wantTopics)
	}
	if last.Drops["read_queue_full"] != 0 || last.Drops["slow_consumer"] != 0 || len(last.Drops) != 2 {
		t.Fatalf("drops %v", last.Drops)
	}

	// A filtered stream (case-insensitive), and a top-1 stream.
	f := openStream(t, srv.URL+"/dashboard/events?q=A2&top=5")
	if s := f.next(t); fmt.Sprint(s.Topics) != fmt.Sprint([]dashboard.Topic{{"other/a2", 1, 1}}) || s.TopicsMatched != 1 || s.Query != "A2" || s.Top != 5 {
		t.Fatalf("?q=A2: topics %v matched %d q %q top %d", s.Topics, s.TopicsMatched, s.Query, s.Top)
	}
	one := openStream(t, srv.URL+"/dashboard/events?top=1")
	if s := one.next(t); fmt.Sprint(s.Topics) != fmt.Sprint([]dashboard.Topic{{"room/a", 2, 2}}) || s.TopicsMatched != 3 {
		t.Fatalf("?top=1: topics %v matched %d", s.Topics, s.TopicsMatched)
	}
	none := openStream(t, srv.URL+"/dashboard/events?q=nothing-like-this")
	if s := none.next(t); len(s.Topics) != 0 || s.TopicsMatched != 0 {
		t.Fatalf("no match: topics %v matched %d", s.Topics, s.TopicsMatched)
	}

	// snapshot.json: one snapshot, no rates.
	resp, err := http.Get(srv.URL + "/dashboard/snapshot.json?top=2")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var one1 dashboard.Snapshot
	if err := json.NewDecoder(resp.Body).Decode(&one1); err != nil || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("snapshot.json: %v, Content-Type %q", err, resp.Header.Get("Content-Type"))
	}
	if one1.Stats.Connections != 3 || len(one1.Topics) != 2 || one1.Interval != 0 {
		t.Fatalf("snapshot.json: %+v", one1)
	}
}

// flushRecorder is a ResponseWriter that can be read while the handler
// writes; it reports every flush.
type flushRecorder struct {
	mu      sync.Mutex
	header  http.Header
	buf     strings.Builder
	flushed chan struct{}
}

func (r *flushRecorder) Header() http.Header { return r.header }
func (r *flushRecorder) WriteHeader(int)     {}
func (r *flushRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(p)
}
func (r *flushRecorder) Flush() {
	select {
	case r.flushed <- struct{}{}:
	default:
	}
}

// TestEventsStopWithRequest checks that a stream's loop ends with its
// request's context, and with Close.
func TestEventsStopWithRequest(t *testing.T) {
	tw := dtTower(t)
	d := dashboard.New(tw, dashboard.Config{Interval: 10 * time.Millisecond})

	run := func(ctx context.Context) (*flushRecorder, chan struct{}) {
		rec := &flushRecorder{header: http.Header{}, flushed: make(chan struct{}, 1)}
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/dashboard/events", nil)
		done := make(chan struct{})
		go func() {
			defer close(done)
			d.ServeHTTP(rec, req)
		}()
		for range 3 { // the stream is running
			select {
			case <-rec.flushed:
			case <-done:
				t.Fatal("the stream ended by itself")
			case <-time.After(dtTimeout):
				t.Fatal("no flush")
			}
		}
		return rec, done
	}
	wait := func(done chan struct{}, what string) {
		t.Helper()
		select {
		case <-done:
		case <-time.After(dtTimeout):
			t.Fatalf("the handler did not return after %s", what)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	rec, done := run(ctx)
	cancel()
	wait(done, "its request context ended")
	rec.mu.Lock()
	n := strings.Count(rec.buf.String(), "event: snapshot\n")
	rec.mu.Unlock()
	if n < 3 {
		t.Fatalf("%d snapshots written, want at least 3", n)
	}

	// Close ends the open streams and refuses new ones; the page still loads.
	_, done = run(context.Background())
	_, done2 := run(context.Background())
	d.Close()
	wait(done, "Close")
	wait(done2, "Close")
	srv := httptest.NewServer(d)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/dashboard/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("events after Close: status %d, want 503", resp.StatusCode)
	}
	resp, err = http.Get(srv.URL + "/dashboard")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("page after Close: status %d, want 200", resp.StatusCode)
	}
}

// TestPages checks the page and its assets under the default and a custom
// prefix.
func TestPages(t *testing.T) {
	tw := dtTower(t)
	for _, prefix := range []string{"", "/ops/dash/"} {
		d := dashboard.New(tw, dashboard.Config{Prefix: prefix})
		srv := httptest.NewServer(d)
		base := "/dashboard"
		if prefix != "" {
			base = "/ops/dash"
		}
		get := func(path string) (int, string, string) {
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
		}
		for _, p := range []string{base, base + "/"} {
			code, ct, body := get(p)
			if code != 200 || ct != "text/html; charset=utf-8" {
				t.Fatalf("GET %s: %d %q", p, code, ct)
			}
			for _, want := range []string{
				`src="` + base + `/app.js?v=`, `href="` + base + `/style.css?v=`, `data-events="` + base + `/events"`,
				`id="rate-deliveries"`, `id="stat-connections"`, `<canvas id="chart-drops"`,
			} {
				if !strings.Contains(body, want) {
					t.Fatalf("GET %s: no %q in the page", p, want)
				}
			}
			if strings.Contains(body, "http://") || strings.Contains(body, "https://") {
				t.Fatalf("GET %s: the page refers to another site", p)
			}
		}
		for path, ctype := range map[string]string{"/app.js": "text/javascript", "/style.css": "text/css"} {
			code, ct, body := get(base + path)
			if code != 200 || !strings.HasPrefix(ct, ctype) || len(body) < 100 {
				t.Fatalf("GET %s%s: %d %q (%d bytes)", base, path, code, ct, len(body))
			}
		}
		for _, p := range []string{base + "/nope", base + "x", "/elsewhere", base + "/static/app.js"} {
			if code, _, _ := get(p); code != 404 {
				t.Fatalf("GET %s: %d, want 404", p, code)
			}
		}
		resp, err := http.Post(srv.URL+base+"/events", "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("POST events: %d, want 405", resp.StatusCode)
		}
		srv.Close()
	}
}

// TestEventsEndOnServerShutdown checks that an open stream does not hold
// http.Server.Shutdown: the dashboard ends it when its server shuts down.
func TestEventsEndOnServerShutdown(t *testing.T) {
	tw := dtTower(t)
	d := dashboard.New(tw, dashboard.Config{Interval: 10 * time.Millisecond})
	srv := httptest.NewServer(d)
	defer srv.Close()
	s := openStream(t, srv.URL+"/dashboard/events")
	s.next(t)
	s.next(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := srv.Config.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with an open stream: %v after %v", err, time.Since(start))
	}
	// the stream ends (the events channel closes)
	deadline := time.After(dtTimeout)
	for {
		select {
		case _, ok := <-s.events:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("the stream is still open after Shutdown")
		}
	}
}
