// Package managertest is a conformance suite for firetower.Manager
// implementations: the same cluster scenarios run against the in-process
// LocalManager, the topic-manager node (one and several) and NATS. It is
// public so that Managers in other modules (the NATS tests, your own) can
// run it.
package managertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/firetower-go/firetower"
)

// Cluster makes the Managers for n gateways that form one cluster (one
// Manager value per gateway). exact says whether ConnectNum is exact right
// after a subscribe is acknowledged; otherwise counts are polled until they
// converge.
type Cluster struct {
	Name     string
	Managers func(t *testing.T, n int) []firetower.Manager
	Exact    bool
}

// Timeout bounds every wait of the suite.
const Timeout = 10 * time.Second

// Run runs the suite.
func Run(t *testing.T, c Cluster) {
	t.Run("CrossGatewayDelivery2", func(t *testing.T) { crossDelivery(t, c, 2) })
	t.Run("CrossGatewayDelivery3", func(t *testing.T) { crossDelivery(t, c, 3) })
	t.Run("CountsAndInterestRemoval", func(t *testing.T) { counts(t, c) })
	t.Run("NoEchoToOrigin", func(t *testing.T) { noEcho(t, c) })
	t.Run("OrderPerPublisher", func(t *testing.T) { order(t, c) })
	RunClusterOps(t, c)
	RunPresence(t, c)  // presence.go
	RunWildcards(t, c) // wildcard.go
}

// Gateways starts n Towers on the cluster's Managers.
func Gateways(t *testing.T, c Cluster, n int, opts ...firetower.Option) []*firetower.Tower {
	t.Helper()
	ms := c.Managers(t, n)
	towers := make([]*firetower.Tower, n)
	for i := range n {
		tw, err := firetower.New(append([]firetower.Option{
			firetower.WithAddr("127.0.0.1:0"),
			firetower.WithNodeID(uint16(i + 1)),
			firetower.WithManager(ms[i]),
			firetower.WithPublishPolicy(firetower.PublishAny),
		}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		if err := tw.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), Timeout)
			defer cancel()
			_ = tw.Shutdown(ctx)
		})
		towers[i] = tw
	}
	return towers
}

// Client is a minimal JSON-protocol test client.
type Client struct {
	t    testing.TB
	ws   *websocket.Conn
	in   chan Frame
	seq  int
	kept []Frame // deliveries read while waiting for an ack
	// readErr is why the connection ended (a *websocket.CloseError when
	// the server closed it); set before in is closed.
	readErr error
}

// Frame is a decoded server message.
type Frame struct {
	Type  string          `json:"type"`
	ID    json.RawMessage `json:"id"`
	Topic string          `json:"topic"`
	Data  json.RawMessage `json:"data"`
	Code  string          `json:"code"`
	// presence events (presence.go)
	Conn  string `json:"conn"`
	User  string `json:"user"`
	Count int64  `json:"count"`
}

// probeData is what Probe publishes; ExpectDelivery skips it.
const probeData = `"managertest-probe"`

func (f Frame) isProbe() bool { return f.Type == "publish" && string(f.Data) == probeData }

// Dial connects a client to tw.
func Dial(t testing.TB, tw *firetower.Tower) *Client {
	t.Helper()
	return DialQuery(t, tw, nil)
}

// DialQuery connects a client to tw with a query string on the upgrade
// URL (the values an OnConnect hook reads, or a system token).
func DialQuery(t testing.TB, tw *firetower.Tower, query url.Values) *Client {
	t.Helper()
	u := "ws://" + tw.Addr() + "/ws"
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	ws, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{t: t, ws: ws, in: make(chan Frame, 1024)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(c.in)
		for {
			_, p, err := ws.ReadMessage()
			if err != nil {
				c.readErr = err
				return
			}
			var f Frame
			if json.Unmarshal(p, &f) == nil {
				c.in <- f
			}
		}
	}()
	t.Cleanup(func() { _ = ws.Close(); wg.Wait() })
	return c
}

// Close closes the client's connection.
func (c *Client) Close() { _ = c.ws.Close() }

// Request sends a request (data is raw JSON, "" for none) with a fresh id
// and returns the id; Reply reads its answer.
func (c *Client) Request(typ string, topic string, data string) string {
	c.seq++
	id := strconv.Itoa(c.seq)
	msg := fmt.Sprintf(`{"type":%q,"topic":%q,"id":%q`, typ, topic, id)
	if data != "" {
		msg += `,"data":` + data
	}
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(msg+"}")); err != nil {
		c.t.Fatal(err)
	}
	return id
}

// Next returns the next server message.
func (c *Client) Next() Frame {
	c.t.Helper()
	f, ok := c.nextWithin(Timeout)
	if !ok {
		c.t.Fatal("no message within the timeout")
	}
	return f
}

// nextWithin returns the next server message, or false when none came
// within d; it fails the test when the connection is closed.
func (c *Client) nextWithin(d time.Duration) (Frame, bool) {
	c.t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case f, ok := <-c.in:
		if !ok {
			c.t.Fatalf("connection closed: %v", c.readErr)
		}
		return f, true
	case <-timer.C:
		return Frame{}, false
	}
}

// reply reads until the reply to request id and returns it; deliveries
// read meanwhile (probes aside) are kept for ExpectDelivery.
// Reply returns the ack or error answering id; deliveries read meanwhile
// are kept for ExpectDelivery.
func (c *Client) Reply(id string) Frame {
	c.t.Helper()
	for {
		f := c.Next()
		if f.Type == "publish" {
			if !f.isProbe() {
				c.kept = append(c.kept, f)
			}
			continue
		}
		if string(f.ID) == strconv.Quote(id) {
			return f
		}
	}
}

// expectAck reads until the ack for id, failing on an error reply.
func (c *Client) expectAck(id string) {
	c.t.Helper()
	if f := c.Reply(id); f.Type != "ack" {
		c.t.Fatalf("request %s: got %s %s", id, f.Type, f.Code)
	}
}

// expectError reads until the reply to id and checks it is an error with
// code.
func (c *Client) expectError(id, code string) {
	c.t.Helper()
	if f := c.Reply(id); f.Type != "error" || f.Code != code {
		c.t.Fatalf("request %s: got %s %q, want error %q", id, f.Type, f.Code, code)
	}
}

// ExpectClose reads until the server closes the connection and checks the
// close code and reason the client got.
func (c *Client) ExpectClose(code int, reason string) {
	c.t.Helper()
	timer := time.NewTimer(Timeout)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-c.in:
			if ok {
				continue
			}
			var ce *websocket.CloseError
			if !errors.As(c.readErr, &ce) {
				c.t.Fatalf("connection ended with %v, want close %d %q", c.readErr, code, reason)
			}
			if ce.Code != code || ce.Text != reason {
				c.t.Fatalf("closed with %d %q, want %d %q", ce.Code, ce.Text, code, reason)
			}
			return
		case <-timer.C:
			c.t.Fatalf("not closed within %v (want close %d %q)", Timeout, code, reason)
		}
	}
}

// Subscribe subscribes and waits for the ack.
func (c *Client) Subscribe(topic string) {
	c.t.Helper()
	c.expectAck(c.Request("subscribe", topic, ""))
}

// Unsubscribe unsubscribes and waits for the ack.
func (c *Client) Unsubscribe(topic string) {
	c.t.Helper()
	c.expectAck(c.Request("unsubscribe", topic, ""))
}

// Publish publishes and waits for the ack.
func (c *Client) Publish(topic, data string) {
	c.t.Helper()
	c.expectAck(c.Request("publish", topic, data))
}

// ExpectDelivery reads until a delivery and checks it.
func (c *Client) ExpectDelivery(topic, data string) {
	c.t.Helper()
	for {
		var f Frame
		if len(c.kept) > 0 {
			f, c.kept = c.kept[0], c.kept[1:]
		} else {
			f = c.Next()
		}
		if f.Type != "publish" || f.isProbe() {
			continue
		}
		if f.Topic != topic || string(f.Data) != data {
			c.t.Fatalf("delivery %s %s, want %s %s", f.Topic, f.Data, topic, data)
		}
		return
	}
}

// WaitCount polls ConnectNum until it equals want.
func WaitCount(t testing.TB, tw *firetower.Tower, topic string, want int64) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	var n int64
	var err error
	for time.Now().Before(deadline) {
		n, err = tw.ConnectNum(context.Background(), topic)
		if err == nil && n == want {
			return
		}
		time.Sleep(10 * time.Millisecond) // polling a converging count
	}
	t.Fatalf("ConnectNum(%s) = %d (err %v), want %d", topic, n, err, want)
}

func checkCount(t *testing.T, c Cluster, tw *firetower.Tower, topic string, want int64) {
	t.Helper()
	if !c.Exact {
		WaitCount(t, tw, topic, want)
		return
	}
	n, err := tw.ConnectNum(context.Background(), topic)
	if err != nil || n != want {
		t.Fatalf("ConnectNum(%s) = %d (err %v), want exactly %d", topic, n, err, want)
	}
}

func crossDelivery(t *testing.T, c Cluster, n int) {
	towers := Gateways(t, c, n)
	subs := make([]*Client, n)
	for i, tw := range towers {
		subs[i] = Dial(t, tw)
		subs[i].Subscribe("room")
	}
	for _, tw := range towers {
		checkCount(t, c, tw, "room", int64(n))
	}
	for _, tw := range towers {
		Probe(t, c, tw, "room", subs...) // routes converge asynchronously
	}
	// a publish from each gateway reaches the subscribers on every gateway
	for i := range towers {
		data := strconv.Itoa(i)
		subs[i].Publish("room", data)
		for _, s := range subs {
			s.ExpectDelivery("room", data)
		}
	}
	// and so does a server-side publish
	if err := towers[0].Publish(context.Background(), "room", []byte(`"srv"`)); err != nil {
		t.Fatal(err)
	}
	for _, s := range subs {
		s.ExpectDelivery("room", `"srv"`)
	}
}

func counts(t *testing.T, c Cluster) {
	towers := Gateways(t, c, 2)
	a1, a2, b := Dial(t, towers[0]), Dial(t, towers[0]), Dial(t, towers[1])
	a1.Subscribe("x")
	a2.Subscribe("x")
	b.Subscribe("x")
	checkCount(t, c, towers[1], "x", 3)
	Probe(t, c, towers[1], "x", a1, a2, b)
	b.Unsubscribe("x")
	checkCount(t, c, towers[0], "x", 2)
	a2.Close()
	WaitCount(t, towers[1], "x", 1) // disconnect is asynchronous
	// interest is gone from gateway 1: a publish there reaches only a1
	p := Dial(t, towers[1])
	p.Publish("x", `"after"`)
	a1.ExpectDelivery("x", `"after"`)
	a1.Close()
	WaitCount(t, towers[1], "x", 0)
}

func noEcho(t *testing.T, c Cluster) {
	towers := Gateways(t, c, 2)
	a, b := Dial(t, towers[0]), Dial(t, towers[1])
	a.Subscribe("e")
	b.Subscribe("e")
	checkCount(t, c, towers[0], "e", 2)
	Probe(t, c, towers[0], "e", a, b)
	Probe(t, c, towers[1], "e", a, b)
	for i := range 20 {
		a.Publish("e", strconv.Itoa(i))
	}
	// each message exactly once at each subscriber, in order: a second copy
	// coming back through the cluster would show up as a repeat.
	for i := range 20 {
		a.ExpectDelivery("e", strconv.Itoa(i))
		b.ExpectDelivery("e", strconv.Itoa(i))
	}
	b.Publish("e", `"end"`)
	a.ExpectDelivery("e", `"end"`)
	b.ExpectDelivery("e", `"end"`)
}

func order(t *testing.T, c Cluster) {
	towers := Gateways(t, c, 2)
	pub, sub := Dial(t, towers[0]), Dial(t, towers[1])
	sub.Subscribe("o")
	checkCount(t, c, towers[0], "o", 1)
	Probe(t, c, towers[0], "o", sub)
	// Pipelined in windows, each window acked.
	const n, window = 500, 50
	for i := 0; i < n; i += window {
		var ids []string
		for j := i; j < i+window; j++ {
			ids = append(ids, pub.Request("publish", "o", strconv.Itoa(j)))
		}
		for _, id := range ids {
			pub.expectAck(id)
		}
	}
	for i := range n {
		sub.ExpectDelivery("o", strconv.Itoa(i))
	}
}
