package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/client"
)

// wait is the longest any single expected event may take. It is a deadline,
// not a synchronisation: every wait below is on a channel.
//
// Tests that reconnect use a short dial timeout: a reconnect attempt that
// lands while the old Tower is shutting down can be accepted by the kernel and
// then never answered (nor closed) by the server; only the attempt's timeout
// ends it.
const wait = 10 * time.Second

func startTower(t *testing.T, addr string, opts ...firetower.Option) *firetower.Tower {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	opts = append([]firetower.Option{firetower.WithAddr(addr)}, opts...)
	var lastErr error
	// The address of a Tower just shut down may be busy for a moment:
	// retry Start until the deadline.
	retry := time.NewTicker(20 * time.Millisecond)
	defer retry.Stop()
	for {
		tw, err := firetower.New(opts...)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		if lastErr = tw.Start(ctx); lastErr == nil {
			t.Cleanup(func() { stopTower(t, tw) })
			return tw
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Start on %s: %v", addr, lastErr)
		case <-retry.C:
		}
	}
}

func stopTower(t *testing.T, tw *firetower.Tower) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := tw.Shutdown(ctx); err != nil && !errors.Is(err, firetower.ErrClosed) {
		t.Errorf("Shutdown: %v", err)
	}
}

type delivery struct {
	topic string
	data  string
}

// recorder collects what a Client's handlers are given, on channels.
type recorder struct {
	msgs   chan delivery
	states chan client.State
	errs   chan error
}

func newRecorder() *recorder {
	return &recorder{msgs: make(chan delivery, 256), states: make(chan client.State, 256), errs: make(chan error, 256)}
}

func (r *recorder) options() []client.Option {
	return []client.Option{
		client.WithHandler(func(topic string, data []byte) { r.msgs <- delivery{topic, string(data)} }),
		client.WithStateHandler(func(s client.State, _ error) { r.states <- s }),
		client.WithErrorHandler(func(err error) {
			select {
			case r.errs <- err:
			default:
			}
		}),
	}
}

func (r *recorder) next(t *testing.T) delivery {
	t.Helper()
	select {
	case d := <-r.msgs:
		return d
	case <-time.After(wait):
		t.Fatal("no delivery")
		return delivery{}
	}
}

// waitState waits for state s, skipping others.
func (r *recorder) waitState(t *testing.T, s client.State) {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case got := <-r.states:
			if got == s {
				return
			}
		case <-deadline:
			t.Fatalf("state %v never came", s)
		}
	}
}

func dial(t *testing.T, tw *firetower.Tower, opts ...client.Option) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := client.Dial(ctx, "ws://"+tw.Addr()+"/ws", opts...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func tctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

// sameJSON compares two JSON texts as values (numbers compared exactly).
func sameJSON(t *testing.T, got, want string) {
	t.Helper()
	dec := func(s string) any {
		d := json.NewDecoder(strings.NewReader(s))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			t.Fatalf("bad JSON %q: %v", s, err)
		}
		return v
	}
	if g, w := dec(got), dec(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("got %s, want %s", got, want)
	}
}

// checkNoLeak fails when a goroutine of package client is still alive. A
// goroutine that has signalled its end may still be returning: the check is
// retried (yielding) until the deadline.
func checkNoLeak(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "github.com/firetower-go/firetower/client.") || strings.Contains(g, "gorilla/websocket") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

func TestSubscribePublishJSON(t *testing.T) {
	tw := startTower(t, "127.0.0.1:0")
	rec := newRecorder()
	c := dial(t, tw, rec.options()...)
	ctx := tctx(t)
	if err := c.Subscribe(ctx, "/chat/world", "news"); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	if got := c.Topics(); !reflect.DeepEqual(got, []string{"/chat/world", "news"}) {
		t.Fatalf("Topics = %v", got)
	}
	if n, err := tw.ConnectNum(ctx, "news"); err != nil || n != 1 {
		t.Fatalf("ConnectNum = %d, %v", n, err)
	}
	if err := c.Publish(ctx, "/chat/world", []byte(`{"text": "hi <b>", "n": 1}`)); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	// JSON data is carried byte for byte.
	if d := rec.next(t); d != (delivery{"/chat/world", `{"text": "hi <b>", "n": 1}`}) {
		t.Fatalf("got %+v", d)
	}
	if err := tw.Publish(ctx, "news", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	if d := rec.next(t); d != (delivery{"news", `"not json"`}) {
		t.Fatalf("got %+v", d)
	}
	if err := c.Publish(ctx, "news", nil); err != nil {
		t.Fatalf("Publish nil: %v", err)
	}
	if d := rec.next(t); d != (delivery{"news", `null`}) {
		t.Fatalf("got %+v", d)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if err := c.Unsubscribe(ctx, "news"); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	if n, _ := tw.ConnectNum(ctx, "news"); n != 0 {
		t.Fatalf("ConnectNum after unsubscribe = %d", n)
	}
	if err := c.Publish(ctx, "news", []byte(`1`)); !errors.Is(err, &client.Error{Code: client.CodeForbidden}) {
		t.Fatalf("publish after unsubscribe: %v", err)
	}
	if got := c.State(); got != client.StateOpen {
		t.Fatalf("State = %v", got)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	rec.waitState(t, client.StateClosed)
	if err := c.Subscribe(ctx, "x"); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Subscribe after Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	checkNoLeak(t)
}

func TestMsgpack(t *testing.T) {
	tw := startTower(t, "127.0.0.1:0")
	mrec, jrec := newRecorder(), newRecorder()
	mc := dial(t, tw, append(mrec.options(), client.WithCodec(client.Msgpack))...)
	jc := dial(t, tw, jrec.options()...)
	ctx := tctx(t)
	for _, c := range []*client.Client{mc, jc} {
		if err := c.Subscribe(ctx, "m"); err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
	}
	const data = `{"n":1,"neg":-7,"s":"x <&>","f":1.5,"arr":[1,"two",null,true],"big":9007199254740993,"o":{}}`
	if err := mc.Publish(ctx, "m", []byte(data)); err != nil {
		t.Fatalf("msgpack Publish: %v", err)
	}
	for _, rec := range []*recorder{mrec, jrec} {
		d := rec.next(t)
		if d.topic != "m" {
			t.Fatalf("topic %q", d.topic)
		}
		sameJSON(t, d.data, data)
	}
	if err := jc.Publish(ctx, "m", []byte(`["from json", 2]`)); err != nil {
		t.Fatal(err)
	}
	sameJSON(t, mrec.next(t).data, `["from json", 2]`)
	sameJSON(t, jrec.next(t).data, `["from json", 2]`)
	if err := mc.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	err := mc.Subscribe(ctx, "bad topic")
	var fe *client.Error
	if !errors.As(err, &fe) || fe.Code != client.CodeInvalidTopic || fe.Message == "" {
		t.Fatalf("msgpack Subscribe(bad topic) = %v", err)
	}
	if err := mc.Publish(ctx, "other", []byte(`1`)); !errors.Is(err, &client.Error{Code: client.CodeForbidden}) {
		t.Fatalf("msgpack Publish to unsubscribed = %v", err)
	}
	if err := mc.Unsubscribe(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	_ = mc.Close()
	_ = jc.Close()
	checkNoLeak(t)
}

func TestServerErrors(t *testing.T) {
	tw := startTower(t, "127.0.0.1:0",
		firetower.WithMaxTopics(3),
		firetower.OnBeforeSubscribe(func(next firetower.Handler) firetower.Handler {
			return func(c *firetower.Context) error {
				for _, tp := range c.Topics() {
					if strings.HasPrefix(tp, "/secret") {
						return firetower.ErrForbidden
					}
				}
				return next(c)
			}
		}))
	c := dial(t, tw)
	ctx := tctx(t)
	cases := []struct {
		name string
		call func() error
		code string
	}{
		{"invalid topic", func() error { return c.Subscribe(ctx, "a b") }, client.CodeInvalidTopic},
		{"comma in topic", func() error { return c.Subscribe(ctx, "a,b") }, client.CodeInvalidTopic},
		{"no topic", func() error { return c.Subscribe(ctx) }, client.CodeInvalidTopic},
		{"hook refuses", func() error { return c.Subscribe(ctx, "/secret/x") }, client.CodeForbidden},
		{"too many", func() error { return c.Subscribe(ctx, "t1", "t2", "t3", "t4") }, client.CodeTooManyTopics},
		{"publish unsubscribed", func() error { return c.Publish(ctx, "t1", []byte(`{}`)) }, client.CodeForbidden},
		{"publish invalid topic", func() error { return c.Publish(ctx, "", []byte(`{}`)) }, client.CodeInvalidTopic},
	}
	for _, tc := range cases {
		err := tc.call()
		var fe *client.Error
		if !errors.As(err, &fe) || fe.Code != tc.code {
			t.Errorf("%s: got %v, want code %s", tc.name, err, tc.code)
		}
	}
	if got := c.Topics(); len(got) != 0 {
		t.Fatalf("refused topics kept: %v", got)
	}
	if err := c.Publish(ctx, "t1", []byte(`{bad`)); !errors.Is(err, client.ErrInvalidData) {
		t.Fatalf("invalid data: %v", err)
	}
	// The connection is still usable.
	if err := c.Subscribe(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctx, "t1", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	checkNoLeak(t)
}

func TestHeadersAndQuery(t *testing.T) {
	tw := startTower(t, "127.0.0.1:0", firetower.OnConnect(func(next firetower.Handler) firetower.Handler {
		return func(c *firetower.Context) error {
			r := c.Conn().Request()
			if r.Header.Get("Authorization") != "Bearer s3cret" || r.URL.Query().Get("user") != "ann" {
				return firetower.ErrUnauthorized
			}
			return next(c)
		}
	}))
	ctx := tctx(t)
	u := "ws://" + tw.Addr() + "/ws"
	if c, err := client.Dial(ctx, u); err == nil || !strings.Contains(err.Error(), "401") {
		if c != nil {
			_ = c.Close()
		}
		t.Fatalf("Dial without credentials: %v", err)
	}
	c, err := client.Dial(ctx, u,
		client.WithHeader(http.Header{"Authorization": {"Bearer s3cret"}}),
		client.WithQuery(url.Values{"user": {"ann"}}))
	if err != nil {
		t.Fatalf("Dial with credentials: %v", err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	checkNoLeak(t)
}

func TestReconnectResubscribe(t *testing.T) {
	for _, codec := range []client.Codec{client.JSON, client.Msgpack} {
		t.Run(codec.String(), func(t *testing.T) {
			tw1 := startTower(t, "127.0.0.1:0")
			addr := tw1.Addr()
			rec := newRecorder()
			c := dial(t, tw1, append(rec.options(),
				client.WithCodec(codec),
				client.WithBackoff(5*time.Millisecond, 100*time.Millisecond),
				client.WithDialTimeout(time.Second))...)
			ctx := tctx(t)
			if err := c.Subscribe(ctx, "a", "b", "c"); err != nil {
				t.Fatal(err)
			}
			rec.waitState(t, client.StateOpen)

			stopTower(t, tw1)
			rec.waitState(t, client.StateReconnecting)
			// Forgotten while disconnected: not subscribed again.
			if err := c.Unsubscribe(ctx, "c"); err != nil {
				t.Fatalf("Unsubscribe while reconnecting: %v", err)
			}

			tw2 := startTower(t, addr)
			rec.waitState(t, client.StateOpen)
			for topic, want := range map[string]int64{"a": 1, "b": 1, "c": 0} {
				if n, err := tw2.ConnectNum(ctx, topic); err != nil || n != want {
					t.Fatalf("after reconnect ConnectNum(%s) = %d, %v; want %d", topic, n, err, want)
				}
			}
			if err := tw2.Publish(ctx, "b", []byte(`{"after":"restart"}`)); err != nil {
				t.Fatal(err)
			}
			d := rec.next(t)
			if d.topic != "b" {
				t.Fatalf("got %+v", d)
			}
			sameJSON(t, d.data, `{"after":"restart"}`)
			if err := c.Publish(ctx, "a", []byte(`2`)); err != nil {
				t.Fatalf("Publish after reconnect: %v", err)
			}
			if d := rec.next(t); d.topic != "a" || d.data != "2" {
				t.Fatalf("got %+v", d)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			checkNoLeak(t)
		})
	}
}

// A request waiting for its answer fails with ErrConnectionLost when the
// connection drops; without reconnect the Client then ends.
func TestPendingFailsOnDrop(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	tw := startTower(t, "127.0.0.1:0", firetower.OnBeforeSubscribe(func(next firetower.Handler) firetower.Handler {
		return func(c *firetower.Context) error {
			if c.Topics()[0] == "slow" {
				close(entered)
				select {
				case <-release:
				case <-c.Context().Done():
				}
			}
			return next(c)
		}
	}))
	defer close(release)
	rec := newRecorder()
	c := dial(t, tw, append(rec.options(), client.WithReconnect(false))...)
	ctx := tctx(t)
	res := make(chan error, 1)
	go func() { res <- c.Subscribe(ctx, "slow") }()
	select {
	case <-entered:
	case <-time.After(wait):
		t.Fatal("hook not reached")
	}
	stopped := make(chan struct{})
	go func() { stopTower(t, tw); close(stopped) }()
	select {
	case err := <-res:
		if !errors.Is(err, client.ErrConnectionLost) {
			t.Fatalf("pending Subscribe = %v, want ErrConnectionLost", err)
		}
	case <-time.After(wait):
		t.Fatal("pending Subscribe never failed")
	}
	rec.waitState(t, client.StateClosed)
	if err := c.Ping(ctx); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Ping after the end: %v", err)
	}
	<-stopped
	_ = c.Close()
	checkNoLeak(t)
}

func TestGiveUpAndCloseWhileReconnecting(t *testing.T) {
	tw := startTower(t, "127.0.0.1:0")
	rec := newRecorder()
	c := dial(t, tw, append(rec.options(),
		client.WithBackoff(time.Millisecond, 5*time.Millisecond), client.WithMaxRetries(3),
		client.WithDialTimeout(time.Second))...)
	stopTower(t, tw)
	rec.waitState(t, client.StateReconnecting)
	rec.waitState(t, client.StateClosed)
	var errs int
	for len(rec.errs) > 0 {
		<-rec.errs
		errs++
	}
	if errs != 3 {
		t.Errorf("%d failed attempts reported, want 3", errs)
	}
	if err := c.Subscribe(tctx(t), "a"); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Subscribe after giving up: %v", err)
	}
	_ = c.Close()

	// Close while waiting out a long backoff returns at once.
	tw = startTower(t, "127.0.0.1:0")
	rec = newRecorder()
	c = dial(t, tw, append(rec.options(), client.WithBackoff(time.Hour, time.Hour))...)
	stopTower(t, tw)
	rec.waitState(t, client.StateReconnecting)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.Subscribe(ctx, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Subscribe while reconnecting: %v", err)
	}
	closed := make(chan struct{})
	go func() { _ = c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(wait):
		t.Fatal("Close hangs while reconnecting")
	}
	checkNoLeak(t)
}

func TestDialFailureLeaksNothing(t *testing.T) {
	tw := startTower(t, "127.0.0.1:0")
	addr := tw.Addr()
	stopTower(t, tw)
	if _, err := client.Dial(tctx(t), "ws://"+addr+"/ws"); err == nil {
		t.Fatal("Dial to a stopped server succeeded")
	}
	if _, err := client.Dial(tctx(t), "ftp://"+addr); err == nil {
		t.Fatal("Dial with a bad scheme succeeded")
	}
	checkNoLeak(t)
}

// Handlers run on the Client's own goroutine and may make requests.
func TestHandlerMayCallClient(t *testing.T) {
	tw := startTower(t, "127.0.0.1:0")
	done := make(chan error, 1)
	var c *client.Client
	ready := make(chan struct{})
	c = dial(t, tw, client.WithHandler(func(topic string, data []byte) {
		<-ready
		if topic == "in" {
			done <- c.Publish(context.Background(), "out", data)
		}
	}))
	close(ready)
	ctx := tctx(t)
	if err := c.Subscribe(ctx, "in", "out"); err != nil {
		t.Fatal(err)
	}
	if err := tw.Publish(ctx, "in", []byte(`"x"`)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Publish from a handler: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("handler's Publish hangs")
	}
	_ = c.Close()
	checkNoLeak(t)
}
