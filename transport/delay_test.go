package transport

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
)

// connHandler is an echoHandler that hands each accepted connection to the
// test.
type connHandler struct {
	echoHandler
	conns chan *Conn
}

func (h *connHandler) Handshake(c *Conn, _ *Handshake) Decision {
	h.conns <- c
	return Decision{}
}

// startConns starts a server whose connections the test gets from the
// returned handler's conns.
func startConns(t *testing.T, cfg Config) *connHandler {
	t.Helper()
	h := &connHandler{echoHandler: *newEchoHandler(), conns: make(chan *Conn, 4)}
	h.s = newTestServer(cfg, h)
	startServer(t, h.s)
	return h
}

// settle returns once c's loop has run every task queued before the call:
// gnet runs a loop's tasks in order.
func settle(t *testing.T, c *Conn) {
	t.Helper()
	done := make(chan struct{})
	err := c.l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		close(done)
		return nil
	}))
	if err != nil {
		t.Fatalf("execute: %v", err)
	}
	<-done
}

// send queues a text frame with payload p for c.
func send(s *Server, c *Conn, p string) {
	f := s.NewMessageFrame(ws.OpText, []byte(p))
	c.Send(f)
	f.Release()
}

// TestWriteDelayHoldsUntilClose: under a write delay far longer than the
// test, frames queued for a connection in separate loop turns are held, not
// written; closing the connection writes them all, in order, in one write,
// then the close frame.
func TestWriteDelayHoldsUntilClose(t *testing.T) {
	const n = 20
	h := startConns(t, Config{WriteDelay: time.Hour})
	cl := dial(t, h.s)
	c := <-h.conns
	before := h.s.Stats().Writes
	for i := range n {
		send(h.s, c, fmt.Sprint("m", i))
		settle(t, c) // the next frame comes in a later loop turn
	}
	if w := h.s.Stats().Writes - before; w != 0 {
		t.Fatalf("%d writes while the frames are held; want none", w)
	}
	if l := c.l; len(l.due)-l.dueHead != 1 || !l.armed {
		t.Errorf("due list %d long, timer armed %v; want one connection due and the timer armed", len(l.due)-l.dueHead, l.armed)
	}
	c.Close(1000, "bye")
	for i := range n {
		cl.expect(ws.OpText, fmt.Sprint("m", i))
	}
	cl.expectClose(1000)
	if w := h.s.Stats().Writes - before; w != 1 {
		t.Errorf("%d writes for %d held frames; want 1", w, n)
	}
}

// TestWriteDelayDelivers: under a short write delay, frames queued one after
// another all arrive, in order, with nothing but the timer to write them.
func TestWriteDelayDelivers(t *testing.T) {
	const n = 200
	h := startConns(t, Config{WriteDelay: 5 * time.Millisecond})
	cl := dial(t, h.s)
	c := <-h.conns
	for i := range n {
		send(h.s, c, fmt.Sprint("m", i))
		if i%10 == 0 {
			settle(t, c)
		}
	}
	for i := range n {
		cl.expect(ws.OpText, fmt.Sprint("m", i))
	}
	wakes := make(chan int)
	_ = c.l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		wakes <- c.l.wakes
		return nil
	}))
	w := <-wakes
	t.Logf("%d frames in %d writes, %d timer wake-ups", n, h.s.Stats().Writes, w)
	if w == 0 {
		t.Error("the write-delay timer never woke the loop (the frames left with the keepalive scan)")
	}
}

// TestWriteDelayEcho: answers from Handler.Message (Conn.Send on the loop,
// as the root package's acks) wait like any frame and keep their order; a
// ping is answered at once, ahead of the held frames.
func TestWriteDelayEcho(t *testing.T) {
	h := startConns(t, Config{WriteDelay: time.Hour})
	cl := dial(t, h.s)
	c := <-h.conns
	cl.write(clientFrame(true, 0, ws.OpText, []byte("a")))
	cl.write(clientFrame(true, 0, ws.OpText, []byte("b")))
	cl.write(clientFrame(true, 0, ws.OpPing, []byte("p")))
	cl.expect(ws.OpPong, "p")
	for h.s.Stats().MessagesIn < 2 {
		settle(t, c) // wait for the loop to read both messages
	}
	settle(t, c) // and to run the tasks their answers queued
	c.Close(1000, "")
	cl.expect(ws.OpText, "a")
	cl.expect(ws.OpText, "b")
	cl.expectClose(1000)
}

// TestWriteDelayClosedWhileHolding: a connection that goes away while it
// holds frames leaves them discarded and counted; its entry in the loop's
// due list is skipped, and later frames for it are discarded too.
func TestWriteDelayClosedWhileHolding(t *testing.T) {
	const n = 5
	h := startConns(t, Config{WriteDelay: time.Hour})
	cl := dial(t, h.s)
	c := <-h.conns
	for i := range n {
		send(h.s, c, fmt.Sprint("m", i))
	}
	settle(t, c)
	_ = cl.nc.Close()
	if code := <-h.closed; code != 0 {
		t.Fatalf("closed with code %d, want 0", code)
	}
	send(h.s, c, "late")
	settle(t, c)
	// Make the stale entry due and let the loop take it.
	done := make(chan int)
	_ = c.l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		l := c.l
		for i := l.dueHead; i < len(l.due); i++ {
			l.due[i].at = 1
		}
		l.takeDue()
		done <- len(l.dirty)
		return nil
	}))
	if d := <-done; d != 0 {
		t.Errorf("%d connections taken to write after their close; want 0", d)
	}
	st := h.s.Stats()
	if st.Discarded != n+1 {
		t.Errorf("discarded %d frames, want %d", st.Discarded, n+1)
	}
	if st.Writes != 0 {
		t.Errorf("%d writes, want 0", st.Writes)
	}
}
