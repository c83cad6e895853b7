package main

import (
	"crypto/subtle"
	"embed"
	"encoding/json"
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
	dash := dashboard.New(t, dashboard.Config{})
	mux.Handle("GET /dashboard", dash)
	mux.Handle("GET /dashboard/", dash)
	mux.Handle("GET /metrics", metrics.Handler(metrics.NewRegistry(t)))
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
		n := srv.Publish(body.Topic, body.Data)
		httpapi.JSON(w, http.StatusOK, map[string]any{"ok": true, "topic": body.Topic, "gateways": n})
	})
	mux.Handle("/api/v1/", requireKey(apiKey, api))
	return mux
}

// requireKey guards h with an API key when one is set.
func requireKey(key string, h http.Handler) http.Handler {
	if key == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("X-API-Key")
		if a := r.Header.Get("Authorization"); got == "" && len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
			got = strings.TrimSpace(a[7:])
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(key)) != 1 {
			httpapi.Error(w, http.StatusUnauthorized, "unauthorized", "missing or wrong API key")
			return
		}
		h.ServeHTTP(w, r)
	})
}
