package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"html"
	"io"
	"io/fs"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/dashboard"
	"github.com/firetower-go/firetower/httpapi"
	"github.com/firetower-go/firetower/manager"
	"github.com/firetower-go/firetower/metrics"
	"github.com/firetower-go/firetower/webclient"
)

//go:embed web/*.html web/*.js web/*.css
var webFiles embed.FS

func newHTTPHandler(t *firetower.Tower, apiKey string) http.Handler {
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
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /config.json", func(w http.ResponseWriter, _ *http.Request) {
		_, port, _ := net.SplitHostPort(t.Addr())
		p, _ := strconv.Atoi(port)
		httpapi.JSON(w, http.StatusOK, map[string]any{"ws_port": p, "ws_path": "/ws"})
	})
	mux.Handle("/api/v1/", httpapi.New(t, httpapi.Config{APIKey: apiKey}))
	dash := dashboardLogin(apiKey, dashboard.New(t, dashboard.Config{}))
	mux.Handle("GET /dashboard", dash)
	mux.Handle("GET /dashboard/", dash)
	mux.HandleFunc("POST /dashboard/login", dashboardSignIn(apiKey))
	mux.Handle("GET /metrics", requireKey(apiKey, metrics.Handler(metrics.NewRegistry(t))))
	return mux
}

// managerHTTP serves a manager node's health, cluster view and push API:
// GET /healthz, GET /api/v1/stats, GET /api/v1/nodes, GET /api/v1/topics,
// GET /api/v1/topics/<topic>, POST /api/v1/publish {"topic":..,"data":..}.
func managerHTTP(srv *manager.Server, apiKey string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
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
	mux.Handle("/api/v1/", requireKey(apiKey, api))
	return mux
}

// requireKey guards h with an API key when one is set: the request gives
// it in X-API-Key or as "Authorization: Bearer KEY" (or carries the
// dashboard's session cookie).
func requireKey(key string, h http.Handler) http.Handler {
	if key == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !keyGiven(key, r) {
			httpapi.Error(w, http.StatusUnauthorized, "unauthorized", "missing or wrong API key")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func keyGiven(key string, r *http.Request) bool {
	got := r.Header.Get("X-API-Key")
	if a := r.Header.Get("Authorization"); got == "" && len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		got = strings.TrimSpace(a[7:])
	}
	if got != "" {
		return subtle.ConstantTimeCompare([]byte(got), []byte(key)) == 1
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		return subtle.ConstantTimeCompare([]byte(c.Value), []byte(sessionValue(key))) == 1
	}
	return false
}

// sessionCookie holds a browser's dashboard session: a MAC of the API key,
// so the key itself is not stored in the browser.
const sessionCookie = "firetower_session"

func sessionValue(key string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte("firetower dashboard session"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// dashboardLogin guards the dashboard with the API key when one is set. A
// browser signs in once with the form the page shows (POST
// /dashboard/login), which sets an HttpOnly session cookie; API clients
// may send the key in a header instead.
func dashboardLogin(key string, h http.Handler) http.Handler {
	if key == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if keyGiven(key, r) {
			h.ServeHTTP(w, r)
			return
		}
		switch r.URL.Path {
		case "/dashboard", "/dashboard/", "/dashboard/index.html":
			loginPage(w, "")
		default:
			httpapi.Error(w, http.StatusUnauthorized, "unauthorized", "sign in at /dashboard first")
		}
	})
}

// dashboardSignIn takes the login form's key and sets the session cookie.
func dashboardSignIn(key string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 4096)
		got := r.PostFormValue("key")
		if key != "" && subtle.ConstantTimeCompare([]byte(got), []byte(key)) != 1 {
			loginPage(w, "wrong key")
			return
		}
		if key != "" {
			http.SetCookie(w, &http.Cookie{
				Name: sessionCookie, Value: sessionValue(key), Path: "/dashboard",
				HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
			})
		}
		http.Redirect(w, r, "/dashboard/", http.StatusSeeOther)
	}
}

func loginPage(w http.ResponseWriter, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; form-action 'self'; frame-ancestors 'none'")
	w.WriteHeader(http.StatusUnauthorized)
	note := ""
	if msg != "" {
		note = "<p role=\"alert\">" + html.EscapeString(msg) + "</p>"
	}
	io.WriteString(w, `<!doctype html><html lang="en"><meta charset="utf-8"><title>firetower dashboard: sign in</title>
<h1>firetower dashboard</h1>`+note+`<form method="post" action="/dashboard/login"><label>API key <input type="password" name="key" id="key" autofocus required></label> <button>Sign in</button></form></html>
`)
}
