package firetower_test

// Hook tests: chain order, rejection, rewriting, identities, timing of OnSubscribe,
// OnReadTimeout, disconnect, isolation of a blocked hook, Send and Close from a hook, and
// goroutines after Shutdown. Helpers (pt*) live in protocol_test.go.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/firetower-go/firetower"
)

// ptTrace is middleware recording name> before and <name after the rest of the chain, for
// the hook kind given only.
func ptTrace(kind, name string, trace chan<- string) firetower.Middleware {
	return func(next firetower.Handler) firetower.Handler {
		return func(c *firetower.Context) error {
			if string(c.Hook()) != kind {
				return next(c)
			}
			trace <- name + ">"
			err := next(c)
			trace <- "<" + name
			return err
		}
	}
}

func TestHookMiddlewareOrder(t *testing.T) {
	trace := make(chan string, 64)
	kinds := make(chan string, 64)
	recordKinds := ptHook(func(c *firetower.Context) error {
		kinds <- string(c.Hook())
		return nil
	})
	tw := ptServer(t,
		firetower.Use(recordKinds, ptTrace("subscribe", "use1", trace), ptTrace("subscribe", "use2", trace)),
		firetower.OnSubscribe(ptTrace("subscribe", "a", trace), ptTrace("subscribe", "b", trace), ptTrace("subscribe", "c", trace)),
	)
	c := ptDial(t, tw, "")
	c.sub(t, "order")
	want := []string{"use1>", "use2>", "a>", "b>", "c>", "<c", "<b", "<a", "<use2", "<use1"}
	var got []string
	for range want {
		got = append(got, ptRecv(t, trace, "the trace"))
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("chain order %v, want %v (Use outermost, first listed outermost)", got, want)
	}

	// Use runs around every hook, in the order the events happen on one connection.
	c.pub(t, "order", "x")
	c.expectDelivery(t, "order", `"x"`)
	c.unsub(t, "order")
	c.closeHandshake()
	wantKinds := []string{"connect", "before_subscribe", "subscribe", "read", "unsubscribe", "disconnect"}
	var gotKinds []string
	for !slices.Contains(gotKinds, "disconnect") {
		gotKinds = append(gotKinds, ptRecv(t, kinds, "hook kinds (got "+strings.Join(gotKinds, ",")+")"))
	}
	if !reflect.DeepEqual(gotKinds, wantKinds) {
		t.Fatalf("Use saw hooks %v, want %v", gotKinds, wantKinds)
	}
}

func TestHookConnectReject(t *testing.T) {
	tw := ptServer(t, firetower.OnConnect(ptHook(func(c *firetower.Context) error {
		switch c.Conn().Request().URL.Query().Get("token") {
		case "good":
			return nil
		case "":
			return firetower.ErrUnauthorized
		case "wrapped":
			return fmt.Errorf("token check: %w", firetower.ErrUnauthorized)
		case "coded":
			return &firetower.Error{Code: "forbidden", Message: "banned"}
		default:
			return errors.New("banned")
		}
	})))
	cases := []struct {
		query  string
		status int
	}{
		{"", http.StatusUnauthorized},
		{"token=wrapped", http.StatusUnauthorized},
		{"token=bad", http.StatusForbidden},
		{"token=coded", http.StatusForbidden},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			c, resp, err := ptDialRaw(ptURL(tw, tc.query))
			if err == nil {
				c.close()
				t.Fatalf("upgrade succeeded, want HTTP %d", tc.status)
			}
			if resp == nil {
				t.Fatalf("no HTTP response: %v", err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("HTTP %d, want %d", resp.StatusCode, tc.status)
			}
			if resp.Header.Get("Sec-WebSocket-Accept") != "" {
				t.Fatalf("refused handshake carries Sec-WebSocket-Accept")
			}
		})
	}
	// the hook let this one in
	c := ptDialQuery(t, tw, "", "token=good")
	c.sub(t, "in")
	ptConnectNum(t, tw, "in", 1)
}

func TestHookConnectIdentity(t *testing.T) {
	type ident struct{ hook, id, user string }
	seen := make(chan ident, 64)
	record := ptHook(func(c *firetower.Context) error {
		if string(c.Hook()) != "connect" {
			seen <- ident{string(c.Hook()), c.Conn().ID(), c.Conn().UserID()}
		}
		return nil
	})
	tw := ptServer(t,
		firetower.OnConnect(ptHook(func(c *firetower.Context) error {
			if user := c.Conn().Request().URL.Query().Get("user"); user != "" {
				c.Conn().SetUserID(user)
				return c.Conn().SetID("conn-" + user)
			}
			return nil
		})),
		firetower.OnBeforeSubscribe(record),
		firetower.OnSubscribe(record),
		firetower.OnRead(record),
		firetower.OnDisconnect(record),
	)
	c := ptDialQuery(t, tw, "", "user=alice")
	c.sub(t, "id")
	c.pub(t, "id", 1)
	c.expectDelivery(t, "id", "1")
	c.closeHandshake()
	for _, hook := range []string{"before_subscribe", "subscribe", "read", "disconnect"} {
		got := ptRecv(t, seen, hook)
		if got != (ident{hook, "conn-alice", "alice"}) {
			t.Fatalf("got %+v, want hook %s with id conn-alice user alice", got, hook)
		}
	}

	// without SetID every connection still has its own non-empty id
	a := ptDial(t, tw, "")
	b := ptDial(t, tw, "")
	a.sub(t, "anon")
	ia := ptRecv(t, seen, "before_subscribe of a")
	ptRecv(t, seen, "subscribe of a")
	b.sub(t, "anon")
	ib := ptRecv(t, seen, "before_subscribe of b")
	if ia.id == "" || ib.id == "" || ia.id == ib.id {
		t.Fatalf("default connection ids %q and %q, want distinct non-empty ids", ia.id, ib.id)
	}
}

func TestHookBeforeSubscribeReject(t *testing.T) {
	subscribed := make(chan []string, 8)
	tw := ptServer(t,
		firetower.OnBeforeSubscribe(ptHook(func(c *firetower.Context) error {
			for _, topic := range c.Topics() {
				switch {
				case strings.HasPrefix(topic, "deny/"):
					return errors.New("denied")
				case strings.HasPrefix(topic, "coded/"):
					return &firetower.Error{Code: "invalid_topic", Message: "not a room"}
				}
			}
			return nil
		})),
		firetower.OnSubscribe(ptHook(func(c *firetower.Context) error {
			subscribed <- c.Topics()
			return nil
		})),
	)
	c := ptDial(t, tw, "")
	c.sendText(t, `{"type":"subscribe","topics":["deny/x"],"id":"d1"}`)
	c.expectError(t, "d1", "forbidden")
	c.sendText(t, `{"type":"subscribe","topic":"deny/y","id":"d2"}`)
	c.expectError(t, "d2", "forbidden")
	c.sendText(t, `{"type":"subscribe","topics":["coded/z"],"id":"d3"}`)
	c.expectError(t, "d3", "invalid_topic")
	ptConnectNum(t, tw, "deny/x", 0)
	ptConnectNum(t, tw, "deny/y", 0)
	ptConnectNum(t, tw, "coded/z", 0)

	// nothing is delivered on the refused topic, and OnSubscribe never ran for it
	ptPublish(t, tw, "deny/x", []byte(`"leak"`))
	c.sub(t, "ok")
	if got := ptRecv(t, subscribed, "OnSubscribe of ok"); !reflect.DeepEqual(got, []string{"ok"}) {
		t.Fatalf("OnSubscribe topics %q, want [ok] (the refused subscriptions must not reach it)", got)
	}
	ptPublish(t, tw, "ok", []byte(`"fine"`))
	c.expectDelivery(t, "ok", `"fine"`)
}

func TestHookReadReject(t *testing.T) {
	tw := ptServer(t, firetower.OnRead(ptHook(func(c *firetower.Context) error {
		if string(c.Message().Data) == `"spam"` {
			return errors.New("spam")
		}
		return nil
	})))
	sub := ptDial(t, tw, "")
	sub.sub(t, "r")
	pub := ptDial(t, tw, "")
	pub.sub(t, "r")
	pub.sendText(t, `{"type":"publish","topic":"r","data":"spam","id":1}`)
	pub.expectError(t, 1, "forbidden")
	pub.pub(t, "r", "ham")
	// the first message the subscriber sees is the accepted one
	sub.expectDelivery(t, "r", `"ham"`)
	pub.expectDelivery(t, "r", `"ham"`)
}

func TestHookReadRewritesMessage(t *testing.T) {
	tw := ptServer(t, firetower.OnRead(ptHook(func(c *firetower.Context) error {
		m := c.Message()
		m.Data = []byte(`{"by":` + ptQ(c.Conn().ID()) + `,"orig":` + string(m.Data) + `}`)
		return nil
	})), firetower.OnConnect(ptHook(func(c *firetower.Context) error {
		return c.Conn().SetID("writer")
	})))
	c := ptDial(t, tw, "")
	c.sub(t, "rw")
	c.sendText(t, `{"type":"publish","topic":"rw","data":[1, 2]}`)
	c.expectDelivery(t, "rw", `{"by":"writer","orig":[1, 2]}`)
}

func TestHookSetTopicsRewrite(t *testing.T) {
	subscribed := make(chan []string, 8)
	tw := ptServer(t,
		firetower.OnConnect(ptHook(func(c *firetower.Context) error {
			c.Conn().SetUserID(c.Conn().Request().URL.Query().Get("user"))
			return nil
		})),
		firetower.OnBeforeSubscribe(ptHook(func(c *firetower.Context) error {
			var out []string
			for _, topic := range c.Topics() {
				out = append(out, "user/"+c.Conn().UserID()+"/"+topic)
			}
			c.SetTopics(out)
			return nil
		})),
		firetower.OnSubscribe(ptHook(func(c *firetower.Context) error {
			subscribed <- c.Topics()
			return nil
		})),
	)
	ptCodecs(t, func(t *testing.T, codec string) {
		user := "bob-" + codec
		c := ptDialQuery(t, tw, codec, "user="+user)
		ack := c.sub(t, "inbox", "alerts")
		want := []string{"user/" + user + "/inbox", "user/" + user + "/alerts"}
		if !ptSameSet(ack.Topics, want) {
			t.Fatalf("ack topics %q, want the rewritten %q", ack.Topics, want)
		}
		if got := ptRecv(t, subscribed, "OnSubscribe"); !ptSameSet(got, want) {
			t.Fatalf("OnSubscribe saw %q, want %q", got, want)
		}
		ptConnectNum(t, tw, "inbox", 0)
		ptConnectNum(t, tw, want[0], 1)
		ptConnectNum(t, tw, want[1], 1)
		ptPublish(t, tw, "inbox", []byte(`"wrong"`))
		ptPublish(t, tw, want[0], []byte(`{"mail":1}`))
		c.expectDelivery(t, want[0], `{"mail":1}`)
		// the client may publish on the rewritten topic it is subscribed to
		c.pub(t, want[1], "self")
		c.expectDelivery(t, want[1], `"self"`)
	})
}

func TestHookSubscribeAfterInEffect(t *testing.T) {
	counts := make(chan int64, 8)
	errs := make(chan error, 8)
	tw := ptServer(t, firetower.OnSubscribe(ptHook(func(c *firetower.Context) error {
		n, err := c.Tower().ConnectNum(c.Context(), c.Topics()[0])
		if err != nil {
			errs <- err
			return nil
		}
		counts <- n
		return nil
	})))
	a := ptDial(t, tw, "")
	b := ptDial(t, tw, "msgpack")
	a.sub(t, "eff")
	select {
	case err := <-errs:
		t.Fatalf("ConnectNum in OnSubscribe: %v", err)
	case n := <-counts:
		if n != 1 {
			t.Fatalf("ConnectNum inside OnSubscribe of the first subscriber = %d, want 1", n)
		}
	case <-time.After(ptTimeout):
		t.Fatal("OnSubscribe did not run")
	}
	b.sub(t, "eff")
	if n := ptRecv(t, counts, "second OnSubscribe"); n != 2 {
		t.Fatalf("ConnectNum inside OnSubscribe of the second subscriber = %d, want 2", n)
	}
}

func TestHookReadTimeout(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	var first atomic.Bool
	type dropped struct {
		topic, data, user string
	}
	drops := make(chan dropped, 256)
	tw := ptServer(t,
		firetower.WithInboundLimit(1), firetower.WithReadTimeout(50*time.Millisecond),
		firetower.OnConnect(ptHook(func(c *firetower.Context) error {
			c.Conn().SetUserID("flooder")
			return nil
		})),
		firetower.OnRead(ptHook(func(c *firetower.Context) error {
			if first.CompareAndSwap(false, true) {
				close(entered)
			}
			<-release
			return nil
		})),
		firetower.OnReadTimeout(ptHook(func(c *firetower.Context) error {
			var d dropped
			if m := c.Message(); m != nil {
				d = dropped{m.Topic, string(m.Data), c.Conn().UserID()}
			}
			drops <- d
			return nil
		})),
	)
	var once sync.Once
	releaseAll := func() { once.Do(func() { close(release) }) }
	t.Cleanup(releaseAll)

	c := ptDial(t, tw, "")
	c.sub(t, "flood")
	base := tw.Stats().MessagesIn
	c.sendText(t, `{"type":"publish","topic":"flood","data":{"n":0},"id":0}`)
	ptRecv(t, entered, "the OnRead hook to start")
	const n = 50
	for i := 1; i <= n; i++ {
		c.sendText(t, fmt.Sprintf(`{"type":"publish","topic":"flood","data":{"n":%d},"id":%d}`, i, i))
	}
	// release the slow hook once the server has read the whole flood and dropped some
	ptWaitStats(t, tw, "the flood to be read and overflow", func(s firetower.Stats) bool {
		return s.MessagesIn >= base+n+1 && s.ReadDropped > 0
	})
	releaseAll()

	// Every OnReadTimeout call must match a rate_limited error carrying the id of the
	// message it saw, and every rate_limited error a call; the message held by the hook
	// is accepted.
	errIDs := map[string]bool{}
	hookIDs := map[string]bool{}
	acked0 := false
	timer := time.NewTimer(ptTimeout)
	defer timer.Stop()
	same := func() bool {
		return len(errIDs) == len(hookIDs) && reflect.DeepEqual(errIDs, hookIDs)
	}
	for !acked0 || len(errIDs) == 0 || !same() {
		select {
		case f := <-c.frames:
			m, err := c.decode(f)
			if err != nil {
				t.Fatal(err)
			}
			switch m.Type {
			case "error":
				ptCheckLimited(t, m)
				errIDs[m.ID] = true
			case "ack":
				if m.ID == "0" {
					acked0 = true
				}
			case "publish":
			default:
				t.Fatalf("unexpected %s", m)
			}
		case d := <-drops:
			if d.topic != "flood" || d.user != "flooder" {
				t.Fatalf("OnReadTimeout saw %+v, want the dropped message on flood from flooder", d)
			}
			var v struct{ N *int }
			if err := json.Unmarshal([]byte(d.data), &v); err != nil || v.N == nil {
				t.Fatalf("OnReadTimeout saw data %q, want one of the flood messages", d.data)
			}
			hookIDs[strconv.Itoa(*v.N)] = true
		case <-timer.C:
			t.Fatalf("after %v: acked 0 %v, rate_limited ids %v, OnReadTimeout saw %v (stats %+v)",
				ptTimeout, acked0, ptKeys(errIDs), ptKeys(hookIDs), tw.Stats())
		}
	}
	if errIDs["0"] {
		t.Fatalf("the message held by the hook was rate limited")
	}
}

func ptKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return ptSorted(out)
}

func TestHookDisconnect(t *testing.T) {
	type event struct {
		hook   string
		id     string
		topics []string
	}
	events := make(chan event, 64)
	rec := ptAfter(func(c *firetower.Context, err error) error {
		events <- event{string(c.Hook()), c.Conn().ID(), c.Topics()}
		return err
	})
	tw := ptServer(t,
		firetower.OnConnect(ptHook(func(c *firetower.Context) error {
			return c.Conn().SetID(c.Conn().Request().URL.Query().Get("id"))
		})),
		firetower.OnUnsubscribe(rec),
		firetower.OnDisconnect(rec),
	)
	// next returns the next event of the connection with the given id; events of other
	// connections (closed at the end of an earlier subtest) are skipped.
	next := func(t *testing.T, id, what string) event {
		t.Helper()
		for {
			e := ptRecv(t, events, what)
			if e.id == id {
				return e
			}
		}
	}
	for _, mode := range []string{"close-frame", "tcp-drop"} {
		t.Run(mode, func(t *testing.T) {
			c := ptDialQuery(t, tw, "", "id="+mode)
			other := ptDialQuery(t, tw, "", "id=other-"+mode)
			other.sub(t, "d/a")
			c.sub(t, "d/a", "d/b")
			c.sub(t, "d/c")
			c.unsub(t, "d/b")
			e := next(t, mode, "explicit OnUnsubscribe")
			if e.hook != "unsubscribe" || !reflect.DeepEqual(e.topics, []string{"d/b"}) {
				t.Fatalf("got %+v, want unsubscribe of [d/b] by %s", e, mode)
			}
			if mode == "close-frame" {
				c.closeHandshake()
			} else {
				c.close()
			}
			var left []string
			for {
				e := next(t, mode, "disconnect events")
				if e.hook == "disconnect" {
					break
				}
				if e.hook != "unsubscribe" {
					t.Fatalf("unexpected event %+v", e)
				}
				left = append(left, e.topics...)
			}
			if !ptSameSet(left, []string{"d/a", "d/c"}) || len(left) != 2 {
				t.Fatalf("OnUnsubscribe at disconnect for %q, want each of [d/a d/c] once, before OnDisconnect", left)
			}
			ptConnectNum(t, tw, "d/a", 1)
			ptConnectNum(t, tw, "d/c", 0)
			other.unsub(t, "d/a")
			if e := next(t, "other-"+mode, "other's unsubscribe"); e.hook != "unsubscribe" {
				t.Fatalf("got %+v, want other's unsubscribe", e)
			}
			ptConnectNum(t, tw, "d/a", 0)
		})
	}
}

func TestHookBlockingDoesNotStall(t *testing.T) {
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var once sync.Once
	releaseAll := func() { once.Do(func() { close(release) }) }
	tw := ptServer(t,
		firetower.OnConnect(ptHook(func(c *firetower.Context) error {
			c.Conn().SetUserID(c.Conn().Request().URL.Query().Get("user"))
			return nil
		})),
		firetower.OnSubscribe(ptHook(func(c *firetower.Context) error {
			if c.Conn().UserID() == "slow" && slices.Contains(c.Topics(), "block") {
				entered <- struct{}{}
				<-release
			}
			return nil
		})),
	)
	t.Cleanup(releaseAll)

	slow := ptDialQuery(t, tw, "", "user=slow")
	slow.sub(t, "pre")
	slow.sendText(t, `{"type":"subscribe","topics":["block"],"id":"blocked"}`)
	ptRecv(t, entered, "the blocking hook")

	// other connections subscribe, publish and receive while slow's hook is blocked
	a := ptDial(t, tw, "")
	b := ptDial(t, tw, "msgpack")
	a.sub(t, "free")
	b.sub(t, "free")
	a.pub(t, "free", "one")
	a.expectDelivery(t, "free", `"one"`)
	b.expectDelivery(t, "free", `"one"`)
	b.pub(t, "free", "two")
	a.expectDelivery(t, "free", `"two"`)
	b.expectDelivery(t, "free", `"two"`)
	ptPublish(t, tw, "free", []byte(`"three"`))
	a.expectDelivery(t, "free", `"three"`)
	b.expectDelivery(t, "free", `"three"`)
	ptConnectNum(t, tw, "free", 2)
	// deliveries to the blocked connection itself are not held up by its hook (its ack may
	// come before or after OnSubscribe: the subscription is in effect before the hook runs)
	ptPublish(t, tw, "pre", []byte(`"meanwhile"`))
	var acked bool
	for {
		m := slow.next(t)
		if m.Type == "ack" && m.ID == `"blocked"` && !acked {
			acked = true
			continue
		}
		ptCheckDelivery(t, slow, m, "pre", `"meanwhile"`)
		break
	}

	releaseAll()
	if !acked {
		slow.expectAck(t, "blocked")
	}
	ptPublish(t, tw, "block", []byte(`"after"`))
	slow.expectDelivery(t, "block", `"after"`)
}

func TestHookSendToOneClient(t *testing.T) {
	welcome := `{"type":"welcome","text":"hi alice"}`
	sendErrs := make(chan error, 4)
	tw := ptServer(t,
		firetower.OnConnect(ptHook(func(c *firetower.Context) error {
			c.Conn().SetUserID(c.Conn().Request().URL.Query().Get("user"))
			return nil
		})),
		firetower.OnSubscribe(ptHook(func(c *firetower.Context) error {
			if c.Conn().UserID() == "alice" {
				sendErrs <- c.Conn().Send([]byte(welcome))
			}
			return nil
		})),
	)
	bob := ptDialQuery(t, tw, "", "user=bob")
	bob.sub(t, "room")
	alice := ptDialQuery(t, tw, "", "user=alice")
	id := alice.nextID()
	alice.send(t, map[string]any{"type": "subscribe", "topics": []string{"room"}, "id": id})
	if err := ptRecv(t, sendErrs, "Send"); err != nil {
		t.Fatalf("Send: %v", err)
	}
	var gotAck, gotWelcome bool
	for range 2 {
		f := alice.nextFrame(t)
		if f.mt == websocket.TextMessage && string(f.data) == welcome {
			gotWelcome = true
			continue
		}
		m, err := alice.decode(f)
		if err != nil || m.Type != "ack" || m.ID != ptQ(id) {
			t.Fatalf("alice got %q, want the ack and the welcome", f.data)
		}
		gotAck = true
	}
	if !gotAck || !gotWelcome {
		t.Fatalf("ack %v welcome %v", gotAck, gotWelcome)
	}
	// bob, on the same topic, did not get it
	ptPublish(t, tw, "room", []byte(`"marker"`))
	bob.expectDelivery(t, "room", `"marker"`)
	alice.expectDelivery(t, "room", `"marker"`)
	alice.expectQuiet(t)
	bob.expectQuiet(t)
}

func TestHookCloseFromHook(t *testing.T) {
	closeErrs := make(chan error, 4)
	disc := make(chan struct{}, 4)
	tw := ptServer(t,
		firetower.OnRead(ptHook(func(c *firetower.Context) error {
			if string(c.Message().Data) == `"bye please"` {
				closeErrs <- c.Conn().Close(4001, "bye")
				return errors.New("closed")
			}
			return nil
		})),
		firetower.OnDisconnect(ptHook(func(c *firetower.Context) error {
			disc <- struct{}{}
			return nil
		})),
	)
	other := ptDial(t, tw, "")
	other.sub(t, "cl")
	c := ptDial(t, tw, "")
	c.sub(t, "cl")
	c.pub(t, "cl", "bye please")
	code, text, _ := c.expectClose(t)
	if err := ptRecv(t, closeErrs, "Close"); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if code != 4001 || text != "bye" {
		t.Fatalf("close %d %q, want 4001 \"bye\"", code, text)
	}
	ptRecv(t, disc, "OnDisconnect")
	ptConnectNum(t, tw, "cl", 1)
	other.expectQuiet(t) // the refused message was not delivered
}

func TestHookShutdownGoroutines(t *testing.T) {
	baseline := runtime.NumGoroutine()
	tw, err := firetower.New(firetower.WithAddr("127.0.0.1:0"),
		firetower.OnSubscribe(ptHook(func(c *firetower.Context) error { return nil })),
		firetower.OnRead(ptHook(func(c *firetower.Context) error { return nil })))
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	var conns []*ptConn
	for i := range 8 {
		codec := []string{"", "msgpack"}[i%2]
		c := ptDial(t, tw, codec)
		c.sub(t, "sd", fmt.Sprintf("sd/%d", i))
		conns = append(conns, c)
	}
	conns[0].pub(t, "sd", "hello")
	for _, c := range conns {
		c.expectDelivery(t, "sd", `"hello"`)
	}
	ptPublish(t, tw, "sd", []byte(`"server"`))
	for _, c := range conns {
		c.expectDelivery(t, "sd", `"server"`)
	}

	ctx, cancel := context.WithTimeout(context.Background(), ptTimeout)
	defer cancel()
	if err := tw.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for i, c := range conns {
		code, _, _ := c.expectClose(t)
		if code != websocket.CloseGoingAway {
			t.Errorf("client %d closed with %d, want 1001", i, code)
		}
		c.close()
	}
	// no new connection is accepted
	if c, _, err := ptDialRaw(ptURL(tw, "")); err == nil {
		c.close()
		t.Errorf("dial after Shutdown succeeded")
	}

	deadline := time.Now().Add(ptTimeout)
	for {
		n := runtime.NumGoroutine()
		if n <= baseline {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines after Shutdown, baseline %d:\n%s", n, baseline, buf)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not a synchronisation
	}
}

// ptCheckLimited requires an error rate_limited carrying an id.
func ptCheckLimited(t testing.TB, m ptMsg) {
	t.Helper()
	if !m.has("id") {
		t.Fatalf("got %s, want error rate_limited with the id of the dropped message", m)
	}
	ptCheckError(t, m, json.RawMessage(m.ID), "rate_limited")
}
