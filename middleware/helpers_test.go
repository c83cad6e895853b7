package middleware_test

// Helpers for the tests that run middleware inside a real Tower and talk to it with a
// gorilla/websocket client.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/firetower-go/firetower"
)

// testTimeout bounds every wait so that a broken test fails instead of hanging; no test
// relies on it for synchronisation.
const testTimeout = 10 * time.Second

// newTower starts a Tower on a free loopback port and shuts it down at the end of the test.
func newTower(t testing.TB, opts ...firetower.Option) *firetower.Tower {
	t.Helper()
	tw, err := firetower.New(append([]firetower.Option{firetower.WithAddr("127.0.0.1:0")}, opts...)...)
	if err != nil {
		t.Fatalf("firetower.New: %v", err)
	}
	if err := tw.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := tw.Shutdown(ctx); err != nil && !errors.Is(err, firetower.ErrClosed) {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return tw
}

// msg is a server message as a client sees it.
type msg struct {
	Type    string          `json:"type"`
	ID      json.RawMessage `json:"id"`
	Code    string          `json:"code"`
	Message string          `json:"message"`
	Topic   string          `json:"topic"`
	Topics  []string        `json:"topics"`
	Data    json.RawMessage `json:"data"`
	raw     string
}

func (m msg) String() string { return m.raw }

// client is a websocket client; one goroutine reads its messages into a channel.
type client struct {
	ws   *websocket.Conn
	msgs chan msg
	done chan struct{}
	err  error // the read error, once done is closed
	seq  int
	once sync.Once
	held []msg // deliveries answer went past, for next
}

// dialRaw dials tw's websocket path with an optional raw query, extra headers and
// subprotocols. On a refused upgrade it returns the HTTP response.
func dialRaw(tw *firetower.Tower, query string, header http.Header, protocols ...string) (*client, *http.Response, error) {
	u := "ws://" + tw.Addr() + "/ws"
	if query != "" {
		u += "?" + query
	}
	d := websocket.Dialer{HandshakeTimeout: testTimeout, Subprotocols: protocols}
	ws, resp, err := d.Dial(u, header)
	if err != nil {
		return nil, resp, err
	}
	c := &client{ws: ws, msgs: make(chan msg, 1024), done: make(chan struct{})}
	go c.read()
	return c, resp, nil
}

func (c *client) read() {
	defer close(c.done)
	for {
		_, p, err := c.ws.ReadMessage()
		if err != nil {
			c.err = err
			return
		}
		m := msg{raw: string(p)}
		if err := json.Unmarshal(p, &m); err != nil {
			m = msg{Type: "undecodable", raw: string(p)}
		}
		c.msgs <- m
	}
}

// close closes the connection and waits for the reader.
func (c *client) close() {
	c.once.Do(func() {
		_ = c.ws.Close()
		<-c.done
	})
}

// dial connects or fails the test; the client is closed at the end of the test.
func dial(t testing.TB, tw *firetower.Tower, query string) *client {
	t.Helper()
	c, resp, err := dialRaw(tw, query, nil)
	if err != nil {
		t.Fatalf("dial: %v (%s)", err, status(resp))
	}
	t.Cleanup(c.close)
	return c
}

func status(resp *http.Response) string {
	if resp == nil {
		return "no HTTP response"
	}
	body, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("HTTP %d %q", resp.StatusCode, strings.TrimSpace(string(body)))
}

// dialRefused requires the upgrade to be refused with HTTP status want; it returns the
// response body.
func dialRefused(t testing.TB, tw *firetower.Tower, query string, header http.Header, want int, protocols ...string) string {
	t.Helper()
	c, resp, err := dialRaw(tw, query, header, protocols...)
	if err == nil {
		c.close()
		t.Fatalf("upgrade accepted, want HTTP %d", want)
	}
	if resp == nil {
		t.Fatalf("no HTTP response: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("HTTP %d %q, want %d", resp.StatusCode, body, want)
	}
	return string(body)
}

func (c *client) send(t testing.TB, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// next returns the next message.
func (c *client) next(t testing.TB) msg {
	t.Helper()
	if len(c.held) > 0 {
		m := c.held[0]
		c.held = c.held[1:]
		return m
	}
	return c.recv(t)
}

func (c *client) recv(t testing.TB) msg {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-c.done:
		select {
		case m := <-c.msgs:
			return m
		default:
		}
		t.Fatalf("connection closed while waiting for a message: %v", c.err)
	case <-time.After(testTimeout):
		t.Fatalf("no message within %v", testTimeout)
	}
	return msg{}
}

// answer returns the ack or error answering request id; deliveries received before it
// are kept for next.
func (c *client) answer(t testing.TB, id string) msg {
	t.Helper()
	for {
		m := c.recv(t)
		if m.Type == "publish" {
			c.held = append(c.held, m)
			continue
		}
		if string(m.ID) != strconv.Quote(id) {
			t.Fatalf("got %s, want the answer to request %q", m, id)
		}
		return m
	}
}

// request sends a request of type typ for topics with a fresh id and returns its answer.
func (c *client) request(t testing.TB, typ string, data any, topics ...string) msg {
	t.Helper()
	c.seq++
	id := "r" + strconv.Itoa(c.seq)
	req := map[string]any{"type": typ, "topics": topics, "id": id}
	if data != nil {
		req["data"] = data
	}
	c.send(t, req)
	return c.answer(t, id)
}

func (c *client) sub(t testing.TB, topics ...string) msg {
	t.Helper()
	return c.request(t, "subscribe", nil, topics...)
}

func (c *client) unsub(t testing.TB, topics ...string) msg {
	t.Helper()
	return c.request(t, "unsubscribe", nil, topics...)
}

func (c *client) pub(t testing.TB, topic string, data any) msg {
	t.Helper()
	return c.request(t, "publish", data, topic)
}

// expectDelivery requires the next message to be a delivery on topic carrying data.
func (c *client) expectDelivery(t testing.TB, topic, data string) {
	t.Helper()
	m := c.next(t)
	if m.Type != "publish" || m.Topic != topic || string(m.Data) != data {
		t.Fatalf("got %s, want a delivery of %s on %q", m, data, topic)
	}
}

func wantAck(t testing.TB, m msg) {
	t.Helper()
	if m.Type != "ack" {
		t.Fatalf("got %s, want an ack", m)
	}
}

func wantError(t testing.TB, m msg, code string) {
	t.Helper()
	if m.Type != "error" || m.Code != code {
		t.Fatalf("got %s, want an error with code %q", m, code)
	}
	if m.Message == "" {
		t.Fatalf("error %s has no message", m)
	}
}

// recv waits for a value on ch.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

// hook makes a Middleware of a function run before the rest of the chain.
func hook(f func(c *firetower.Context) error) firetower.Middleware {
	return func(next firetower.Handler) firetower.Handler {
		return func(c *firetower.Context) error {
			if err := f(c); err != nil {
				return err
			}
			return next(c)
		}
	}
}

// signal is a Middleware sending the user id of every call to ch.
func signal(ch chan<- string) firetower.Middleware {
	return hook(func(c *firetower.Context) error {
		ch <- c.Conn().UserID()
		return nil
	})
}

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// userFromToken is a TokenVerifier accepting "good-<user>".
func userFromToken(_ context.Context, token string) (string, error) {
	if user, ok := strings.CutPrefix(token, "good-"); ok {
		return user, nil
	}
	return "", errors.New("unknown token")
}
