package firetower_test

import (
	"context"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/firetower-go/firetower"
)

func limitsServer(t *testing.T, opts ...firetower.Option) *firetower.Tower {
	t.Helper()
	tw, err := firetower.New(append([]firetower.Option{firetower.WithAddr("127.0.0.1:0")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tw.Shutdown(context.Background()) })
	return tw
}

// dialStatus dials with the given Origin ("" for none) and returns the HTTP
// status of the answer (101 on success, with the connection closed).
func dialStatus(t *testing.T, tw *firetower.Tower, origin string) int {
	t.Helper()
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	ws, resp, err := websocket.DefaultDialer.Dial("ws://"+tw.Addr()+"/ws", h)
	if err == nil {
		t.Cleanup(func() { ws.Close() })
		return http.StatusSwitchingProtocols
	}
	if resp == nil {
		t.Fatalf("dial: %v", err)
	}
	return resp.StatusCode
}

func TestOriginDefaultPolicy(t *testing.T) {
	tw := limitsServer(t)
	for _, tc := range []struct {
		origin string
		want   int
	}{
		{"", 101},                         // not a browser
		{"http://127.0.0.1:8080", 101},    // same host, any port
		{"https://127.0.0.1", 101},        // same host, any scheme
		{"http://evil.example", 403},      // another host
		{"http://127.0.0.1.evil.io", 403}, // a look-alike
		{"null", 403},                     // opaque origin
	} {
		if got := dialStatus(t, tw, tc.origin); got != tc.want {
			t.Errorf("Origin %q: status %d, want %d", tc.origin, got, tc.want)
		}
	}
	if got := tw.Stats().RefusedOrigin; got != 3 {
		t.Errorf("RefusedOrigin = %d, want 3", got)
	}
}

func TestOriginAllowList(t *testing.T) {
	tw := limitsServer(t, firetower.WithAllowedOrigins("app.example.com", "*.cdn.example", "https://admin.example:8443"))
	for _, tc := range []struct {
		origin string
		want   int
	}{
		{"https://app.example.com", 101},
		{"http://app.example.com:3000", 101},
		{"https://a.cdn.example", 101},
		{"https://admin.example:8443", 101},
		{"https://admin.example", 403},
		{"http://127.0.0.1:1", 403}, // the list replaces the same-host default
		{"https://example.com", 403},
	} {
		if got := dialStatus(t, tw, tc.origin); got != tc.want {
			t.Errorf("Origin %q: status %d, want %d", tc.origin, got, tc.want)
		}
	}
}

func TestMaxConnections(t *testing.T) {
	tw := limitsServer(t, firetower.WithMaxConnections(2))
	a, _, err := websocket.DefaultDialer.Dial("ws://"+tw.Addr()+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if got := dialStatus(t, tw, ""); got != 101 {
		t.Fatalf("second connection: %d", got)
	}
	if got := dialStatus(t, tw, ""); got != http.StatusServiceUnavailable {
		t.Fatalf("third connection: status %d, want 503", got)
	}
	// a slot frees when a connection leaves (its disconnect is asynchronous:
	// the count drops after the slot is released)
	a.Close()
	deadline := time.Now().Add(10 * time.Second)
	for tw.Stats().Connections != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("connections still %d after one left", tw.Stats().Connections)
		}
		runtime.Gosched()
	}
	if got := dialStatus(t, tw, ""); got != 101 {
		t.Fatalf("after a connection left: status %d, want 101", got)
	}
}

func TestMaxConnectionsPerIP(t *testing.T) {
	tw := limitsServer(t, firetower.WithMaxConnectionsPerIP(1))
	if got := dialStatus(t, tw, ""); got != 101 {
		t.Fatalf("first: %d", got)
	}
	if got := dialStatus(t, tw, ""); got != http.StatusTooManyRequests {
		t.Fatalf("second from the same IP: status %d, want 429", got)
	}
	if got := tw.Stats().RefusedLimit; got != 1 {
		t.Fatalf("RefusedLimit = %d, want 1", got)
	}
}
