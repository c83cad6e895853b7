package transport

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/firetower-go/firetower/internal/wsproto"
)

// ioLimit bounds every blocking read or write of a test client, so a broken
// server fails the test instead of hanging it. It is a guard, not a
// measurement: no test asserts how long anything took.
const ioLimit = 10 * time.Second

// newTestServer makes a Server for h on 127.0.0.1:0 with one event loop
// (cfg.Addr and cfg.EventLoops are set); start it with startServer.
func newTestServer(cfg Config, h Handler) *Server {
	cfg.Addr = "127.0.0.1:0"
	cfg.EventLoops = 1
	return New(cfg, h)
}

// startServer starts s and shuts it down when the test ends.
func startServer(t *testing.T, s *Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioLimit)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), ioLimit)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
}

// testClient is a raw websocket client: it writes exactly the bytes a test
// builds and reads the server's frames one by one.
type testClient struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

// dial connects to s and completes the upgrade.
func dial(t *testing.T, s *Server) *testClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", s.Addr(), ioLimit)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	c := &testClient{t: t, nc: nc, br: bufio.NewReader(nc)}
	c.write([]byte("GET / HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
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

func (c *testClient) write(b []byte) {
	c.t.Helper()
	_ = c.nc.SetWriteDeadline(time.Now().Add(ioLimit))
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// readFrame reads one server frame (servers do not mask).
func (c *testClient) readFrame() (fin bool, op ws.OpCode, payload []byte) {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(ioLimit))
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		c.t.Fatalf("read frame header: %v", err)
	}
	if h[1]&0x80 != 0 {
		c.t.Fatal("server frame is masked")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			c.t.Fatalf("read length: %v", err)
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			c.t.Fatalf("read length: %v", err)
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(c.br, payload); err != nil {
		c.t.Fatalf("read payload: %v", err)
	}
	return h[0]&0x80 != 0, ws.OpCode(h[0] & 0x0f), payload
}

// expect reads the next frame and checks it is a final frame of op with
// payload want.
func (c *testClient) expect(op ws.OpCode, want string) {
	c.t.Helper()
	fin, got, p := c.readFrame()
	if !fin || got != op || string(p) != want {
		c.t.Fatalf("got frame fin=%v op=%v %q; want a final %v frame %q", fin, got, p, op, want)
	}
}

// expectClose reads the next frame and checks it is a close frame with code.
func (c *testClient) expectClose(code int) {
	c.t.Helper()
	_, op, p := c.readFrame()
	if op != ws.OpClose {
		c.t.Fatalf("got %v frame %q; want a close frame with %d", op, p, code)
	}
	if len(p) < 2 || int(binary.BigEndian.Uint16(p)) != code {
		c.t.Fatalf("got close frame %q; want code %d", p, code)
	}
}

// clientFrame builds a masked client frame; rsv goes in the first byte's
// RSV bits as on the wire (0x40 is RSV1).
func clientFrame(fin bool, rsv byte, op ws.OpCode, payload []byte) []byte {
	b0 := byte(op) | rsv
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	mask := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	b = append(b, mask[:]...)
	start := len(b)
	b = append(b, payload...)
	wsproto.Unmask(b[start:], mask, 0)
	return b
}

// echoHandler echoes every message on the event loop through Conn.Send, as
// the root package answers the requests it handles inline, and reports each
// connection's end on closed.
type echoHandler struct {
	s      *Server
	closed chan int // close code of each connection gone
}

func newEchoHandler() *echoHandler { return &echoHandler{closed: make(chan int, 16)} }

func (h *echoHandler) Handshake(*Conn, *Handshake) Decision { return Decision{} }

func (h *echoHandler) Message(c *Conn, op ws.OpCode, payload []byte) int {
	f := h.s.NewMessageFrame(op, payload)
	c.Send(f)
	f.Release()
	h.s.PutBuffer(payload)
	return 0
}

func (h *echoHandler) Overflow(_ *Conn, _ ws.OpCode, payload []byte) { h.s.PutBuffer(payload) }
func (h *echoHandler) Dropped(*Conn, int)                            {}
func (h *echoHandler) Closed(_ *Conn, code int, _ error)             { h.closed <- code }

// startEcho starts a server with an echoHandler.
func startEcho(t *testing.T, cfg Config) (*Server, *echoHandler) {
	h := newEchoHandler()
	h.s = newTestServer(cfg, h)
	startServer(t, h.s)
	return h.s, h
}
