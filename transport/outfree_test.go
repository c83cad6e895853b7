package transport

import (
	"context"
	"fmt"
	"testing"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
)

// onLoop runs fn on c's event loop and waits for it: the only safe place
// to look at a connection's write state.
func onLoop(t *testing.T, c *Conn, fn func()) {
	t.Helper()
	done := make(chan struct{})
	err := c.l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		fn()
		close(done)
		return nil
	}))
	if err != nil {
		t.Fatalf("execute: %v", err)
	}
	<-done
}

// TestWrittenConnKeepsNoFrameList: once its frames are written, a
// connection gives its frame list back to its loop, so an idle connection
// holds none, and the next frames (to it or to another connection) reuse
// the loop's list instead of allocating one.
func TestWrittenConnKeepsNoFrameList(t *testing.T) {
	h := startConns(t, Config{})
	cl1 := dial(t, h.s)
	c1 := <-h.conns
	cl2 := dial(t, h.s)
	c2 := <-h.conns
	for i := range 3 {
		for _, p := range []struct {
			c  *Conn
			cl *testClient
		}{{c1, cl1}, {c2, cl2}} {
			msg := fmt.Sprint("m", i)
			send(h.s, p.c, msg)
			p.cl.expect(ws.OpText, msg)
			onLoop(t, p.c, func() {
				if p.c.out != nil {
					t.Errorf("round %d: a written connection keeps a frame list (len %d, cap %d)", i, len(p.c.out), cap(p.c.out))
				}
				if n := len(p.c.l.outFree); n < 1 {
					t.Errorf("round %d: the loop has %d free frame lists after a write; want the one given back", i, n)
				}
			})
		}
	}
	// The lists in the loops' free lists stay as many as were in use at
	// once: one per loop here, whatever the number of writes.
	for _, c := range []*Conn{c1, c2} {
		onLoop(t, c, func() {
			if n := len(c.l.outFree); n != 1 {
				t.Errorf("%d free frame lists on a loop after one connection at a time wrote; want 1", n)
			}
		})
	}
}

// TestOutFreeBounded: past maxOutFree lists the loop keeps no more, and a
// connection that writes then keeps its own list (as every connection did
// before the loop kept lists), so a broadcast to every connection leaves
// at most maxOutFree lists in the loop and nothing to allocate next time.
func TestOutFreeBounded(t *testing.T) {
	l := &loop{}
	c := &Conn{l: l}
	for range maxOutFree {
		l.giveOut(c, make([][]byte, 1))
		if c.out != nil {
			t.Fatal("a connection kept its list while the loop had room")
		}
	}
	own := make([][]byte, 1, 3)
	l.giveOut(c, own)
	if len(l.outFree) != maxOutFree {
		t.Fatalf("%d lists in the loop; want at most %d", len(l.outFree), maxOutFree)
	}
	if c.out == nil || len(c.out) != 0 || cap(c.out) != 3 {
		t.Fatalf("the connection's list past the bound: len %d cap %d; want its own, emptied", len(c.out), cap(c.out))
	}
	for range maxOutFree {
		if l.takeOut() == nil {
			t.Fatal("takeOut returned nil with lists in the loop")
		}
	}
	if l.takeOut() != nil {
		t.Fatal("takeOut returned a list from an empty loop")
	}
}
