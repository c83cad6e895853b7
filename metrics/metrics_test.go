package metrics_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/metrics"
)

const mtTimeout = 15 * time.Second

func mtTower(t *testing.T, opts ...firetower.Option) *firetower.Tower {
	t.Helper()
	tw, err := firetower.New(append([]firetower.Option{firetower.WithAddr("127.0.0.1:0")}, opts...)...)
	if err != nil {
		t.Fatalf("firetower.New: %v", err)
	}
	if err := tw.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), mtTimeout)
		defer cancel()
		_ = tw.Shutdown(ctx)
	})
	return tw
}

// mtClient is a websocket client whose reader goroutine hands every server
// message to a channel (or, with read off, reads nothing).
type mtClient struct {
	ws   *websocket.Conn
	msgs chan map[string]any
	done chan struct{}
}

func mtDial(t *testing.T, tw *firetower.Tower, read bool) *mtClient {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+tw.Addr()+"/ws", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c := &mtClient{ws: ws, msgs: make(chan map[string]any, 1024), done: make(chan struct{})}
	t.Cleanup(func() {
		ws.Close()
		if read {
			<-c.done
		}
	})
	if read {
		go func() {
			defer close(c.done)
			for {
				_, p, err := ws.ReadMessage()
				if err != nil {
					close(c.msgs)
					return
				}
				var m map[string]any
				if json.Unmarshal(p, &m) == nil {
					c.msgs <- m
				}
			}
		}()
	}
	return c
}

func (c *mtClient) send(t *testing.T, s string) {
	t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// next returns the next server message of the given type.
func (c *mtClient) next(t *testing.T, typ string) map[string]any {
	t.Helper()
	timer := time.NewTimer(mtTimeout)
	defer timer.Stop()
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				t.Fatalf("connection closed while waiting for a %q message", typ)
			}
			if m["type"] == typ {
				return m
			}
		case <-timer.C:
			t.Fatalf("no %q message within %v", typ, mtTimeout)
		}
	}
}

func (c *mtClient) subscribe(t *testing.T, topic string) {
	t.Helper()
	c.send(t, fmt.Sprintf(`{"type":"subscribe","topic":%q,"id":"s"}`, topic))
	if m := c.next(t, "ack"); m["id"] != "s" {
		t.Fatalf("ack %v, want id s", m)
	}
}

func mtWait(t *testing.T, tw *firetower.Tower, what string, cond func(firetower.Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(mtTimeout)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond(tw.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: stats %+v", what, tw.Stats())
		}
		<-tick.C
	}
}

// scrape GETs the handler and parses the text exposition format.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", url, resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET %s: Content-Type %q, want text/plain", url, ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the exposition: %v", err)
	}
	return fams
}

// value returns the value of the series of name with the given label pairs
// (node_id is checked on every series).
func value(t *testing.T, fams map[string]*dto.MetricFamily, nodeID, name string, labels ...string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("metric %s missing", name)
	}
	wantType := dto.MetricType_COUNTER
	if !strings.HasSuffix(name, "_total") {
		wantType = dto.MetricType_GAUGE
	}
	if f.GetType() != wantType {
		t.Fatalf("metric %s has type %v, want %v", name, f.GetType(), wantType)
	}
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, lp := range m.Label {
			got[lp.GetName()] = lp.GetValue()
		}
		if got["node_id"] != nodeID {
			t.Fatalf("%s%v: node_id %q, want %q", name, got, got["node_id"], nodeID)
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if got[labels[i]] != labels[i+1] {
				continue next
			}
		}
		if m.Counter != nil {
			return m.Counter.GetValue()
		}
		return m.Gauge.GetValue()
	}
	t.Fatalf("metric %s has no series with labels %v", name, labels)
	return 0
}

// TestMetricsAfterWorkload runs a known workload and reads every counter
// back through the HTTP handler.
func TestMetricsAfterWorkload(t *testing.T) {
	const (
		subscribers = 3
		publishes   = 5
		floods      = 13 // the flooder's publishes (ids 0-12)
	)
	entered := make(chan struct{})
	release := make(chan struct{})
	var first atomic.Bool
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseAll)
	tw := mtTower(t,
		firetower.WithNodeID(7),
		firetower.WithInboundLimit(1),
		firetower.WithReadTimeout(50*time.Millisecond),
		firetower.OnRead(func(next firetower.Handler) firetower.Handler {
			return func(c *firetower.Context) error {
				if c.Message().Topic == "flood" {
					if first.CompareAndSwap(false, true) {
						close(entered)
					}
					<-release
				}
				return next(c)
			}
		}))

	reg := prometheus.NewRegistry()
	if err := metrics.Register(reg, tw); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(metrics.Handler(reg))
	t.Cleanup(srv.Close)

	// Before any traffic every series exists and reads 0.
	fams := scrape(t, srv.URL)
	for name, f := range fams {
		for _, m := range f.Metric {
			if v := m.GetCounter().GetValue() + m.GetGauge().GetValue(); v != 0 {
				t.Errorf("fresh tower: %s = %v, want 0", name, v)
			}
		}
	}

	// N subscribers on "news"; the server publishes M times.
	subs := make([]*mtClient, subscribers)
	for i := range subs {
		subs[i] = mtDial(t, tw, true)
		subs[i].subscribe(t, "news")
	}
	for i := range publishes {
		if err := tw.Publish(context.Background(), "news", fmt.Appendf(nil, `{"n":%d}`, i)); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
	for _, c := range subs {
		for range publishes {
			c.next(t, "publish")
		}
	}

	// A flooder: with an inbound budget of one byte and its first publish
	// stalled in OnRead, its reading is paused; past the read timeout ids
	// 1-12 are read and dropped, each answered rate_limited.
	fl := mtDial(t, tw, true)
	fl.subscribe(t, "flood")
	base := tw.Stats().MessagesIn
	fl.send(t, `{"type":"publish","topic":"flood","data":0,"id":0}`)
	select {
	case <-entered:
	case <-time.After(mtTimeout):
		t.Fatal("the flooder's first publish never reached OnRead")
	}
	for i := 1; i < floods; i++ {
		fl.send(t, fmt.Sprintf(`{"type":"publish","topic":"flood","data":%d,"id":%d}`, i, i))
	}
	mtWait(t, tw, "the flood to be read and dropped", func(s firetower.Stats) bool {
		return s.MessagesIn >= base+floods && s.ReadDropped > 0
	})
	releaseAll()
	// its one accepted publish went to itself; every drop was answered
	mtWait(t, tw, "the flooder's answers", func(s firetower.Stats) bool {
		return s.Publishes == publishes+1 && s.Errors == floods-1 && s.InboundBytes == 0 && s.Transport.Paused == 0
	})

	st := tw.Stats()
	fams = scrape(t, srv.URL)
	want := []struct {
		name   string
		labels []string
		v      float64
	}{
		{"firetower_connections", nil, subscribers + 1},
		{"firetower_subscriptions", nil, subscribers + 1},
		{"firetower_topics", nil, 2},
		{"firetower_messages_received_total", nil, subscribers + 1 + floods},
		{"firetower_publishes_total", nil, publishes + 1},
		{"firetower_deliveries_total", nil, subscribers*publishes + 1},
		{"firetower_dropped_messages_total", []string{"reason", "read_timeout"}, floods - 1},
		{"firetower_dropped_messages_total", []string{"reason", "slow_consumer"}, 0},
		{"firetower_flood_closes_total", nil, 0},
		{"firetower_inbound_queued_bytes", nil, 0},
		{"firetower_paused_connections", nil, 0},
		{"firetower_read_pauses_total", nil, float64(st.ReadPauses)},
		{"firetower_slow_consumer_closes_total", nil, 0},
		{"firetower_errors_sent_total", nil, floods - 1},
		{"firetower_hook_panics_total", nil, 0},
		{"firetower_cluster_bad_control_total", nil, 0},
		{"firetower_refused_upgrades_total", []string{"reason", "origin"}, 0},
		{"firetower_refused_upgrades_total", []string{"reason", "limit"}, 0},
		{"firetower_cluster_deliveries_received_total", nil, 0},
		{"firetower_cluster_publish_failures_total", nil, 0},
		{"firetower_transport_open_connections", nil, subscribers + 1},
		{"firetower_transport_accepted_connections_total", nil, subscribers + 1},
		{"firetower_transport_upgrades_total", nil, subscribers + 1},
		{"firetower_transport_upgrades_rejected_total", nil, 0},
		{"firetower_transport_messages_received_total", nil, subscribers + 1 + floods},
		{"firetower_transport_idle_closes_total", nil, 0},
		{"firetower_transport_protocol_closes_total", nil, 0},
		// the rest depend on TCP timing: they must read what Stats reads
		{"firetower_transport_frames_received_total", nil, float64(st.Transport.FramesIn)},
		{"firetower_transport_writes_total", nil, float64(st.Transport.Writes)},
		{"firetower_transport_sent_bytes_total", nil, float64(st.Transport.BytesOut)},
		{"firetower_outbound_queue_bytes", nil, float64(st.Transport.OutboundBuffered)},
		{"firetower_transport_discarded_frames_total", nil, float64(st.Transport.Discarded)},
		{"firetower_history_streams", nil, 0}, // no WithHistory (see history_test.go)
		{"firetower_history_bytes", nil, 0},
		// no WithCompression here (see compression_test.go)
		{"firetower_compression_connections", nil, 0},
		{"firetower_compression_messages_total", nil, 0},
		{"firetower_compression_frames_total", nil, 0},
		{"firetower_compression_frame_bytes_total", []string{"stage", "before"}, 0},
		{"firetower_compression_frame_bytes_total", []string{"stage", "after"}, 0},
		{"firetower_compression_inflated_messages_total", nil, 0},
		{"firetower_compression_inflated_bytes_total", []string{"stage", "before"}, 0},
		{"firetower_compression_inflated_bytes_total", []string{"stage", "after"}, 0},
	}
	for _, w := range want {
		if got := value(t, fams, "7", w.name, w.labels...); got != w.v {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.v)
		}
	}
	if st.Transport.Writes == 0 || st.Transport.BytesOut == 0 {
		t.Errorf("transport writes %d, bytes %d: want both > 0", st.Transport.Writes, st.Transport.BytesOut)
	}
	seen := map[string]bool{"firetower_publish_write_latency_seconds": true}
	for _, w := range want {
		seen[w.name] = true
	}
	// The latency histogram counts every write that carried frames.
	var latCount uint64
	for _, n := range st.Transport.WriteLatency {
		latCount += n
	}
	hf := fams["firetower_publish_write_latency_seconds"]
	if hf == nil || hf.GetType() != dto.MetricType_HISTOGRAM || len(hf.Metric) != 1 {
		t.Fatalf("latency histogram missing or malformed: %v", hf)
	}
	if got := hf.Metric[0].GetHistogram().GetSampleCount(); got != latCount || got == 0 {
		t.Errorf("latency histogram count %d, want %d (> 0)", got, latCount)
	}
	for name := range fams {
		if !seen[name] {
			t.Errorf("metric %s is exported but not checked", name)
		}
	}
}

// TestMetricsSlowConsumer checks the slow-consumer series under both
// policies with a client that never reads.
func TestMetricsSlowConsumer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy firetower.SlowConsumerPolicy
	}{{"drop", firetower.SlowDrop}, {"close", firetower.SlowClose}} {
		t.Run(tc.name, func(t *testing.T) {
			tw := mtTower(t, firetower.WithSlowConsumerPolicy(tc.policy), firetower.WithOutboundLimit(64<<10))
			reg := prometheus.NewRegistry()
			reg.MustRegister(metrics.NewCollector(tw))
			srv := httptest.NewServer(metrics.Handler(reg))
			t.Cleanup(srv.Close)

			c := mtDial(t, tw, false)
			c.send(t, `{"type":"subscribe","topic":"slow"}`)
			mtWait(t, tw, "the subscription", func(s firetower.Stats) bool { return s.Subscriptions == 1 })
			payload := []byte(`"` + strings.Repeat("x", 32<<10) + `"`)
			deadline := time.Now().Add(mtTimeout)
			for {
				s := tw.Stats()
				if (tc.policy == firetower.SlowDrop && s.SlowDropped > 0) || (tc.policy == firetower.SlowClose && s.SlowClosed > 0) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no slow-consumer event after %v of publishing: %+v", mtTimeout, s)
				}
				if err := tw.Publish(context.Background(), "slow", payload); err != nil {
					t.Fatalf("Publish: %v", err)
				}
			}
			if tc.policy == firetower.SlowClose {
				mtWait(t, tw, "the slow consumer to be gone", func(s firetower.Stats) bool { return s.Connections == 0 })
			}
			st := tw.Stats()
			fams := scrape(t, srv.URL)
			after := tw.Stats() // frames already queued may still be dropped meanwhile
			node := "1"
			switch tc.policy {
			case firetower.SlowDrop:
				if got := value(t, fams, node, "firetower_dropped_messages_total", "reason", "slow_consumer"); got < float64(st.SlowDropped) || got > float64(after.SlowDropped) || got == 0 {
					t.Errorf("dropped{slow_consumer} = %v, want between %d and %d (> 0)", got, st.SlowDropped, after.SlowDropped)
				}
				if got := value(t, fams, node, "firetower_slow_consumer_closes_total"); got != 0 {
					t.Errorf("slow_consumer_closes = %v, want 0 under SlowDrop", got)
				}
			case firetower.SlowClose:
				if got := value(t, fams, node, "firetower_slow_consumer_closes_total"); got != 1 {
					t.Errorf("slow_consumer_closes = %v, want 1", got)
				}
				if got := value(t, fams, node, "firetower_connections"); got != 0 {
					t.Errorf("connections = %v, want 0", got)
				}
			}
			if got := value(t, fams, node, "firetower_dropped_messages_total", "reason", "read_timeout"); got != 0 {
				t.Errorf("dropped{read_timeout} = %v, want 0", got)
			}
			if got := value(t, fams, node, "firetower_deliveries_total"); got != float64(st.Deliveries) {
				t.Errorf("deliveries = %v, want %d", got, st.Deliveries)
			}
		})
	}
}

// TestMetricsLint runs promlint over the collector's metrics, and checks
// that a second collector for the same node is refused by a registry.
func TestMetricsLint(t *testing.T) {
	tw := mtTower(t)
	c := metrics.NewCollector(tw)
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	reg := metrics.NewRegistry(tw)
	if err := reg.Register(metrics.NewCollector(tw)); err == nil {
		t.Error("registering a second collector for the same tower succeeded, want AlreadyRegisteredError")
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var haveGo, haveOurs bool
	for _, f := range fams {
		haveGo = haveGo || f.GetName() == "go_goroutines"
		haveOurs = haveOurs || f.GetName() == "firetower_connections"
	}
	if !haveGo || !haveOurs {
		t.Errorf("NewRegistry gathers go_goroutines %v, firetower_connections %v; want both", haveGo, haveOurs)
	}
}
