package main

import (
	"embed"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strconv"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/manager"
)

//go:embed web
var webFiles embed.FS

// maxBody bounds a push API request body.
const maxBody = 1 << 20

func newHTTPHandler(t *firetower.Tower) http.Handler {
	mux := http.NewServeMux()
	web, _ := fs.Sub(webFiles, "web")
	mux.Handle("GET /", http.FileServerFS(web))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /config.json", func(w http.ResponseWriter, _ *http.Request) {
		_, port, _ := net.SplitHostPort(t.Addr())
		p, _ := strconv.Atoi(port)
		writeJSON(w, http.StatusOK, map[string]any{"ws_port": p, "ws_path": "/ws"})
	})
	mux.HandleFunc("POST /api/v1/publish", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Topic string          `json:"topic"`
			Data  json.RawMessage `json:"data"`
		}
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
		if err := dec.Decode(&body); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				apiError(w, http.StatusRequestEntityTooLarge, firetower.CodeMessageTooLarge, "body over 1 MiB")
				return
			}
			apiError(w, http.StatusBadRequest, firetower.CodeBadRequest, "invalid JSON body: "+err.Error())
			return
		}
		if len(body.Data) == 0 {
			body.Data = json.RawMessage("null")
		}
		if err := t.Publish(r.Context(), body.Topic, body.Data); err != nil {
			apiFail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "topic": body.Topic})
	})
	mux.HandleFunc("GET /api/v1/topics/{topic...}", func(w http.ResponseWriter, r *http.Request) {
		topic := r.PathValue("topic")
		n, err := t.ConnectNum(r.Context(), topic)
		if err != nil {
			apiFail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"topic": topic, "count": n})
	})
	return mux
}

func apiFail(w http.ResponseWriter, err error) {
	var fe *firetower.Error
	if errors.As(err, &fe) {
		status := http.StatusBadRequest
		switch fe.Code {
		case firetower.CodeUnavailable:
			status = http.StatusServiceUnavailable
		case firetower.CodeInternal:
			status = http.StatusInternalServerError
		}
		apiError(w, status, fe.Code, fe.Message)
		return
	}
	if errors.Is(err, firetower.ErrClosed) {
		apiError(w, http.StatusServiceUnavailable, firetower.CodeUnavailable, "server is shutting down")
		return
	}
	apiError(w, http.StatusInternalServerError, firetower.CodeInternal, err.Error())
}

func apiError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"code": code, "message": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// managerHTTP serves a manager node's health and cluster view.
func managerHTTP(srv *manager.Server) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /api/v1/stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, srv.Stats())
	})
	mux.HandleFunc("GET /api/v1/topics/{topic...}", func(w http.ResponseWriter, r *http.Request) {
		topic := r.PathValue("topic")
		writeJSON(w, http.StatusOK, map[string]any{"topic": topic, "count": srv.Count(topic)})
	})
	return mux
}
