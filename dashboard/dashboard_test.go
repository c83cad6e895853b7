package dashboard_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/client"
	"github.com/firetower-go/firetower/dashboard"
	"github.com/firetower-go/firetower/httpapi"
	"github.com/firetower-go/firetower/webclient"
)

const dtTimeout = 15 * time.Second

// dtTower starts a Tower on a free port, stopped when the test ends.
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

// dtServe serves d over HTTP until the test ends.
func dtServe(t *testing.T, d *dashboard.Dashboard) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	return srv
}

func dtCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), dtTimeout)
	t.Cleanup(cancel)
	return ctx
}

// delivery is a message a dtClient received.
type delivery struct {
	topic string
	data  []byte
}

// dtDial connects a client (no reconnect) whose deliveries go to the
// returned channel; deliveries beyond its buffer are dropped.
func dtDial(t *testing.T, rawURL string) (*client.Client, chan delivery) {
	t.Helper()
	got := make(chan delivery, 256)
	c, err := client.Dial(dtCtx(t), rawURL, client.WithReconnect(false), client.WithHandler(func(topic string, data []byte) {
		select {
		case got <- delivery{topic, slices.Clone(data)}:
		default:
		}
	}))
	if err != nil {
		t.Fatalf("dial %s: %v", rawURL, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, got
}

// dtSubscriber is a plain client of tw subscribed to topics.
func dtSubscriber(t *testing.T, tw *firetower.Tower, topics ...string) *client.Client {
	t.Helper()
	c, _ := dtDial(t, "ws://"+tw.Addr()+tw.Path())
	if err := c.Subscribe(dtCtx(t), topics...); err != nil {
		t.Fatalf("subscribe %v: %v", topics, err)
	}
	return c
}

type response struct {
	code   int
	header http.Header
	body   string
}

func dtDo(t *testing.T, method, rawURL string, header http.Header) response {
	t.Helper()
	req, err := http.NewRequestWithContext(dtCtx(t), method, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if h := header.Get("Host"); h != "" {
		req.Host = h
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, rawURL, err)
	}
	return response{resp.StatusCode, resp.Header, string(b)}
}

func dtGet(t *testing.T, rawURL string) response { return dtDo(t, http.MethodGet, rawURL, nil) }

func dtToken(t *testing.T, rawURL string) dashboard.TokenResponse {
	t.Helper()
	r := dtGet(t, rawURL)
	if r.code != http.StatusOK || r.header.Get("Content-Type") != "application/json" || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("GET %s: %d, Content-Type %q, Cache-Control %q: %s", rawURL, r.code, r.header.Get("Content-Type"), r.header.Get("Cache-Control"), r.body)
	}
	var tok dashboard.TokenResponse
	if err := json.Unmarshal([]byte(r.body), &tok); err != nil {
		t.Fatalf("GET %s: %v in %s", rawURL, err, r.body)
	}
	return tok
}

// nextStats waits for the next NodeStats among the deliveries, until
// deadline.
func nextStats(t *testing.T, got chan delivery, deadline <-chan time.Time) firetower.NodeStats {
	t.Helper()
	select {
	case d := <-got:
		if d.topic != firetower.StatsTopic {
			t.Fatalf("a delivery on %q, want only %q", d.topic, firetower.StatsTopic)
		}
		var ns firetower.NodeStats
		if err := json.Unmarshal(d.data, &ns); err != nil {
			t.Fatalf("undecodable NodeStats %s: %v", d.data, err)
		}
		return ns
	case <-deadline:
		t.Fatalf("no NodeStats within %v", dtTimeout)
	}
	return firetower.NodeStats{}
}

// waitStats reads NodeStats until ok holds for one (which it returns).
func waitStats(t *testing.T, got chan delivery, what string, ok func(firetower.NodeStats) bool) firetower.NodeStats {
	t.Helper()
	timer := time.NewTimer(dtTimeout)
	defer timer.Stop()
	var last []firetower.NodeStats
	for {
		select {
		case <-timer.C:
			t.Fatalf("no NodeStats with %s within %v; the last ones: %+v", what, dtTimeout, last)
		default:
		}
		ns := nextStats(t, got, timer.C)
		if ok(ns) {
			return ns
		}
		if last = append(last, ns); len(last) > 3 {
			last = last[1:]
		}
	}
}

// TestTokenOpensStats checks that a token from /token makes a websocket
// that may subscribe to the stats topic and receives the node's stats,
// and nothing else.
func TestTokenOpensStats(t *testing.T) {
	tw := dtTower(t, firetower.WithNodeID(7), firetower.WithStatsInterval(20*time.Millisecond))
	srv := dtServe(t, dashboard.New(tw, dashboard.Config{}))

	// Without a token the stats topic is refused.
	plain, _ := dtDial(t, "ws://"+tw.Addr()+tw.Path())
	var fe *client.Error
	if err := plain.Subscribe(dtCtx(t), firetower.StatsTopic); !errors.As(err, &fe) || fe.Code != firetower.CodeForbidden {
		t.Fatalf("subscribing to the stats without a token: %v, want forbidden", err)
	}

	before := time.Now()
	tok := dtToken(t, srv.URL+"/dashboard/token")
	after := time.Now()
	want := "ws://127.0.0.1:" + tw.Addr()[strings.LastIndexByte(tw.Addr(), ':')+1:] + "/ws?" + firetower.SystemTokenParam + "=" + url.QueryEscape(tok.Token)
	if tok.URL != want || tok.Token == "" || tok.Node != 7 {
		t.Fatalf("token answer %+v, want url %s and node 7", tok, want)
	}
	ttl := time.Minute // the default
	if tok.Expires.Before(before.Add(ttl-time.Second)) || tok.Expires.After(after.Add(ttl)) {
		t.Fatalf("expires %v, want the request's time plus a minute (requested between %v and %v)", tok.Expires, before, after)
	}

	c, got := dtDial(t, tok.URL)
	if err := c.Subscribe(dtCtx(t), firetower.StatsTopic); err != nil {
		t.Fatalf("subscribing to the stats with a token: %v", err)
	}
	// A system connection: no other topic, no publish.
	if err := c.Subscribe(dtCtx(t), "room/a"); !errors.As(err, &fe) || fe.Code != firetower.CodeForbidden {
		t.Fatalf("a system connection subscribing to another topic: %v, want forbidden", err)
	}
	if err := c.Publish(dtCtx(t), "room/a", []byte(`1`)); !errors.As(err, &fe) || fe.Code != firetower.CodeForbidden {
		t.Fatalf("a system connection publishing: %v, want forbidden", err)
	}

	// The node's stats arrive, once per interval, and see the workload:
	// 3 connections (the one without a token, the dashboard's own and the
	// subscriber), 3 subscriptions, 2 topics (the stats topic is not
	// listed).
	dtSubscriber(t, tw, "room/a", "room/b")
	ns := waitStats(t, got, "the subscriber", func(ns firetower.NodeStats) bool {
		if ns.Node != 7 || ns.Interval != 0.02 || ns.Drops == nil {
			t.Fatalf("NodeStats %+v: want node 7, interval 0.02, drops by reason", ns)
		}
		return ns.Stats.Connections == 3 && ns.Stats.Subscriptions == 3
	})
	if want := []firetower.TopicCount{{Topic: "room/a", Count: 1}, {Topic: "room/b", Count: 1}}; !slices.Equal(ns.Topics, want) || ns.Stats.Topics != 3 {
		t.Fatalf("topics %v (%d), want %v (and 3 in Stats.Topics, the stats topic included)", ns.Topics, ns.Stats.Topics, want)
	}

	// Every token is new, and each one works.
	tok2 := dtToken(t, srv.URL+"/dashboard/token")
	c2, got2 := dtDial(t, tok2.URL)
	if err := c2.Subscribe(dtCtx(t), firetower.StatsTopic); err != nil {
		t.Fatalf("subscribing with a second token: %v", err)
	}
	waitStats(t, got2, "node 7", func(ns firetower.NodeStats) bool { return ns.Node == 7 })
}

// TestTokenURL checks the websocket URL the token endpoint builds.
func TestTokenURL(t *testing.T) {
	tw := dtTower(t, firetower.WithPath("/live/ws"))
	port := tw.Addr()[strings.LastIndexByte(tw.Addr(), ':')+1:]
	// Any Host: this test is about the URL each one gets
	// (TestForeignHostGetsNoToken: the default refuses most of them).
	d := dashboard.New(tw, dashboard.Config{AllowedHosts: []string{"*"}})
	for _, c := range []struct{ host, want string }{
		{"dash.example.com:8080", "ws://dash.example.com:" + port + "/live/ws"},
		{"dash.example.com", "ws://dash.example.com:" + port + "/live/ws"},
		{"[::1]:8080", "ws://[::1]:" + port + "/live/ws"},
		{"[fe80::1%25eth0]:80", "ws://127.0.0.1:" + port + "/live/ws"}, // a zone: none
		{"10.1.2.3:9998", "ws://10.1.2.3:" + port + "/live/ws"},
		{"", "ws://127.0.0.1:" + port + "/live/ws"},              // no Host: the address bound
		{"evil/x?y#z:80", "ws://127.0.0.1:" + port + "/live/ws"}, // junk
	} {
		req := httptest.NewRequest(http.MethodGet, "/dashboard/token", nil)
		req.Host = c.host
		rec := httptest.NewRecorder()
		d.ServeHTTP(rec, req)
		var tok dashboard.TokenResponse
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &tok) != nil {
			t.Fatalf("Host %q: %d %s", c.host, rec.Code, rec.Body)
		}
		u, err := url.Parse(tok.URL)
		if err != nil || u.Query().Get(firetower.SystemTokenParam) != tok.Token {
			t.Fatalf("Host %q: url %q does not carry the token %q (%v)", c.host, tok.URL, tok.Token, err)
		}
		u.RawQuery = ""
		if u.String() != c.want {
			t.Fatalf("Host %q: url %s, want %s?%s=...", c.host, tok.URL, c.want, firetower.SystemTokenParam)
		}
	}

	// Config.WebsocketURL overrides the URL; the token joins its query.
	var asked *http.Request
	d = dashboard.New(tw, dashboard.Config{AllowedHosts: []string{"*"}, WebsocketURL: func(r *http.Request) string {
		asked = r
		return "wss://proxy.example/firetower/ws?tenant=a"
	}})
	req := httptest.NewRequest(http.MethodGet, "/dashboard/token", nil)
	rec := httptest.NewRecorder()
	d.ServeHTTP(rec, req)
	var tok dashboard.TokenResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &tok); err != nil || asked != req {
		t.Fatalf("override: %v %s (asked with the request: %v)", err, rec.Body, asked == req)
	}
	u, _ := url.Parse(tok.URL)
	if u.Scheme != "wss" || u.Host != "proxy.example" || u.Path != "/firetower/ws" || u.Query().Get("tenant") != "a" || u.Query().Get(firetower.SystemTokenParam) != tok.Token {
		t.Fatalf("override: url %s", tok.URL)
	}

	// A Tower that is not running has no URL to give.
	idle, err := firetower.New(firetower.WithAddr("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	rec = httptest.NewRecorder()
	dashboard.New(idle, dashboard.Config{AllowedHosts: []string{"*"}}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/dashboard/token", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), `"code":"unavailable"`) || rec.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("token from a Tower not started: %d %s", rec.Code, rec.Body)
	}
}

// dtCluster starts two Towers joined to one LocalManager.
func dtCluster(t *testing.T, opts ...firetower.Option) (*firetower.Tower, *firetower.Tower) {
	t.Helper()
	lm := firetower.NewLocalManager()
	one := dtTower(t, append([]firetower.Option{firetower.WithManager(lm), firetower.WithNodeID(1)}, opts...)...)
	two := dtTower(t, append([]firetower.Option{firetower.WithManager(lm), firetower.WithNodeID(2)}, opts...)...)
	return one, two
}

func dtTopics(t *testing.T, rawURL string) dashboard.TopicsResponse {
	t.Helper()
	r := dtGet(t, rawURL)
	var tr dashboard.TopicsResponse
	if r.code != 200 || r.header.Get("Content-Type") != "application/json" || r.header.Get("Cache-Control") != "no-store" || json.Unmarshal([]byte(r.body), &tr) != nil {
		t.Fatalf("GET %s: %d %q %q %s", rawURL, r.code, r.header.Get("Content-Type"), r.header.Get("Cache-Control"), r.body)
	}
	if tr.Topics == nil {
		t.Fatalf("GET %s: topics is null, want a list: %s", rawURL, r.body)
	}
	return tr
}

// TestTopicsClusterWide checks that topics.json counts every node's
// subscribers.
func TestTopicsClusterWide(t *testing.T) {
	one, two := dtCluster(t)
	srv := dtServe(t, dashboard.New(one, dashboard.Config{}))
	base := srv.URL + "/dashboard/topics.json"

	if tr := dtTopics(t, base); len(tr.Topics) != 0 || tr.Top != 20 || tr.Query != "" {
		t.Fatalf("empty cluster: %+v", tr)
	}

	dtSubscriber(t, one, "room/a", "room/b")
	dtSubscriber(t, one, "room/a")
	dtSubscriber(t, two, "room/a", "other/X")
	dtSubscriber(t, two, "only/two", "room/a")

	all := []firetower.TopicCount{{Topic: "room/a", Count: 4}, {Topic: "only/two", Count: 1}, {Topic: "other/X", Count: 1}, {Topic: "room/b", Count: 1}}
	for _, c := range []struct {
		query string
		want  []firetower.TopicCount
		top   int
	}{
		{"", all, 20},
		{"?top=2", all[:2], 2},
		{"?q=ROOM", []firetower.TopicCount{{Topic: "room/a", Count: 4}, {Topic: "room/b", Count: 1}}, 20},
		{"?q=x&top=5", []firetower.TopicCount{{Topic: "other/X", Count: 1}}, 5},
		{"?q=two", []firetower.TopicCount{{Topic: "only/two", Count: 1}}, 20},
		{"?q=nothing-like-it", []firetower.TopicCount{}, 20},
		{"?top=100000", all, 500}, // bounded
		{"?top=0", all, 20},       // the default
		{"?top=-3", all, 20},
		{"?top=many", all, 20},
	} {
		tr := dtTopics(t, base+c.query)
		if !slices.Equal(tr.Topics, c.want) || tr.Top != c.top {
			t.Fatalf("topics.json%s: %v (top %d), want %v (top %d)", c.query, tr.Topics, tr.Top, c.want, c.top)
		}
	}
	if tr := dtTopics(t, base+"?q=+room+"); tr.Query != "room" || len(tr.Topics) != 2 {
		t.Fatalf("a query is trimmed: %+v", tr)
	}
	if tr := dtTopics(t, base+"?q="+strings.Repeat("a", 1000)); len(tr.Query) != 256 {
		t.Fatalf("a long query is cut to 256 bytes, got %d", len(tr.Query))
	}

	// The same from the other node, and with a smaller configured top.
	srv2 := dtServe(t, dashboard.New(two, dashboard.Config{TopN: 1, MaxTopN: 3}))
	if tr := dtTopics(t, srv2.URL+"/dashboard/topics.json"); !slices.Equal(tr.Topics, all[:1]) || tr.Top != 1 {
		t.Fatalf("node 2, TopN 1: %+v", tr)
	}
	if tr := dtTopics(t, srv2.URL+"/dashboard/topics.json?top=10"); !slices.Equal(tr.Topics, all[:3]) || tr.Top != 3 {
		t.Fatalf("node 2, MaxTopN 3: %+v", tr)
	}
}

// TestTopicsUnavailable checks the error answer of topics.json.
func TestTopicsUnavailable(t *testing.T) {
	tw := dtTower(t)
	srv := dtServe(t, dashboard.New(tw, dashboard.Config{}))
	ctx, cancel := context.WithTimeout(context.Background(), dtTimeout)
	defer cancel()
	if err := tw.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	r := dtGet(t, srv.URL+"/dashboard/topics.json?q=a")
	var e struct{ Code, Message string }
	if r.code != http.StatusServiceUnavailable || r.header.Get("Content-Type") != "application/json" || json.Unmarshal([]byte(r.body), &e) != nil || e.Code != "unavailable" || e.Message == "" {
		t.Fatalf("topics.json of a Tower shut down: %d %q %s", r.code, r.header.Get("Content-Type"), r.body)
	}
}

// TestClusterStatsThroughOneNode checks the dashboard's cluster view: one
// websocket on node 1, with a token from node 1's dashboard, receives the
// NodeStats of both nodes.
func TestClusterStatsThroughOneNode(t *testing.T) {
	one, two := dtCluster(t, firetower.WithStatsInterval(20*time.Millisecond))
	srv := dtServe(t, dashboard.New(one, dashboard.Config{}))
	dtSubscriber(t, two, "on/two")

	tok := dtToken(t, srv.URL+"/dashboard/token")
	if tok.Node != 1 || !strings.Contains(tok.URL, one.Addr()[strings.LastIndexByte(one.Addr(), ':'):]+"/ws?") {
		t.Fatalf("token %+v: want node 1's websocket (%s)", tok, one.Addr())
	}
	c, got := dtDial(t, tok.URL)
	if err := c.Subscribe(dtCtx(t), firetower.StatsTopic); err != nil {
		t.Fatal(err)
	}
	// Node 1 has the dashboard's socket, node 2 the subscriber.
	seen := map[uint16]firetower.NodeStats{}
	waitStats(t, got, "both nodes, with node 2's subscriber", func(ns firetower.NodeStats) bool {
		if ns.Node != 1 && ns.Node != 2 {
			t.Fatalf("NodeStats of node %d in a cluster of nodes 1 and 2", ns.Node)
		}
		seen[ns.Node] = ns
		return len(seen) == 2 && seen[1].Stats.Connections == 1 && seen[2].Stats.Connections == 1 &&
			slices.Equal(seen[2].Topics, []firetower.TopicCount{{Topic: "on/two", Count: 1}})
	})
	if s := seen[1].Stats; s.Subscriptions != 1 || len(seen[1].Topics) != 0 {
		t.Fatalf("node 1: %+v, topics %v: want the dashboard's subscription to the stats and no topic listed", s, seen[1].Topics)
	}
}

// TestPages checks the page and its assets under the default and a custom
// prefix, and what the handler refuses.
func TestPages(t *testing.T) {
	tw := dtTower(t)
	port := tw.Addr()[strings.LastIndexByte(tw.Addr(), ':')+1:]
	lib := webclient.Source()
	for _, prefix := range []string{"", "/ops/dash/"} {
		srv := dtServe(t, dashboard.New(tw, dashboard.Config{Prefix: prefix, Title: "ops <board>", AllowedHosts: []string{"dash.example"}}))
		base := "/dashboard"
		if prefix != "" {
			base = "/ops/dash"
		}
		last := base[strings.LastIndexByte(base, '/')+1:]

		// The prefix itself redirects, relatively, to the page.
		if r := dtGet(t, srv.URL+base+"?q=room"); r.code != http.StatusMovedPermanently || r.header.Get("Location") != last+"/?q=room" {
			t.Fatalf("GET %s: %d, Location %q, want 301 to %s/?q=room", base, r.code, r.header.Get("Location"), last)
		}
		for _, p := range []string{base + "/", base + "/index.html"} {
			r := dtDo(t, http.MethodGet, srv.URL+p, http.Header{"Host": {"dash.example:8080"}})
			if r.code != 200 || r.header.Get("Content-Type") != "text/html; charset=utf-8" || r.header.Get("X-Content-Type-Options") != "nosniff" {
				t.Fatalf("GET %s: %d %q", p, r.code, r.header.Get("Content-Type"))
			}
			csp := r.header.Get("Content-Security-Policy")
			for _, want := range []string{"default-src 'self'", "connect-src 'self' ws://dash.example:" + port + ";", "frame-ancestors 'none'"} {
				if !strings.Contains(csp, want) {
					t.Fatalf("GET %s: CSP %q lacks %q", p, csp, want)
				}
			}
			iLib, iApp := strings.Index(r.body, `<script src="firetower.js?v=`), strings.Index(r.body, `<script src="app.js?v=`)
			if iLib < 0 || iApp < iLib {
				t.Fatalf("GET %s: the page does not load firetower.js, then app.js, by relative URLs", p)
			}
			for _, want := range []string{
				`<title>ops &lt;board&gt;</title>`, `href="style.css?v=`, `data-stats-topic="$firetower/stats"`, `data-top="20"`,
				`id="state"`, `id="connections"`, `id="nodes"`, `id="topics"`, `id="search"`, `id="rate-in"`, `id="rate-deliveries"`,
				`id="drops"`, `id="latency"`, `id="chart-in"`, `id="chart-deliveries"`, `id="outbound"`, `id="slow-closed"`,
				`id="history-bytes"`,
			} {
				if !strings.Contains(r.body, want) {
					t.Fatalf("GET %s: no %q in the page", p, want)
				}
			}
			if strings.Contains(r.body, "http://") || strings.Contains(r.body, "https://") || strings.Contains(r.body, `src="/`) || strings.Contains(r.body, `href="/`) {
				t.Fatalf("GET %s: the page refers to another site or to an absolute path", p)
			}
		}
		for path, want := range map[string]struct{ ctype, has string }{
			"/app.js":       {"text/javascript", "new Firetower("},
			"/style.css":    {"text/css", ".tiles"},
			"/firetower.js": {"text/javascript", string(lib[:200])},
		} {
			r := dtGet(t, srv.URL+base+path)
			if r.code != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), want.ctype) || !strings.Contains(r.body, want.has) ||
				r.header.Get("X-Content-Type-Options") != "nosniff" || r.header.Get("ETag") == "" {
				t.Fatalf("GET %s%s: %d %q etag %q (%d bytes)", base, path, r.code, r.header.Get("Content-Type"), r.header.Get("ETag"), len(r.body))
			}
			if r2 := dtDo(t, http.MethodGet, srv.URL+base+path, http.Header{"If-None-Match": {r.header.Get("ETag")}}); r2.code != http.StatusNotModified {
				t.Fatalf("GET %s%s with its ETag: %d, want 304", base, path, r2.code)
			}
			if r2 := dtDo(t, http.MethodHead, srv.URL+base+path, nil); r2.code != 200 || r2.body != "" {
				t.Fatalf("HEAD %s%s: %d with %d bytes", base, path, r2.code, len(r2.body))
			}
		}
		if strings.Contains(dtGet(t, srv.URL+base+"/app.js").body, "new WebSocket") {
			t.Fatal("app.js opens a WebSocket of its own; the socket belongs to firetower.js")
		}
		for _, p := range []string{base + "/nope", base + "x", "/elsewhere", base + "/static/app.js", base + "/events", base + "/snapshot.json", base + "/token/"} {
			if r := dtGet(t, srv.URL+p); r.code != 404 {
				t.Fatalf("GET %s: %d, want 404", p, r.code)
			}
		}
		for _, p := range []string{base + "/", base + "/token", base + "/topics.json", base + "/app.js", base + "/firetower.js"} {
			for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
				if r := dtDo(t, m, srv.URL+p, nil); r.code != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, HEAD" {
					t.Fatalf("%s %s: %d, Allow %q, want 405 with GET, HEAD", m, p, r.code, r.header.Get("Allow"))
				}
			}
		}
		if r := dtGet(t, srv.URL+base+"/topics.json"); r.code != 200 || r.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("GET %s/topics.json: %d", base, r.code)
		}
	}
}

// TestForeignHostGetsNoToken: by default the dashboard answers only
// requests naming an IP address, localhost or an allowed host, so that a
// page whose DNS name was rebound to the server gets no token (one that
// would name its own host), no topics and no page.
func TestForeignHostGetsNoToken(t *testing.T) {
	tw := dtTower(t)
	port := tw.Addr()[strings.LastIndexByte(tw.Addr(), ':')+1:]
	for _, c := range []struct {
		cfg  dashboard.Config
		host string
		ok   bool
	}{
		{dashboard.Config{}, "evil.example:9998", false},
		{dashboard.Config{}, "evil.example", false},
		{dashboard.Config{AllowedHosts: []string{"dash.example"}}, "evil.example:9998", false},
		{dashboard.Config{Guard: httpapi.NewGuard(httpapi.GuardConfig{AllowedHosts: []string{"dash.example"}})}, "evil.example", false},
		{dashboard.Config{}, "localhost:9998", true},
		{dashboard.Config{}, "127.0.0.1:9998", true},
		{dashboard.Config{AllowedHosts: []string{"dash.example"}}, "dash.example:9998", true},
		{dashboard.Config{Guard: httpapi.NewGuard(httpapi.GuardConfig{AllowedHosts: []string{"dash.example"}})}, "dash.example", true},
		// With an API key the key guards (the binary asks for it in front).
		{dashboard.Config{Guard: httpapi.NewGuard(httpapi.GuardConfig{APIKey: "k"})}, "evil.example", true},
	} {
		d := dashboard.New(tw, c.cfg)
		for _, p := range []string{"/dashboard/token", "/dashboard/topics.json", "/dashboard/", "/dashboard/app.js"} {
			req := httptest.NewRequest(http.MethodGet, p, nil)
			req.Host = c.host
			rec := httptest.NewRecorder()
			d.ServeHTTP(rec, req)
			if !c.ok {
				if rec.Code != http.StatusMisdirectedRequest || strings.Contains(rec.Body.String(), "ws://") || strings.Contains(rec.Body.String(), "token\"") {
					t.Errorf("Host %q %s (%+v): %d %s, want 421 and nothing else", c.host, p, c.cfg.AllowedHosts, rec.Code, rec.Body)
				}
				continue
			}
			if rec.Code != http.StatusOK {
				t.Errorf("Host %q %s: %d %s, want 200", c.host, p, rec.Code, rec.Body)
				continue
			}
			if p == "/dashboard/token" {
				var tok dashboard.TokenResponse
				if err := json.Unmarshal(rec.Body.Bytes(), &tok); err != nil {
					t.Fatal(err)
				}
				if want := "ws://" + hostOnlyForTest(c.host) + ":" + port + "/ws?"; !strings.HasPrefix(tok.URL, want) {
					t.Errorf("Host %q: token URL %s, want %s...", c.host, tok.URL, want)
				}
			}
		}
	}
}

func hostOnlyForTest(hostport string) string {
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 {
		return hostport[:i]
	}
	return hostport
}
