package grpcapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/grpcapi"
	pb "github.com/firetower-go/firetower/grpcapi/firetowerpb"
)

const wait = 5 * time.Second

// env is a real Tower and the push service on a loopback gRPC listener.
// Clients dial with ?name=N to have their connection id recorded under N,
// and with ?user=U to get the user id U.
type env struct {
	tb     testing.TB
	tower  *firetower.Tower
	api    pb.PushServiceClient
	conn   *grpc.ClientConn
	key    string
	mu     sync.Mutex
	ids    map[string]string
	marks  int
	unsubs chan unsubEvent
}

type unsubEvent struct {
	connID string
	topics []string
}

// newEnv starts a Tower and serves grpcapi.New(tower, cfg) on a listener;
// build makes the gRPC server (nil: Server.NewGRPCServer).
func newEnv(tb testing.TB, cfg grpcapi.Config, build func(*grpcapi.Server) *grpc.Server) *env {
	tb.Helper()
	e := &env{tb: tb, ids: make(map[string]string), unsubs: make(chan unsubEvent, 256), key: cfg.APIKey}
	tower, err := firetower.New(
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
				select {
				case e.unsubs <- unsubEvent{c.Conn().ID(), append([]string(nil), c.Topics()...)}:
				default:
				}
				return next(c)
			}
		}),
	)
	if err != nil {
		tb.Fatalf("firetower.New: %v", err)
	}
	if err := tower.Start(context.Background()); err != nil {
		tb.Fatalf("Start: %v", err)
	}
	e.tower = tower
	svc := grpcapi.New(tower, cfg)
	var g *grpc.Server
	if build != nil {
		g = build(svc)
	} else {
		g = svc.NewGRPCServer()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- g.Serve(ln) }()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatalf("grpc.NewClient: %v", err)
	}
	e.conn = cc
	e.api = pb.NewPushServiceClient(cc)
	tb.Cleanup(func() {
		cc.Close()
		g.GracefulStop()
		if err := <-served; err != nil {
			tb.Errorf("grpc Serve: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = tower.Shutdown(ctx)
	})
	return e
}

// ctx is a call context carrying the env's key (as a bearer token).
func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	e.tb.Cleanup(cancel)
	if e.key != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+e.key)
	}
	return ctx
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

func (e *env) publish(topic, data string) {
	e.tb.Helper()
	if _, err := e.api.Publish(e.ctx(), &pb.PublishRequest{Topic: topic, Data: []byte(data)}); err != nil {
		e.tb.Fatalf("Publish %s %s: %v", topic, data, err)
	}
}

// barrier publishes a marker on topic and returns whatever sub received
// before it.
func (e *env) barrier(sub *client, topic string) []string {
	e.tb.Helper()
	e.mu.Lock()
	e.marks++
	marker := fmt.Sprintf(`{"barrier":%d}`, e.marks)
	e.mu.Unlock()
	e.publish(topic, marker)
	var before []string
	for {
		m, raw := sub.next()
		if m.Type == "publish" && m.Topic == topic && string(m.Data) == marker {
			return before
		}
		before = append(before, string(raw))
	}
}

// wantStatus checks a failed call's gRPC code and firetower error code
// ("" for errors gRPC itself produces). It reports without stopping.
func wantStatus(tb testing.TB, err error, code codes.Code, reason string) {
	tb.Helper()
	if err == nil {
		tb.Errorf("call succeeded, want %v (%s)", code, reason)
		return
	}
	st := status.Convert(err)
	if st.Code() != code || grpcapi.ErrorCode(err) != reason || st.Message() == "" {
		tb.Errorf("got %v %q (reason %q), want %v with reason %q and a message", st.Code(), st.Message(), grpcapi.ErrorCode(err), code, reason)
	}
}

// client is a websocket client of the Tower.
type client struct {
	tb     testing.TB
	name   string
	ws     *websocket.Conn
	msgs   chan []byte
	closed chan struct{}
	err    error
	nextID int
}

func (e *env) dial(name string, query url.Values) *client {
	e.tb.Helper()
	if query == nil {
		query = url.Values{}
	}
	query.Set("name", name)
	d := websocket.Dialer{HandshakeTimeout: wait}
	ws, resp, err := d.Dial("ws://"+e.tower.Addr()+"/ws?"+query.Encode(), nil)
	if err != nil {
		e.tb.Fatalf("dial: %v", err)
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
	Type  string          `json:"type"`
	ID    json.RawMessage `json:"id"`
	Topic string          `json:"topic"`
	Data  json.RawMessage `json:"data"`
}

func (c *client) next() (serverMsg, []byte) {
	c.tb.Helper()
	select {
	case p := <-c.msgs:
		var m serverMsg
		if err := json.Unmarshal(p, &m); err != nil {
			c.tb.Fatalf("%s: not JSON: %v: %s", c.name, err, p)
		}
		return m, p
	case <-c.closed:
		c.tb.Fatalf("%s: closed while waiting for a message: %v", c.name, c.err)
	case <-time.After(wait):
		c.tb.Fatalf("%s: no message within %s", c.name, wait)
	}
	return serverMsg{}, nil
}

func (c *client) request(typ string, topics ...string) serverMsg {
	c.tb.Helper()
	c.nextID++
	if err := c.ws.WriteJSON(map[string]any{"type": typ, "topics": topics, "id": c.nextID}); err != nil {
		c.tb.Fatalf("%s: write: %v", c.name, err)
	}
	m, raw := c.next()
	if string(m.ID) != fmt.Sprint(c.nextID) {
		c.tb.Fatalf("%s: %s: got %s, want the answer with id %d", c.name, typ, raw, c.nextID)
	}
	return m
}

func (c *client) subscribe(topics ...string) {
	c.tb.Helper()
	if m := c.request("subscribe", topics...); m.Type != "ack" {
		c.tb.Fatalf("%s: subscribe %v: %+v", c.name, topics, m)
	}
}

// open checks the connection is still open by a ping round trip.
func (c *client) open() {
	c.tb.Helper()
	if m := c.request("ping"); m.Type != "pong" {
		c.tb.Fatalf("%s: got %+v, want a pong", c.name, m)
	}
}

func (c *client) expect(topic, data string) {
	c.tb.Helper()
	m, raw := c.next()
	if m.Type != "publish" || m.Topic != topic || string(m.Data) != data {
		c.tb.Fatalf("%s: got %s, want a delivery on %q of %s", c.name, raw, topic, data)
	}
}

func (c *client) quiet() {
	c.tb.Helper()
	select {
	case p := <-c.msgs:
		c.tb.Fatalf("%s: unexpected message %s", c.name, p)
	default:
	}
}

func (c *client) closeCode() (int, string) {
	c.tb.Helper()
	select {
	case <-c.closed:
	case <-time.After(wait):
		c.tb.Fatalf("%s: still open %s later, want it closed", c.name, wait)
	}
	var ce *websocket.CloseError
	if !errors.As(c.err, &ce) {
		c.tb.Fatalf("%s: ended with %v, want a close frame", c.name, c.err)
	}
	return ce.Code, ce.Text
}

func TestPublish(t *testing.T) {
	e := newEnv(t, grpcapi.Config{}, nil)
	a := e.dial("a", nil)
	b := e.dial("b", nil)
	both := e.dial("both", nil)
	a.subscribe("/a")
	b.subscribe("/b")
	both.subscribe("/a", "/b")

	data := `{"z": 1,  "a":[1, 2.50, "\u00e9\n"], "k":null }`
	res, err := e.api.Publish(e.ctx(), &pb.PublishRequest{Topic: "/a", Data: []byte(data)})
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if fmt.Sprint(res.GetTopics()) != "[/a]" {
		t.Errorf("topics %v, want [/a]", res.GetTopics())
	}
	a.expect("/a", data)
	both.expect("/a", data)

	for _, d := range []string{`"text"`, `42`, `false`, `[ ]`, ` {"padded":1}	`} {
		e.publish("/b", d)
		b.expect("/b", strings.TrimSpace(d))
	}
	e.publish("/b", "") // no data: null
	b.expect("/b", "null")
	for range 6 {
		both.next()
	}

	// Several topics: topics and topic together.
	res, err = e.api.Publish(e.ctx(), &pb.PublishRequest{Topics: []string{"/a"}, Topic: "/b", Data: []byte(`{"x": [1,2]}`)})
	if err != nil {
		t.Fatalf("Publish to two topics: %v", err)
	}
	if fmt.Sprint(res.GetTopics()) != "[/a /b]" {
		t.Errorf("topics %v, want [/a /b]", res.GetTopics())
	}
	a.expect("/a", `{"x": [1,2]}`)
	b.expect("/b", `{"x": [1,2]}`)
	both.expect("/a", `{"x": [1,2]}`)
	both.expect("/b", `{"x": [1,2]}`)
	a.quiet()
	b.quiet()
	both.quiet()
}

func TestPublishBatch(t *testing.T) {
	e := newEnv(t, grpcapi.Config{}, nil)
	a := e.dial("a", nil)
	b := e.dial("b", nil)
	a.subscribe("/a")
	b.subscribe("/b")
	res, err := e.api.PublishBatch(e.ctx(), &pb.PublishBatchRequest{Messages: []*pb.PublishRequest{
		{Topic: "/a", Data: []byte(`{"i": 1}`)},
		{Topic: "/b", Data: []byte(`"two"`)},
		{Topics: []string{"/a", "/b"}, Data: []byte(`[3, 3]`)},
		{Topic: "/a"},
	}})
	if err != nil {
		t.Fatalf("PublishBatch: %v", err)
	}
	if res.GetPublished() != 5 {
		t.Errorf("published %d, want 5", res.GetPublished())
	}
	a.expect("/a", `{"i": 1}`)
	a.expect("/a", `[3, 3]`)
	a.expect("/a", `null`)
	b.expect("/b", `"two"`)
	b.expect("/b", `[3, 3]`)
}

func TestCountAndListTopics(t *testing.T) {
	e := newEnv(t, grpcapi.Config{}, nil)
	for i := range 3 {
		e.dial(fmt.Sprint("x", i), nil).subscribe("/chat/world")
	}
	e.dial("y", nil).subscribe("/chat/world", "orders.eu.42")

	for topic, want := range map[string]int64{"/chat/world": 4, "orders.eu.42": 1, "nobody": 0} {
		res, err := e.api.Count(e.ctx(), &pb.CountRequest{Topic: topic})
		if err != nil {
			t.Fatalf("Count %s: %v", topic, err)
		}
		if res.GetTopic() != topic || res.GetCount() != want {
			t.Errorf("Count %s: %v, want %d", topic, res, want)
		}
	}
	res, err := e.api.ListTopics(e.ctx(), &pb.ListTopicsRequest{})
	if err != nil {
		t.Fatalf("ListTopics: %v", err)
	}
	var got []string
	for _, r := range res.GetTopics() {
		got = append(got, fmt.Sprintf("%s %d %d", r.GetTopic(), r.GetLocal(), r.GetCount()))
	}
	if want := "[/chat/world 4 4 orders.eu.42 1 1]"; fmt.Sprint(got) != want {
		t.Errorf("ListTopics %v, want %s (busiest first)", got, want)
	}
	for _, tc := range []struct {
		req  *pb.ListTopicsRequest
		want string
	}{
		{&pb.ListTopicsRequest{Query: "EU"}, "[orders.eu.42]"},
		{&pb.ListTopicsRequest{Top: 1}, "[/chat/world]"},
		{&pb.ListTopicsRequest{Query: "none"}, "[]"},
	} {
		res, err := e.api.ListTopics(e.ctx(), tc.req)
		if err != nil {
			t.Fatalf("ListTopics %v: %v", tc.req, err)
		}
		var names []string
		for _, r := range res.GetTopics() {
			names = append(names, r.GetTopic())
		}
		if fmt.Sprint(names) != tc.want {
			t.Errorf("ListTopics %v: %v, want %s", tc.req, names, tc.want)
		}
	}
	if _, err := e.api.ListTopics(e.ctx(), &pb.ListTopicsRequest{Top: -1}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("ListTopics top -1: %v, want InvalidArgument", err)
	}
}

func TestPresence(t *testing.T) {
	e := newEnv(t, grpcapi.Config{}, nil)
	e.dial("a", url.Values{"user": {"alice"}}).subscribe("/room")
	e.dial("b", nil).subscribe("/room", "/other")
	res, err := e.api.Presence(e.ctx(), &pb.PresenceRequest{Topic: "/room"})
	if err != nil {
		t.Fatalf("Presence: %v", err)
	}
	got := map[string]string{}
	for _, c := range res.GetConnections() {
		got[c.GetId()] = fmt.Sprintf("%s@%d", c.GetUserId(), c.GetNode())
	}
	if want := map[string]string{e.connID("a"): "alice@1", e.connID("b"): "@1"}; res.GetTopic() != "/room" || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Presence /room: %v, want %v", got, want)
	}
	if res.GetCount() != 2 || res.GetUsers() != 1 { // alice; b has no user id
		t.Errorf("Presence /room stats: count %d users %d, want 2 and 1", res.GetCount(), res.GetUsers())
	}
	res, err = e.api.Presence(e.ctx(), &pb.PresenceRequest{Topic: "/room", Limit: 1})
	if err != nil || len(res.GetConnections()) != 1 || res.GetCount() != 2 {
		t.Errorf("Presence limit 1: %v, %v", res, err)
	}
	for _, req := range []*pb.PresenceRequest{{Topic: ""}, {Topic: "a b"}, {Topic: "/room", Limit: -1}} {
		if _, err := e.api.Presence(e.ctx(), req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("Presence %v: %v, want InvalidArgument", req, err)
		}
	}
}

func TestDisconnect(t *testing.T) {
	e := newEnv(t, grpcapi.Config{}, nil)
	victim := e.dial("victim", nil)
	alice1 := e.dial("alice1", url.Values{"user": {"alice"}})
	alice2 := e.dial("alice2", url.Values{"user": {"alice"}})
	bob := e.dial("bob", url.Values{"user": {"bob"}})
	bob.subscribe("/room")

	res, err := e.api.Disconnect(e.ctx(), &pb.DisconnectRequest{ConnId: e.connID("victim"), Code: 4001, Reason: "kicked by ops"})
	if err != nil {
		t.Fatalf("Disconnect conn: %v", err)
	}
	if res.GetDisconnected() != 1 {
		t.Errorf("disconnected %d, want 1", res.GetDisconnected())
	}
	if code, reason := victim.closeCode(); code != 4001 || reason != "kicked by ops" {
		t.Errorf("close %d %q, want 4001 \"kicked by ops\"", code, reason)
	}

	res, err = e.api.Disconnect(e.ctx(), &pb.DisconnectRequest{UserId: "alice"})
	if err != nil {
		t.Fatalf("Disconnect user: %v", err)
	}
	if res.GetDisconnected() != 2 {
		t.Errorf("disconnected %d, want 2", res.GetDisconnected())
	}
	for _, c := range []*client{alice1, alice2} {
		if code, _ := c.closeCode(); code != 1000 {
			t.Errorf("%s: close code %d, want the default 1000", c.name, code)
		}
	}
	bob.open()
	e.publish("/room", `"still here"`)
	bob.expect("/room", `"still here"`)

	res, err = e.api.Disconnect(e.ctx(), &pb.DisconnectRequest{UserId: "carol"})
	if err != nil || res.GetDisconnected() != 0 {
		t.Errorf("Disconnect of a user with no connection: %v, %v; want 0 and no error", res, err)
	}
}

func TestUnsubscribe(t *testing.T) {
	e := newEnv(t, grpcapi.Config{}, nil)
	c := e.dial("c", nil)
	c.subscribe("/a", "/b", "/c")
	id := e.connID("c")
	res, err := e.api.Unsubscribe(e.ctx(), &pb.UnsubscribeRequest{ConnId: id, Topics: []string{"/a"}, Topic: "/c"})
	if err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	if fmt.Sprint(res.GetTopics()) != "[/a /c]" {
		t.Errorf("topics %v, want [/a /c]", res.GetTopics())
	}
	select {
	case ev := <-e.unsubs:
		if ev.connID != id || fmt.Sprint(ev.topics) != "[/a /c]" {
			t.Errorf("OnUnsubscribe saw %+v, want conn %s topics [/a /c]", ev, id)
		}
	default:
		t.Fatal("OnUnsubscribe had not run when the call returned")
	}
	e.publish("/a", `"gone"`)
	e.publish("/c", `"gone"`)
	if leaked := e.barrier(c, "/b"); len(leaked) > 0 {
		t.Errorf("received %s after unsubscribing", leaked)
	}
	n, err := e.api.Count(e.ctx(), &pb.CountRequest{Topic: "/a"})
	if err != nil || n.GetCount() != 0 {
		t.Errorf("Count /a: %v, %v; want 0", n, err)
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t, grpcapi.Config{MaxBatch: 3, MaxMessageSize: 4096}, nil)
	sub := e.dial("sub", url.Values{"user": {"u1"}})
	sub.subscribe("/t")
	id := e.connID("sub")
	one := func(topic, data string) *pb.PublishRequest {
		return &pb.PublishRequest{Topic: topic, Data: []byte(data)}
	}
	big := strings.Repeat("x", 5000)

	cases := []struct {
		name   string
		call   func(ctx context.Context) error
		code   codes.Code
		reason string
	}{
		{"publish missing topic", func(ctx context.Context) error {
			_, err := e.api.Publish(ctx, &pb.PublishRequest{Data: []byte("1")})
			return err
		}, codes.InvalidArgument, "invalid_topic"},
		{"publish invalid topic", func(ctx context.Context) error {
			_, err := e.api.Publish(ctx, one("bad topic", "1"))
			return err
		}, codes.InvalidArgument, "invalid_topic"},
		{"publish one invalid topic of several", func(ctx context.Context) error {
			_, err := e.api.Publish(ctx, &pb.PublishRequest{Topics: []string{"/t", "/t,/u"}, Data: []byte("1")})
			return err
		}, codes.InvalidArgument, "invalid_topic"},
		{"publish data not JSON", func(ctx context.Context) error {
			_, err := e.api.Publish(ctx, one("/t", `{"a":`))
			return err
		}, codes.InvalidArgument, "bad_request"},
		{"publish data with trailing data", func(ctx context.Context) error {
			_, err := e.api.Publish(ctx, one("/t", `1 2`))
			return err
		}, codes.InvalidArgument, "bad_request"},
		{"publish oversized", func(ctx context.Context) error {
			_, err := e.api.Publish(ctx, one("/t", `"`+big+`"`))
			return err
		}, codes.ResourceExhausted, ""},
		{"batch empty", func(ctx context.Context) error {
			_, err := e.api.PublishBatch(ctx, &pb.PublishBatchRequest{})
			return err
		}, codes.InvalidArgument, "bad_request"},
		{"batch too long", func(ctx context.Context) error {
			_, err := e.api.PublishBatch(ctx, &pb.PublishBatchRequest{Messages: []*pb.PublishRequest{one("/t", "1"), one("/t", "2"), one("/t", "3"), one("/t", "4")}})
			return err
		}, codes.InvalidArgument, "bad_request"},
		{"batch missing topic", func(ctx context.Context) error {
			_, err := e.api.PublishBatch(ctx, &pb.PublishBatchRequest{Messages: []*pb.PublishRequest{one("/t", "1"), {Data: []byte("2")}}})
			return err
		}, codes.InvalidArgument, "invalid_topic"},
		{"batch invalid topic", func(ctx context.Context) error {
			_, err := e.api.PublishBatch(ctx, &pb.PublishBatchRequest{Messages: []*pb.PublishRequest{one("/t", "1"), one("bad topic", "2")}})
			return err
		}, codes.InvalidArgument, "invalid_topic"},
		{"batch data not JSON", func(ctx context.Context) error {
			_, err := e.api.PublishBatch(ctx, &pb.PublishBatchRequest{Messages: []*pb.PublishRequest{one("/t", "1"), one("/t", "nope")}})
			return err
		}, codes.InvalidArgument, "bad_request"},
		{"batch oversized", func(ctx context.Context) error {
			_, err := e.api.PublishBatch(ctx, &pb.PublishBatchRequest{Messages: []*pb.PublishRequest{one("/t", `"`+big+`"`)}})
			return err
		}, codes.ResourceExhausted, ""},
		{"count missing topic", func(ctx context.Context) error {
			_, err := e.api.Count(ctx, &pb.CountRequest{})
			return err
		}, codes.InvalidArgument, "invalid_topic"},
		{"count invalid topic", func(ctx context.Context) error {
			_, err := e.api.Count(ctx, &pb.CountRequest{Topic: strings.Repeat("t", 257)})
			return err
		}, codes.InvalidArgument, "invalid_topic"},
		{"disconnect neither id", func(ctx context.Context) error {
			_, err := e.api.Disconnect(ctx, &pb.DisconnectRequest{Code: 4000})
			return err
		}, codes.InvalidArgument, "bad_request"},
		{"disconnect both ids", func(ctx context.Context) error {
			_, err := e.api.Disconnect(ctx, &pb.DisconnectRequest{ConnId: id, UserId: "u1"})
			return err
		}, codes.InvalidArgument, "bad_request"},
		{"disconnect unknown conn", func(ctx context.Context) error {
			_, err := e.api.Disconnect(ctx, &pb.DisconnectRequest{ConnId: "9-nope-1"})
			return err
		}, codes.NotFound, "not_found"},
		{"disconnect invalid close code", func(ctx context.Context) error {
			_, err := e.api.Disconnect(ctx, &pb.DisconnectRequest{ConnId: id, Code: 1005})
			return err
		}, codes.InvalidArgument, "bad_request"},
		{"disconnect user invalid close code", func(ctx context.Context) error {
			_, err := e.api.Disconnect(ctx, &pb.DisconnectRequest{UserId: "u1", Code: 999})
			return err
		}, codes.InvalidArgument, "bad_request"},
		{"disconnect oversized", func(ctx context.Context) error {
			_, err := e.api.Disconnect(ctx, &pb.DisconnectRequest{ConnId: id, Reason: big})
			return err
		}, codes.ResourceExhausted, ""},
		{"unsubscribe missing topic", func(ctx context.Context) error {
			_, err := e.api.Unsubscribe(ctx, &pb.UnsubscribeRequest{ConnId: id})
			return err
		}, codes.InvalidArgument, "bad_request"},
		{"unsubscribe missing conn", func(ctx context.Context) error {
			_, err := e.api.Unsubscribe(ctx, &pb.UnsubscribeRequest{Topic: "/t"})
			return err
		}, codes.InvalidArgument, "bad_request"},
		{"unsubscribe invalid topic", func(ctx context.Context) error {
			_, err := e.api.Unsubscribe(ctx, &pb.UnsubscribeRequest{ConnId: id, Topics: []string{"/t", "bad topic"}})
			return err
		}, codes.InvalidArgument, "invalid_topic"},
		{"unsubscribe unknown conn", func(ctx context.Context) error {
			_, err := e.api.Unsubscribe(ctx, &pb.UnsubscribeRequest{ConnId: "9-nope-1", Topic: "/t"})
			return err
		}, codes.NotFound, "not_found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.tb, sub.tb = t, t
			wantStatus(t, tc.call(e.ctx()), tc.code, tc.reason)
			if leaked := e.barrier(sub, "/t"); len(leaked) > 0 {
				t.Errorf("refused call had an effect: the subscriber received %s", leaked)
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

func TestAPIKey(t *testing.T) {
	const key = "s3cret-key"
	for _, mode := range []string{"NewGRPCServer", "Register without the interceptor"} {
		t.Run(mode, func(t *testing.T) {
			build := func(s *grpcapi.Server) *grpc.Server { return s.NewGRPCServer() }
			if mode != "NewGRPCServer" {
				build = func(s *grpcapi.Server) *grpc.Server {
					g := grpc.NewServer()
					s.Register(g)
					return g
				}
			}
			e := newEnv(t, grpcapi.Config{APIKey: key}, build)
			sub := e.dial("sub", url.Values{"user": {"u1"}})
			sub.subscribe("/t")
			id := e.connID("sub")

			calls := map[string]func(ctx context.Context) error{
				"Publish": func(ctx context.Context) error {
					_, err := e.api.Publish(ctx, &pb.PublishRequest{Topic: "/t", Data: []byte(`"leak"`)})
					return err
				},
				"PublishBatch": func(ctx context.Context) error {
					_, err := e.api.PublishBatch(ctx, &pb.PublishBatchRequest{Messages: []*pb.PublishRequest{{Topic: "/t", Data: []byte(`"leak"`)}}})
					return err
				},
				"Count": func(ctx context.Context) error {
					_, err := e.api.Count(ctx, &pb.CountRequest{Topic: "/t"})
					return err
				},
				"ListTopics": func(ctx context.Context) error {
					_, err := e.api.ListTopics(ctx, &pb.ListTopicsRequest{})
					return err
				},
				"Presence": func(ctx context.Context) error {
					_, err := e.api.Presence(ctx, &pb.PresenceRequest{Topic: "/t"})
					return err
				},
				"Disconnect conn": func(ctx context.Context) error {
					_, err := e.api.Disconnect(ctx, &pb.DisconnectRequest{ConnId: id})
					return err
				},
				"Disconnect user": func(ctx context.Context) error {
					_, err := e.api.Disconnect(ctx, &pb.DisconnectRequest{UserId: "u1"})
					return err
				},
				"Unsubscribe": func(ctx context.Context) error {
					_, err := e.api.Unsubscribe(ctx, &pb.UnsubscribeRequest{ConnId: id, Topic: "/t"})
					return err
				},
			}
			bad := map[string][]string{
				"no key":                                nil,
				"wrong bearer":                          {"authorization", "Bearer wrong"},
				"wrong x-api-key":                       {"x-api-key", "wrong"},
				"key as a prefix":                       {"x-api-key", key[:4]},
				"key with a suffix":                     {"authorization", "Bearer " + key + "x"},
				"no scheme":                             {"authorization", key},
				"basic scheme":                          {"authorization", "Basic " + key},
				"wrong x-api-key beside a right bearer": {"x-api-key", "wrong", "authorization", "Bearer " + key},
			}
			for cname, kv := range bad {
				for name, call := range calls {
					ctx, cancel := context.WithTimeout(context.Background(), wait)
					if kv != nil {
						ctx = metadata.AppendToOutgoingContext(ctx, kv...)
					}
					err := call(ctx)
					cancel()
					if st := status.Convert(err); st.Code() != codes.Unauthenticated || grpcapi.ErrorCode(err) != "unauthorized" {
						t.Errorf("%s with %s: %v, want Unauthenticated (unauthorized)", name, cname, err)
					}
					if leaked := e.barrier(sub, "/t"); len(leaked) > 0 {
						t.Errorf("%s with %s had an effect: the subscriber received %s", name, cname, leaked)
					}
				}
			}
			select {
			case ev := <-e.unsubs:
				t.Errorf("OnUnsubscribe ran after refused calls: %+v", ev)
			default:
			}
			sub.open()

			// The right key, each way.
			for _, kv := range [][]string{
				{"authorization", "Bearer " + key},
				{"authorization", "bearer " + key},
				{"x-api-key", key},
			} {
				ctx := metadata.AppendToOutgoingContext(context.Background(), kv...)
				if _, err := e.api.Publish(ctx, &pb.PublishRequest{Topic: "/t", Data: []byte(`"hi"`)}); err != nil {
					t.Fatalf("Publish with %v: %v", kv, err)
				}
				sub.expect("/t", `"hi"`)
				if n, err := e.api.Count(ctx, &pb.CountRequest{Topic: "/t"}); err != nil || n.GetCount() != 1 {
					t.Fatalf("Count with %v: %v, %v", kv, n, err)
				}
			}
			ctx := metadata.AppendToOutgoingContext(context.Background(), "x-api-key", key)
			if _, err := e.api.Disconnect(ctx, &pb.DisconnectRequest{ConnId: id, Code: 4002}); err != nil {
				t.Fatalf("Disconnect: %v", err)
			}
			if code, _ := sub.closeCode(); code != 4002 {
				t.Errorf("close code %d, want 4002", code)
			}
		})
	}
}

// The interceptor guards the push service only: other services on the same
// server are not asked for the key.
func TestInterceptorScope(t *testing.T) {
	e := newEnv(t, grpcapi.Config{APIKey: "k"}, func(s *grpcapi.Server) *grpc.Server {
		g := s.NewGRPCServer()
		grpc_health_v1.RegisterHealthServer(g, health.NewServer())
		return g
	})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	res, err := grpc_health_v1.NewHealthClient(e.conn).Check(ctx, &grpc_health_v1.HealthCheckRequest{})
	if err != nil || res.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Fatalf("health check without a key: %v, %v; want SERVING", res, err)
	}
	_, err = e.api.ListTopics(ctx, &pb.ListTopicsRequest{})
	wantStatus(t, err, codes.Unauthenticated, "unauthorized")
}

func TestUnavailableAfterShutdown(t *testing.T) {
	e := newEnv(t, grpcapi.Config{}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.tower.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	_, err := e.api.Publish(e.ctx(), &pb.PublishRequest{Topic: "/t", Data: []byte("1")})
	wantStatus(t, err, codes.Unavailable, "unavailable")
	_, err = e.api.PublishBatch(e.ctx(), &pb.PublishBatchRequest{Messages: []*pb.PublishRequest{{Topic: "/t"}}})
	wantStatus(t, err, codes.Unavailable, "unavailable")
	_, err = e.api.Count(e.ctx(), &pb.CountRequest{Topic: "/t"})
	wantStatus(t, err, codes.Unavailable, "unavailable")
}

func TestErrorCode(t *testing.T) {
	if c := grpcapi.ErrorCode(nil); c != "" {
		t.Errorf("ErrorCode(nil) = %q", c)
	}
	if c := grpcapi.ErrorCode(errors.New("plain")); c != "" {
		t.Errorf("ErrorCode(plain error) = %q", c)
	}
	if c := grpcapi.ErrorCode(status.Error(codes.Internal, "x")); c != "" {
		t.Errorf("ErrorCode(status without details) = %q", c)
	}
}
