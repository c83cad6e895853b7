package transport

import (
	"errors"
	"net"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/firetower-go/firetower/internal/wsproto"
)

type connState uint8

const (
	stHandshake connState = iota // reading the upgrade request
	stUpgrading                  // upgrade request handed to the Handler, no answer yet
	stOpen                       // websocket open
	stFailing                    // failed: reading stopped, close frame after what is queued (see Conn.fail)
	stClosing                    // close frame sent, waiting for the peer's
	stClosed
)

// maxIovecs bounds the frames coalesced into one write.
const maxIovecs = 1024

// maxScratch is the largest write buffer a loop keeps between writes.
const maxScratch = 1 << 20

// Under Config.WriteDelay a connection holds its frames in a buffer taken
// from its loop's free list (none while it holds nothing); a written
// buffer goes back to the list unless the list has maxHeldFree buffers or
// the buffer grew over maxHeldKept (then it is left to the collector), so
// a loop keeps at most maxHeldFree x maxHeldKept bytes for reuse.
const (
	maxHeldKept = 256 << 10
	maxHeldFree = 64
)

// Conn is one client connection. Its fields are owned by its event loop;
// only the methods documented "any goroutine" may be called elsewhere. A
// *Conn may be kept after the connection closed: its methods then do
// nothing.
type Conn struct {
	l  *loop
	gc gnet.Conn

	// Value is the Handler's own data for this connection; set it in
	// Handshake, before anyone else can see the connection, and only read
	// it afterwards (from any goroutine).
	Value any

	idx       int
	state     connState
	closeCode uint16 // the code the connection was closed with (1000-4999), for Handler.Closed
	deflate   bool   // permessage-deflate negotiated (or, before accept, to be)
	zCounted  bool   // counted in Stats.Compression.Conns
	fragZ     bool   // the fragmented message being read is compressed
	fragOp    ws.OpCode
	paused    bool         // PauseReading: frames wait unparsed
	overflow  bool         // paused too long or too full: read on, into Handler.Overflow
	utf8      wsproto.UTF8 // the text message being read, as far as it was checked
	pausedAt  int64        // when reading was paused
	since     int64        // when the connection opened (before upgrade), failed, or sent its close frame
	lastRead  int64
	lastPing  int64
	outBytes  int
	oldest    int64 // birth of the oldest frame in out
	out       [][]byte
	// Under Config.WriteDelay, queued frames are copied into held (taken
	// from the loop while the connection holds frames, nil otherwise)
	// instead of out, until due or a close frame.
	held *heldFrames
	frag []byte
	// partChecked is how many payload bytes of the text frame at the head
	// of the inbound buffer, not yet whole, went through utf8.
	partChecked int
	remote      net.Addr
}

// heldFrames are the frames a connection holds under Config.WriteDelay:
// n frames in b (the connection's outBytes), to be written at due
// (monotonic).
type heldFrames struct {
	b   []byte
	n   int
	due int64
}

// Loop is the index of the connection's event loop (for Server.Broadcast).
// Any goroutine.
func (c *Conn) Loop() int { return c.l.idx }

// RemoteAddr is the peer's address; valid from Handshake on, any goroutine.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// Compressed reports whether the connection negotiated permessage-deflate;
// valid from Handshake on, any goroutine.
func (c *Conn) Compressed() bool { return c.deflate }

// Send queues f for this connection. Any goroutine. The caller keeps its own
// reference to f and releases it as usual. Every operation on a connection
// (Send, Server.Broadcast, Close...) goes through its loop's one queue, so
// those made one after another leave in that order.
func (c *Conn) Send(f *Frame) {
	f.retain()
	c.l.enqueue(op{kind: opSend, f: f, c: c})
}

// Close sends a close frame with code and reason after what is already
// queued, then closes the connection. On a failing connection whose close
// frame a FailingHandler holds, it releases that close frame, which keeps
// the failure's code and reason. Any goroutine.
func (c *Conn) Close(code int, reason string) {
	c.l.enqueue(op{kind: opClose, c: c, code: code, reason: reason})
}

// Accept completes an upgrade left Pending. Any goroutine.
func (c *Conn) Accept(protocol string) {
	c.l.enqueue(op{kind: opAccept, c: c, reason: protocol})
}

// Reject refuses an upgrade left Pending with an HTTP status. Any goroutine.
func (c *Conn) Reject(status int, reason string) {
	c.l.enqueue(op{kind: opReject, c: c, code: status, reason: reason})
}

// PauseReading stops taking frames from this connection: what the client
// sends waits unparsed (where possible, in the kernel: its socket leaves the
// loop's read interest, so TCP slows the client down) until ResumeReading.
// The frames already read in this call of Handler.Message's turn stay
// unparsed too. A connection paused for longer than Config.ReadTimeout, or
// holding more than Config.PausedBufferLimit unparsed bytes, is read again
// and its messages go to Handler.Overflow until ResumeReading. Only on the
// connection's event loop (inside Handler.Message).
func (c *Conn) PauseReading() {
	if c.paused || c.state == stClosed {
		return
	}
	s := c.server()
	c.paused = true
	c.overflow = false
	c.pausedAt = s.cfg.Clock().UnixNano()
	s.c.pauses.Add(1)
	s.c.paused.Add(1)
	c.l.gate(c, false)
}

// ResumeReading undoes PauseReading: the frames that waited are parsed and
// reading goes on. Any goroutine.
func (c *Conn) ResumeReading() {
	c.l.enqueue(op{kind: opResume, c: c})
}

// resume runs ResumeReading on the loop.
func (c *Conn) resume() {
	if !c.paused {
		return
	}
	s := c.server()
	c.paused, c.overflow = false, false
	s.c.paused.Add(-1)
	if c.state != stOpen && c.state != stClosing {
		return
	}
	c.lastRead = s.cfg.Clock().UnixNano() // the pause was ours, not the client's
	c.l.gate(c, true)
	if c.gc.InboundBuffered() > 0 && c.readFrames() == gnet.Close {
		c.closeTCP()
	}
}

// startOverflow reads a paused connection again, handing its messages to
// Handler.Overflow.
func (c *Conn) startOverflow() {
	c.overflow = true
	c.l.gate(c, true)
}

func (c *Conn) server() *Server { return c.l.s }

// queue adds f to the connection's batch for this loop turn.
func (c *Conn) queue(f *Frame) {
	s := c.server()
	if !c.sending() {
		s.c.discarded.Add(1) // closing or gone: counted, not sent
		return
	}
	b, zipped := f.B, false
	if c.deflate {
		if z := f.compressed(c.l); z != nil {
			b, zipped = z, true
		}
	}
	n := len(b)
	if buffered := c.gc.OutboundBuffered(); buffered+c.outBytes+n > s.cfg.OutboundLimit {
		// Write what this turn queued first: a client that reads keeps up
		// even with a burst larger than the limit. Checking here, before
		// the batch grows, keeps what gnet buffers for a client that does
		// not read under the limit plus one frame, however many frames a
		// loop turn gathers when the loop runs late.
		if c.pending() {
			c.flush()
			if !c.sending() {
				s.c.discarded.Add(1)
				return
			}
			buffered = c.gc.OutboundBuffered()
		}
		if buffered+n > s.cfg.OutboundLimit {
			switch {
			case s.cfg.SlowPolicy == SlowDrop:
				s.c.dropped.Add(1)
				s.h.Dropped(c, n)
				return
			case buffered > 0 && c.state == stOpen:
				// SlowClose: the frame would take the buffer past the
				// limit. (An empty buffer takes one frame of any size:
				// the kernel may well take it.)
				s.c.slowClosed.Add(1)
				c.closeNow(s.cfg.SlowCloseCode, "slow consumer")
				s.c.discarded.Add(1)
				return
			}
		}
	}
	if zipped {
		// a compressed frame, counted once it is queued (not when dropped)
		c.l.zFrames++
		c.l.zFrameIn += uint64(len(f.B))
		c.l.zFrameOut += uint64(n)
	}
	if c.l.delay > 0 {
		c.hold(f, b)
		return
	}
	if len(c.out) == 0 {
		c.l.dirty = append(c.l.dirty, c)
		c.oldest = f.born
		if c.out == nil {
			c.out = c.l.takeOut()
		}
	}
	c.out = append(c.out, b)
	c.outBytes += n
	if len(c.out) >= maxIovecs {
		c.flush()
	}
}

// hold copies frame b (of f) into the frames held under Config.WriteDelay.
// The first one makes the connection's write due one delay from now.
// Copied, the frame's bytes need no reference past this loop task.
func (c *Conn) hold(f *Frame, b []byte) {
	l := c.l
	if c.held == nil {
		c.held = l.takeHeld()
		c.oldest = f.born
		c.held.due = l.now + l.delay
		l.due = append(l.due, dueConn{at: c.held.due, c: c})
	}
	h := c.held
	h.b = append(h.b, b...)
	h.n++
	c.outBytes += len(b)
	if h.n >= maxIovecs || len(h.b) >= maxScratch {
		c.flush()
	}
}

// pending reports whether frames wait to be written by flush.
func (c *Conn) pending() bool { return len(c.out) > 0 || c.held != nil }

// flush writes the queued (or held) frames with one call.
func (c *Conn) flush() {
	if c.held != nil {
		c.flushHeld()
		return
	}
	if len(c.out) == 0 {
		return
	}
	out, n := c.out, c.outBytes
	c.outBytes = 0
	if !c.sending() {
		c.server().c.discarded.Add(uint64(len(out)))
		clear(out)
		c.l.giveOut(c, out)
		return
	}
	s := c.server()
	s.c.writes.Add(1)
	s.c.bytesOut.Add(uint64(n)) //nolint:gosec // G115: n is a sum of lengths of queued frames, never negative
	if c.l.now != 0 {
		s.observe(c.l.now - c.oldest)
	}
	if len(out) == 1 {
		_, _ = c.gc.Write(out[0])
	} else {
		// One contiguous write: cheaper for the kernel than a writev of
		// many small frames, and writev builds its iovec array on the heap
		// past 8 buffers. gnet copies what the socket does not take, so
		// the loop's scratch buffer is free again when Write returns.
		buf := c.l.scratch[:0]
		for _, b := range out {
			buf = append(buf, b...)
		}
		_, _ = c.gc.Write(buf)
		if cap(buf) <= maxScratch {
			c.l.scratch = buf[:0]
		} else {
			c.l.scratch = nil
		}
	}
	clear(out)
	if c.state == stClosed { // the write failed and gnet closed it
		return
	}
	c.l.giveOut(c, out)
	c.written()
}

// flushHeld writes the frames held under Config.WriteDelay with one call.
func (c *Conn) flushHeld() {
	s := c.server()
	held, n := c.held, c.outBytes
	c.held, c.outBytes = nil, 0
	if !c.sending() {
		s.c.discarded.Add(uint64(held.n)) //nolint:gosec // G115: a count, never negative
		c.l.giveHeld(held)
		return
	}
	s.c.writes.Add(1)
	s.c.bytesOut.Add(uint64(n)) //nolint:gosec // G115: a sum of frame lengths, never negative
	if c.l.now != 0 {
		s.observe(c.l.now - c.oldest)
	}
	// gnet copies what the socket does not take: held is free again.
	_, _ = c.gc.Write(held.b)
	c.l.giveHeld(held)
	if c.state == stClosed { // the write failed and gnet closed it
		return
	}
	c.written()
}

// written applies the slow-consumer policy after a write.
func (c *Conn) written() {
	s := c.server()
	// (A failing connection sends its own close frame soon, after the
	// answers it still owes.)
	if c.state == stOpen && s.cfg.SlowPolicy == SlowClose && c.gc.OutboundBuffered() > s.cfg.OutboundLimit {
		s.c.slowClosed.Add(1)
		c.closeNow(s.cfg.SlowCloseCode, "slow consumer")
	}
}

// writeControl writes a control frame at once (ahead of nothing queued:
// pongs and pings carry no ordering with data).
func (c *Conn) writeControl(b []byte) {
	if c.state == stOpen { // not while closing: a ping flood gets no answers
		_, _ = c.gc.Write(b)
	}
}

// closeNow flushes, sends a close frame and closes the TCP connection once
// the close frame can reach the peer (see closeWhenDrained). Not from
// OnTraffic: there the caller returns gnet.Close instead.
func (c *Conn) closeNow(code int, reason string) {
	c.sendClose(code, reason)
	c.closeWhenDrained()
}

// closeWhenDrained closes TCP at once when nothing waits to be written;
// otherwise the connection stays closing and the keepalive scan closes it
// once its buffer drained (so the close frame is not lost behind it), when
// the peer answers the close, or after CloseTimeout.
func (c *Conn) closeWhenDrained() {
	if c.state == stClosing && c.gc.OutboundBuffered() == 0 {
		c.closeTCP()
	}
}

// sending reports whether frames may still be written to the connection:
// it is open, or failing and not yet past its close frame.
func (c *Conn) sending() bool { return c.state == stOpen || c.state == stFailing }

// sendClose flushes what is queued and writes a close frame.
func (c *Conn) sendClose(code int, reason string) {
	if !c.sending() {
		return
	}
	c.flush()
	if !c.sending() {
		return
	}
	var buf [128]byte
	c.closeCode = uint16(code) //nolint:gosec // G115: a close code, 1000-4999
	_, _ = c.gc.Write(wsproto.AppendClose(buf[:0], code, reason))
	if c.sending() {
		c.state = stClosing
		c.since = c.server().cfg.Clock().UnixNano()
	}
}

func (c *Conn) closeTCP() {
	if c.state != stClosed {
		_ = c.l.el.Close(c.gc)
	}
}

func (c *Conn) readHandshake() gnet.Action {
	s := c.server()
	buf := c.handshakeBytes()
	end := wsproto.HeaderEnd(buf)
	if end < 0 {
		if len(buf) > s.cfg.MaxHeaderBytes {
			c.reject(431, "request header too large")
			return gnet.Close
		}
		return gnet.None
	}
	if end > s.cfg.MaxHeaderBytes {
		c.reject(431, "request header too large")
		return gnet.Close
	}
	parsed, herr := c.l.hsParser.Parse(buf[:end], wsproto.PathMatcher(s.cfg.Served))
	c.consumeHandshake(end)
	if herr != nil {
		c.reject(herr.Status, herr.Reason)
		return gnet.Close
	}
	c.negotiateDeflate(parsed.Request.Header)
	hs := &Handshake{Request: c.adopt(parsed.Request), Key: parsed.Key, Protocols: parsed.Protocols, Compressed: c.deflate}
	if s.closing.Load() {
		c.reject(503, "server shutting down")
		return gnet.Close
	}
	c.state = stUpgrading
	d := s.h.Handshake(c, hs)
	switch {
	case d.Pending:
		c.l.pendingKeys[c] = hs.Key // kept only while the decision is pending
		return gnet.None
	case d.Status != 0:
		// Refused at once: the Handler keeps nothing for it, so it hears
		// nothing more about it (no Closed).
		c.state = stHandshake
		c.reject(d.Status, d.Reason)
		return gnet.Close
	}
	c.accept(hs.Key, d.Protocol)
	return c.readFrames()
}

func (c *Conn) reject(status int, reason string) {
	c.server().c.rejected.Add(1)
	var buf [512]byte
	_, _ = c.gc.Write(wsproto.AppendReject(buf[:0], status, reason))
}

func (c *Conn) accept(key, protocol string) {
	s := c.server()
	// the loop's scratch buffer (a local array would escape through Write)
	buf := wsproto.AppendAcceptExt(c.l.scratch[:0], key, protocol, c.extensions())
	_, _ = c.gc.Write(buf)
	if cap(buf) <= maxScratch {
		c.l.scratch = buf[:0]
	}
	if c.state == stClosed {
		return
	}
	now := s.cfg.Clock().UnixNano()
	c.state = stOpen
	if c.deflate {
		c.zCounted = true
		s.c.zConns.Add(1)
	}
	c.lastRead, c.lastPing = now, now
	s.c.upgraded.Add(1)
}

// readFrames parses every complete frame in the inbound buffer.
func (c *Conn) readFrames() gnet.Action {
	s := c.server()
	buf, _ := c.gc.Peek(-1)
	off := 0
	act := gnet.None
	now := int64(0)
	for off < len(buf) && act == gnet.None && (!c.paused || c.overflow) && (c.state == stOpen || c.state == stClosing) {
		h, hn, perr := wsproto.ParseHeaderExt(buf[off:], c.deflate)
		if perr != nil {
			act = c.fail(perr.Code, perr.Reason)
			break
		}
		if hn == 0 {
			break
		}
		if h.Op.IsData() || h.Op == ws.OpContinuation {
			limit := int64(s.cfg.MaxMessageSize)
			if h.Rsv&wsproto.Rsv1 != 0 || (h.Op == ws.OpContinuation && c.fragZ) {
				// Compressed bytes: incompressible data grows by a few
				// bytes per 16 KiB block. The inflated size is checked
				// against MaxMessageSize as it is inflated.
				limit += limit/256 + 64
			}
			if h.Length > limit || int64(len(c.frag))+h.Length > limit {
				act = c.fail(wsproto.CloseTooBig, "message too big")
				break
			}
		}
		total := hn + int(h.Length)
		if len(buf)-off < total {
			// Text is checked as it arrives: a frame whose first bytes
			// already cannot be UTF-8 fails before its last ones come.
			if c.state == stOpen && c.textFrame(h) {
				act = c.checkPartial(h, buf[off+hn:])
			}
			break
		}
		payload := buf[off+hn : off+total]
		off += total
		s.c.framesIn.Add(1)
		// Only whole frames count as traffic: a frame dribbled slowly
		// forever does not keep the connection from its idle timeout.
		if now == 0 {
			now = s.cfg.Clock().UnixNano()
		}
		c.lastRead = now
		act = c.frame(h, payload)
		c.partChecked = 0
	}
	switch {
	case c.state == stFailing:
		// Nothing after the failure is read: gnet's Discard(n) with
		// n <= 0 empties the whole buffer.
		_, _ = c.gc.Discard(-1)
	case off > 0 && c.state != stClosed:
		// Only discard what was parsed: a partial frame stays.
		_, _ = c.gc.Discard(off)
	}
	return act
}

// fail fails the connection with a close code: a protocol error, invalid
// UTF-8, a message too big, or the code Handler.Message returned.
//
// An open connection does not close at once: it owes the answers to what it
// accepted before the failure, some of which may still be on their way
// through the loop's queue (Conn.Send from Handler.Message) or from other
// goroutines. It stops reading (what follows the bad frame is dropped),
// keeps sending, and writes its close frame in a later loop task, behind
// every operation already queued for the loop; a FailingHandler may hold
// the close frame until it calls Conn.Close, for at most CloseTimeout.
// Then the connection closes as for closeNow: once the close frame has
// left, or CloseTimeout later.
//
// On a connection already closing, fail asks the caller to close TCP.
func (c *Conn) fail(code int, reason string) gnet.Action {
	s := c.server()
	s.c.protErr.Add(1)
	if c.state != stOpen {
		return gnet.Close
	}
	c.state = stFailing
	c.since = s.cfg.Clock().UnixNano()
	c.utf8.Reset()
	c.partChecked = 0
	c.fragZ = false
	if c.frag != nil {
		s.bufs.Put(c.frag)
		c.frag = nil
	}
	c.l.failing[c] = failure{code: code, reason: reason}
	if s.fh != nil && s.fh.Failing(c, code) {
		return gnet.None // Conn.Close, or the keepalive scan, ends it
	}
	c.l.enqueue(op{kind: opFail, c: c})
	return gnet.None
}

// finishFail sends a failing connection's close frame, after everything
// queued for it, and closes it once that frame has left.
func (c *Conn) finishFail() {
	if c.state != stFailing {
		return
	}
	f := c.l.failing[c]
	delete(c.l.failing, c)
	c.closeNow(f.code, f.reason)
}

// textFrame reports whether a data frame with header h carries text: the
// first frame of a text message, or a continuation of one.
func (c *Conn) textFrame(h wsproto.Header) bool {
	if c.frag == nil {
		return h.Op == ws.OpText && h.Rsv&wsproto.Rsv1 == 0
	}
	return h.Op == ws.OpContinuation && c.fragOp == ws.OpText && !c.fragZ
}

// checkPartial checks the payload bytes p that have arrived of a text frame
// not yet whole, past those it checked before.
func (c *Conn) checkPartial(h wsproto.Header, p []byte) gnet.Action {
	var chunk [512]byte
	for c.partChecked < len(p) {
		n := copy(chunk[:], p[c.partChecked:])
		wsproto.Unmask(chunk[:n], h.Mask, c.partChecked)
		c.partChecked += n
		if !c.utf8.Write(chunk[:n]) {
			return c.failUTF8()
		}
	}
	return gnet.None
}

// textOK checks the payload p of a whole text frame (but for its first
// partChecked bytes, checked as they arrived); fin: the message ends here.
func (c *Conn) textOK(p []byte, fin bool) bool {
	ok := c.utf8.Write(p[c.partChecked:]) && (!fin || c.utf8.Complete())
	c.partChecked = 0
	if fin || !ok {
		c.utf8.Reset()
	}
	return ok
}

func (c *Conn) failUTF8() gnet.Action {
	return c.fail(wsproto.CloseInvalidPayload, "text message is not valid UTF-8")
}

func (c *Conn) frame(h wsproto.Header, p []byte) gnet.Action {
	s := c.server()
	switch h.Op {
	case ws.OpPing:
		if c.state != stOpen {
			return gnet.None // closing: no more answers
		}
		if c.gc.OutboundBuffered() > s.cfg.OutboundLimit {
			// A client that pings but does not read: answering would
			// grow our buffer without bound. The close frame goes after
			// what is buffered; the scan closes TCP once it drained.
			s.c.slowClosed.Add(1)
			c.sendClose(s.cfg.SlowCloseCode, "slow consumer")
			return gnet.None
		}
		var buf [127]byte
		pong := wsproto.AppendHeader(buf[:0], ws.OpPong, len(p))
		start := len(pong)
		pong = append(pong, p...)
		wsproto.Unmask(pong[start:], h.Mask, 0)
		c.writeControl(pong)
		return gnet.None
	case ws.OpPong:
		return gnet.None
	case ws.OpClose:
		var buf [125]byte
		body := append(buf[:0], p...)
		wsproto.Unmask(body, h.Mask, 0)
		code, perr := wsproto.ParseClose(body)
		if perr != nil {
			return c.fail(perr.Code, perr.Reason)
		}
		if c.state == stOpen {
			if code == wsproto.CloseNoStatus {
				code = 0
			}
			c.sendClose(code, "")
			c.closeCode = uint16(code) //nolint:gosec // G115: a close code, 1000-4999
		}
		return gnet.Close
	case ws.OpText, ws.OpBinary:
		if c.frag != nil {
			return c.fail(wsproto.CloseProtocolError, "new message before the fragmented one ended")
		}
		if c.state != stOpen {
			c.utf8.Reset()
			return gnet.None
		}
		compressed := h.Rsv&wsproto.Rsv1 != 0
		if h.Fin {
			msg := s.bufs.GetLen(len(p))
			copy(msg, p)
			wsproto.Unmask(msg, h.Mask, 0)
			if compressed {
				return c.inflated(h.Op, msg)
			}
			if h.Op == ws.OpText && !c.textOK(msg, true) {
				s.bufs.Put(msg)
				return c.failUTF8()
			}
			return c.message(h.Op, msg)
		}
		c.frag = append(s.bufs.Get(0, max(len(p), 512)), p...)
		wsproto.Unmask(c.frag, h.Mask, 0)
		c.fragOp = h.Op
		c.fragZ = compressed
		if h.Op == ws.OpText && !compressed && !c.textOK(c.frag, false) {
			return c.failUTF8()
		}
		return gnet.None
	case ws.OpContinuation:
		if c.frag == nil {
			return c.fail(wsproto.CloseProtocolError, "continuation frame without a message to continue")
		}
		start := len(c.frag)
		c.frag = append(c.frag, p...)
		wsproto.Unmask(c.frag[start:], h.Mask, 0)
		if c.fragOp == ws.OpText && !c.fragZ && !c.textOK(c.frag[start:], h.Fin) {
			return c.failUTF8()
		}
		if !h.Fin {
			return gnet.None
		}
		msg := c.frag
		c.frag = nil
		if c.fragZ {
			c.fragZ = false
			return c.inflated(c.fragOp, msg)
		}
		return c.message(c.fragOp, msg)
	}
	return c.fail(wsproto.CloseProtocolError, "unexpected opcode")
}

// inflated decompresses a whole compressed message z (a pooled buffer, given
// up here) and hands it on: a message that inflates past MaxMessageSize
// fails with 1009 as soon as it does, a malformed one with 1007 (invalid
// payload data), text that is not UTF-8 with 1007.
func (c *Conn) inflated(op ws.OpCode, z []byte) gnet.Action {
	s := c.server()
	msg, err := c.l.inflate(z, s.cfg.MaxMessageSize)
	zn := len(z)
	s.bufs.Put(z)
	switch {
	case errors.Is(err, errInflateLimit):
		return c.fail(wsproto.CloseTooBig, "message too big")
	case err != nil:
		return c.fail(wsproto.CloseInvalidPayload, "malformed compressed message")
	}
	s.c.inflated.Add(1)
	s.c.inflatedIn.Add(uint64(zn))
	s.c.inflatedOut.Add(uint64(len(msg)))
	if op == ws.OpText && !c.textOK(msg, true) {
		s.bufs.Put(msg)
		return c.failUTF8()
	}
	return c.message(op, msg)
}

// message hands a whole message to the Handler (text was checked by frame).
func (c *Conn) message(op ws.OpCode, msg []byte) gnet.Action {
	s := c.server()
	s.c.messagesIn.Add(1)
	if c.overflow {
		s.c.overflowed.Add(1)
		s.h.Overflow(c, op, msg)
		return gnet.None
	}
	if code := s.h.Message(c, op, msg); code != 0 {
		return c.fail(code, "")
	}
	return gnet.None
}
