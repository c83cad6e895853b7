// Package dashboard is firetower's runtime dashboard: an http.Handler that
// serves a live page at /dashboard (plain HTML, JS and CSS embedded in the
// binary, no build step, nothing loaded from elsewhere) and the feed it
// reads, a server-sent event stream at /dashboard/events that pushes a JSON
// snapshot every second.
//
//	d := dashboard.New(tower, dashboard.Config{})
//	mux.Handle("GET /dashboard", d)
//	mux.Handle("GET /dashboard/", d)
//
// A snapshot holds the Tower's Stats, the counters' increments since the
// previous snapshot of the same stream and the per-second rates computed
// from them, and the top-N topics of this node by subscriber count (local
// and cluster-wide), filtered by a search string:
//
//	GET /dashboard/events?q=chat&top=20   text/event-stream, "event: snapshot" every Interval
//	GET /dashboard/snapshot.json?q=&top=  one snapshot (no rates)
//
// Each stream runs in its request's goroutine and ends when the request's
// context ends, when the http.Server serving it shuts down, or when Close is
// called; the package starts no goroutine.
package dashboard

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/transport"
)

//go:embed static
var static embed.FS

// Config configures a Dashboard. The zero value is ready to use.
type Config struct {
	// Prefix is the path the dashboard is mounted at. Default "/dashboard".
	Prefix string
	// Interval is the time between two snapshots of a stream. Default 1s.
	Interval time.Duration
	// TopN is how many topics a snapshot lists when the request does not
	// say (?top=). Default 20.
	TopN int
	// MaxTopN bounds ?top=. Default 500.
	MaxTopN int
	// CountTimeout bounds the cluster-wide count of one snapshot's topics
	// (Tower.ConnectNum). Default 500ms.
	CountTimeout time.Duration
	// Title is the page's title. Default "firetower dashboard".
	Title string
}

// Dashboard is the dashboard's http.Handler.
type Dashboard struct {
	t      *firetower.Tower
	cfg    Config
	index  []byte
	assets map[string]asset

	closeOnce sync.Once
	closed    chan struct{}

	srvMu   sync.Mutex
	servers map[*http.Server]chan struct{} // closed when that server shuts down
}

type asset struct {
	body  []byte
	ctype string
	etag  string
}

// New returns the dashboard of t.
func New(t *firetower.Tower, cfg Config) *Dashboard {
	cfg.Prefix = "/" + strings.Trim(cfg.Prefix, "/")
	if cfg.Prefix == "/" {
		cfg.Prefix = "/dashboard"
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.MaxTopN <= 0 {
		cfg.MaxTopN = 500
	}
	if cfg.TopN <= 0 {
		cfg.TopN = 20
	}
	cfg.TopN = min(cfg.TopN, cfg.MaxTopN)
	if cfg.CountTimeout <= 0 {
		cfg.CountTimeout = 500 * time.Millisecond
	}
	if cfg.Title == "" {
		cfg.Title = "firetower dashboard"
	}
	d := &Dashboard{t: t, cfg: cfg, assets: map[string]asset{}, closed: make(chan struct{}), servers: map[*http.Server]chan struct{}{}}
	_ = fs.WalkDir(static, "static", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || p == "static/index.html" {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" {
			ct = "application/octet-stream"
		}
		d.assets["/"+strings.TrimPrefix(p, "static/")] = newAsset(b, ct)
		return nil
	})
	tpl := template.Must(template.ParseFS(static, "static/index.html"))
	var buf bytes.Buffer
	if err := tpl.Execute(&buf, map[string]any{
		"Prefix":   cfg.Prefix,
		"Title":    cfg.Title,
		"TopN":     cfg.TopN,
		"Interval": cfg.Interval.Milliseconds(),
		"AssetTag": d.assets["/app.js"].etag[1:9] + d.assets["/style.css"].etag[1:9],
	}); err != nil {
		panic("dashboard: index.html: " + err.Error()) // embedded: a bug, caught by the tests
	}
	d.index = buf.Bytes()
	return d
}

func newAsset(b []byte, ctype string) asset {
	sum := sha256.Sum256(b)
	return asset{body: b, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
}

// Close ends every open event stream and refuses new ones (503). Pages
// still load.
//
// A stream also ends when the http.Server serving it shuts down: the
// dashboard registers itself with RegisterOnShutdown of every server it is
// served by, so an open page does not hold Server.Shutdown. Close is for
// the other cases (httptest.Server.Close, for one, waits for the streams).
func (d *Dashboard) Close() {
	d.closeOnce.Do(func() { close(d.closed) })
}

// serverDone returns a channel closed when the http.Server that serves r
// shuts down (nil when r did not come from an http.Server).
func (d *Dashboard) serverDone(r *http.Request) <-chan struct{} {
	srv, _ := r.Context().Value(http.ServerContextKey).(*http.Server)
	if srv == nil {
		return nil
	}
	d.srvMu.Lock()
	defer d.srvMu.Unlock()
	ch, ok := d.servers[srv]
	if !ok {
		ch = make(chan struct{})
		d.servers[srv] = ch // kept once closed: a late request ends at once
		var once sync.Once  // Shutdown may be called more than once
		srv.RegisterOnShutdown(func() { once.Do(func() { close(ch) }) })
	}
	return ch
}

// ServeHTTP implements http.Handler.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, d.cfg.Prefix)
	if !ok || (rest != "" && rest[0] != '/') {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	switch rest {
	case "", "/", "/index.html":
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		h.Set("Cache-Control", "no-cache")
		h.Set("Content-Type", "text/html; charset=utf-8")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(d.index))
	case "/events":
		d.events(w, r)
	case "/snapshot.json":
		q, top := d.params(r)
		s := d.snapshot(r.Context(), &sample{at: time.Now(), stats: d.t.Stats()}, nil, q, top)
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s)
	default:
		a, ok := d.assets[rest]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h.Set("Content-Type", a.ctype)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
	}
}

// params reads the topic filter (?q=) and the number of topics (?top=).
func (d *Dashboard) params(r *http.Request) (string, int) {
	q := r.URL.Query()
	top := d.cfg.TopN
	if n, err := strconv.Atoi(q.Get("top")); err == nil && n > 0 {
		top = min(n, d.cfg.MaxTopN)
	}
	filter := strings.TrimSpace(q.Get("q"))
	if len(filter) > 256 {
		filter = filter[:256]
	}
	return filter, top
}

// events streams snapshots until the request's context ends, its server
// shuts down or Close.
func (d *Dashboard) events(w http.ResponseWriter, r *http.Request) {
	select {
	case <-d.closed:
		http.Error(w, "dashboard closed", http.StatusServiceUnavailable)
		return
	default:
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	ctx := r.Context()
	srvDone := d.serverDone(r)
	q, top := d.params(r)
	ticker := time.NewTicker(d.cfg.Interval)
	defer ticker.Stop()

	var buf bytes.Buffer
	fmt.Fprintf(&buf, "retry: %d\n\n", max(1000, 2*d.cfg.Interval.Milliseconds()))
	var prev *sample
	for seq := uint64(1); ; seq++ {
		cur := &sample{at: time.Now(), stats: d.t.Stats()}
		s := d.snapshot(ctx, cur, prev, q, top)
		s.Seq = seq
		prev = cur
		b, err := json.Marshal(s)
		if err != nil {
			return
		}
		buf.WriteString("event: snapshot\nid: ")
		buf.WriteString(strconv.FormatUint(seq, 10))
		buf.WriteString("\ndata: ")
		buf.Write(b)
		buf.WriteString("\n\n")
		_ = rc.SetWriteDeadline(time.Now().Add(10*time.Second + d.cfg.Interval))
		if _, err := w.Write(buf.Bytes()); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		buf.Reset()
		select {
		case <-ctx.Done():
			return
		case <-d.closed:
			return
		case <-srvDone:
			return
		case <-ticker.C:
		}
	}
}

type sample struct {
	at    time.Time
	stats firetower.Stats
}

// Snapshot is one message of the event stream.
type Snapshot struct {
	Seq    uint64    `json:"seq"` // 1, 2, ... on one stream; 0 from snapshot.json
	Time   time.Time `json:"time"`
	NodeID uint16    `json:"node_id"`
	// Interval is the time in seconds since the previous snapshot of the
	// stream; 0 on the first, whose Deltas and Rates are then all zero.
	Interval float64         `json:"interval"`
	Stats    firetower.Stats `json:"stats"`
	Deltas   Counters        `json:"deltas"`
	Rates    Rates           `json:"rates"`
	// Drops is every dropped message so far, by reason (the reasons of
	// the Prometheus metric firetower_dropped_messages_total).
	Drops map[string]uint64 `json:"drops"`
	// Topics are this node's topics matching Query with the most local
	// subscribers, at most Top of them; TopicsMatched is how many match.
	Topics        []Topic `json:"topics"`
	TopicsMatched int     `json:"topics_matched"`
	Query         string  `json:"query"`
	Top           int     `json:"top"`
	// Latency is the publish->write latency (the age of the oldest frame
	// of each write, from the Tower's histogram; percentiles are bucket
	// upper bounds, powers of two); nil before the first write.
	Latency *Latency `json:"latency"`
}

// Latency holds latency percentiles in milliseconds.
type Latency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Topic is one row of the topics table.
type Topic struct {
	Topic string `json:"topic"`
	Local int64  `json:"local"` // subscribers on this node
	Count int64  `json:"count"` // subscribers in the cluster; -1 when it could not be had
}

// Counters are the increments of the Tower's counters between two
// snapshots.
type Counters struct {
	MessagesIn  uint64 `json:"messages_in"`
	Publishes   uint64 `json:"publishes"`
	Deliveries  uint64 `json:"deliveries"`
	Errors      uint64 `json:"errors"`
	ReadDropped uint64 `json:"read_dropped"`
	SlowDropped uint64 `json:"slow_dropped"`
	SlowClosed  uint64 `json:"slow_closed"`
	FloodClosed uint64 `json:"flood_closed"`
	Remote      uint64 `json:"remote_deliveries"`
	Upgrades    uint64 `json:"upgrades"`
	Writes      uint64 `json:"writes"`
	BytesOut    uint64 `json:"bytes_out"`
}

// Rates are Counters per second.
type Rates struct {
	MessagesIn  float64 `json:"messages_in"`
	Publishes   float64 `json:"publishes"`
	Deliveries  float64 `json:"deliveries"`
	Errors      float64 `json:"errors"`
	ReadDropped float64 `json:"read_dropped"`
	SlowDropped float64 `json:"slow_dropped"`
	SlowClosed  float64 `json:"slow_closed"`
	FloodClosed float64 `json:"flood_closed"`
	Remote      float64 `json:"remote_deliveries"`
	Upgrades    float64 `json:"upgrades"`
	Writes      float64 `json:"writes"`
	BytesOut    float64 `json:"bytes_out"`
}

func counters(s *firetower.Stats) Counters {
	return Counters{
		MessagesIn: s.MessagesIn, Publishes: s.Publishes, Deliveries: s.Deliveries,
		Errors: s.Errors, ReadDropped: s.ReadDropped, SlowDropped: s.SlowDropped,
		SlowClosed: s.SlowClosed, FloodClosed: s.FloodClosed, Remote: s.RemoteDeliveries,
		Upgrades: s.Transport.Upgraded, Writes: s.Transport.Writes, BytesOut: s.Transport.BytesOut,
	}
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

func (c Counters) minus(p Counters) Counters {
	return Counters{
		MessagesIn: sub(c.MessagesIn, p.MessagesIn), Publishes: sub(c.Publishes, p.Publishes),
		Deliveries: sub(c.Deliveries, p.Deliveries), Errors: sub(c.Errors, p.Errors),
		ReadDropped: sub(c.ReadDropped, p.ReadDropped), SlowDropped: sub(c.SlowDropped, p.SlowDropped),
		SlowClosed: sub(c.SlowClosed, p.SlowClosed), FloodClosed: sub(c.FloodClosed, p.FloodClosed),
		Remote: sub(c.Remote, p.Remote), Upgrades: sub(c.Upgrades, p.Upgrades),
		Writes: sub(c.Writes, p.Writes), BytesOut: sub(c.BytesOut, p.BytesOut),
	}
}

func (c Counters) per(sec float64) Rates {
	f := func(v uint64) float64 { return float64(v) / sec }
	return Rates{
		MessagesIn: f(c.MessagesIn), Publishes: f(c.Publishes), Deliveries: f(c.Deliveries),
		Errors: f(c.Errors), ReadDropped: f(c.ReadDropped), SlowDropped: f(c.SlowDropped),
		SlowClosed: f(c.SlowClosed), FloodClosed: f(c.FloodClosed), Remote: f(c.Remote),
		Upgrades: f(c.Upgrades), Writes: f(c.Writes), BytesOut: f(c.BytesOut),
	}
}

// snapshot builds a snapshot of st; with prev, the deltas and rates since.
func (d *Dashboard) snapshot(ctx context.Context, cur, prev *sample, q string, top int) *Snapshot {
	st := cur.stats
	s := &Snapshot{
		Time:   cur.at,
		NodeID: d.t.NodeID(),
		Stats:  st,
		Drops:  map[string]uint64{"read_queue_full": st.ReadDropped, "slow_consumer": st.SlowDropped},
		Query:  q,
		Top:    top,
	}
	if prev != nil {
		sec := cur.at.Sub(prev.at).Seconds()
		if sec > 0 {
			s.Interval = sec
			s.Deltas = counters(&st).minus(counters(&prev.stats))
			s.Rates = s.Deltas.per(sec)
		}
	}
	s.Topics, s.TopicsMatched = d.topics(ctx, q, top)
	s.Latency = latency(st.Transport.WriteLatency)
	return s
}

// latency turns the write-latency histogram into percentiles (bucket upper
// bounds), or nil before any write.
func latency(h transport.LatencyHistogram) *Latency {
	ms := func(q float64) float64 { return float64(h.Quantile(q).Microseconds()) / 1000 }
	if h.Quantile(1) == 0 {
		return nil
	}
	return &Latency{P50: ms(0.5), P90: ms(0.9), P99: ms(0.99), Max: ms(1)}
}

// topics returns the top local topics matching q (case-insensitive
// substring), most subscribers first, with their cluster-wide counts.
func (d *Dashboard) topics(ctx context.Context, q string, top int) ([]Topic, int) {
	lq := strings.ToLower(q)
	rows := []Topic{}
	for name, n := range d.t.Topics() {
		if lq != "" && !strings.Contains(strings.ToLower(name), lq) {
			continue
		}
		rows = append(rows, Topic{Topic: name, Local: n})
	}
	matched := len(rows)
	slices.SortFunc(rows, func(a, b Topic) int {
		if a.Local != b.Local {
			if a.Local > b.Local {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Topic, b.Topic)
	})
	rows = rows[:min(top, len(rows))]
	cctx, cancel := context.WithTimeout(ctx, d.cfg.CountTimeout)
	defer cancel()
	for i := range rows {
		n, err := d.t.ConnectNum(cctx, rows[i].Topic)
		if err != nil {
			n = -1
		}
		rows[i].Count = n
	}
	return rows, matched
}
