package firetower_test

// Conformance tests of the client protocol (spec/protocol.md) driven by a third-party
// websocket client (gorilla/websocket), in JSON and in msgpack.
//
// Helpers in this file and in hooks_test.go are prefixed "pt" so they cannot clash with
// other test files of the package.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/firetower-go/firetower"
)

// ptTimeout bounds every wait of these tests. It is a deadline, never a synchronisation.
const ptTimeout = 10 * time.Second

const (
	ptProtoJSON    = "firetower.v1.json"
	ptProtoMsgpack = "firetower.v1.msgpack"
)

// ---------------------------------------------------------------------------------------
// server and client helpers

// ptServer starts a tower on a free loopback port and shuts it down at the end of the test.
func ptServer(t testing.TB, opts ...firetower.Option) *firetower.Tower {
	t.Helper()
	return startTower(t, ptTimeout, opts...)
}

// ptTower is a Tower as a listener variant serves it (variants_test.go):
// the protocol tests run against each variant. Addr is where clients dial.
type ptTower struct {
	*firetower.Tower
	s *wsServer
}

func (p *ptTower) Addr() string { return p.s.addr }

// ptStart is ptServer for variant v.
func ptStart(t testing.TB, v wsVariant, opts ...firetower.Option) *ptTower {
	t.Helper()
	s := wsStart(t, v, nil, opts...)
	return &ptTower{Tower: s.tw, s: s}
}

// ptTarget is a server to dial: a *firetower.Tower on its own listener, or
// a *ptTower.
type ptTarget interface{ Addr() string }

// ptURL is the websocket URL of the tower's default path, with an optional raw query.
func ptURL(tw ptTarget, query string) string {
	if p, ok := tw.(*ptTower); ok {
		return p.s.url(query)
	}
	u := "ws://" + tw.Addr() + "/ws"
	if query != "" {
		u += "?" + query
	}
	return u
}

// ptDialTo dials url on tw's variant: its TLS configuration and Dialer
// adjustments (none for a *firetower.Tower).
func ptDialTo(tw ptTarget, url string, subprotocols ...string) (*ptConn, *http.Response, error) {
	p, ok := tw.(*ptTower)
	if !ok {
		return ptDialRaw(url, subprotocols...)
	}
	return ptDialWith(url, func(d *websocket.Dialer) {
		d.TLSClientConfig = p.s.tls
		if p.s.v.dialer != nil {
			p.s.v.dialer(d)
		}
	}, subprotocols...)
}

type ptFrame struct {
	mt   int
	data []byte
}

// ptConn is a test client. One goroutine reads frames into a channel, so every wait in the
// tests is a select with a deadline and a read never poisons the connection.
type ptConn struct {
	ws     *websocket.Conn
	resp   *http.Response
	mp     bool // msgpack codec
	frames chan ptFrame
	quit   chan struct{}
	done   chan struct{}
	err    error // read error, valid once done is closed
	seq    atomic.Int64
	once   sync.Once
}

// ptDialRaw dials without failing the test; subprotocols may be empty.
func ptDialRaw(url string, subprotocols ...string) (*ptConn, *http.Response, error) {
	return ptDialWith(url, nil, subprotocols...)
}

// ptDialWith is ptDialRaw with the Dialer adjusted by adjust (if not nil).
func ptDialWith(url string, adjust func(*websocket.Dialer), subprotocols ...string) (*ptConn, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: ptTimeout, Subprotocols: subprotocols}
	if adjust != nil {
		adjust(&d)
	}
	ws, resp, err := d.Dial(url, nil)
	if err != nil {
		return nil, resp, err
	}
	c := &ptConn{
		ws:     ws,
		resp:   resp,
		mp:     ws.Subprotocol() == ptProtoMsgpack,
		frames: make(chan ptFrame, 4096),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go c.readLoop()
	return c, resp, nil
}

func (c *ptConn) readLoop() {
	defer close(c.done)
	for {
		mt, data, err := c.ws.ReadMessage()
		if err != nil {
			c.err = err
			return
		}
		select {
		case c.frames <- ptFrame{mt, data}:
		case <-c.quit:
			c.err = errors.New("client closed")
			return
		}
	}
}

// close closes the TCP connection and waits for the reader goroutine.
func (c *ptConn) close() {
	c.once.Do(func() {
		close(c.quit)
		_ = c.ws.Close()
		select {
		case <-c.done:
		case <-time.After(ptTimeout):
		}
	})
}

// closeHandshake sends a close frame with code 1000, then closes the connection.
func (c *ptConn) closeHandshake() {
	_ = c.ws.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(ptTimeout))
	c.close()
}

// ptDial connects with the given codec: "" (no subprotocol), "json" or "msgpack".
func ptDial(t testing.TB, tw ptTarget, codec string) *ptConn {
	t.Helper()
	return ptDialQuery(t, tw, codec, "")
}

func ptDialQuery(t testing.TB, tw ptTarget, codec, query string) *ptConn {
	t.Helper()
	var protos []string
	switch codec {
	case "":
	case "json":
		protos = []string{ptProtoJSON}
	case "msgpack":
		protos = []string{ptProtoMsgpack}
	default:
		t.Fatalf("unknown codec %q", codec)
	}
	c, resp, err := ptDialTo(tw, ptURL(tw, query), protos...)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s (codec %q): %v (HTTP status %d)", ptURL(tw, query), codec, err, status)
	}
	t.Cleanup(c.close)
	if want := map[string]string{"": "", "json": ptProtoJSON, "msgpack": ptProtoMsgpack}[codec]; c.ws.Subprotocol() != want {
		t.Fatalf("negotiated subprotocol %q, want %q", c.ws.Subprotocol(), want)
	}
	return c
}

func (c *ptConn) nextID() string { return fmt.Sprintf("r%d", c.seq.Add(1)) }

// sendRaw writes one message of the given websocket type.
func (c *ptConn) sendRaw(t testing.TB, mt int, data []byte) {
	t.Helper()
	_ = c.ws.SetWriteDeadline(time.Now().Add(ptTimeout))
	if err := c.ws.WriteMessage(mt, data); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// sendText writes a JSON text message exactly as given.
func (c *ptConn) sendText(t testing.TB, s string) {
	t.Helper()
	c.sendRaw(t, websocket.TextMessage, []byte(s))
}

// send encodes a request with the connection's codec (JSON text or msgpack binary).
func (c *ptConn) send(t testing.TB, req map[string]any) {
	t.Helper()
	if c.mp {
		b, err := msgpack.Marshal(req)
		if err != nil {
			t.Fatalf("msgpack marshal: %v", err)
		}
		c.sendRaw(t, websocket.BinaryMessage, b)
		return
	}
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatalf("json marshal: %v", err)
	}
	c.sendRaw(t, websocket.TextMessage, b)
}

// nextFrame returns the next frame, failing the test at the deadline or if the connection ends.
func (c *ptConn) nextFrame(t testing.TB) ptFrame {
	t.Helper()
	timer := time.NewTimer(ptTimeout)
	defer timer.Stop()
	select {
	case f, ok := <-c.frames:
		if !ok {
			t.Fatalf("connection ended while waiting for a message: %v", c.err)
		}
		return f
	case <-c.done:
		// drain what the reader delivered before it stopped
		select {
		case f := <-c.frames:
			return f
		default:
		}
		t.Fatalf("connection ended while waiting for a message: %v", c.err)
	case <-timer.C:
		t.Fatalf("no message within %v", ptTimeout)
	}
	return ptFrame{}
}

// ptMsg is a decoded server message. Data holds the JSON text of "data" (verbatim for JSON
// connections; re-marshalled from the decoded value for msgpack connections).
type ptMsg struct {
	Frame   int
	Raw     []byte
	Fields  map[string]bool
	Type    string
	ID      string // canonical JSON text of the id; "" when absent
	Topic   string
	Topics  []string
	Code    string
	Message string
	Data    json.RawMessage
	DataAny any // generic value, numbers as float64
}

func (m ptMsg) has(field string) bool { return m.Fields[field] }

func (m ptMsg) String() string {
	if m.Frame == websocket.BinaryMessage {
		var v any
		if err := msgpack.Unmarshal(m.Raw, &v); err == nil {
			b, _ := json.Marshal(ptNorm(v))
			return "msgpack" + string(b)
		}
		return fmt.Sprintf("binary %x", m.Raw)
	}
	return string(m.Raw)
}

// next returns the next decoded message.
func (c *ptConn) next(t testing.TB) ptMsg {
	t.Helper()
	f := c.nextFrame(t)
	m, err := c.decode(f)
	if err != nil {
		t.Fatalf("undecodable server message %q: %v", f.data, err)
	}
	return m
}

func (c *ptConn) decode(f ptFrame) (ptMsg, error) {
	m := ptMsg{Frame: f.mt, Raw: f.data, Fields: map[string]bool{}}
	if c.mp {
		if f.mt != websocket.BinaryMessage {
			return m, fmt.Errorf("msgpack connection got frame type %d, want binary", f.mt)
		}
		var raw map[string]any
		if err := msgpack.Unmarshal(f.data, &raw); err != nil {
			return m, err
		}
		for k, v := range raw {
			m.Fields[k] = true
			nv := ptNorm(v)
			switch k {
			case "type":
				m.Type, _ = nv.(string)
			case "id":
				b, _ := json.Marshal(nv)
				m.ID = string(b)
			case "topic":
				m.Topic, _ = nv.(string)
			case "topics":
				arr, _ := nv.([]any)
				m.Topics = []string{}
				for _, e := range arr {
					s, _ := e.(string)
					m.Topics = append(m.Topics, s)
				}
			case "code":
				m.Code, _ = nv.(string)
			case "message":
				m.Message, _ = nv.(string)
			case "data":
				m.DataAny = nv
				m.Data, _ = json.Marshal(nv)
			}
		}
		return m, nil
	}
	if f.mt != websocket.TextMessage {
		return m, fmt.Errorf("JSON connection got frame type %d, want text", f.mt)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(f.data, &raw); err != nil {
		return m, err
	}
	for k, v := range raw {
		m.Fields[k] = true
		var err error
		switch k {
		case "type":
			err = json.Unmarshal(v, &m.Type)
		case "id":
			var buf bytes.Buffer
			err = json.Compact(&buf, v)
			m.ID = buf.String()
		case "topic":
			err = json.Unmarshal(v, &m.Topic)
		case "topics":
			m.Topics = []string{}
			err = json.Unmarshal(v, &m.Topics)
		case "code":
			err = json.Unmarshal(v, &m.Code)
		case "message":
			err = json.Unmarshal(v, &m.Message)
		case "data":
			m.Data = v
			err = json.Unmarshal(v, &m.DataAny)
		}
		if err != nil {
			return m, fmt.Errorf("field %q: %w", k, err)
		}
	}
	return m, nil
}

// ptID is the canonical JSON text of an id given as a Go value (string or number).
func ptID(id any) string {
	if id == nil {
		return ""
	}
	if r, ok := id.(json.RawMessage); ok {
		return string(r)
	}
	b, _ := json.Marshal(ptNorm(id))
	return string(b)
}

// ptNorm turns a decoded msgpack/JSON value into the shapes encoding/json produces:
// numbers float64, maps map[string]any, bytes strings.
func ptNorm(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = ptNorm(e)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[fmt.Sprint(k)] = ptNorm(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = ptNorm(e)
		}
		return out
	case []byte:
		return string(x)
	case string, bool, float64:
		return x
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return float64(rv.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return float64(rv.Uint())
	case reflect.Float32, reflect.Float64:
		return rv.Float()
	}
	return v
}

// ptJSONValue decodes JSON text into the generic shape used for comparisons.
func ptJSONValue(t testing.TB, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("bad JSON in test %q: %v", s, err)
	}
	return v
}

func ptQ(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func ptSorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

func ptSameSet(a, b []string) bool {
	return reflect.DeepEqual(ptSorted(ptUniq(a)), ptSorted(ptUniq(b)))
}

func ptUniq(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, e := range s {
		if !seen[e] {
			seen[e] = true
			out = append(out, e)
		}
	}
	return out
}

// expectAck reads the next message and requires an ack with the given id.
func (c *ptConn) expectAck(t testing.TB, id any) ptMsg {
	t.Helper()
	m := c.next(t)
	if m.Type != "ack" || m.ID != ptID(id) {
		t.Fatalf("got %s, want ack with id %s", m, ptID(id))
	}
	return m
}

// expectError reads the next message and requires an error with the given code; id nil
// means the error must carry no id.
func (c *ptConn) expectError(t testing.TB, id any, code string) ptMsg {
	t.Helper()
	m := c.next(t)
	ptCheckError(t, m, id, code)
	return m
}

func ptCheckError(t testing.TB, m ptMsg, id any, code string) {
	t.Helper()
	if m.Type != "error" || m.Code != code {
		t.Fatalf("got %s, want error with code %q", m, code)
	}
	if id == nil {
		if m.has("id") {
			t.Fatalf("got %s, want an error without id", m)
		}
	} else if m.ID != ptID(id) {
		t.Fatalf("got %s, want error id %s", m, ptID(id))
	}
	if !m.has("message") || m.Message == "" {
		t.Errorf("error %s has no human message", m)
	}
}

// expectDelivery reads the next message and requires a delivery on topic with data equal
// (byte for byte on JSON connections, by value on msgpack ones) to the JSON text want.
func (c *ptConn) expectDelivery(t testing.TB, topic, want string) ptMsg {
	t.Helper()
	m := c.next(t)
	ptCheckDelivery(t, c, m, topic, want)
	return m
}

func ptCheckDelivery(t testing.TB, c *ptConn, m ptMsg, topic, want string) {
	t.Helper()
	if m.Type != "publish" || m.Topic != topic {
		t.Fatalf("got %s, want a delivery on %q", m, topic)
	}
	if c.mp {
		if !reflect.DeepEqual(m.DataAny, ptJSONValue(t, want)) {
			t.Fatalf("delivery data %s, want the value %s", m.Data, want)
		}
		return
	}
	if string(m.Data) != want {
		t.Fatalf("delivery data %q, want exactly %q", m.Data, want)
	}
}

// sub subscribes (topics form) and waits for the ack; it returns the ack.
func (c *ptConn) sub(t testing.TB, topics ...string) ptMsg {
	t.Helper()
	id := c.nextID()
	c.send(t, map[string]any{"type": "subscribe", "topics": topics, "id": id})
	return c.expectAck(t, id)
}

func (c *ptConn) unsub(t testing.TB, topics ...string) ptMsg {
	t.Helper()
	id := c.nextID()
	c.send(t, map[string]any{"type": "unsubscribe", "topics": topics, "id": id})
	return c.expectAck(t, id)
}

// pub publishes data (a Go value for the codec) without an id.
func (c *ptConn) pub(t testing.TB, topic string, data any) {
	t.Helper()
	c.send(t, map[string]any{"type": "publish", "topic": topic, "data": data})
}

// barrier sends a ping and returns every message received before its pong. Responses to
// this client's earlier requests come before the pong (acks are in request order).
func (c *ptConn) barrier(t testing.TB) []ptMsg {
	t.Helper()
	id := c.nextID()
	c.send(t, map[string]any{"type": "ping", "id": id})
	var before []ptMsg
	for {
		m := c.next(t)
		if m.Type == "pong" && m.ID == ptID(id) {
			return before
		}
		before = append(before, m)
	}
}

// expectQuiet requires that no message for this client precedes the pong of a ping.
func (c *ptConn) expectQuiet(t testing.TB) {
	t.Helper()
	if got := c.barrier(t); len(got) > 0 {
		t.Fatalf("unexpected messages: %v", got)
	}
}

// expectClose reads until the server closes the connection and returns the close code and
// text, with the messages received before the close.
func (c *ptConn) expectClose(t testing.TB) (int, string, []ptFrame) {
	t.Helper()
	var before []ptFrame
	timer := time.NewTimer(ptTimeout)
	defer timer.Stop()
	for {
		select {
		case f := <-c.frames:
			before = append(before, f)
			continue
		default:
		}
		select {
		case f := <-c.frames:
			before = append(before, f)
		case <-c.done:
			for {
				select {
				case f := <-c.frames:
					before = append(before, f)
					continue
				default:
				}
				break
			}
			var ce *websocket.CloseError
			if errors.As(c.err, &ce) {
				return ce.Code, ce.Text, before
			}
			t.Fatalf("connection ended without a close frame: %v (messages before: %d)", c.err, len(before))
		case <-timer.C:
			t.Fatalf("connection not closed within %v", ptTimeout)
		}
	}
}

// ptConnectNum asserts the subscriber count of topic.
func ptConnectNum(t testing.TB, tw interface {
	ConnectNum(context.Context, string) (int64, error)
}, topic string, want int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ptTimeout)
	defer cancel()
	n, err := tw.ConnectNum(ctx, topic)
	if err != nil {
		t.Fatalf("ConnectNum(%q): %v", topic, err)
	}
	if n != want {
		t.Fatalf("ConnectNum(%q) = %d, want %d", topic, n, want)
	}
}

func ptPublish(t testing.TB, tw interface {
	Publish(context.Context, string, []byte) error
}, topic string, data []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ptTimeout)
	defer cancel()
	if err := tw.Publish(ctx, topic, data); err != nil {
		t.Fatalf("Publish(%q): %v", topic, err)
	}
}

// ptRecv waits for a value from ch with the test deadline.
func ptRecv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	timer := time.NewTimer(ptTimeout)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

// ptWaitStats polls the tower's counters until cond holds, with the test deadline.
func ptWaitStats(t testing.TB, tw interface{ Stats() firetower.Stats }, what string, cond func(firetower.Stats) bool) {
	t.Helper()
	waitStats(t, tw, ptTimeout, what, cond)
}

// ptHook is middleware that runs fn and continues the chain when fn returns nil.
func ptHook(fn func(c *firetower.Context) error) firetower.Middleware {
	return func(next firetower.Handler) firetower.Handler {
		return func(c *firetower.Context) error {
			if err := fn(c); err != nil {
				return err
			}
			return next(c)
		}
	}
}

// ptAfter is middleware that runs the rest of the chain, then fn.
func ptAfter(fn func(c *firetower.Context, err error) error) firetower.Middleware {
	return func(next firetower.Handler) firetower.Handler {
		return func(c *firetower.Context) error {
			return fn(c, next(c))
		}
	}
}

// ptCodecs runs a subtest per codec.
func ptCodecs(t *testing.T, f func(t *testing.T, codec string)) {
	for _, codec := range []string{"json", "msgpack"} {
		t.Run(codec, func(t *testing.T) { f(t, codec) })
	}
}

// ---------------------------------------------------------------------------------------
// transport and negotiation

func TestProtocolSubprotocolNegotiation(t *testing.T) {
	wsEach(t, func(t *testing.T, v wsVariant) {
		tw := ptStart(t, v)
		cases := []struct {
			name   string
			offer  []string
			echo   string
			binary bool
		}{
			{"none", nil, "", false},
			{"json", []string{ptProtoJSON}, ptProtoJSON, false},
			{"msgpack", []string{ptProtoMsgpack}, ptProtoMsgpack, true},
			{"unknown only", []string{"chat.example", "v9.unknown"}, "", false},
			{"unknown then msgpack", []string{"chat.example", ptProtoMsgpack}, ptProtoMsgpack, true},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c, resp, err := ptDialTo(tw, ptURL(tw, ""), tc.offer...)
				if err != nil {
					t.Fatalf("dial: %v (resp %v)", err, resp)
				}
				t.Cleanup(c.close)
				if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != tc.echo {
					t.Fatalf("Sec-WebSocket-Protocol %q, want %q", got, tc.echo)
				}
				c.send(t, map[string]any{"type": "ping", "id": "p"})
				f := c.nextFrame(t)
				wantType := websocket.TextMessage
				if tc.binary {
					wantType = websocket.BinaryMessage
				}
				if f.mt != wantType {
					t.Fatalf("frame type %d, want %d", f.mt, wantType)
				}
				m, err := c.decode(f)
				if err != nil {
					t.Fatal(err)
				}
				if m.Type != "pong" || m.ID != `"p"` {
					t.Fatalf("got %s, want pong p", m)
				}
			})
		}
	})
}

// ---------------------------------------------------------------------------------------
// acks, ids and topics

func TestProtocolAckIDs(t *testing.T) {
	wsEach(t, func(t *testing.T, v wsVariant) {
		ptCodecs(t, func(t *testing.T, codec string) {
			tw := ptStart(t, v)
			c := ptDial(t, tw, codec)
			ids := []any{"s-1", "", "ünï", 0, 7, -3, 123456789}
			for i, id := range ids {
				topic := fmt.Sprintf("ids/%d", i)
				c.send(t, map[string]any{"type": "subscribe", "topics": []string{topic}, "id": id})
				ack := c.expectAck(t, id)
				if !ack.has("topics") || !reflect.DeepEqual(ack.Topics, []string{topic}) {
					t.Fatalf("subscribe ack %s: want topics [%q]", ack, topic)
				}
			}
			// publish and ping answer with the same id too
			c.send(t, map[string]any{"type": "publish", "topic": "ids/0", "data": "x", "id": 42})
			var sawAck, sawDelivery bool
			for range 2 {
				m := c.next(t)
				switch {
				case m.Type == "ack" && m.ID == "42":
					sawAck = true
				case m.Type == "publish" && m.Topic == "ids/0":
					sawDelivery = true
				default:
					t.Fatalf("unexpected %s", m)
				}
			}
			if !sawAck || !sawDelivery {
				t.Fatalf("publish: ack %v delivery %v", sawAck, sawDelivery)
			}
		})
		t.Run("json exact numbers", func(t *testing.T) {
			// A numeric id comes back as the same number, not rounded through float64.
			tw := ptStart(t, v)
			c := ptDial(t, tw, "")
			for i, id := range []string{"9007199254740993", "1.5", "-0"} {
				c.sendText(t, fmt.Sprintf(`{"type":"subscribe","topics":["n%d"],"id":%s}`, i, id))
				c.expectAck(t, json.RawMessage(id))
			}
		})
	})
}

func TestProtocolUnsubscribeAck(t *testing.T) {
	wsEach(t, func(t *testing.T, v wsVariant) {
		ptCodecs(t, func(t *testing.T, codec string) {
			tw := ptStart(t, v)
			c := ptDial(t, tw, codec)
			c.sub(t, "a", "b", "c")
			ack := c.unsub(t, "a", "c")
			if !ack.has("topics") {
				t.Fatalf("unsubscribe ack %s has no topics", ack)
			}
			if !ptSameSet(ack.Topics, []string{"a", "c"}) {
				t.Fatalf("unsubscribe ack topics %q, want the topics unsubscribed [a c]", ack.Topics)
			}
			ptConnectNum(t, tw, "a", 0)
			ptConnectNum(t, tw, "b", 1)
			ptConnectNum(t, tw, "c", 0)
			// no delivery on an unsubscribed topic, delivery on the remaining one
			ptPublish(t, tw, "a", []byte(`"gone"`))
			ptPublish(t, tw, "b", []byte(`"kept"`))
			c.expectDelivery(t, "b", `"kept"`)
		})
	})
}

// ---------------------------------------------------------------------------------------
// deliveries

func TestProtocolPublishDataVerbatim(t *testing.T) {
	wsEach(t, func(t *testing.T, v wsVariant) {
		tw := ptStart(t, v)
		pub := ptDial(t, tw, "")
		sub := ptDial(t, tw, "json")
		pub.sub(t, "raw")
		sub.sub(t, "raw")
		payloads := []string{
			`{ "a" :  [1, 2 ,3 ] ,"b":{"c" : {"d":  "e"}} , "z":null}`,
			"{\n\t\"multi\" : \"line\"\r\n}",
			`"h\u00e9llo \ud83d\ude00 日本語 é \"quoted\" \\ \/"`,
			`"naïve ☃ 🚀"`,
			`12345678901234567890123456789`,
			`1.50`,
			`-0`,
			`1E+2`,
			`-2.5e-10`,
			`true`,
			`false`,
			`null`,
			`[]`,
			`{}`,
			`""`,
			`[ {"x":"y\"z\\"} , "a" , [ [ ] ] ]`,
			`{"b":2,"a":1,"a":3}`,
		}
		for i, p := range payloads {
			id := fmt.Sprintf("p%d", i)
			pub.sendText(t, `{"type":"publish","topic":"raw","id":`+ptQ(id)+`,"data":`+p+`}`)
			// the publisher is subscribed: its ack and its own delivery, in either order
			var gotAck bool
			var own ptMsg
			for range 2 {
				m := pub.next(t)
				if m.Type == "ack" && m.ID == ptQ(id) {
					gotAck = true
					continue
				}
				own = m
			}
			if !gotAck {
				t.Fatalf("payload %d: no ack", i)
			}
			ptCheckDelivery(t, pub, own, "raw", p)
			sub.expectDelivery(t, "raw", p)
		}
	})
}

func TestProtocolMsgpackPubSub(t *testing.T) {
	wsEach(t, func(t *testing.T, v wsVariant) {
		tw := ptStart(t, v)
		pub := ptDial(t, tw, "msgpack")
		sub := ptDial(t, tw, "msgpack")
		pub.sub(t, "mp")
		sub.sub(t, "mp")
		data := map[string]any{"s": "héllo", "n": 42, "neg": -7, "f": 1.25, "b": true, "nil": nil,
			"arr": []any{1, "two", []any{3}}, "obj": map[string]any{"k": "v"}}
		pub.pub(t, "mp", data)
		want, _ := json.Marshal(ptNorm(data))
		sub.expectDelivery(t, "mp", string(want))
		pub.expectDelivery(t, "mp", string(want))
		for _, v := range []any{"just a string", 3, nil, []any{}} {
			pub.pub(t, "mp", v)
			w, _ := json.Marshal(ptNorm(v))
			sub.expectDelivery(t, "mp", string(w))
		}
	})
}

func TestProtocolCrossCodec(t *testing.T) {
	wsEach(t, func(t *testing.T, v wsVariant) {
		tw := ptStart(t, v)
		j := ptDial(t, tw, "")
		m := ptDial(t, tw, "msgpack")
		j.sub(t, "x")
		m.sub(t, "x")

		// JSON publisher -> msgpack subscriber
		jsonData := `{"a": 1, "b": [true, null, "s", 2.5, -3], "c": {"d": "ünï"}}`
		j.sendText(t, `{"type":"publish","topic":"x","data":`+jsonData+`}`)
		j.expectDelivery(t, "x", jsonData)
		m.expectDelivery(t, "x", jsonData)

		// msgpack publisher -> JSON subscriber
		mpData := map[string]any{"k": "v", "n": 42, "arr": []any{1, "two", false}, "o": map[string]any{"p": 1.5}}
		m.pub(t, "x", mpData)
		want := ptNorm(mpData)
		got := j.next(t)
		if got.Type != "publish" || got.Topic != "x" {
			t.Fatalf("JSON subscriber got %s, want a delivery on x", got)
		}
		if !reflect.DeepEqual(got.DataAny, want) {
			t.Fatalf("JSON subscriber data %s, want the value %v", got.Data, want)
		}
		if !json.Valid(got.Raw) {
			t.Fatalf("delivery is not valid JSON: %q", got.Raw)
		}
		wb, _ := json.Marshal(want)
		m.expectDelivery(t, "x", string(wb))
	})
}

func TestProtocolTopicForms(t *testing.T) {
	wsEach(t, func(t *testing.T, v wsVariant) {
		tw := ptStart(t, v)
		check := func(t *testing.T, c *ptConn, req string, want []string) {
			t.Helper()
			c.sendText(t, req)
			ack := c.expectAck(t, "t")
			if !ptSameSet(ack.Topics, want) {
				t.Fatalf("ack topics %q, want %q", ack.Topics, want)
			}
			for _, topic := range want {
				ptConnectNum(t, tw, topic, 1)
			}
			for _, topic := range want {
				ptPublish(t, tw, topic, []byte(ptQ(topic)))
				c.expectDelivery(t, topic, ptQ(topic))
			}
		}
		t.Run("topics array", func(t *testing.T) {
			c := ptDial(t, tw, "")
			check(t, c, `{"type":"subscribe","topics":["arr/a","arr/b"],"id":"t"}`, []string{"arr/a", "arr/b"})
		})
		t.Run("legacy comma list", func(t *testing.T) {
			c := ptDial(t, tw, "")
			check(t, c, `{"type":"subscribe","topic":"leg/a,leg/b","data":"","id":"t"}`, []string{"leg/a", "leg/b"})
		})
		t.Run("single topic", func(t *testing.T) {
			c := ptDial(t, tw, "")
			check(t, c, `{"type":"subscribe","topic":"one","id":"t"}`, []string{"one"})
		})
		t.Run("union", func(t *testing.T) {
			c := ptDial(t, tw, "")
			check(t, c, `{"type":"subscribe","topic":"u/a,u/b","topics":["u/c","u/a"],"id":"t"}`,
				[]string{"u/a", "u/b", "u/c"})
			// unsubscribe with the union form as well
			c.sendText(t, `{"type":"unsubscribe","topic":"u/a","topics":["u/b"],"id":"t"}`)
			ack := c.expectAck(t, "t")
			if !ptSameSet(ack.Topics, []string{"u/a", "u/b"}) {
				t.Fatalf("unsubscribe ack topics %q, want [u/a u/b]", ack.Topics)
			}
			ptConnectNum(t, tw, "u/a", 0)
			ptConnectNum(t, tw, "u/b", 0)
			ptConnectNum(t, tw, "u/c", 1)
		})
		t.Run("unicode and 256 bytes", func(t *testing.T) {
			c := ptDial(t, tw, "")
			long := strings.Repeat("x", 256)
			check(t, c, `{"type":"subscribe","topics":["чат/комната","`+long+`"],"id":"t"}`,
				[]string{"чат/комната", long})
		})
		t.Run("msgpack union", func(t *testing.T) {
			c := ptDial(t, tw, "msgpack")
			c.send(t, map[string]any{"type": "subscribe", "topic": "mu/a,mu/b", "topics": []string{"mu/c"}, "id": "t"})
			ack := c.expectAck(t, "t")
			if !ptSameSet(ack.Topics, []string{"mu/a", "mu/b", "mu/c"}) {
				t.Fatalf("ack topics %q", ack.Topics)
			}
			ptPublish(t, tw, "mu/b", []byte(`{"v":1}`))
			c.expectDelivery(t, "mu/b", `{"v":1}`)
		})
	})
}

func TestProtocolNumericTypes(t *testing.T) {
	wsEach(t, func(t *testing.T, v wsVariant) {
		tw := ptStart(t, v)
		sub := ptDial(t, tw, "")
		pub := ptDial(t, tw, "")

		sub.sendText(t, `{"type":2,"topic":"num","data":"","id":1}`)
		if ack := sub.expectAck(t, 1); !ptSameSet(ack.Topics, []string{"num"}) {
			t.Fatalf("ack topics %q", ack.Topics)
		}
		pub.sendText(t, `{"type":2,"topic":"num","id":1}`)
		pub.expectAck(t, 1)
		ptConnectNum(t, tw, "num", 2)

		pub.sendText(t, `{"type":1,"topic":"num","data":{"n":1},"id":2}`)
		sub.expectDelivery(t, "num", `{"n":1}`)

		sub.sendText(t, `{"type":3,"topic":"num","data":"","id":3}`)
		sub.expectAck(t, 3)
		ptConnectNum(t, tw, "num", 1)

		sub.sendText(t, `{"type":"subscribe","topic":"num","id":4}`)
		sub.expectAck(t, 4)
		sub.sendText(t, `{"type":"unSubscribe","topic":"num","id":5}`)
		sub.expectAck(t, 5)
		ptConnectNum(t, tw, "num", 1)

		// msgpack with numeric types
		mp := ptDial(t, tw, "msgpack")
		mp.send(t, map[string]any{"type": 2, "topic": "num", "id": 1})
		mp.expectAck(t, 1)
		ptConnectNum(t, tw, "num", 2)
		mp.send(t, map[string]any{"type": 1, "topic": "num", "data": "hi"})
		mp.expectDelivery(t, "num", `"hi"`)
		mp.send(t, map[string]any{"type": 3, "topic": "num", "id": 2})
		mp.expectAck(t, 2)
		ptConnectNum(t, tw, "num", 1)
	})
}

func TestProtocolSelfDelivery(t *testing.T) {
	wsEach(t, func(t *testing.T, v wsVariant) {
		ptCodecs(t, func(t *testing.T, codec string) {
			tw := ptStart(t, v)
			c := ptDial(t, tw, codec)
			c.sub(t, "self")
			c.pub(t, "self", map[string]any{"me": "too"})
			c.expectDelivery(t, "self", `{"me":"too"}`)
			c.expectQuiet(t)
		})
	})
}

func TestProtocolOrder1000(t *testing.T) {
	wsEach(t, func(t *testing.T, v wsVariant) {
		const n = 1000
		tw := ptStart(t, v)
		pub := ptDial(t, tw, "")
		sub := ptDial(t, tw, "")
		msub := ptDial(t, tw, "msgpack")
		pub.sub(t, "order")
		sub.sub(t, "order")
		msub.sub(t, "order")
		for i := range n {
			pub.sendText(t, fmt.Sprintf(`{"type":"publish","topic":"order","data":{"seq":%d}}`, i))
		}
		for _, c := range []*ptConn{sub, pub, msub} {
			for i := range n {
				m := c.next(t)
				want := fmt.Sprintf(`{"seq":%d}`, i)
				if m.Type != "publish" || m.Topic != "order" {
					t.Fatalf("message %d: got %s, want delivery", i, m)
				}
				if !reflect.DeepEqual(m.DataAny, ptJSONValue(t, want)) {
					t.Fatalf("message %d out of order: got data %s, want %s", i, m.Data, want)
				}
			}
		}
		pub.expectQuiet(t)
	})
}

func TestProtocolServerPublish(t *testing.T) {
	wsEach(t, func(t *testing.T, v wsVariant) {
		tw := ptStart(t, v)
		c := ptDial(t, tw, "")
		mc := ptDial(t, tw, "msgpack")
		c.sub(t, "srv")
		mc.sub(t, "srv")

		valid := `{"from" : "server", "list":[1 ,2]}`
		ptPublish(t, tw, "srv", []byte(valid))
		c.expectDelivery(t, "srv", valid)
		mc.expectDelivery(t, "srv", valid)

		for _, raw := range []string{"plain text", `not "json" {`, "tab\tnew\nline é", "{", ""} {
			ptPublish(t, tw, "srv", []byte(raw))
			m := c.next(t)
			if m.Type != "publish" || m.Topic != "srv" {
				t.Fatalf("got %s, want a delivery", m)
			}
			var s string
			if err := json.Unmarshal(m.Data, &s); err != nil || s != raw {
				t.Fatalf("non-JSON data %q delivered as %s, want a JSON string of it", raw, m.Data)
			}
			mm := mc.next(t)
			if mm.Type != "publish" || mm.DataAny != any(raw) {
				t.Fatalf("msgpack subscriber got %s, want the string %q", mm, raw)
			}
		}
		// a topic nobody subscribed: no error, nothing delivered
		ptPublish(t, tw, "srv/nobody", []byte(`1`))
		c.expectQuiet(t)
	})
}

func TestProtocolConnectNum(t *testing.T) {
	wsEach(t, func(t *testing.T, v wsVariant) {
		disc := make(chan string, 16)
		tw := ptStart(t, v, firetower.OnDisconnect(ptAfter(func(c *firetower.Context, err error) error {
			disc <- c.Conn().ID()
			return err
		})))
		c1 := ptDial(t, tw, "")
		c2 := ptDial(t, tw, "msgpack")
		c3 := ptDial(t, tw, "json")

		c1.sub(t, "cn/a", "cn/b")
		c2.sub(t, "cn/a")
		c3.sub(t, "cn/b", "cn/c")
		ptConnectNum(t, tw, "cn/a", 2)
		ptConnectNum(t, tw, "cn/b", 2)
		ptConnectNum(t, tw, "cn/c", 1)
		ptConnectNum(t, tw, "cn/none", 0)

		// subscribing again, or twice in one request, does not count twice
		c1.sub(t, "cn/a")
		c3.sub(t, "cn/c", "cn/c")
		ptConnectNum(t, tw, "cn/a", 2)
		ptConnectNum(t, tw, "cn/c", 1)

		c1.unsub(t, "cn/a")
		ptConnectNum(t, tw, "cn/a", 1)
		c1.unsub(t, "cn/a") // not subscribed any more: no change
		ptConnectNum(t, tw, "cn/a", 1)

		// an abrupt disconnect (no close frame) and a clean one
		c2.close()
		ptRecv(t, disc, "OnDisconnect of c2")
		ptConnectNum(t, tw, "cn/a", 0)
		ptConnectNum(t, tw, "cn/b", 2)

		c3.closeHandshake()
		ptRecv(t, disc, "OnDisconnect of c3")
		ptConnectNum(t, tw, "cn/b", 1)
		ptConnectNum(t, tw, "cn/c", 0)

		c1.unsub(t, "cn/b")
		ptConnectNum(t, tw, "cn/b", 0)
	})
}

func TestProtocolLegacyDelivery(t *testing.T) {
	wsEach(t, func(t *testing.T, v wsVariant) {
		subscribed := make(chan []string, 8)
		tw := ptStart(t, v, firetower.WithLegacyDelivery(true),
			firetower.OnSubscribe(ptAfter(func(c *firetower.Context, err error) error {
				subscribed <- c.Topics()
				return err
			})))
		sub := ptDial(t, tw, "")
		pub := ptDial(t, tw, "")
		// an unmodified v0.4 client: comma list, data "", no id, so no ack to wait for: the
		// OnSubscribe hook tells when the subscription is in effect
		sub.sendText(t, `{"type":"subscribe","topic":"lg/a,lg/b","data":""}`)
		var got []string
		for len(got) < 2 {
			got = append(got, ptRecv(t, subscribed, "the legacy subscription")...)
		}
		if !ptSameSet(got, []string{"lg/a", "lg/b"}) {
			t.Fatalf("legacy subscribe topics %q", got)
		}
		pub.sub(t, "lg/a")
		ptRecv(t, subscribed, "the publisher's subscription")
		ptConnectNum(t, tw, "lg/b", 1)
		data := `{ "legacy" : [1, "two"] }`
		pub.sendText(t, `{"type":"publish","topic":"lg/a","data":`+data+`}`)
		f := sub.nextFrame(t)
		if f.mt != websocket.TextMessage || string(f.data) != data {
			t.Fatalf("legacy delivery frame %d %q, want text %q", f.mt, f.data, data)
		}
		f = pub.nextFrame(t)
		if string(f.data) != data {
			t.Fatalf("publisher's own legacy delivery %q, want %q", f.data, data)
		}
		ptPublish(t, tw, "lg/b", []byte(`"srv"`))
		if f := sub.nextFrame(t); string(f.data) != `"srv"` {
			t.Fatalf("legacy server delivery %q, want %q", f.data, `"srv"`)
		}
	})
}

func TestProtocolAnswerOrder(t *testing.T) {
	wsEach(t, func(t *testing.T, v wsVariant) {
		// A client never receives its answers out of order relative to its requests: many
		// requests sent without waiting are answered in request order (deliveries aside).
		ptCodecs(t, func(t *testing.T, codec string) {
			tw := ptStart(t, v)
			c := ptDial(t, tw, codec)
			const n = 48
			want := make([]string, 0, n)
			for i := range n {
				var req map[string]any
				kind := "ack"
				switch i % 6 {
				case 0:
					req = map[string]any{"type": "subscribe", "topics": []string{fmt.Sprintf("ao/%d", i)}}
				case 1:
					req = map[string]any{"type": "publish", "topic": fmt.Sprintf("ao/%d", i-1), "data": i}
				case 2:
					req = map[string]any{"type": "ping"}
					kind = "pong"
				case 3:
					req = map[string]any{"type": "subscribe", "topics": []string{"bad topic"}}
					kind = "error"
				case 4:
					req = map[string]any{"type": "unsubscribe", "topics": []string{fmt.Sprintf("ao/%d", i-4)}}
				case 5:
					req = map[string]any{"type": "publish", "topic": "ao/not-subscribed", "data": i}
					kind = "error"
				}
				req["id"] = i
				c.send(t, req)
				want = append(want, fmt.Sprintf("%s %d", kind, i))
			}
			var got []string
			for len(got) < n {
				m := c.next(t)
				if m.Type == "publish" {
					continue
				}
				got = append(got, m.Type+" "+m.ID)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("answers out of order:\n got %v\nwant %v", got, want)
			}
		})
	})
}

func TestProtocolPing(t *testing.T) {
	wsEach(t, func(t *testing.T, v wsVariant) {
		ptCodecs(t, func(t *testing.T, codec string) {
			tw := ptStart(t, v)
			c := ptDial(t, tw, codec)
			c.send(t, map[string]any{"type": "ping", "id": "p1"})
			if m := c.next(t); m.Type != "pong" || m.ID != `"p1"` {
				t.Fatalf("got %s, want pong p1", m)
			}
			c.send(t, map[string]any{"type": "ping", "id": 9})
			if m := c.next(t); m.Type != "pong" || m.ID != "9" {
				t.Fatalf("got %s, want pong 9", m)
			}
			c.send(t, map[string]any{"type": "ping"})
			if m := c.next(t); m.Type != "pong" || m.has("id") {
				t.Fatalf("got %s, want pong without id", m)
			}
		})
	})
}

// ---------------------------------------------------------------------------------------
// error codes

func TestProtocolErrorBadRequest(t *testing.T) {
	wsEach(t, func(t *testing.T, v wsVariant) {
		tw := ptStart(t, v)
		c := ptDial(t, tw, "")
		c.sub(t, "br")
		for _, bad := range []string{`{`, `{"type":"subscribe",`, `not json`, `{"type":"publish" "topic":"br"}`, `{"a":1}}`} {
			c.sendText(t, bad)
			c.expectError(t, nil, "bad_request")
		}
		// the connection stays open and works
		c.pub(t, "br", "still here")
		c.expectDelivery(t, "br", `"still here"`)
		ptConnectNum(t, tw, "br", 1)

		t.Run("msgpack", func(t *testing.T) {
			m := ptDial(t, tw, "msgpack")
			m.sub(t, "br")
			for _, bad := range [][]byte{{0xc1}, {0x81, 0xa4, 't', 'y'}, {0x82}} {
				m.sendRaw(t, websocket.BinaryMessage, bad)
				m.expectError(t, nil, "bad_request")
			}
			m.pub(t, "br", "mp still here")
			m.expectDelivery(t, "br", `"mp still here"`)
		})
	})
}

func TestProtocolErrorUnknownType(t *testing.T) {
	wsEach(t, func(t *testing.T, v wsVariant) {
		tw := ptStart(t, v, firetower.WithPublishPolicy(firetower.PublishAny))
		victim := ptDial(t, tw, "")
		victim.sub(t, "room")
		attacker := ptDial(t, tw, "")
		attacker.sub(t, "room")
		ptConnectNum(t, tw, "room", 2)

		reqs := []struct {
			req string
			id  any
		}{
			{`{"type":"kick","topic":"room","data":"x","id":"k1"}`, "k1"},
			{`{"type":99,"topic":"room","data":"x","id":"k2"}`, "k2"},
			{`{"type":4,"topic":"room","data":"x","id":3}`, 3},
			{`{"type":0,"topic":"room","data":"x","id":4}`, 4},
			{`{"type":"offline","topic":"room","data":"x"}`, nil},
			{`{"type":"timeout","topic":"room","data":"x","id":"k5"}`, "k5"},
			{`{"type":"PUBLISH","topic":"room","data":"x","id":"k6"}`, "k6"},
			{`{"type":"ack","topic":"room","data":"x","id":"k7"}`, "k7"},
		}
		for _, r := range reqs {
			attacker.sendText(t, r.req)
			attacker.expectError(t, r.id, "unknown_type")
		}
		m := ptDial(t, tw, "msgpack")
		m.send(t, map[string]any{"type": "kick", "topic": "room", "id": "mk"})
		m.expectError(t, "mk", "unknown_type")

		// nothing else happened: both still subscribed, nothing was delivered, the victim works
		ptConnectNum(t, tw, "room", 2)
		attacker.pub(t, "room", "marker")
		victim.expectDelivery(t, "room", `"marker"`)
		attacker.expectDelivery(t, "room", `"marker"`)
		victim.expectQuiet(t)
		victim.pub(t, "room", "alive")
		victim.expectDelivery(t, "room", `"alive"`)
	})
}

func TestProtocolErrorInvalidTopic(t *testing.T) {
	wsEach(t, func(t *testing.T, v wsVariant) {
		tw := ptStart(t, v)
		c := ptDial(t, tw, "")
		bad := []string{
			`{"type":"subscribe","topic":"","id":"e1"}`,
			`{"type":"subscribe","topics":[""],"id":"e2"}`,
			`{"type":"subscribe","topics":[" "],"id":"e3"}`,
			`{"type":"subscribe","topics":["a b"],"id":"e4"}`,
			`{"type":"subscribe","topics":["tab\there"],"id":"e5"}`,
			`{"type":"subscribe","topics":["new\nline"],"id":"e6"}`,
			`{"type":"subscribe","topics":["` + strings.Repeat("x", 257) + `"],"id":"e7"}`,
			`{"type":"subscribe","topics":["a,b"],"id":"e8"}`,
			`{"type":"subscribe","topics":["ok","a,b"],"id":"e9"}`,
			`{"type":"subscribe","topics":["ctl\u0001"],"id":"e10"}`,
			`{"type":"subscribe","topic":" lead","id":"e11"}`,
			`{"type":"subscribe","topics":["nbsp\u00a0x"],"id":"e12"}`,
			`{"type":"unsubscribe","topics":["a,b"],"id":"e13"}`,
			`{"type":"unsubscribe","topics":[""],"id":"e14"}`,
		}
		for i, req := range bad {
			c.sendText(t, req)
			c.expectError(t, fmt.Sprintf("e%d", i+1), "invalid_topic")
		}
		t.Run("msgpack", func(t *testing.T) {
			m := ptDial(t, tw, "msgpack")
			m.send(t, map[string]any{"type": "subscribe", "topics": []string{"has space"}, "id": "m1"})
			m.expectError(t, "m1", "invalid_topic")
			m.send(t, map[string]any{"type": "subscribe", "topics": []string{strings.Repeat("é", 129)}, "id": "m2"}) // 258 bytes
			m.expectError(t, "m2", "invalid_topic")
		})
		t.Run("publish", func(t *testing.T) {
			tw := ptStart(t, v, firetower.WithPublishPolicy(firetower.PublishAny))
			c := ptDial(t, tw, "")
			c.sendText(t, `{"type":"publish","topic":"bad topic","data":1,"id":"p1"}`)
			c.expectError(t, "p1", "invalid_topic")
			c.sendText(t, `{"type":"publish","topic":"","data":1,"id":"p2"}`)
			c.expectError(t, "p2", "invalid_topic")
		})
		// the connection is intact
		c.sub(t, "fine")
		ptConnectNum(t, tw, "fine", 1)
	})
}

func TestProtocolErrorForbidden(t *testing.T) {
	wsEach(t, func(t *testing.T, v wsVariant) {
		t.Run("default policy", func(t *testing.T) {
			tw := ptStart(t, v)
			sub := ptDial(t, tw, "")
			sub.sub(t, "fb")
			pub := ptDial(t, tw, "")
			pub.sendText(t, `{"type":"publish","topic":"fb","data":"nope","id":"f1"}`)
			pub.expectError(t, "f1", "forbidden")
			pub.sendText(t, `{"type":"publish","topic":"fb","data":"nope"}`)
			pub.expectError(t, nil, "forbidden") // an error is sent without an id too
			mp := ptDial(t, tw, "msgpack")
			mp.send(t, map[string]any{"type": "publish", "topic": "fb", "data": "nope", "id": 5})
			mp.expectError(t, 5, "forbidden")
			// subscribed to another topic does not help
			pub.sub(t, "other")
			pub.sendText(t, `{"type":"publish","topic":"fb","data":"nope","id":"f2"}`)
			pub.expectError(t, "f2", "forbidden")
			// the refused publishes reached no one: the next message on fb is the marker
			pub.sub(t, "fb")
			pub.pub(t, "fb", "marker")
			sub.expectDelivery(t, "fb", `"marker"`)
		})
		t.Run("hook refuses subscribe", func(t *testing.T) {
			tw := ptStart(t, v, firetower.OnBeforeSubscribe(ptHook(func(c *firetower.Context) error {
				for _, topic := range c.Topics() {
					if strings.HasPrefix(topic, "secret/") {
						return errors.New("not for you")
					}
				}
				return nil
			})))
			c := ptDial(t, tw, "")
			c.sendText(t, `{"type":"subscribe","topics":["secret/x"],"id":"h1"}`)
			c.expectError(t, "h1", "forbidden")
			ptConnectNum(t, tw, "secret/x", 0)
			c.sub(t, "public")
		})
		t.Run("hook refuses publish", func(t *testing.T) {
			tw := ptStart(t, v, firetower.OnRead(ptHook(func(c *firetower.Context) error {
				if bytes.Contains(c.Message().Data, []byte("bad")) {
					return errors.New("bad word")
				}
				return nil
			})))
			sub := ptDial(t, tw, "")
			sub.sub(t, "chat")
			pub := ptDial(t, tw, "")
			pub.sub(t, "chat")
			pub.sendText(t, `{"type":"publish","topic":"chat","data":"bad","id":"r1"}`)
			pub.expectError(t, "r1", "forbidden")
			pub.pub(t, "chat", "good")
			sub.expectDelivery(t, "chat", `"good"`)
			pub.expectDelivery(t, "chat", `"good"`)
		})
	})
}

func TestProtocolErrorTooManyTopics(t *testing.T) {
	wsEach(t, func(t *testing.T, v wsVariant) {
		tw := ptStart(t, v, firetower.WithMaxTopics(2))
		c := ptDial(t, tw, "")
		c.sub(t, "m/a", "m/b")
		c.sendText(t, `{"type":"subscribe","topics":["m/c"],"id":"x1"}`)
		c.expectError(t, "x1", "too_many_topics")
		ptConnectNum(t, tw, "m/c", 0)
		// re-subscribing existing topics is not "more" topics
		c.sub(t, "m/a")
		// freeing one makes room for one
		c.unsub(t, "m/b")
		c.sub(t, "m/c")
		ptConnectNum(t, tw, "m/c", 1)

		d := ptDial(t, tw, "msgpack")
		d.send(t, map[string]any{"type": "subscribe", "topics": []string{"n/a", "n/b", "n/c"}, "id": "x2"})
		d.expectError(t, "x2", "too_many_topics")
		ptConnectNum(t, tw, "n/a", 0)
		ptConnectNum(t, tw, "n/c", 0)
		d.sub(t, "n/a", "n/b")
	})
}

func TestProtocolErrorRateLimited(t *testing.T) {
	wsEach(t, func(t *testing.T, v wsVariant) {
		entered := make(chan struct{})
		release := make(chan struct{})
		timedOut := make(chan struct{}, 128)
		var first atomic.Bool
		tw := ptStart(t, v,
			firetower.WithInboundLimit(1), firetower.WithReadTimeout(50*time.Millisecond),
			firetower.OnRead(ptHook(func(c *firetower.Context) error {
				if first.CompareAndSwap(false, true) {
					close(entered)
				}
				<-release
				return nil
			})),
			firetower.OnReadTimeout(ptHook(func(c *firetower.Context) error {
				timedOut <- struct{}{}
				return nil
			})))
		var releaseOnce sync.Once
		releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
		t.Cleanup(releaseAll)

		sub := ptDial(t, tw, "")
		sub.sub(t, "rl")
		c := ptDial(t, tw, "")
		c.sub(t, "rl")

		base := tw.Stats().MessagesIn
		c.sendText(t, `{"type":"publish","topic":"rl","data":0,"id":0}`)
		ptRecv(t, entered, "the OnRead hook to start")
		// With an inbound budget of one byte and the hook stalled on id 0, the
		// server stops reading the client; past the read timeout it reads on and
		// drops what it reads: ids 1-12 are answered rate_limited, after the ack
		// of id 0, in request order, and the connection stays open.
		const n = 12
		for i := 1; i <= n; i++ {
			c.sendText(t, fmt.Sprintf(`{"type":"publish","topic":"rl","data":%d,"id":%d}`, i, i))
		}
		// the worker is released once the server has read the whole flood and dropped some
		ptWaitStats(t, tw, "the flood to be read and overflow", func(s firetower.Stats) bool {
			return s.MessagesIn >= base+n+1 && s.ReadDropped > 0
		})
		dropped := tw.Stats().ReadDropped
		releaseAll()

		// Answers come in request order: the ack of 0, then the drops.
		var got []string
		for len(got) < n+1 {
			m := c.next(t)
			switch m.Type {
			case "ack":
				got = append(got, "ack"+m.ID)
			case "error":
				ptCheckLimited(t, m)
				got = append(got, "limited"+m.ID)
			case "publish":
			default:
				t.Fatalf("unexpected %s", m)
			}
		}
		want := []string{"ack0"}
		for i := 1; i <= n; i++ {
			want = append(want, "limited"+strconv.Itoa(i))
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("answers %v, want %v", got, want)
		}
		if len(timedOut) != n {
			t.Fatalf("OnReadTimeout ran %d times, want %d", len(timedOut), n)
		}
		st := tw.Stats()
		if st.FloodClosed != 0 || st.ReadDropped != n || dropped == 0 {
			t.Fatalf("FloodClosed %d ReadDropped %d, want 0 and %d", st.FloodClosed, st.ReadDropped, n)
		}
		// the connection is still served: a publish now goes through
		c.sendText(t, `{"type":"publish","topic":"rl","data":"after","id":"after"}`)
		c.expectDelivery(t, "rl", `"after"`) // subscribed too: its own delivery, then the ack
		c.expectAck(t, "after")
		// the subscriber receives exactly the accepted messages, in order
		sub.expectDelivery(t, "rl", "0")
		sub.expectDelivery(t, "rl", `"after"`)
		sub.expectQuiet(t)
	})
}

// ptExpectTooLarge expects c to be closed with 1009, after nothing or an
// error message_too_large.
func ptExpectTooLarge(t testing.TB, c *ptConn, what string) {
	t.Helper()
	code, _, before := c.expectClose(t)
	for _, f := range before {
		m, err := c.decode(f)
		if err != nil || m.Type != "error" || m.Code != "message_too_large" {
			t.Errorf("before the close: %q, want nothing or an error message_too_large", f.data)
		}
	}
	if code != websocket.CloseMessageTooBig {
		t.Fatalf("%s: close code %d, want 1009", what, code)
	}
}

func TestProtocolErrorMessageTooLarge(t *testing.T) {
	wsEach(t, func(t *testing.T, v wsVariant) {
		tw := ptStart(t, v, firetower.WithMaxMessageSize(1024))
		c := ptDial(t, tw, "")
		c.sub(t, "big")
		small := `{"type":"publish","topic":"big","data":"` + strings.Repeat("s", 900) + `"}`
		c.sendText(t, small)
		c.expectDelivery(t, "big", `"`+strings.Repeat("s", 900)+`"`)

		// The server may close as soon as it has seen the first fragment's header, so the rest
		// of this write may fail: the close code is what counts.
		_ = c.ws.SetWriteDeadline(time.Now().Add(ptTimeout))
		_ = c.ws.WriteMessage(websocket.TextMessage,
			[]byte(`{"type":"publish","topic":"big","data":"`+strings.Repeat("b", 4096)+`","id":"L"}`))
		ptExpectTooLarge(t, c, "fragmented message")

		// the same in one unfragmented frame
		d := ptDial(t, tw, "msgpack")
		d.sub(t, "big")
		b, _ := msgpack.Marshal(map[string]any{"type": "publish", "topic": "big", "data": strings.Repeat("m", 2000)})
		_ = d.ws.SetWriteDeadline(time.Now().Add(ptTimeout))
		_ = d.ws.WriteMessage(websocket.BinaryMessage, b)
		ptExpectTooLarge(t, d, "single frame")
	})
}

func TestProtocolErrorInternal(t *testing.T) {
	wsEach(t, func(t *testing.T, v wsVariant) {
		tw := ptStart(t, v,
			firetower.OnRead(ptHook(func(c *firetower.Context) error {
				if c.Message().Topic == "boom" {
					return &firetower.Error{Code: "internal", Message: "database down"}
				}
				return nil
			})),
			firetower.OnBeforeSubscribe(ptHook(func(c *firetower.Context) error {
				if slices.Contains(c.Topics(), "boom/sub") {
					return &firetower.Error{Code: "internal", Message: "lookup failed"}
				}
				return nil
			})))
		c := ptDial(t, tw, "")
		c.sub(t, "boom")
		c.sendText(t, `{"type":"publish","topic":"boom","data":1,"id":"i1"}`)
		c.expectError(t, "i1", "internal")
		c.sendText(t, `{"type":"subscribe","topics":["boom/sub"],"id":"i2"}`)
		c.expectError(t, "i2", "internal")
		ptConnectNum(t, tw, "boom/sub", 0)
		c.expectQuiet(t) // the refused publish was not delivered, not even to the publisher
	})
}

func TestProtocolPublishPolicyAny(t *testing.T) {
	wsEach(t, func(t *testing.T, v wsVariant) {
		tw := ptStart(t, v, firetower.WithPublishPolicy(firetower.PublishAny))
		sub := ptDial(t, tw, "")
		sub.sub(t, "any")
		pub := ptDial(t, tw, "msgpack")
		pub.send(t, map[string]any{"type": "publish", "topic": "any", "data": "from outside", "id": "a1"})
		pub.expectAck(t, "a1")
		sub.expectDelivery(t, "any", `"from outside"`)
		pub.expectQuiet(t) // not subscribed: no copy for the publisher
	})
}

func TestProtocolPublishPolicyNone(t *testing.T) {
	wsEach(t, func(t *testing.T, v wsVariant) {
		tw := ptStart(t, v, firetower.WithPublishPolicy(firetower.PublishNone))
		c := ptDial(t, tw, "")
		c.sub(t, "none")
		c.sendText(t, `{"type":"publish","topic":"none","data":1,"id":"n1"}`)
		c.expectError(t, "n1", "forbidden")
		m := ptDial(t, tw, "msgpack")
		m.sub(t, "none")
		m.send(t, map[string]any{"type": "publish", "topic": "none", "data": 1, "id": "n2"})
		m.expectError(t, "n2", "forbidden")
		// the server side still publishes
		ptPublish(t, tw, "none", []byte(`"server"`))
		c.expectDelivery(t, "none", `"server"`)
		m.expectDelivery(t, "none", `"server"`)
	})
}

// ptFailManager is a Manager whose links refuse every publish: the cluster cannot take it.
type ptFailManager struct {
	inner *firetower.LocalManager
}

type ptFailLink struct {
	firetower.Link
}

func (m *ptFailManager) Join(ctx context.Context, n firetower.Node) (firetower.Link, error) {
	l, err := m.inner.Join(ctx, n)
	if err != nil {
		return nil, err
	}
	return &ptFailLink{Link: l}, nil
}

func (l *ptFailLink) Publish(context.Context, string, []byte) error {
	return errors.New("cluster down")
}

func TestProtocolErrorUnavailable(t *testing.T) {
	wsEach(t, func(t *testing.T, v wsVariant) {
		var _ firetower.Manager = (*ptFailManager)(nil)
		tw := ptStart(t, v, firetower.WithManager(&ptFailManager{inner: firetower.NewLocalManager()}))
		c := ptDial(t, tw, "")
		c.sub(t, "un")
		ptConnectNum(t, tw, "un", 1)
		c.sendText(t, `{"type":"publish","topic":"un","data":1,"id":"u1"}`)
		// delivery is at most once: a local copy may or may not precede the error
		for {
			m := c.next(t)
			if m.Type == "publish" && m.Topic == "un" {
				continue
			}
			ptCheckError(t, m, "u1", "unavailable")
			break
		}
		m := ptDial(t, tw, "msgpack")
		m.sub(t, "un")
		m.send(t, map[string]any{"type": "publish", "topic": "un", "data": 2, "id": 2})
		for {
			got := m.next(t)
			if got.Type == "publish" && got.Topic == "un" {
				continue
			}
			ptCheckError(t, got, 2, "unavailable")
			break
		}
		// the server-side publish reports it too
		ctx, cancel := context.WithTimeout(context.Background(), ptTimeout)
		defer cancel()
		if err := tw.Publish(ctx, "un", []byte(`3`)); err == nil {
			t.Errorf("Tower.Publish through a failing manager returned nil, want an error")
		}
	})
}
