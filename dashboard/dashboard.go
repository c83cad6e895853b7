// Package dashboard is firetower's runtime dashboard: an http.Handler that
// serves a live page at /dashboard (plain HTML, JS and CSS embedded in the
// binary, no build step, nothing loaded from elsewhere).
//
//	d := dashboard.New(tower, dashboard.Config{})
//	mux.Handle("GET /dashboard", d)
//	mux.Handle("GET /dashboard/", d)
//
// The page gets its live data over a websocket, through firetower.js: it
// asks the handler for a system token (a fresh one before every connection
// attempt), connects to the Tower's websocket with it and subscribes to
// firetower.StatsTopic, on which every node of the cluster publishes its
// firetower.NodeStats once per stats interval. So the page shows every node
// of a cluster, whichever node serves it. The dashboard's own websocket is
// a connection and a subscription of the node it is connected to.
//
// Under the prefix (default /dashboard):
//
//	/                    the page (/dashboard redirects to /dashboard/)
//	/app.js, /style.css  its assets
//	/firetower.js        the browser client (package webclient)
//	/token               {"url":"ws://host:port/ws?system_token=…","token":"…","expires":"RFC 3339","node":1}
//	/topics.json?q=&top= {"topics":[{"topic":…,"count":…}],"query":…,"top":…}, cluster-wide
//
// The handler does not authenticate: mount it behind whatever guards the
// rest of the operator's HTTP surface, since a token it hands out lets its
// holder watch the cluster's stats. It does check the Host header, through
// an httpapi.Guard (Config.Guard, or one made from Config.AllowedHosts):
// unless that Guard has an API key, a request naming a host other than an
// IP address, localhost or an allowed host gets 421, so that a web page
// whose DNS name was rebound to this server (DNS rebinding) can neither
// read the page's data nor get a token naming its own host. Behind a proxy
// that checks hosts itself, set AllowedHosts to "*". It starts no
// goroutine.
package dashboard

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"html/template"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/httpapi"
	"github.com/firetower-go/firetower/webclient"
)

//go:embed static
var static embed.FS

// Config configures a Dashboard. The zero value is ready to use.
type Config struct {
	// Prefix is the path the dashboard is mounted at. Default "/dashboard".
	// The page refers to everything it loads by relative URLs, so a proxy
	// may serve it under another path.
	Prefix string
	// TopN is how many topics the page lists, and topics.json when the
	// request does not say (?top=). Default 20.
	TopN int
	// MaxTopN bounds ?top=. Default 500.
	MaxTopN int
	// TokenTTL is how long a token from /token may be used to connect.
	// Default 1 minute. It only needs to outlive the connection attempt:
	// the page fetches a new one for every attempt.
	TokenTTL time.Duration
	// WebsocketURL returns the websocket URL the page connects to, for
	// the request that asks for a token (the system token is added to
	// its query). Default: ws://HOST:PORT/PATH with HOST the host name
	// the browser used for the request, PORT the Tower's bound port and
	// PATH the Tower's path. Set it when a proxy stands in between (for
	// wss://, say).
	WebsocketURL func(r *http.Request) string
	// TopicsTimeout bounds the cluster-wide topic search of topics.json.
	// Default 3s.
	TopicsTimeout time.Duration
	// Title is the page's title. Default "firetower dashboard".
	Title string
	// AllowedHosts are the host names requests may name in their Host
	// header, besides IP addresses, "localhost" and names under
	// ".localhost" (see httpapi.GuardConfig); "*" for any. Ignored when
	// Guard is set.
	AllowedHosts []string
	// SignOut, when set, is the URL (relative to the page) the page's
	// "sign out" button POSTs to, for a server that signs browsers in;
	// the page then reloads. Default: no button.
	SignOut string
	// Guard, when set, checks every request (Host, cross-site) instead of
	// one made from AllowedHosts: share the Guard of the rest of the
	// server. A Guard with an API key does not check Host.
	Guard *httpapi.Guard
}

// Dashboard is the dashboard's http.Handler.
type Dashboard struct {
	t         *firetower.Tower
	cfg       Config
	index     asset
	assets    map[string]asset
	webclient http.Handler
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
	if cfg.MaxTopN <= 0 {
		cfg.MaxTopN = 500
	}
	if cfg.TopN <= 0 {
		cfg.TopN = 20
	}
	cfg.TopN = min(cfg.TopN, cfg.MaxTopN)
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = time.Minute
	}
	if cfg.TopicsTimeout <= 0 {
		cfg.TopicsTimeout = 3 * time.Second
	}
	if cfg.Title == "" {
		cfg.Title = "firetower dashboard"
	}
	if cfg.Guard == nil {
		cfg.Guard = httpapi.NewGuard(httpapi.GuardConfig{AllowedHosts: cfg.AllowedHosts})
	}
	d := &Dashboard{t: t, cfg: cfg, assets: map[string]asset{}, webclient: webclient.Handler()}
	err := fs.WalkDir(static, "static", func(p string, e fs.DirEntry, err error) error {
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
	if err != nil {
		panic("dashboard: embedded files: " + err.Error()) // embedded: a bug, caught by the tests
	}
	lib := newAsset(webclient.Source(), "")
	tpl := template.Must(template.ParseFS(static, "static/index.html"))
	var buf bytes.Buffer
	if err := tpl.Execute(&buf, map[string]any{
		"Title":      cfg.Title,
		"SignOut":    cfg.SignOut,
		"TopN":       cfg.TopN,
		"StatsTopic": firetower.StatsTopic,
		"LibTag":     lib.etag[1:9],
		"AssetTag":   d.assets["/app.js"].etag[1:9] + d.assets["/style.css"].etag[1:9],
	}); err != nil {
		panic("dashboard: index.html: " + err.Error())
	}
	d.index = newAsset(buf.Bytes(), "text/html; charset=utf-8")
	return d
}

func newAsset(b []byte, ctype string) asset {
	sum := sha256.Sum256(b)
	return asset{body: b, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
}

// ServeHTTP implements http.Handler.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, d.cfg.Prefix)
	if !ok || (rest != "" && rest[0] != '/') {
		http.NotFound(w, r)
		return
	}
	if !d.cfg.Guard.Check(w, r) {
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
	case "":
		// The page loads everything by relative URLs: they must resolve
		// under the prefix. Relative, so that it works behind a proxy too.
		loc := path.Base(d.cfg.Prefix) + "/"
		if r.URL.RawQuery != "" {
			loc += "?" + r.URL.RawQuery
		}
		h.Set("Location", loc)
		w.WriteHeader(http.StatusMovedPermanently)
	case "/", "/index.html":
		h.Set("Content-Security-Policy", d.csp(r))
		h.Set("Referrer-Policy", "no-referrer")
		serveAsset(w, r, d.index)
	case "/token":
		d.token(w, r)
	case "/topics.json":
		d.topics(w, r)
	case "/firetower.js":
		d.webclient.ServeHTTP(w, r)
	default:
		a, ok := d.assets[rest]
		if !ok {
			http.NotFound(w, r)
			return
		}
		serveAsset(w, r, a)
	}
}

func serveAsset(w http.ResponseWriter, r *http.Request, a asset) {
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

// csp is the page's Content-Security-Policy: nothing from elsewhere, except
// the websocket it connects to.
func (d *Dashboard) csp(r *http.Request) string {
	ws := "ws: wss:"
	if base, err := d.wsBase(r); err == nil {
		if u, err := url.Parse(base); err == nil && u.Host != "" && (u.Scheme == "ws" || u.Scheme == "wss") {
			ws = u.Scheme + "://" + u.Host
		}
	}
	return "default-src 'self'; connect-src 'self' " + ws + "; img-src 'self' data:; " +
		"object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}

// wsBase is the websocket URL the page should connect to, without a token.
func (d *Dashboard) wsBase(r *http.Request) (string, error) {
	if d.cfg.WebsocketURL != nil {
		return d.cfg.WebsocketURL(r), nil
	}
	addr := d.t.Addr()
	if addr == "" {
		return "", errors.New("the websocket server is not running")
	}
	bound, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if !validHost(host) {
		// No usable Host (HTTP/1.0, or junk): the address bound.
		host = bound
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			host = "localhost"
		}
	}
	u := url.URL{Scheme: "ws", Host: net.JoinHostPort(host, port), Path: d.t.Path()}
	return u.String(), nil
}

// validHost accepts a DNS name or an IP address (an IPv6 one without its
// brackets).
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	if strings.Contains(h, ":") {
		return net.ParseIP(h) != nil // no zone: browsers take none
	}
	for _, c := range h {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_'
		if !ok {
			return false
		}
	}
	return true
}

// TokenResponse is the answer of /token.
type TokenResponse struct {
	// URL is the websocket URL to connect to, the token in its query.
	URL     string    `json:"url"`
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
	// Node is the id of the node that issued the token, whose websocket
	// the URL reaches (unless Config.WebsocketURL leads elsewhere).
	Node uint16 `json:"node"`
}

// token hands out a system token and the URL that uses it.
func (d *Dashboard) token(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	base, err := d.wsBase(r)
	if err != nil {
		httpapi.Error(w, http.StatusServiceUnavailable, firetower.CodeUnavailable, err.Error())
		return
	}
	u, err := url.Parse(base)
	if err != nil || u.Host == "" && !strings.HasPrefix(u.Path, "/") {
		httpapi.Error(w, http.StatusInternalServerError, firetower.CodeInternal, "bad websocket URL "+strconv.Quote(base))
		return
	}
	expires := time.Now().Add(d.cfg.TokenTTL).Truncate(time.Second)
	tok := d.t.SystemToken(d.cfg.TokenTTL)
	q := u.Query()
	q.Set(firetower.SystemTokenParam, tok)
	u.RawQuery = q.Encode()
	httpapi.JSON(w, http.StatusOK, TokenResponse{URL: u.String(), Token: tok, Expires: expires.UTC(), Node: d.t.NodeID()})
}

// TopicsResponse is the answer of topics.json.
type TopicsResponse struct {
	Topics []firetower.TopicCount `json:"topics"`
	Query  string                 `json:"query"`
	Top    int                    `json:"top"`
}

// topics answers topics.json: the cluster's topics matching ?q=, most
// subscribers first, at most ?top= of them (see Tower.ClusterTopics).
func (d *Dashboard) topics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	q := r.URL.Query()
	top := d.cfg.TopN
	if n, err := strconv.Atoi(q.Get("top")); err == nil && n > 0 {
		top = min(n, d.cfg.MaxTopN)
	}
	query := strings.TrimSpace(q.Get("q"))
	if len(query) > 256 {
		query = query[:256]
	}
	ctx, cancel := context.WithTimeout(r.Context(), d.cfg.TopicsTimeout)
	defer cancel()
	// Each node answers with its own top matches: asking each for more
	// than the page shows makes the sums exact for more topics.
	rows, err := d.t.ClusterTopics(ctx, query, min(max(4*top, 100), 2000))
	if err != nil {
		httpapi.Fail(w, err)
		return
	}
	if rows == nil {
		rows = []firetower.TopicCount{}
	}
	rows = rows[:min(top, len(rows))]
	httpapi.JSON(w, http.StatusOK, TopicsResponse{Topics: rows, Query: query, Top: top})
}
