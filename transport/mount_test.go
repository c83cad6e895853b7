package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// startMounted starts an echo Server with no listener of its own behind an
// httptest server (TLS when tlsOn), and returns a dial function that
// completes an upgrade through it.
func startMounted(t *testing.T, tlsOn bool) (*Server, func() *testClient) {
	t.Helper()
	h := newEchoHandler()
	s := New(Config{EventLoops: 1}, h)
	h.s = s
	startServer(t, s)
	hs := httptest.NewUnstartedServer(s)
	if tlsOn {
		hs.EnableHTTP2 = false
		hs.StartTLS()
	} else {
		hs.Start()
	}
	// Closed before the Server shuts down (cleanups run last first).
	t.Cleanup(hs.Close)
	addr := hs.Listener.Addr().String()
	return s, func() *testClient {
		var nc net.Conn
		var err error
		if tlsOn {
			nc, err = tls.DialWithDialer(&net.Dialer{Timeout: ioLimit}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
		} else {
			nc, err = net.DialTimeout("tcp", addr, ioLimit)
		}
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		t.Cleanup(func() { _ = nc.Close() })
		c := &testClient{t: t, nc: nc, br: bufio.NewReader(nc)}
		c.write([]byte("GET /any HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
		_ = nc.SetReadDeadline(time.Now().Add(ioLimit))
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatalf("upgrade response: %v", err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: status %d", resp.StatusCode)
		}
		return c
	}
}

// TestServeHTTP: a Server with no listener serves upgrades handed to it by
// net/http, plain (hijacked into the loop) and TLS (relayed), and counts
// each kind.
func TestServeHTTP(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		name := map[bool]string{false: "hijacked", true: "tls"}[tlsOn]
		t.Run(name, func(t *testing.T) {
			s, dialIt := startMounted(t, tlsOn)
			if s.Addr() != "" {
				t.Fatalf("Addr = %q with no listener", s.Addr())
			}
			c := dialIt()
			c.write(clientFrame(true, 0, ws.OpText, []byte("hello")))
			c.expect(ws.OpText, "hello")
			c.write(clientFrame(true, 0, ws.OpPing, []byte("p")))
			c.expect(ws.OpPong, "p")
			st := s.Stats()
			if tlsOn && (st.Proxied != 1 || st.Hijacked != 0) || !tlsOn && (st.Hijacked != 1 || st.Proxied != 0) {
				t.Fatalf("Hijacked %d, Proxied %d", st.Hijacked, st.Proxied)
			}
			c.write(clientFrame(true, 0, ws.OpClose, []byte{0x03, 0xe8}))
			c.expectClose(1000)
		})
	}
}

// TestServeHTTPBeforeStart: a Server not started answers 503 and keeps the
// connection from being taken over.
func TestServeHTTPBeforeStart(t *testing.T) {
	s := New(Config{}, newEchoHandler())
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "not started") {
		t.Fatalf("got %d %q, want 503", rec.Code, rec.Body.String())
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown of a Server never started: %v", err)
	}
}

// TestRequestHeadBounded: the re-written head stops past the limit, so
// the parser answers 431 as it does on the native listener.
func TestRequestHeadBounded(t *testing.T) {
	r := httptest.NewRequest("GET", "/ws", nil)
	for i := range 100 {
		r.Header.Set("X-Filler-"+strings.Repeat("a", i%10)+string(rune('a'+i%26))+string(rune('a'+i/26)), strings.Repeat("v", 200))
	}
	b := requestHead(r, 1024)
	if len(b) > 1024+300 {
		t.Fatalf("head of %d bytes for a limit of 1024", len(b))
	}
	if strings.HasSuffix(string(b), "\r\n\r\n") {
		t.Fatalf("a truncated head must not look complete")
	}
}
