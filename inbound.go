package firetower

import (
	"sync"
	"sync/atomic"

	"github.com/gobwas/ws"

	"github.com/firetower-go/firetower/internal/protocol"
	"github.com/firetower-go/firetower/internal/wsproto"
	"github.com/firetower-go/firetower/transport"
)

// The inbound path of a client message, on the connection's event loop:
//
//	transport (frame parsed) -> wsHandler.Message -> decode
//	  -> inline: Tower.handle on the loop, when the request runs no hook
//	     that may block and no worker owns the connection's inbox;
//	  -> otherwise Conn.post: the inbox, counted against the inbound budget
//	     (reading pauses past it), then a worker runs Tower.handle.
//
// Flow control: a connection's queued requests may hold inboundLimit bytes
// and all connections together inboundTotal; past either, the transport
// stops reading the connection (TCP slows the client down) until a worker
// has brought it under half its budget. A connection paused for longer than
// the read timeout is read again and its requests are dropped over the
// budget (wsHandler.Overflow: OnReadTimeout, rate_limited), in order behind
// the accepted ones.

// inboundBudget is the Tower's total of queued request bytes, and the
// connections waiting for it to fall.
type inboundBudget struct {
	total   atomic.Int64
	nwait   atomic.Int32
	mu      sync.Mutex // guards waiters; taken under Conn.imu, never the reverse
	waiters []*Conn
}

func (b *inboundBudget) add(n int) int { return int(b.total.Add(int64(n))) }

func (b *inboundBudget) wait(c *Conn) {
	b.mu.Lock()
	b.waiters = append(b.waiters, c)
	b.nwait.Add(1)
	b.mu.Unlock()
}

// wake resumes every connection waiting for the total.
func (b *inboundBudget) wake() {
	if b.nwait.Load() == 0 {
		return
	}
	b.mu.Lock()
	w := b.waiters
	b.waiters = nil
	b.nwait.Store(0)
	b.mu.Unlock()
	for _, c := range w {
		c.wake()
	}
}

// inline reports whether a request of this type may run on the event loop:
// it runs no hook that may block and waits for nothing.
func (t *Tower) inline(typ int) bool {
	switch typ {
	case protocol.TypeSubscribe, protocol.TypeUnsubscribe:
		return false // hooks, and the Manager's confirmation
	case protocol.TypePublish:
		return t.chains.nonBlocking(HookRead)
	}
	return true // ping, unknown types: an answer only
}

// Message receives a whole client message on its event loop.
func (h wsHandler) Message(tc *transport.Conn, op ws.OpCode, payload []byte) int {
	t := h.t
	c := tc.Value.(*Conn)
	if (op == ws.OpBinary) != (c.codec == protocol.Msgpack) {
		t.srv.PutBuffer(payload)
		return wsproto.CloseUnsupportedData
	}
	t.stats.messagesIn.Add(1)
	req, rerr := t.decode(c, payload)
	if (rerr != nil || t.inline(req.Type)) && c.claim() {
		t.handle(c, req, rerr)
		t.srv.PutBuffer(payload)
		c.release()
		return 0
	}
	c.post(item{kind: itemRequest, req: req, rerr: rerr, buf: payload})
	return 0
}

// Overflow receives a message of a connection that stayed paused past the
// read timeout: it is dropped, counted, and answered rate_limited after
// OnReadTimeout, in order behind the requests already accepted.
func (h wsHandler) Overflow(tc *transport.Conn, op ws.OpCode, payload []byte) {
	t := h.t
	c := tc.Value.(*Conn)
	t.stats.messagesIn.Add(1)
	t.stats.readDropped.Add(1)
	var req *protocol.Request
	var rerr *protocol.RequestError
	if (op == ws.OpBinary) == (c.codec == protocol.Msgpack) {
		req, rerr = t.decode(c, payload)
	} else {
		rerr = &protocol.RequestError{Code: CodeBadRequest}
	}
	if !t.chains.has(HookReadTimeout) {
		t.srv.PutBuffer(payload) // no hook to show it to: keep only the id
		payload = nil
	}
	c.post(item{kind: itemReadTimeout, req: req, rerr: rerr, buf: payload})
}

// Failing holds the close frame of a connection that broke the protocol
// until the workers have answered the requests it sent before the bad
// frame (the transport sends it anyway after its close timeout). Requests
// handled on the loop need nothing: their answers are already queued.
func (h wsHandler) Failing(tc *transport.Conn, code int) bool {
	c := tc.Value.(*Conn)
	if c.claim() {
		c.release() // nothing waits for a worker
		return false
	}
	c.post(item{kind: itemFunc, fn: func() { c.tc.Close(code, "") }})
	return true
}
