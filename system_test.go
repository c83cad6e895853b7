package firetower_test

// System topics and system connections: the reserved "$firetower/" topics,
// SystemToken, the NodeStats feed and bad control messages from other
// nodes. Helpers (pt*) live in protocol_test.go.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firetower-go/firetower"
)

func TestSystemTopicsReserved(t *testing.T) {
	tw := ptServer(t, firetower.WithPublishPolicy(firetower.PublishAny))
	c := ptDial(t, tw, "json")
	for _, topic := range []string{firetower.StatsTopic, "$firetower/control", "$firetower/node/1", "$firetower/anything"} {
		c.send(t, map[string]any{"type": "subscribe", "topic": topic, "id": 1})
		c.expectError(t, 1, "forbidden")
		c.send(t, map[string]any{"type": "publish", "topic": topic, "data": 1, "id": 2})
		c.expectError(t, 2, "forbidden")
		err := tw.Publish(context.Background(), topic, []byte("1"))
		var fe *firetower.Error
		if !errors.As(err, &fe) || fe.Code != firetower.CodeForbidden {
			t.Fatalf("Tower.Publish(%q): %v, want a forbidden error", topic, err)
		}
	}
	// A publish to several topics with one reserved publishes nothing.
	c.sub(t, "ok")
	c.send(t, map[string]any{"type": "publish", "topics": []string{"ok", "$firetower/stats"}, "data": 1, "id": 3})
	c.expectError(t, 3, "forbidden")
	c.expectQuiet(t)
	// "$" alone and other "$" topics are ordinary.
	c.sub(t, "$other")
	if got := tw.Stats().BadControl; got != 0 {
		t.Fatalf("BadControl %d, want 0", got)
	}
}

// An OnBeforeSubscribe that rewrites to a system topic does not open it.
func TestSystemTopicRewriteRefused(t *testing.T) {
	tw := ptServer(t, firetower.OnBeforeSubscribe(func(next firetower.Handler) firetower.Handler {
		return func(c *firetower.Context) error {
			c.SetTopics([]string{firetower.StatsTopic})
			return next(c)
		}
	}))
	c := ptDial(t, tw, "json")
	c.send(t, map[string]any{"type": "subscribe", "topic": "innocent", "id": 1})
	c.expectError(t, 1, "forbidden")
	if n := tw.Topics()[firetower.StatsTopic]; n != 0 {
		t.Fatalf("stats topic has %d local subscribers, want 0", n)
	}
}

// Nor does an OnRead that rewrites a publish's topic.
func TestSystemTopicReadRewriteRefused(t *testing.T) {
	tw := ptServer(t, firetower.OnRead(func(next firetower.Handler) firetower.Handler {
		return func(c *firetower.Context) error {
			c.Message().Topic = "$firetower/control"
			return next(c)
		}
	}))
	c := ptDial(t, tw, "json")
	c.sub(t, "room")
	c.send(t, map[string]any{"type": "publish", "topic": "room", "data": 1, "id": 1})
	c.expectError(t, 1, "forbidden")
	if got := tw.Stats().BadControl; got != 0 {
		t.Fatalf("BadControl %d, want 0", got)
	}
}

func TestSystemConnection(t *testing.T) {
	var hooks atomic.Int64
	count := func(next firetower.Handler) firetower.Handler {
		return func(c *firetower.Context) error { hooks.Add(1); return next(c) }
	}
	refuse := func(firetower.Handler) firetower.Handler {
		return func(*firetower.Context) error { return firetower.ErrUnauthorized }
	}
	tw := ptServer(t,
		firetower.WithStatsInterval(20*time.Millisecond),
		firetower.WithPublishPolicy(firetower.PublishAny),
		firetower.Use(count),
		firetower.OnConnect(refuse), // every ordinary client is refused
	)
	tok := tw.SystemToken(time.Minute)
	q := firetower.SystemTokenParam + "=" + url.QueryEscape(tok)

	// Ordinary clients, and bad tokens, meet OnConnect.
	for _, query := range []string{"", firetower.SystemTokenParam + "=", firetower.SystemTokenParam + "=zzzz.forged",
		firetower.SystemTokenParam + "=" + url.QueryEscape(tw.SystemToken(-time.Second)), // expired
		firetower.SystemTokenParam + "=" + url.QueryEscape(tok[:len(tok)-2]+"xx"),        // altered
	} {
		_, resp, err := ptDialRaw(ptURL(tw, query), ptProtoJSON)
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("query %q: err %v, response %v: want 401 from OnConnect", query, err, resp)
		}
	}
	// A token from another Tower is not valid here.
	other := ptServer(t)
	if _, resp, err := ptDialRaw(ptURL(tw, firetower.SystemTokenParam+"="+url.QueryEscape(other.SystemToken(time.Minute))), ptProtoJSON); err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("another tower's token: err %v, want 401", err)
	}
	before := hooks.Load()

	c := ptDialQuery(t, tw, "json", q)
	c.send(t, map[string]any{"type": "subscribe", "topic": "chat", "id": 1})
	c.expectError(t, 1, "forbidden")
	c.send(t, map[string]any{"type": "subscribe", "topics": []string{firetower.StatsTopic, "chat"}, "id": 2})
	c.expectError(t, 2, "forbidden")
	c.send(t, map[string]any{"type": "publish", "topic": "chat", "data": 1, "id": 3})
	c.expectError(t, 3, "forbidden")
	c.sub(t, firetower.StatsTopic)

	var ns firetower.NodeStats
	for {
		m := c.next(t)
		if m.Type != "publish" || m.Topic != firetower.StatsTopic {
			t.Fatalf("got %s, want NodeStats deliveries", m)
		}
		if err := json.Unmarshal(m.Data, &ns); err != nil {
			t.Fatalf("NodeStats %s: %v", m.Data, err)
		}
		if ns.Stats.Subscriptions == 1 { // taken after our subscription was in
			break
		}
	}
	if ns.Node != tw.NodeID() || ns.Stats.Connections != 1 || ns.Interval <= 0 || ns.Drops == nil {
		t.Fatalf("NodeStats %+v: want node %d, 1 connection, an interval and drops", ns, tw.NodeID())
	}
	if len(ns.Topics) != 0 {
		t.Fatalf("NodeStats topics %v: system topics must be left out", ns.Topics)
	}
	// NodeStats deliveries queued before the unsubscribe may come ahead of
	// its ack (every 20 ms): skip them.
	c.send(t, map[string]any{"type": "unsubscribe", "topics": []string{firetower.StatsTopic}, "id": 4})
	for {
		m := c.next(t)
		if m.Type == "publish" && m.Topic == firetower.StatsTopic {
			continue
		}
		if m.Type != "ack" || m.ID != ptID(4) {
			t.Fatalf("got %s, want the unsubscribe's ack", m)
		}
		break
	}
	c.closeHandshake()
	abWaitStats(t, tw, "the system connection to leave", func(s firetower.Stats) bool { return s.Connections == 0 })
	if got := hooks.Load(); got != before {
		t.Fatalf("%d hooks ran for the system connection, want none", got-before)
	}
}

// A node with interest in StatsTopic gets every node's NodeStats through
// the Manager, with nobody subscribed on the publishing node.
func TestStatsReachOtherNodes(t *testing.T) {
	m := firetower.NewLocalManager()
	ptServer(t, firetower.WithManager(m), firetower.WithNodeID(3), firetower.WithStatsInterval(10*time.Millisecond))
	watcher := &rogueNode{id: 50, got: make(chan []byte, 16)}
	link, err := m.Join(context.Background(), statsWatcher{watcher})
	if err != nil {
		t.Fatal(err)
	}
	defer link.Close()
	select {
	case b := <-watcher.got:
		var ns firetower.NodeStats
		if err := json.Unmarshal(b, &ns); err != nil || ns.Node != 3 {
			t.Fatalf("got %s (%v), want NodeStats of node 3", b, err)
		}
	case <-time.After(ptTimeout):
		t.Fatal("no NodeStats reached the other node")
	}
	if _, err := firetower.New(firetower.WithStatsInterval(-time.Second)); !errors.Is(err, firetower.ErrBadOption) {
		t.Fatalf("negative stats interval: %v, want ErrBadOption", err)
	}
}

type statsWatcher struct{ *rogueNode }

func (statsWatcher) Interest() map[string]int64 { return map[string]int64{firetower.StatsTopic: 1} }

// rogueNode joins a LocalManager beside Towers and speaks their system
// topics badly.
type rogueNode struct {
	id  uint16
	got chan []byte
}

func (r *rogueNode) NodeID() uint16 { return r.id }
func (r *rogueNode) Deliver(_ string, data []byte) {
	select {
	case r.got <- append([]byte(nil), data...):
	default:
	}
}
func (r *rogueNode) Interest() map[string]int64 {
	return map[string]int64{"$firetower/control": 1, "$firetower/node/99": 1}
}

func TestControlFromBadPeer(t *testing.T) {
	m := firetower.NewLocalManager()
	tw := ptServer(t, firetower.WithManager(m), firetower.WithNodeID(1))
	rogue := &rogueNode{id: 99, got: make(chan []byte, 16)}
	link, err := m.Join(context.Background(), rogue)
	if err != nil {
		t.Fatal(err)
	}
	defer link.Close()
	ctx := context.Background()
	for _, msg := range []string{
		`not json`, `{"op":`, `[]`, `{"op":"answer","req":1}`, // an answer on the control topic
	} {
		if err := link.Publish(ctx, "$firetower/control", []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	if err := link.Publish(ctx, "$firetower/node/1", []byte(`{"op":"disconnect_user","user":"u","from":99}`)); err != nil {
		t.Fatal(err) // a request on a node topic
	}
	if got := tw.Stats().BadControl; got != 5 {
		t.Fatalf("BadControl %d, want 5", got)
	}
	// An unknown operation is answered with an error.
	if err := link.Publish(ctx, "$firetower/control", []byte(`{"op":"explode","req":7,"from":99}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-rogue.got:
		var a struct {
			Op  string
			Req uint64
			Err *firetower.Error `json:"error"`
		}
		if err := json.Unmarshal(b, &a); err != nil || a.Op != "answer" || a.Req != 7 || a.Err == nil || a.Err.Code != firetower.CodeUnknownType {
			t.Fatalf("answer %s (%v): want an unknown_type error for request 7", b, err)
		}
	case <-time.After(ptTimeout):
		t.Fatal("no answer to an unknown operation")
	}
	// A peer that never answers: the operation ends with its context and
	// says how many nodes are missing, with what the others did.
	quiet := &rogueNode{id: 98, got: make(chan []byte, 1)}
	qlink, err := m.Join(ctx, silent{quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer qlink.Close()
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	n, err := tw.DisconnectUser(cctx, "nobody", 1000, "")
	var fe *firetower.Error
	if n != 0 || !errors.As(err, &fe) || fe.Code != firetower.CodeUnavailable {
		t.Fatalf("DisconnectUser with a silent node: %d, %v; want 0 and an unavailable error", n, err)
	}
	// Neither peer answers; the Tower still serves.
	c := ptDial(t, tw, "json")
	c.sub(t, "still-fine")
}

// silent has interest in the control topic and never answers.
type silent struct{ *rogueNode }

func (silent) Deliver(string, []byte) {}
func (s silent) Interest() map[string]int64 {
	return map[string]int64{"$firetower/control": 1}
}
