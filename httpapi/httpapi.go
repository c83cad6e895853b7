// Package httpapi is firetower's HTTP push API: an http.Handler that lets a
// backend publish, count, list, disconnect and unsubscribe without holding a
// websocket. The firetower binary serves it under /api/v1/ on its HTTP
// address; library users mount it on their own server.
//
// Requests and responses are JSON. Errors are {"code": "...", "message":
// "..."} with a fitting status: 400 bad input, 401 missing or wrong API key,
// 403 a reserved topic or a cross-site browser request, 404 no such
// connection, 413 body too large, 421 a foreign Host without an API key,
// 429 too many wrong keys, 503 cluster unavailable.
//
// Every request passes a Guard first (see Guard): without an API key the
// Host header must name this machine or an allowed host (against DNS
// rebinding), a browser's cross-site POST is refused whatever its
// Content-Type (against CSRF), and wrong keys are rate limited per client
// address. Programs such as curl are not concerned by the browser checks:
// `curl -d '{"topic":...}'` works as it is.
//
//	POST /api/v1/publish            {"topic":"t","data":<any JSON>}  or  {"topics":["a","b"],"data":...}
//	POST /api/v1/publish/batch      {"messages":[{"topic":"t","data":...}, ...]}
//	GET  /api/v1/topics?q=&top=     {"topics":[{"topic":"t","local":n,"count":n}, ...]}  (the cluster's topics, most subscribers first)
//	GET  /api/v1/topics/<topic>     {"topic":"t","count":n}  (cluster-wide; the topic path-escaped)
//	GET  /api/v1/presence/<topic>?limit=  {"topic":"t","connections":[{"id":"..","user_id":"..","node":1}, ...],"count":n,"users":n}  (cluster-wide;
//	                                count: all connections, users: distinct non-empty user ids, whatever the limit)
//	POST /api/v1/disconnect         {"conn_id":"..."} or {"user_id":"..."}, optional "code" (default 1000) and "reason"
//	POST /api/v1/unsubscribe        {"conn_id":"...","topics":["t", ...]}
//
// Disconnect, unsubscribe and the topic list reach every node of a cluster
// (through its Manager), whichever node serves the request.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/internal/protocol"
)

// Config configures the handler.
type Config struct {
	// APIKey, when set, is required on every request as
	// "Authorization: Bearer <key>" or "X-API-Key: <key>".
	APIKey string
	// MaxBody bounds a request body. Default 1 MiB.
	MaxBody int64
	// MaxBatch bounds the publishes of one request: every topic of every
	// message of a batch counts, as do the topics of a single publish.
	// Default 1000.
	MaxBatch int
	// Timeout bounds one request's work. Default 10s.
	Timeout time.Duration
	// AllowedHosts and AllowedOrigins configure the Guard New makes when
	// Guard is nil (see GuardConfig).
	AllowedHosts, AllowedOrigins []string
	// Guard, when set, replaces the one New would make from APIKey,
	// AllowedHosts and AllowedOrigins (which are then ignored): one Guard
	// shared by several handlers counts a client's wrong keys once.
	Guard *Guard
}

type api struct {
	t     *firetower.Tower
	cfg   Config
	guard *Guard
}

// New returns the push API for t, routed under /api/v1/.
func New(t *firetower.Tower, cfg Config) http.Handler {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 1 << 20
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 1000
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	g := cfg.Guard
	if g == nil {
		g = NewGuard(GuardConfig{APIKey: cfg.APIKey, AllowedHosts: cfg.AllowedHosts, AllowedOrigins: cfg.AllowedOrigins})
	}
	a := &api{t: t, cfg: cfg, guard: g}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/publish", a.publish)
	mux.HandleFunc("POST /api/v1/publish/batch", a.batch)
	mux.HandleFunc("GET /api/v1/topics", a.topics)
	mux.HandleFunc("GET /api/v1/topics/{topic...}", a.count)
	mux.HandleFunc("GET /api/v1/presence/{topic...}", a.presence)
	mux.HandleFunc("GET /api/v1/history/{topic...}", a.history) // history.go
	mux.HandleFunc("POST /api/v1/disconnect", a.disconnect)
	mux.HandleFunc("POST /api/v1/unsubscribe", a.unsubscribe)
	mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		Error(w, http.StatusNotFound, "not_found", "no such API endpoint: "+r.Method+" "+r.URL.Path)
	})
	return g.Protect(g.RequireKey(mux))
}

// decode reads a JSON body into v; it writes the error answer itself.
func (a *api) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, a.cfg.MaxBody))
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			Error(w, http.StatusRequestEntityTooLarge, firetower.CodeMessageTooLarge, fmt.Sprintf("body over %d bytes", a.cfg.MaxBody))
			return false
		}
		Error(w, http.StatusBadRequest, firetower.CodeBadRequest, "invalid JSON body: "+err.Error())
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		Error(w, http.StatusBadRequest, firetower.CodeBadRequest, "trailing data after the JSON body")
		return false
	}
	return true
}

func (a *api) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), a.cfg.Timeout)
}

type message struct {
	Topic  string          `json:"topic"`
	Topics []string        `json:"topics"`
	Data   json.RawMessage `json:"data"`
}

func (m *message) list() []string {
	out := append([]string(nil), m.Topics...)
	if m.Topic != "" {
		out = append(out, m.Topic)
	}
	return out
}

// check validates a message's topics as Tower.Publish will (a reserved
// $firetower/ topic included), so that nothing is published when any topic
// of a request is bad.
func (m *message) check() *firetower.Error {
	topics := m.list()
	if len(topics) == 0 {
		return &firetower.Error{Code: firetower.CodeInvalidTopic, Message: "no topic given"}
	}
	for _, t := range topics {
		if err := protocol.ValidateTopic(t); err != nil {
			return &firetower.Error{Code: firetower.CodeInvalidTopic, Message: fmt.Sprintf("topic %q: %v", t, err)}
		}
		if firetower.IsSystemTopic(t) {
			return &firetower.Error{Code: firetower.CodeForbidden, Message: fmt.Sprintf("topic %q: topics starting with %s are reserved for the server", t, firetower.SystemTopicPrefix)}
		}
	}
	return nil
}

// size is how many publishes m makes: what counts toward MaxBatch.
func (m *message) size() int {
	n := len(m.Topics)
	if m.Topic != "" {
		n++
	}
	return n
}

func (a *api) publish(w http.ResponseWriter, r *http.Request) {
	var m message
	if !a.decode(w, r, &m) {
		return
	}
	if e := m.check(); e != nil {
		Error(w, status(e.Code), e.Code, e.Message)
		return
	}
	if m.size() > a.cfg.MaxBatch {
		Error(w, http.StatusBadRequest, firetower.CodeBadRequest, fmt.Sprintf("a publish names at most %d topics", a.cfg.MaxBatch))
		return
	}
	topics := m.list()
	if len(m.Data) == 0 {
		m.Data = json.RawMessage("null")
	}
	offsets, err := a.publishAll(r, topics, m.Data) // history.go
	if err != nil {
		Fail(w, err)
		return
	}
	JSON(w, http.StatusOK, publishAnswer(topics, offsets))
}

func (a *api) batch(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Messages []message `json:"messages"`
	}
	if !a.decode(w, r, &b) {
		return
	}
	if len(b.Messages) == 0 || len(b.Messages) > a.cfg.MaxBatch {
		Error(w, http.StatusBadRequest, firetower.CodeBadRequest, fmt.Sprintf("a batch holds 1 to %d messages", a.cfg.MaxBatch))
		return
	}
	// Every topic of every message counts toward MaxBatch: it is one
	// publish each.
	total := 0
	for i := range b.Messages {
		total += b.Messages[i].size()
	}
	if total > a.cfg.MaxBatch {
		Error(w, http.StatusBadRequest, firetower.CodeBadRequest, fmt.Sprintf("a batch makes at most %d publishes (one per topic of each message); this one makes %d", a.cfg.MaxBatch, total))
		return
	}
	// Validate everything first, so a bad message publishes nothing.
	for i := range b.Messages {
		if e := b.Messages[i].check(); e != nil {
			Error(w, status(e.Code), e.Code, fmt.Sprintf("message %d: %s", i, e.Message))
			return
		}
		if len(b.Messages[i].Data) == 0 {
			b.Messages[i].Data = json.RawMessage("null")
		}
	}
	ctx, cancel := a.ctx(r)
	defer cancel()
	n := 0
	for i := range b.Messages {
		for _, t := range b.Messages[i].list() {
			if err := a.t.Publish(ctx, t, b.Messages[i].Data); err != nil {
				var fe *firetower.Error
				if errors.As(err, &fe) {
					Error(w, status(fe.Code), fe.Code, fmt.Sprintf("message %d (%d published before it): %s", i, n, fe.Message))
					return
				}
				Fail(w, err)
				return
			}
			n++
		}
	}
	JSON(w, http.StatusOK, map[string]any{"ok": true, "published": n})
}

func (a *api) topics(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := a.ctx(r)
	defer cancel()
	q := r.URL.Query()
	top := 0
	if v := q.Get("top"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			Error(w, http.StatusBadRequest, firetower.CodeBadRequest, "top must be a number >= 0")
			return
		}
		top = n
	}
	all, err := a.t.ClusterTopics(ctx, q.Get("q"), top)
	if err != nil {
		Fail(w, err)
		return
	}
	local := a.t.Topics()
	type row struct {
		Topic string `json:"topic"`
		Local int64  `json:"local"`
		Count int64  `json:"count"`
	}
	rows := make([]row, 0, len(all))
	for _, tc := range all {
		rows = append(rows, row{tc.Topic, local[tc.Topic], tc.Count})
	}
	JSON(w, http.StatusOK, map[string]any{"topics": rows})
}

func (a *api) count(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	ctx, cancel := a.ctx(r)
	defer cancel()
	n, err := a.t.ConnectNum(ctx, topic)
	if err != nil {
		Fail(w, err)
		return
	}
	JSON(w, http.StatusOK, map[string]any{"topic": topic, "count": n})
}

func (a *api) presence(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	limit := 0
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			Error(w, http.StatusBadRequest, firetower.CodeBadRequest, "limit must be a number >= 0")
			return
		}
		limit = n
	}
	ctx, cancel := a.ctx(r)
	defer cancel()
	conns, err := a.t.Presence(ctx, topic, limit)
	if err != nil {
		Fail(w, err)
		return
	}
	st, err := a.t.PresenceStats(ctx, topic)
	if err != nil {
		Fail(w, err)
		return
	}
	out := map[string]any{"topic": topic, "connections": conns, "count": st.Connections, "users": st.Users}
	if st.Partial {
		out["partial"] = true
	}
	JSON(w, http.StatusOK, out)
}

func (a *api) disconnect(w http.ResponseWriter, r *http.Request) {
	var b struct {
		ConnID string `json:"conn_id"`
		UserID string `json:"user_id"`
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	}
	if !a.decode(w, r, &b) {
		return
	}
	if b.Code == 0 {
		b.Code = 1000
	}
	switch {
	case (b.ConnID == "") == (b.UserID == ""):
		Error(w, http.StatusBadRequest, firetower.CodeBadRequest, "give exactly one of conn_id and user_id")
	case b.ConnID != "":
		ctx, cancel := a.ctx(r)
		defer cancel()
		if err := a.t.Disconnect(ctx, b.ConnID, b.Code, b.Reason); err != nil {
			Fail(w, err)
			return
		}
		JSON(w, http.StatusOK, map[string]any{"ok": true, "disconnected": 1})
	default:
		ctx, cancel := a.ctx(r)
		defer cancel()
		n, err := a.t.DisconnectUser(ctx, b.UserID, b.Code, b.Reason)
		if err != nil {
			Fail(w, err)
			return
		}
		JSON(w, http.StatusOK, map[string]any{"ok": true, "disconnected": n})
	}
}

func (a *api) unsubscribe(w http.ResponseWriter, r *http.Request) {
	var b struct {
		ConnID string   `json:"conn_id"`
		Topic  string   `json:"topic"`
		Topics []string `json:"topics"`
	}
	if !a.decode(w, r, &b) {
		return
	}
	topics := append([]string(nil), b.Topics...)
	if b.Topic != "" {
		topics = append(topics, b.Topic)
	}
	if b.ConnID == "" || len(topics) == 0 {
		Error(w, http.StatusBadRequest, firetower.CodeBadRequest, "conn_id and topic(s) are required")
		return
	}
	ctx, cancel := a.ctx(r)
	defer cancel()
	if err := a.t.Unsubscribe(ctx, b.ConnID, topics...); err != nil {
		Fail(w, err)
		return
	}
	JSON(w, http.StatusOK, map[string]any{"ok": true, "topics": topics})
}

func status(code string) int {
	switch code {
	case firetower.CodeUnavailable:
		return http.StatusServiceUnavailable
	case firetower.CodeInternal:
		return http.StatusInternalServerError
	case firetower.CodeForbidden:
		return http.StatusForbidden
	case "not_found":
		return http.StatusNotFound
	case firetower.CodeMessageTooLarge:
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}

// Fail writes err as a JSON error with a fitting status.
func Fail(w http.ResponseWriter, err error) {
	var fe *firetower.Error
	switch {
	case errors.As(err, &fe):
		Error(w, status(fe.Code), fe.Code, fe.Message)
	case errors.Is(err, firetower.ErrClosed):
		Error(w, http.StatusServiceUnavailable, firetower.CodeUnavailable, "server is shutting down")
	case errors.Is(err, firetower.ErrBadOption):
		Error(w, http.StatusBadRequest, firetower.CodeBadRequest, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		Error(w, http.StatusServiceUnavailable, firetower.CodeUnavailable, "timed out")
	default:
		Error(w, http.StatusInternalServerError, firetower.CodeInternal, err.Error())
	}
}

// Error writes a JSON error.
func Error(w http.ResponseWriter, status int, code, msg string) {
	JSON(w, status, map[string]string{"code": code, "message": msg})
}

// JSON writes v as JSON with a status.
func JSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
