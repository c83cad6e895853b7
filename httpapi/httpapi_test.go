package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/httpapi"
)

const wait = 5 * time.Second

// env is a real Tower on a loopback port with the push API in front of it.
//
// Clients dial with ?name=N to have their connection id recorded under N,
// and with ?user=U to get the user id U (set by the OnConnect hook).
type env struct {
	tb    testing.TB
	tower *firetower.Tower
	api   *httptest.Server
	key   string // sent with every request by do (empty: none)

	mu     sync.Mutex
	ids    map[string]string // name -> connection id
	marks  int               // barriers published
	unsubs chan unsubEvent   // every OnUnsubscribe call
}

type unsubEvent struct {
	connID string
	topics []string
}

func newEnv(tb testing.TB, cfg httpapi.Config, opts ...firetower.Option) *env {
	tb.Helper()
	e := &env{tb: tb, ids: make(map[string]string), unsubs: make(chan unsubEvent, 256), key: cfg.APIKey}
	tower, err := firetower.New(append([]firetower.Option{
		firetower.WithAddr("127.0.0.1:0"),
		firetower.OnConnect(func(next firetower.Handler) firetower.Handler {
			return func(c *firetower.Context) error {
				q := c.Conn().Request().URL.Query()
				if u := q.Get("user"); u != "" {
					c.Conn().SetUserID(u)
				}
				if n := q.Get("name"); n != "" {
					e.mu.Lock()
					e.ids[n] = c.Conn().ID()
					e.mu.Unlock()
				}
				return next(c)
			}
		}),
		firetower.OnUnsubscribe(func(next firetower.Handler) firetower.Handler {
			return func(c *firetower.Context) error {
				ev := unsubEvent{connID: c.Conn().ID(), topics: append([]string(nil), c.Topics()...)}
				select {
				case e.unsubs <- ev:
				default:
				}
				return next(c)
			}
		}),
	}, opts...)...)
	if err != nil {
		tb.Fatalf("firetower.New: %v", err)
	}
	if err := tower.Start(context.Background()); err != nil {
		tb.Fatalf("Start: %v", err)
	}
	e.tower = tower
	e.api = httptest.NewServer(httpapi.New(tower, cfg))
	tb.Cleanup(func() {
		e.api.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = tower.Shutdown(ctx)
	})
	return e
}

func (e *env) connID(name string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	id, ok := e.ids[name]
	if !ok {
		e.tb.Fatalf("no connection named %q was recorded", name)
	}
	return id
}

// reply is an API answer.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) String() string { return fmt.Sprintf("%d %s", r.status, bytes.TrimSpace(r.body)) }

// json decodes the body into a generic map.
func (r reply) obj(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		tb.Fatalf("answer is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

// request sends one request with the given headers (no API key added).
func (e *env) request(method, path, body string, hdr map[string]string) reply {
	e.tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.api.URL+path, rd)
	if err != nil {
		e.tb.Fatalf("NewRequest: %v", err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	client := &http.Client{Timeout: wait}
	resp, err := client.Do(req)
	if err != nil {
		e.tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.tb.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

// do sends a request with the env's API key (as a bearer token) if it has one.
func (e *env) do(method, path, body string) reply {
	e.tb.Helper()
	var hdr map[string]string
	if e.key != "" {
		hdr = map[string]string{"Authorization": "Bearer " + e.key}
	}
	return e.request(method, path, body, hdr)
}

// ok sends a request that must succeed with 200 and a JSON object.
func (e *env) ok(method, path, body string) map[string]any {
	e.tb.Helper()
	r := e.do(method, path, body)
	if r.status != http.StatusOK {
		e.tb.Fatalf("%s %s %s: got %s, want 200", method, path, body, r)
	}
	checkJSONType(e.tb, r)
	return r.obj(e.tb)
}

func checkJSONType(tb testing.TB, r reply) {
	tb.Helper()
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		tb.Errorf("Content-Type %q, want application/json", ct)
	}
}

// wantError checks an error answer: status, JSON {"code","message"}, code.
// It reports a mismatch without stopping the test.
func wantError(tb testing.TB, r reply, status int, code string) {
	tb.Helper()
	if r.status != status {
		tb.Errorf("got %s, want status %d with code %q", r, status, code)
		return
	}
	checkJSONType(tb, r)
	var e struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil {
		tb.Errorf("error answer is not JSON: %v: %s", err, r.body)
		return
	}
	if e.Code != code || e.Message == "" {
		tb.Errorf("got %s, want code %q and a message", r, code)
	}
}

// client is a websocket client of the Tower.
type client struct {
	tb     testing.TB
	name   string
	ws     *websocket.Conn
	msgs   chan []byte
	closed chan struct{}
	err    error // the read error, set before closed is closed
	nextID int
}

// dial connects a client; query is added to the URL (name=... records the id).
func (e *env) dial(name string, query url.Values) *client {
	e.tb.Helper()
	if query == nil {
		query = url.Values{}
	}
	if name != "" {
		query.Set("name", name)
	}
	u := "ws://" + e.tower.Addr() + "/ws?" + query.Encode()
	d := websocket.Dialer{HandshakeTimeout: wait}
	ws, resp, err := d.Dial(u, nil)
	if err != nil {
		e.tb.Fatalf("dial %s: %v", u, err)
	}
	resp.Body.Close()
	c := &client{tb: e.tb, name: name, ws: ws, msgs: make(chan []byte, 1024), closed: make(chan struct{})}
	go func() {
		defer close(c.closed)
		for {
			_, p, err := ws.ReadMessage()
			if err != nil {
				c.err = err
				return
			}
			c.msgs <- p
		}
	}()
	e.tb.Cleanup(func() { ws.Close() })
	return c
}

type serverMsg struct {
	Type   string          `json:"type"`
	ID     json.RawMessage `json:"id"`
	Topic  string          `json:"topic"`
	Topics []string        `json:"topics"`
	Data   json.RawMessage `json:"data"`
	Code   string          `json:"code"`
}

// next returns the next message from the server.
func (c *client) next() (serverMsg, []byte) {
	c.tb.Helper()
	select {
	case p := <-c.msgs:
		var m serverMsg
		if err := json.Unmarshal(p, &m); err != nil {
			c.tb.Fatalf("%s: message is not JSON: %v: %s", c.name, err, p)
		}
		return m, p
	case <-c.closed:
		c.tb.Fatalf("%s: connection closed while waiting for a message: %v", c.name, c.err)
	case <-time.After(wait):
		c.tb.Fatalf("%s: no message within %s", c.name, wait)
	}
	return serverMsg{}, nil
}

func (c *client) send(v any) {
	c.tb.Helper()
	if err := c.ws.WriteJSON(v); err != nil {
		c.tb.Fatalf("%s: write: %v", c.name, err)
	}
}

// request sends a request with an id and waits for its ack.
func (c *client) request(typ string, topics ...string) {
	c.tb.Helper()
	c.nextID++
	id := c.nextID
	c.send(map[string]any{"type": typ, "topics": topics, "id": id})
	m, raw := c.next()
	if m.Type != "ack" || string(m.ID) != fmt.Sprint(id) {
		c.tb.Fatalf("%s: %s %v: got %s, want the ack with id %d", c.name, typ, topics, raw, id)
	}
}

func (c *client) subscribe(topics ...string) { c.tb.Helper(); c.request("subscribe", topics...) }

// expect waits for the next message and checks it is a delivery of data on
// topic, the data byte for byte.
func (c *client) expect(topic, data string) {
	c.tb.Helper()
	m, raw := c.next()
	if m.Type != "publish" || m.Topic != topic || string(m.Data) != data {
		c.tb.Fatalf("%s: got %s, want a delivery on %q of %s", c.name, raw, topic, data)
	}
}

// quiet checks that nothing has arrived (to be used after a barrier).
func (c *client) quiet() {
	c.tb.Helper()
	select {
	case p := <-c.msgs:
		c.tb.Fatalf("%s: unexpected message %s", c.name, p)
	default:
	}
}

// closeCode waits for the server to close the connection and returns the
// close code and reason it sent.
func (c *client) closeCode() (int, string) {
	c.tb.Helper()
	for {
		select {
		case p := <-c.msgs:
			c.tb.Logf("%s: message before close: %s", c.name, p)
			continue
		case <-c.closed:
		case <-time.After(wait):
			c.tb.Fatalf("%s: still open %s later, want it closed", c.name, wait)
		}
		break
	}
	var ce *websocket.CloseError
	if !errors.As(c.err, &ce) {
		c.tb.Fatalf("%s: connection ended with %v, want a close frame", c.name, c.err)
	}
	return ce.Code, ce.Text
}

// open checks that the connection is still open, by a round trip.
func (c *client) open() {
	c.tb.Helper()
	c.nextID++
	c.send(map[string]any{"type": "ping", "id": c.nextID})
	m, raw := c.next()
	if m.Type != "pong" {
		c.tb.Fatalf("%s: got %s, want a pong", c.name, raw)
	}
}

func TestPublishOneTopic(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	a := e.dial("a", nil)
	b := e.dial("b", nil)
	other := e.dial("other", nil)
	a.subscribe("/news")
	b.subscribe("/news")
	other.subscribe("/other")

	// Data as the publisher wrote it: spacing, escapes and key order kept.
	data := `{"z": 1,  "a":[1, 2.50, "\u00e9\n"], "nested":{"k":null} }`
	got := e.ok("POST", "/api/v1/publish", `{"topic":"/news","data":`+data+`}`)
	if got["ok"] != true {
		t.Errorf("answer %v, want ok true", got)
	}
	if ts, _ := got["topics"].([]any); len(ts) != 1 || ts[0] != "/news" {
		t.Errorf("answer topics %v, want [/news]", got["topics"])
	}
	a.expect("/news", data)
	b.expect("/news", data)

	// Scalars, and no data at all (published as null).
	for _, d := range []string{`"text"`, `42`, `true`, `[]`} {
		e.ok("POST", "/api/v1/publish", `{"topic":"/news","data":`+d+`}`)
		a.expect("/news", d)
	}
	e.ok("POST", "/api/v1/publish", `{"topic":"/news"}`)
	a.expect("/news", "null")

	e.ok("POST", "/api/v1/publish", `{"topic":"/other","data":"barrier"}`)
	other.expect("/other", `"barrier"`)
	other.quiet()
}

func TestPublishSeveralTopics(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	a := e.dial("a", nil)
	b := e.dial("b", nil)
	both := e.dial("both", nil)
	a.subscribe("/a")
	b.subscribe("/b")
	both.subscribe("/a", "/b")

	data := `{"n": [1,2,3]}`
	got := e.ok("POST", "/api/v1/publish", `{"topics":["/a","/b"],"data":`+data+`}`)
	if ts, _ := got["topics"].([]any); len(ts) != 2 {
		t.Errorf("answer topics %v, want 2 topics", got["topics"])
	}
	a.expect("/a", data)
	b.expect("/b", data)
	both.expect("/a", data)
	both.expect("/b", data)

	// "topic" and "topics" together name all of them.
	e.ok("POST", "/api/v1/publish", `{"topic":"/b","topics":["/a"],"data":7}`)
	a.expect("/a", "7")
	b.expect("/b", "7")
	m1, _ := both.next()
	m2, _ := both.next()
	if m1.Topic == m2.Topic || string(m1.Data) != "7" || string(m2.Data) != "7" {
		t.Fatalf("subscriber of both got %+v and %+v, want 7 on each topic", m1, m2)
	}
}

func TestPublishBatch(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	a := e.dial("a", nil)
	b := e.dial("b", nil)
	a.subscribe("/a")
	b.subscribe("/b")

	body := `{"messages":[
		{"topic":"/a","data":{"i": 1}},
		{"topic":"/b","data":"two"},
		{"topics":["/a","/b"],"data":[3, 3]},
		{"topic":"/a"}
	]}`
	got := e.ok("POST", "/api/v1/publish/batch", body)
	if got["ok"] != true || got["published"] != float64(5) {
		t.Errorf("answer %v, want ok and published 5", got)
	}
	a.expect("/a", `{"i": 1}`)
	a.expect("/a", `[3, 3]`)
	a.expect("/a", `null`)
	b.expect("/b", `"two"`)
	b.expect("/b", `[3, 3]`)
}

func TestTopicsListAndCount(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	for i := range 3 {
		e.dial(fmt.Sprint("x", i), nil).subscribe("/chat/world")
	}
	e.dial("y", nil).subscribe("/chat/world", "orders.eu.42")

	got := e.ok("GET", "/api/v1/topics/"+url.PathEscape("/chat/world"), "")
	if got["topic"] != "/chat/world" || got["count"] != float64(4) {
		t.Errorf("count answer %v, want topic /chat/world count 4", got)
	}
	got = e.ok("GET", "/api/v1/topics/orders.eu.42", "")
	if got["topic"] != "orders.eu.42" || got["count"] != float64(1) {
		t.Errorf("count answer %v, want topic orders.eu.42 count 1", got)
	}
	got = e.ok("GET", "/api/v1/topics/nobody-here", "")
	if got["topic"] != "nobody-here" || got["count"] != float64(0) {
		t.Errorf("count answer %v, want count 0", got)
	}

	r := e.do("GET", "/api/v1/topics", "")
	if r.status != http.StatusOK {
		t.Fatalf("GET /api/v1/topics: %s", r)
	}
	var list struct {
		Topics []struct {
			Topic string `json:"topic"`
			Local int64  `json:"local"`
			Count int64  `json:"count"`
		} `json:"topics"`
	}
	if err := json.Unmarshal(r.body, &list); err != nil {
		t.Fatalf("list: %v: %s", err, r.body)
	}
	type row = struct {
		Topic string `json:"topic"`
		Local int64  `json:"local"`
		Count int64  `json:"count"`
	}
	want := []row{{"/chat/world", 4, 4}, {"orders.eu.42", 1, 1}}
	if fmt.Sprint(list.Topics) != fmt.Sprint(want) {
		t.Errorf("topics %+v, want %+v (busiest first)", list.Topics, want)
	}

	// An empty server lists no topics, as an empty array.
	e2 := newEnv(t, httpapi.Config{})
	r = e2.do("GET", "/api/v1/topics", "")
	if r.status != http.StatusOK || !bytes.Contains(r.body, []byte(`"topics":[]`)) {
		t.Errorf("empty list: %s, want 200 with \"topics\":[]", r)
	}
}

func TestDisconnectByConnID(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	victim := e.dial("victim", nil)
	bystander := e.dial("bystander", nil)
	victim.subscribe("/t")
	bystander.subscribe("/t")

	got := e.ok("POST", "/api/v1/disconnect", fmt.Sprintf(`{"conn_id":%q,"code":4001,"reason":"kicked by ops"}`, e.connID("victim")))
	if got["ok"] != true || got["disconnected"] != float64(1) {
		t.Errorf("answer %v, want ok and disconnected 1", got)
	}
	if code, reason := victim.closeCode(); code != 4001 || reason != "kicked by ops" {
		t.Errorf("close %d %q, want 4001 \"kicked by ops\"", code, reason)
	}
	bystander.open()

	// The default code is 1000.
	again := e.dial("again", nil)
	e.ok("POST", "/api/v1/disconnect", fmt.Sprintf(`{"conn_id":%q}`, e.connID("again")))
	if code, _ := again.closeCode(); code != 1000 {
		t.Errorf("close code %d, want the default 1000", code)
	}

	// The connection is gone from the server's view.
	waitFor(t, func() bool { return e.tower.Conn(e.connID("victim")) == nil }, "the closed connection to leave the registry")
	wantError(t, e.do("POST", "/api/v1/disconnect", fmt.Sprintf(`{"conn_id":%q}`, e.connID("victim"))), http.StatusNotFound, "not_found")
}

func TestDisconnectByUserID(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	alice1 := e.dial("alice1", url.Values{"user": {"alice"}})
	alice2 := e.dial("alice2", url.Values{"user": {"alice"}})
	bob := e.dial("bob", url.Values{"user": {"bob"}})
	anon := e.dial("anon", nil)
	bob.subscribe("/room")
	anon.subscribe("/room")

	got := e.ok("POST", "/api/v1/disconnect", `{"user_id":"alice","code":4003,"reason":"account suspended"}`)
	if got["disconnected"] != float64(2) {
		t.Errorf("answer %v, want disconnected 2", got)
	}
	for _, c := range []*client{alice1, alice2} {
		if code, reason := c.closeCode(); code != 4003 || reason != "account suspended" {
			t.Errorf("%s: close %d %q, want 4003 \"account suspended\"", c.name, code, reason)
		}
	}
	bob.open()
	anon.open()
	e.ok("POST", "/api/v1/publish", `{"topic":"/room","data":"still here"}`)
	bob.expect("/room", `"still here"`)
	anon.expect("/room", `"still here"`)

	// A user with no connection: nothing to do, not an error.
	got = e.ok("POST", "/api/v1/disconnect", `{"user_id":"carol"}`)
	if got["disconnected"] != float64(0) {
		t.Errorf("answer %v, want disconnected 0", got)
	}
}

func TestUnsubscribe(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	c := e.dial("c", nil)
	other := e.dial("other", nil)
	c.subscribe("/a", "/b", "/c")
	other.subscribe("/a")
	id := e.connID("c")

	got := e.ok("POST", "/api/v1/unsubscribe", fmt.Sprintf(`{"conn_id":%q,"topics":["/a"],"topic":"/c"}`, id))
	if got["ok"] != true {
		t.Errorf("answer %v, want ok", got)
	}
	// The hook has run by the time the answer came back.
	select {
	case ev := <-e.unsubs:
		if ev.connID != id || fmt.Sprint(ev.topics) != "[/a /c]" {
			t.Errorf("OnUnsubscribe saw %+v, want conn %s topics [/a /c]", ev, id)
		}
	default:
		t.Fatalf("OnUnsubscribe had not run when the API answered")
	}

	e.ok("POST", "/api/v1/publish", `{"topics":["/a","/c"],"data":"gone"}`)
	e.ok("POST", "/api/v1/publish", `{"topic":"/b","data":"kept"}`)
	c.expect("/b", `"kept"`) // the barrier: nothing on /a or /c came before it
	other.expect("/a", `"gone"`)
	c.quiet()

	if n := e.ok("GET", "/api/v1/topics/%2Fa", "")["count"]; n != float64(1) {
		t.Errorf("count of /a %v, want 1", n)
	}

	// Unsubscribing from a topic it does not have is not an error, and runs no hook.
	e.ok("POST", "/api/v1/unsubscribe", fmt.Sprintf(`{"conn_id":%q,"topic":"/zzz"}`, id))
	select {
	case ev := <-e.unsubs:
		t.Errorf("OnUnsubscribe ran for a topic the client did not have: %+v", ev)
	default:
	}
	c.open()
}

// TestBadInput: every refused request answers with a JSON error and has no
// effect.
func TestBadInput(t *testing.T) {
	e := newEnv(t, httpapi.Config{MaxBody: 4096, MaxBatch: 3})
	sub := e.dial("sub", url.Values{"user": {"u1"}})
	sub.subscribe("/t")
	id := e.connID("sub")
	big := `{"topic":"/t","data":"` + strings.Repeat("x", 5000) + `"}`

	cases := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"publish bad JSON", "POST", "/api/v1/publish", `{"topic":"/t","data":`, 400, "bad_request"},
		{"publish not JSON", "POST", "/api/v1/publish", `topic=/t`, 400, "bad_request"},
		{"publish empty body", "POST", "/api/v1/publish", ``, 400, "bad_request"},
		{"publish wrong type", "POST", "/api/v1/publish", `{"topic":["/t"],"data":1}`, 400, "bad_request"},
		{"publish trailing data", "POST", "/api/v1/publish", `{"topic":"/t","data":1} {"topic":"/t","data":2}`, 400, "bad_request"},
		{"publish trailing garbage", "POST", "/api/v1/publish", `{"topic":"/t","data":1}xyz`, 400, "bad_request"},
		{"publish trailing brace", "POST", "/api/v1/publish", `{"topic":"/t","data":1}}`, 400, "bad_request"},
		{"publish trailing bracket", "POST", "/api/v1/publish", `{"topic":"/t","data":1}]`, 400, "bad_request"},
		{"publish missing topic", "POST", "/api/v1/publish", `{"data":1}`, 400, "invalid_topic"},
		{"publish empty topics", "POST", "/api/v1/publish", `{"topics":[],"data":1}`, 400, "invalid_topic"},
		{"publish invalid topic", "POST", "/api/v1/publish", `{"topic":"bad topic","data":1}`, 400, "invalid_topic"},
		{"publish topic with comma", "POST", "/api/v1/publish", `{"topic":"/t,/u","data":1}`, 400, "invalid_topic"},
		{"publish one invalid topic of several", "POST", "/api/v1/publish", `{"topics":["/t","bad topic"],"data":1}`, 400, "invalid_topic"},
		{"publish oversized", "POST", "/api/v1/publish", big, 413, "message_too_large"},
		{"batch bad JSON", "POST", "/api/v1/publish/batch", `{"messages":[`, 400, "bad_request"},
		{"batch trailing data", "POST", "/api/v1/publish/batch", `{"messages":[{"topic":"/t"}]} x`, 400, "bad_request"},
		{"batch empty", "POST", "/api/v1/publish/batch", `{"messages":[]}`, 400, "bad_request"},
		{"batch too long", "POST", "/api/v1/publish/batch", `{"messages":[{"topic":"/t"},{"topic":"/t"},{"topic":"/t"},{"topic":"/t"}]}`, 400, "bad_request"},
		{"batch missing topic", "POST", "/api/v1/publish/batch", `{"messages":[{"topic":"/t","data":1},{"data":2}]}`, 400, "invalid_topic"},
		{"batch invalid topic", "POST", "/api/v1/publish/batch", `{"messages":[{"topic":"/t","data":1},{"topic":"bad topic","data":2}]}`, 400, "invalid_topic"},
		{"batch oversized", "POST", "/api/v1/publish/batch", `{"messages":[` + big + `]}`, 413, "message_too_large"},
		{"count invalid topic", "GET", "/api/v1/topics/bad%20topic", "", 400, "invalid_topic"},
		{"count topic too long", "GET", "/api/v1/topics/" + strings.Repeat("t", 257), "", 400, "invalid_topic"},
		{"disconnect bad JSON", "POST", "/api/v1/disconnect", `{"conn_id":`, 400, "bad_request"},
		{"disconnect trailing data", "POST", "/api/v1/disconnect", `{"conn_id":"` + id + `"}{}`, 400, "bad_request"},
		{"disconnect neither id", "POST", "/api/v1/disconnect", `{"code":4000}`, 400, "bad_request"},
		{"disconnect both ids", "POST", "/api/v1/disconnect", `{"conn_id":"` + id + `","user_id":"u1"}`, 400, "bad_request"},
		{"disconnect unknown conn", "POST", "/api/v1/disconnect", `{"conn_id":"9-nope-1"}`, 404, "not_found"},
		{"disconnect invalid close code", "POST", "/api/v1/disconnect", `{"conn_id":"` + id + `","code":1005}`, 400, "bad_request"},
		{"disconnect user invalid close code", "POST", "/api/v1/disconnect", `{"user_id":"u1","code":999}`, 400, "bad_request"},
		{"disconnect oversized", "POST", "/api/v1/disconnect", `{"conn_id":"` + id + `","reason":"` + strings.Repeat("r", 5000) + `"}`, 413, "message_too_large"},
		{"unsubscribe bad JSON", "POST", "/api/v1/unsubscribe", `{"conn_id"`, 400, "bad_request"},
		{"unsubscribe trailing data", "POST", "/api/v1/unsubscribe", `{"conn_id":"` + id + `","topic":"/t"}[]`, 400, "bad_request"},
		{"unsubscribe missing topic", "POST", "/api/v1/unsubscribe", `{"conn_id":"` + id + `"}`, 400, "bad_request"},
		{"unsubscribe missing conn", "POST", "/api/v1/unsubscribe", `{"topic":"/t"}`, 400, "bad_request"},
		{"unsubscribe invalid topic", "POST", "/api/v1/unsubscribe", `{"conn_id":"` + id + `","topics":["/t","bad topic"]}`, 400, "invalid_topic"},
		{"unsubscribe unknown conn", "POST", "/api/v1/unsubscribe", `{"conn_id":"9-nope-1","topic":"/t"}`, 404, "not_found"},
		{"unsubscribe oversized", "POST", "/api/v1/unsubscribe", `{"conn_id":"` + id + `","topic":"/t","x":"` + strings.Repeat("r", 5000) + `"}`, 413, "message_too_large"},
		{"unknown endpoint", "GET", "/api/v1/nope", "", 404, "not_found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.tb, sub.tb = t, t // helpers fail the subtest
			wantError(t, e.do(tc.method, tc.path, tc.body), tc.status, tc.code)
			// No effect: the subscriber is still there, still subscribed,
			// and the next thing it gets is the barrier.
			if leaked := e.barrier(sub, "/t"); len(leaked) > 0 {
				t.Errorf("refused request had an effect: the subscriber received %s", leaked)
			}
			select {
			case ev := <-e.unsubs:
				t.Errorf("OnUnsubscribe ran: %+v", ev)
			default:
			}
		})
		e.tb, sub.tb = t, t
	}
	sub.open()
}

func TestBodyLimit(t *testing.T) {
	// The default limit is 1 MiB.
	e := newEnv(t, httpapi.Config{})
	sub := e.dial("sub", nil)
	sub.subscribe("/t")
	prefix, suffix := `{"topic":"/t","data":"`, `"}`
	fill := func(total int) string {
		return prefix + strings.Repeat("y", total-len(prefix)-len(suffix)) + suffix
	}
	wantError(t, e.do("POST", "/api/v1/publish", fill(1<<20+1)), 413, "message_too_large")
	body := fill(1 << 20) // exactly at the limit: accepted
	e.ok("POST", "/api/v1/publish", body)
	m, _ := sub.next()
	if len(m.Data) != 1<<20-len(prefix)-len(suffix)+2 {
		t.Fatalf("delivered %d bytes of data, want the %d published", len(m.Data), 1<<20-len(prefix)-len(suffix)+2)
	}
	sub.quiet()
}

func TestAPIKey(t *testing.T) {
	const key = "s3cret-key"
	// This test presents 40 wrong keys from one address on purpose: a
	// Guard with room for them, so that they all get 401 rather than 429
	// (TestWrongKeysRateLimited tests the limit).
	e := newEnv(t, httpapi.Config{APIKey: key, Guard: httpapi.NewGuard(httpapi.GuardConfig{APIKey: key, FailedKeyBurst: 1000})})
	sub := e.dial("sub", url.Values{"user": {"u1"}})
	sub.subscribe("/t")
	id := e.connID("sub")

	requests := []struct{ method, path, body string }{
		{"POST", "/api/v1/publish", `{"topic":"/t","data":"leak"}`},
		{"POST", "/api/v1/publish/batch", `{"messages":[{"topic":"/t","data":"leak"}]}`},
		{"GET", "/api/v1/topics", ""},
		{"GET", "/api/v1/topics/%2Ft", ""},
		{"POST", "/api/v1/disconnect", `{"conn_id":"` + id + `"}`},
		{"POST", "/api/v1/disconnect", `{"user_id":"u1"}`},
		{"POST", "/api/v1/unsubscribe", `{"conn_id":"` + id + `","topic":"/t"}`},
		{"GET", "/api/v1/nope", ""},
	}
	creds := []struct {
		name string
		hdr  map[string]string
	}{
		{"no key", nil},
		{"wrong bearer", map[string]string{"Authorization": "Bearer wrong"}},
		{"wrong X-API-Key", map[string]string{"X-API-Key": "wrong"}},
		{"key as a prefix", map[string]string{"X-API-Key": key[:4]}},
		{"key with a suffix", map[string]string{"X-API-Key": key + "x"}},
		{"bearer without scheme", map[string]string{"Authorization": key}},
		{"basic scheme", map[string]string{"Authorization": "Basic " + key}},
		{"wrong X-API-Key beside a right bearer", map[string]string{"X-API-Key": "wrong", "Authorization": "Bearer " + key}},
	}
	for _, cr := range creds {
		for _, rq := range requests {
			r := e.request(rq.method, rq.path, rq.body, cr.hdr)
			wantError(t, r, http.StatusUnauthorized, "unauthorized")
			if r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s with %s: 401 without WWW-Authenticate", rq.method, rq.path, cr.name)
			}
			if leaked := e.barrier(sub, "/t"); len(leaked) > 0 {
				t.Errorf("%s %s with %s had an effect: the subscriber received %s", rq.method, rq.path, cr.name, leaked)
			}
		}
	}
	select {
	case ev := <-e.unsubs:
		t.Errorf("OnUnsubscribe ran after refused requests: %+v", ev)
	default:
	}
	sub.open()

	// The right key, both ways.
	for _, hdr := range []map[string]string{
		{"Authorization": "Bearer " + key},
		{"X-API-Key": key},
	} {
		r := e.request("POST", "/api/v1/publish", `{"topic":"/t","data":"hi"}`, hdr)
		if r.status != http.StatusOK {
			t.Fatalf("publish with %v: %s, want 200", hdr, r)
		}
		sub.expect("/t", `"hi"`)
		r = e.request("GET", "/api/v1/topics/%2Ft", "", hdr)
		if r.status != http.StatusOK || r.obj(t)["count"] != float64(1) {
			t.Fatalf("count with %v: %s, want 200 and count 1", hdr, r)
		}
	}
	r := e.request("POST", "/api/v1/disconnect", `{"conn_id":"`+id+`","code":4002}`, map[string]string{"X-API-Key": key})
	if r.status != http.StatusOK {
		t.Fatalf("disconnect with X-API-Key: %s", r)
	}
	if code, _ := sub.closeCode(); code != 4002 {
		t.Errorf("close code %d, want 4002", code)
	}
}

func TestUnavailableAfterShutdown(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.tower.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	wantError(t, e.do("POST", "/api/v1/publish", `{"topic":"/t","data":1}`), 503, "unavailable")
	wantError(t, e.do("GET", "/api/v1/topics/%2Ft", ""), 503, "unavailable")
}

// barrier publishes a marker on topic (a good request) and waits for sub
// to receive it; it returns whatever sub received before the marker.
func (e *env) barrier(sub *client, topic string) []string {
	e.tb.Helper()
	e.mu.Lock()
	e.marks++
	marker := fmt.Sprintf(`{"barrier":%d}`, e.marks)
	e.mu.Unlock()
	e.ok("POST", "/api/v1/publish", fmt.Sprintf(`{"topic":%q,"data":%s}`, topic, marker))
	var before []string
	for {
		m, raw := sub.next()
		if m.Type == "publish" && m.Topic == topic && string(m.Data) == marker {
			return before
		}
		before = append(before, string(raw))
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestClusterOperations: the API of one node reaches connections on the
// other nodes of its cluster: the topic list, disconnect by connection and
// by user, and unsubscribe.
func TestClusterOperations(t *testing.T) {
	m := firetower.NewLocalManager()
	a := newEnv(t, httpapi.Config{}, firetower.WithManager(m), firetower.WithNodeID(1))
	b := newEnv(t, httpapi.Config{}, firetower.WithManager(m), firetower.WithNodeID(2))
	c := newEnv(t, httpapi.Config{}, firetower.WithManager(m), firetower.WithNodeID(3))

	onB := b.dial("onB", url.Values{"user": {"zoe"}})
	onB.subscribe("/only-b", "/shared")
	onC := c.dial("onC", url.Values{"user": {"zoe"}})
	onC.subscribe("/shared")
	bob := c.dial("bob", url.Values{"user": {"bob"}})
	bob.subscribe("/shared")
	a.dial("onA", nil).subscribe("/shared")

	r := a.do("GET", "/api/v1/topics", "")
	if r.status != http.StatusOK {
		t.Fatalf("topics: %s", r)
	}
	if got, want := string(bytes.TrimSpace(r.body)), `{"topics":[{"topic":"/shared","local":1,"count":4},{"topic":"/only-b","local":0,"count":1}]}`; got != want {
		t.Errorf("topics from node 1: %s, want %s", got, want)
	}
	r = a.do("GET", "/api/v1/topics?q=ONLY&top=5", "")
	if got, want := string(bytes.TrimSpace(r.body)), `{"topics":[{"topic":"/only-b","local":0,"count":1}]}`; r.status != 200 || got != want {
		t.Errorf("topics?q=ONLY: %d %s, want %s", r.status, got, want)
	}
	wantError(t, a.do("GET", "/api/v1/topics?top=-1", ""), http.StatusBadRequest, firetower.CodeBadRequest)

	// Presence on node 1 lists the subscribers of every node.
	r = a.do("GET", "/api/v1/presence/"+url.PathEscape("/shared"), "")
	var pres struct {
		Topic       string `json:"topic"`
		Count       int64  `json:"count"`
		Users       int64  `json:"users"`
		Connections []struct {
			ID     string `json:"id"`
			UserID string `json:"user_id"`
			Node   int    `json:"node"`
		} `json:"connections"`
	}
	if err := json.Unmarshal(r.body, &pres); r.status != 200 || err != nil {
		t.Fatalf("presence: %s (%v)", r, err)
	}
	seen := map[string]string{}
	for _, p := range pres.Connections {
		seen[p.ID] = fmt.Sprintf("%s@%d", p.UserID, p.Node)
	}
	want := map[string]string{b.connID("onB"): "zoe@2", c.connID("onC"): "zoe@3", c.connID("bob"): "bob@3", a.connID("onA"): "@1"}
	if pres.Topic != "/shared" || fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("presence of /shared: %s, want %v", r.body, want)
	}
	if pres.Count != 4 || pres.Users != 2 { // zoe (twice) and bob; onA has no user id
		t.Errorf("presence stats of /shared: %s, want count 4 and 2 users", r.body)
	}
	r = a.do("GET", "/api/v1/presence/%2Fshared?limit=2", "")
	if err := json.Unmarshal(r.body, &pres); r.status != 200 || err != nil || len(pres.Connections) != 2 || pres.Count != 4 {
		t.Errorf("presence with limit 2: %s", r)
	}
	r = a.do("GET", "/api/v1/presence/nobody", "")
	if got := string(bytes.TrimSpace(r.body)); r.status != 200 || got != `{"connections":[],"count":0,"topic":"nobody","users":0}` {
		t.Errorf("presence of an empty topic: %s", r)
	}
	wantError(t, a.do("GET", "/api/v1/presence/a%20b", ""), http.StatusBadRequest, firetower.CodeInvalidTopic)
	wantError(t, a.do("GET", "/api/v1/presence/x?limit=-1", ""), http.StatusBadRequest, firetower.CodeBadRequest)

	// Unsubscribe on node 1 of a connection on node 2: OnUnsubscribe runs
	// on node 2 before the answer.
	got := a.ok("POST", "/api/v1/unsubscribe", fmt.Sprintf(`{"conn_id":%q,"topics":["/only-b"]}`, b.connID("onB")))
	if got["ok"] != true {
		t.Errorf("unsubscribe answer %v", got)
	}
	select {
	case ev := <-b.unsubs:
		if ev.connID != b.connID("onB") || fmt.Sprint(ev.topics) != "[/only-b]" {
			t.Errorf("OnUnsubscribe on node 2: %+v", ev)
		}
	default:
		t.Error("OnUnsubscribe had not run on node 2 when the API answered")
	}
	if n, err := a.tower.ConnectNum(context.Background(), "/only-b"); err != nil || n != 0 {
		t.Errorf("count of /only-b after the unsubscribe: %d, %v; want 0", n, err)
	}
	onB.open()

	// Disconnect by user: zoe has one connection on node 2 and one on 3.
	got = a.ok("POST", "/api/v1/disconnect", `{"user_id":"zoe","code":4002,"reason":"bye"}`)
	if got["disconnected"] != float64(2) {
		t.Errorf("disconnect zoe: %v, want 2", got)
	}
	for _, cl := range []*client{onB, onC} {
		if code, reason := cl.closeCode(); code != 4002 || reason != "bye" {
			t.Errorf("%s: close %d %q, want 4002 bye", cl.name, code, reason)
		}
	}
	// Disconnect by connection id, on node 3.
	got = a.ok("POST", "/api/v1/disconnect", fmt.Sprintf(`{"conn_id":%q,"code":4003}`, c.connID("bob")))
	if got["disconnected"] != float64(1) {
		t.Errorf("disconnect bob: %v", got)
	}
	if code, _ := bob.closeCode(); code != 4003 {
		t.Errorf("bob: close %d, want 4003", code)
	}
	// Ids no node has, and bad codes, are refused with no effect.
	wantError(t, a.do("POST", "/api/v1/disconnect", `{"conn_id":"9-nope-1"}`), http.StatusNotFound, "not_found")
	wantError(t, a.do("POST", "/api/v1/unsubscribe", `{"conn_id":"9-nope-1","topics":["/shared"]}`), http.StatusNotFound, "not_found")
	wantError(t, a.do("POST", "/api/v1/disconnect", `{"user_id":"zoe","code":1005}`), http.StatusBadRequest, firetower.CodeBadRequest)
}
