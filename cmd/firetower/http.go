package main

import (
	"embed"
	"encoding/json"
	"html"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/dashboard"
	"github.com/firetower-go/firetower/httpapi"
	"github.com/firetower-go/firetower/manager"
	"github.com/firetower-go/firetower/metrics"
	"github.com/firetower-go/firetower/webclient"
)

//go:embed web/*.html web/*.js web/*.css
var webFiles embed.FS

// httpConfig is what a command's HTTP handlers trust: the API key (none
// on loopback), the hosts they answer for without one, the browser
// origins besides the same host, and where failed keys are logged.
type httpConfig struct {
	apiKey         string
	allowedHosts   []string
	allowedOrigins []string
	log            *slog.Logger
	sessionTTL     time.Duration    // default 12h
	now            func() time.Time // default time.Now (tests)
	// shared is the Guard of every server of the command (HTTP and
	// gRPC), so that a client's wrong keys count once; nil: one is made.
	shared *httpapi.Guard
}

func (hc httpConfig) guard() *httpapi.Guard {
	if hc.shared != nil {
		return hc.shared
	}
	return httpapi.NewGuard(httpapi.GuardConfig{
		APIKey: hc.apiKey, AllowedHosts: hc.allowedHosts, AllowedOrigins: hc.allowedOrigins,
		Logger: hc.log, Now: hc.now,
	})
}

// protect applies g's Host and cross-site checks to everything but
// /healthz, which tells nothing and must answer whatever name a probe
// uses.
func protect(g *httpapi.Guard, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || g.Check(w, r) {
			h.ServeHTTP(w, r)
		}
	})
}

func newHTTPHandler(t *firetower.Tower, hc httpConfig) http.Handler {
	g := hc.guard()
	sess := newSessions(hc.apiKey, hc.sessionTTL, hc.now)
	mux := http.NewServeMux()
	web, _ := fs.Sub(webFiles, "web")
	files := http.FileServerFS(web)
	// "/" without a method: a "GET /" pattern would conflict with the
	// API's "/api/v1/" subtree, which takes every method.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			httpapi.Error(w, http.StatusMethodNotAllowed, "method_not_allowed", "the web files are read-only")
			return
		}
		files.ServeHTTP(w, r)
	})
	mux.Handle("GET /firetower.js", webclient.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := t.Health(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, err.Error()+"\n")
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /config.json", func(w http.ResponseWriter, _ *http.Request) {
		_, port, _ := net.SplitHostPort(t.Addr())
		p, _ := strconv.Atoi(port)
		httpapi.JSON(w, http.StatusOK, map[string]any{"ws_port": p, "ws_path": "/ws"})
	})
	mux.Handle("/api/v1/", httpapi.New(t, httpapi.Config{Guard: g}))
	dcfg := dashboard.Config{Guard: g}
	if t.Addr() == "" {
		// No websocket listener of its own: the page's websocket is on
		// the port it was loaded from (--addr, TLS), as the request says
		// (its Host passed the guard).
		dcfg.WebsocketURL = func(r *http.Request) string {
			u := url.URL{Scheme: "ws", Host: r.Host, Path: t.Path()}
			if r.TLS != nil {
				u.Scheme = "wss"
			}
			return u.String()
		}
	}
	if g.HasKey() {
		dcfg.SignOut = "logout"
	}
	dash := dashboardLogin(g, sess, dashboard.New(t, dcfg))
	mux.Handle("GET /dashboard", dash)
	mux.Handle("GET /dashboard/", dash)
	mux.HandleFunc("POST /dashboard/login", dashboardSignIn(g, sess))
	mux.HandleFunc("POST /dashboard/logout", dashboardSignOut(sess))
	mux.Handle("GET /metrics", requireKey(g, sess, metrics.Handler(metrics.NewRegistry(t))))
	return protect(g, mux)
}

// managerHTTP serves a manager node's health, cluster view and push API:
// GET /healthz, GET /api/v1/stats, GET /api/v1/nodes, GET /api/v1/topics,
// GET /api/v1/topics/<topic>, POST /api/v1/publish {"topic":..,"data":..}.
func managerHTTP(srv *manager.Server, hc httpConfig) http.Handler {
	g := hc.guard()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	api := http.NewServeMux()
	api.HandleFunc("GET /api/v1/stats", func(w http.ResponseWriter, _ *http.Request) {
		httpapi.JSON(w, http.StatusOK, srv.Stats())
	})
	api.HandleFunc("GET /api/v1/nodes", func(w http.ResponseWriter, _ *http.Request) {
		httpapi.JSON(w, http.StatusOK, map[string]any{"nodes": srv.Nodes()})
	})
	api.HandleFunc("GET /api/v1/topics", func(w http.ResponseWriter, _ *http.Request) {
		type row struct {
			Topic string `json:"topic"`
			Count int64  `json:"count"`
		}
		all := srv.Topics()
		rows := make([]row, 0, len(all))
		for t, n := range all {
			rows = append(rows, row{t, n})
		}
		sort.Slice(rows, func(i, j int) bool {
			if rows[i].Count != rows[j].Count {
				return rows[i].Count > rows[j].Count
			}
			return rows[i].Topic < rows[j].Topic
		})
		httpapi.JSON(w, http.StatusOK, map[string]any{"topics": rows})
	})
	api.HandleFunc("GET /api/v1/topics/{topic...}", func(w http.ResponseWriter, r *http.Request) {
		topic := r.PathValue("topic")
		if err := firetower.ValidateTopic(topic); err != nil {
			httpapi.Error(w, http.StatusBadRequest, firetower.CodeInvalidTopic, err.Error())
			return
		}
		httpapi.JSON(w, http.StatusOK, map[string]any{"topic": topic, "count": srv.Count(topic)})
	})
	api.HandleFunc("POST /api/v1/publish", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Topic string          `json:"topic"`
			Data  json.RawMessage `json:"data"`
		}
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
		if err := dec.Decode(&body); err != nil {
			httpapi.Error(w, http.StatusBadRequest, firetower.CodeBadRequest, "invalid JSON body: "+err.Error())
			return
		}
		if err := firetower.ValidateTopic(body.Topic); err != nil {
			httpapi.Error(w, http.StatusBadRequest, firetower.CodeInvalidTopic, err.Error())
			return
		}
		if len(body.Data) == 0 {
			body.Data = json.RawMessage("null")
		}
		n, err := srv.Publish(body.Topic, body.Data)
		if err != nil { // a system topic: only the nodes may publish there
			httpapi.Fail(w, err)
			return
		}
		httpapi.JSON(w, http.StatusOK, map[string]any{"ok": true, "topic": body.Topic, "gateways": n})
	})
	mux.Handle("/api/v1/", g.RequireKey(api))
	return protect(g, mux)
}

// requireKey guards h with the API key when one is set: the request gives
// it in X-API-Key or as "Authorization: Bearer KEY", or carries a live
// dashboard session.
func requireKey(g *httpapi.Guard, sess *sessions, h http.Handler) http.Handler {
	if !g.HasKey() {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ok, wait := keyGiven(g, sess, r); !ok {
			g.Refuse(w, wait)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// keyGiven checks the key in a header (counted toward the client's
// limit when wrong), or else the session cookie. retryAfter > 0: the
// client is limited.
func keyGiven(g *httpapi.Guard, sess *sessions, r *http.Request) (ok bool, retryAfter time.Duration) {
	if got := httpapi.PresentedKey(r); got != "" {
		return g.Verify(r, got)
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		return sess.valid(c.Value), 0
	}
	return false, 0
}

// dashboardLogin guards the dashboard with the API key when one is set. A
// browser signs in with the form the page shows (POST /dashboard/login),
// which sets an HttpOnly session cookie lasting 12 hours, and signs out
// with POST /dashboard/logout; API clients may send the key in a header
// instead.
func dashboardLogin(g *httpapi.Guard, sess *sessions, h http.Handler) http.Handler {
	if !g.HasKey() {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok, wait := keyGiven(g, sess, r)
		if ok {
			h.ServeHTTP(w, r)
			return
		}
		switch r.URL.Path {
		case "/dashboard", "/dashboard/", "/dashboard/index.html":
			if wait > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
				loginPage(w, http.StatusTooManyRequests, "too many wrong keys from this address: try again later")
				return
			}
			loginPage(w, http.StatusUnauthorized, "")
		default:
			if wait > 0 {
				g.Refuse(w, wait)
				return
			}
			httpapi.Error(w, http.StatusUnauthorized, "unauthorized", "sign in at /dashboard first")
		}
	})
}

// dashboardSignIn takes the login form's key and sets the session cookie.
// Wrong keys count toward the client's limit, as on the API.
func dashboardSignIn(g *httpapi.Guard, sess *sessions) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !g.HasKey() {
			http.Redirect(w, r, "/dashboard/", http.StatusSeeOther)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 4096)
		got := r.PostFormValue("key")
		ok, wait := false, time.Duration(0)
		if got != "" {
			ok, wait = g.Verify(r, got)
		}
		switch {
		case wait > 0:
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			loginPage(w, http.StatusTooManyRequests, "too many wrong keys from this address: try again later")
			return
		case !ok:
			loginPage(w, http.StatusUnauthorized, "wrong key")
			return
		}
		value, expires := sess.issue()
		http.SetCookie(w, &http.Cookie{ //nolint:gosec // G124: HttpOnly and SameSite=Strict; Secure whenever served over TLS (plain HTTP is allowed, e.g. on localhost)
			Name: sessionCookie, Value: value, Path: "/dashboard", Expires: expires, MaxAge: int(sess.ttl.Seconds()),
			HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
		})
		http.Redirect(w, r, "/dashboard/", http.StatusSeeOther)
	}
}

// dashboardSignOut ends the session the request carries, for good (the
// cookie stops working even where a copy of it was kept), and sends the
// browser back to the sign-in form.
func dashboardSignOut(sess *sessions) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if c, err := r.Cookie(sessionCookie); err == nil {
			sess.revoke(c.Value)
		}
		http.SetCookie(w, &http.Cookie{ //nolint:gosec // G124: HttpOnly and SameSite=Strict; Secure whenever served over TLS (plain HTTP is allowed, e.g. on localhost)
			Name: sessionCookie, Value: "", Path: "/dashboard", MaxAge: -1,
			HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
		})
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, "/dashboard/", http.StatusSeeOther)
	}
}

func loginPage(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; form-action 'self'; frame-ancestors 'none'")
	w.WriteHeader(status)
	note := ""
	if msg != "" {
		note = "<p role=\"alert\">" + html.EscapeString(msg) + "</p>"
	}
	_, _ = io.WriteString(w, `<!doctype html><html lang="en"><meta charset="utf-8"><title>firetower dashboard: sign in</title>
<h1>firetower dashboard</h1>`+note+`<form method="post" action="/dashboard/login"><label>API key <input type="password" name="key" id="key" autofocus required></label> <button>Sign in</button></form></html>
`)
}
