package transport

import (
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/firetower-go/firetower/internal/wsproto"
)

// rsv1Frame is a frame that breaks the protocol: RSV1 without an extension.
var rsv1Frame = clientFrame(true, 0x40, ws.OpText, []byte("bad"))

func expectClosed(t *testing.T, h *echoHandler, code int) {
	t.Helper()
	select {
	case got := <-h.closed:
		if got != code {
			t.Fatalf("Handler.Closed with code %d, want %d", got, code)
		}
	case <-time.After(ioLimit):
		t.Fatal("Handler.Closed was not called")
	}
}

// A ping and then a bad frame in one write: the pong, then the close.
func TestStrictPingThenProtocolError(t *testing.T) {
	s, h := startEcho(t, Config{})
	c := dial(t, s)
	c.write(append(clientFrame(true, 0, ws.OpPing, []byte("are you there")), rsv1Frame...))
	c.expect(ws.OpPong, "are you there")
	c.expectClose(wsproto.CloseProtocolError)
	expectClosed(t, h, wsproto.CloseProtocolError)
}

// Messages and then a bad frame in one write: the handler's answers (queued
// through Conn.Send, i.e. the loop's queue), then the close.
func TestStrictMessagesThenProtocolError(t *testing.T) {
	s, h := startEcho(t, Config{})
	c := dial(t, s)
	var b []byte
	b = append(b, clientFrame(true, 0, ws.OpText, []byte("one"))...)
	b = append(b, clientFrame(false, 0, ws.OpBinary, []byte("tw"))...)
	b = append(b, clientFrame(true, 0, ws.OpContinuation, []byte("o"))...)
	b = append(b, clientFrame(true, 0, ws.OpText, []byte("three"))...)
	b = append(b, rsv1Frame...)
	b = append(b, clientFrame(true, 0, ws.OpText, []byte("never read"))...)
	c.write(b)
	c.expect(ws.OpText, "one")
	c.expect(ws.OpBinary, "two")
	c.expect(ws.OpText, "three")
	c.expectClose(wsproto.CloseProtocolError)
	expectClosed(t, h, wsproto.CloseProtocolError)
	if n := s.Stats().MessagesIn; n != 3 {
		t.Fatalf("MessagesIn = %d, want 3: nothing after the bad frame is read", n)
	}
}

// The same for the other ways to fail: invalid UTF-8 (1007) and a message
// over the limit (1009).
func TestStrictMessageThenInvalidPayload(t *testing.T) {
	for _, tc := range []struct {
		name string
		bad  []byte
		code int
	}{
		{"utf8", clientFrame(true, 0, ws.OpText, []byte("caf\xe9")), wsproto.CloseInvalidPayload},
		{"too big", clientFrame(true, 0, ws.OpBinary, make([]byte, 200)), wsproto.CloseTooBig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, h := startEcho(t, Config{MaxMessageSize: 100})
			c := dial(t, s)
			c.write(append(clientFrame(true, 0, ws.OpText, []byte("hello")), tc.bad...))
			c.expect(ws.OpText, "hello")
			c.expectClose(tc.code)
			expectClosed(t, h, tc.code)
		})
	}
}

// A text message whose second fragment starts with a byte never in UTF-8
// fails with 1007 before its last fragment is sent.
func TestStrictUTF8FailsAtFirstBadFragment(t *testing.T) {
	s, h := startEcho(t, Config{})
	c := dial(t, s)
	c.write(clientFrame(false, 0, ws.OpText, []byte("hello ")))
	c.write(clientFrame(false, 0, ws.OpContinuation, []byte("\xffworld")))
	c.expectClose(wsproto.CloseInvalidPayload)
	expectClosed(t, h, wsproto.CloseInvalidPayload)
	// The last fragment comes too late: the connection is gone (the write
	// may fail or not, depending on how far the close got).
	_, _ = c.nc.Write(clientFrame(true, 0, ws.OpContinuation, []byte("!")))
}

// A single text frame fails as soon as its bytes so far cannot be UTF-8,
// before the rest of the frame is sent.
func TestStrictUTF8FailsInsideFrame(t *testing.T) {
	s, h := startEcho(t, Config{})
	c := dial(t, s)
	f := clientFrame(true, 0, ws.OpText, []byte("hello \xed\xa0\x80 world, and the rest of it"))
	const header = 2 + 4
	c.write(f[:header+7]) // "hello " and the first byte of a surrogate
	c.write(f[header+7 : header+8])
	c.expectClose(wsproto.CloseInvalidPayload)
	expectClosed(t, h, wsproto.CloseInvalidPayload)
}

// Code points split across fragments, with a ping between them, are
// accepted.
func TestStrictUTF8SplitAcrossFragments(t *testing.T) {
	s, _ := startEcho(t, Config{})
	c := dial(t, s)
	want := "aκ€😀z"
	c.write(clientFrame(false, 0, ws.OpText, []byte("a\xce")))
	c.write(clientFrame(false, 0, ws.OpContinuation, []byte("\xba\xe2\x82")))
	c.write(clientFrame(true, 0, ws.OpPing, []byte("p")))
	c.write(clientFrame(false, 0, ws.OpContinuation, []byte("\xac\xf0")))
	c.write(clientFrame(false, 0, ws.OpContinuation, []byte("\x9f")))
	c.write(clientFrame(false, 0, ws.OpContinuation, nil))
	c.write(clientFrame(true, 0, ws.OpContinuation, []byte("\x98\x80z")))
	c.expect(ws.OpPong, "p")
	c.expect(ws.OpText, want)
	// And a message that ends inside a code point is not valid.
	c.write(clientFrame(false, 0, ws.OpText, []byte("a\xce")))
	c.write(clientFrame(true, 0, ws.OpContinuation, nil))
	c.expectClose(wsproto.CloseInvalidPayload)
}

// Frames written a byte at a time are checked as they arrive (whichever
// pieces the server happens to read) and valid text still gets through.
func TestStrictUTF8DribbledFrames(t *testing.T) {
	s, _ := startEcho(t, Config{})
	c := dial(t, s)
	msg := "κόσμε € 😀 — " + string(make([]byte, 600)) + "κ"
	var b []byte
	b = append(b, clientFrame(false, 0, ws.OpText, []byte(msg[:3]))...)
	b = append(b, clientFrame(true, 0, ws.OpContinuation, []byte(msg[3:]))...)
	b = append(b, clientFrame(true, 0, ws.OpText, []byte(msg))...)
	for i := range b {
		c.write(b[i : i+1])
	}
	c.expect(ws.OpText, msg)
	c.expect(ws.OpText, msg)
}

// asyncHandler answers from a goroutine of its own, as the root package's
// workers do, and holds a failing connection's close frame until its
// answers are sent.
type asyncHandler struct {
	*echoHandler
	hold    bool        // Failing holds the close frame
	never   bool        // and never releases it
	work    chan func() // the worker's queue, in order
	failed  chan int    // Failing's codes
	release chan struct{}
}

func (h *asyncHandler) Message(c *Conn, op ws.OpCode, payload []byte) int {
	h.work <- func() { // buffered: never blocks the loop in these tests
		f := h.s.NewMessageFrame(op, payload)
		c.Send(f)
		f.Release()
		h.s.PutBuffer(payload)
	}
	return 0
}

func (h *asyncHandler) Failing(c *Conn, code int) bool {
	if h.hold && !h.never {
		h.work <- func() { c.Close(code, "") } // behind the answers
	}
	h.failed <- code
	return h.hold
}

// startAsync starts a server with an asyncHandler whose worker waits for
// release before it answers anything.
func startAsync(t *testing.T, cfg Config, hold, never bool) (*Server, *asyncHandler) {
	h := &asyncHandler{echoHandler: newEchoHandler(), hold: hold, never: never,
		work: make(chan func(), 64), failed: make(chan int, 4), release: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-h.release
		for fn := range h.work {
			fn()
		}
	}()
	t.Cleanup(func() { // after the server's shutdown (cleanups run last first)
		select {
		case <-h.release:
		default:
			close(h.release)
		}
		close(h.work)
		wg.Wait()
	})
	h.s = newTestServer(cfg, h)
	startServer(t, h.s)
	return h.s, h
}

func (h *asyncHandler) waitFailing(t *testing.T, code int) {
	t.Helper()
	select {
	case got := <-h.failed:
		if got != code {
			t.Fatalf("Failing with code %d, want %d", got, code)
		}
	case <-time.After(ioLimit):
		t.Fatal("Failing was not called")
	}
}

// A FailingHandler that answers from another goroutine gets its answers out
// before the close frame: the worker starts answering only once the
// connection has failed.
func TestStrictFailingHandlerHoldsClose(t *testing.T) {
	s, h := startAsync(t, Config{}, true, false)
	c := dial(t, s)
	var b []byte
	for _, m := range []string{"one", "two", "three"} {
		b = append(b, clientFrame(true, 0, ws.OpText, []byte(m))...)
	}
	c.write(append(b, rsv1Frame...))
	h.waitFailing(t, wsproto.CloseProtocolError)
	close(h.release)
	c.expect(ws.OpText, "one")
	c.expect(ws.OpText, "two")
	c.expect(ws.OpText, "three")
	c.expectClose(wsproto.CloseProtocolError)
	expectClosed(t, h.echoHandler, wsproto.CloseProtocolError)
}

// A held close frame leaves after CloseTimeout even if the handler never
// releases it.
func TestStrictFailingHandlerHoldTimesOut(t *testing.T) {
	s, h := startAsync(t, Config{CloseTimeout: 50 * time.Millisecond}, true, true)
	c := dial(t, s)
	c.write(rsv1Frame)
	c.expectClose(wsproto.CloseProtocolError)
	expectClosed(t, h.echoHandler, wsproto.CloseProtocolError)
}
