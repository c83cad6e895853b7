package main

import (
	"embed"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strconv"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/dashboard"
	"github.com/firetower-go/firetower/httpapi"
	"github.com/firetower-go/firetower/metrics"
	"github.com/firetower-go/firetower/manager"
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
	dash := dashboard.New(t, dashboard.Config{})
	mux.Handle("GET /dashboard", dash)
	mux.Handle("GET /dashboard/", dash)
	mux.Handle("GET /metrics", metrics.Handler(metrics.NewRegistry(t)))
	return mux
}

// managerHTTP serves a manager node's health and cluster view.
func managerHTTP(srv *manager.Server) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /api/v1/stats", func(w http.ResponseWriter, _ *http.Request) {
		httpapi.JSON(w, http.StatusOK, srv.Stats())
	})
	mux.HandleFunc("GET /api/v1/topics/{topic...}", func(w http.ResponseWriter, r *http.Request) {
		topic := r.PathValue("topic")
		httpapi.JSON(w, http.StatusOK, map[string]any{"topic": topic, "count": srv.Count(topic)})
	})
	return mux
}
