package transport

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/firetower-go/firetower/internal/wsproto"
)

type opKind uint8

const (
	opFrames   opKind = iota // f to every conn of blocks
	opSend                   // f to c
	opClose                  // close c with code/reason
	opAccept                 // complete c's pending upgrade with protocol (reason)
	opReject                 // refuse c's pending upgrade with status code
	opScan                   // timeouts and pings
	opShutdown               // close everything with 1001
	opResume                 // resume reading c (Conn.ResumeReading)
	opFail                   // send failing c's close frame (see Conn.fail)
	opDue                    // the write-delay timer fired: write the connections due
)

type op struct {
	kind   opKind
	code   int
	f      *Frame
	c      *Conn
	blocks [][]*Conn
	reason string
}

// loop is firetower's state for one gnet event loop. Fields under mu are
// shared with other goroutines; the rest is touched only on the loop.
type loop struct {
	s    *Server
	idx  int
	el   gnet.EventLoop
	task gnet.Runnable
	epfd int // gnet's epoll descriptor for the read gate; -1: no gate

	mu         sync.Mutex
	q          []op
	spare      []op
	scheduled  bool
	scanQueued bool
	stopped    bool

	outbound atomic.Int64 // bytes in outbound buffers at the last scan

	now   int64   // monotonic time of the running task's flush
	conns []*Conn // every TCP connection on this loop; Conn.idx is its index
	dirty []*Conn // connections with frames in out
	// outFree holds emptied Conn.out lists: a connection takes one when
	// it queues a frame and gives it back when it has written, so an idle
	// connection keeps no list (its array: 24 bytes for one frame) and a
	// busy one allocates none. Past maxOutFree a connection keeps its own,
	// so a broadcast to every connection leaves no more behind than before.
	outFree [][][]byte
	sweep   []*Conn // scratch for closes decided during a scan
	pings   []*Conn // scratch for pings decided during a scan
	// pendingKeys holds the Sec-WebSocket-Key of upgrades waiting for a
	// decision (OnConnect), so open connections carry no key.
	pendingKeys map[*Conn]string
	// failing holds the close code and reason of connections that failed
	// and have not yet sent their close frame (stFailing).
	failing map[*Conn]failure
	scratch []byte // a coalesced write being built (or a handshake's answer)

	hsParser wsproto.HandshakeParser // parses the upgrade requests read on this loop
	handoffs map[*Conn]*handoff      // connections from ServeHTTP, until their handshake is parsed (mount.go)

	// Config.WriteDelay, when set: delay in nanoseconds; due lists, from
	// dueHead on, the connections holding frames with the time their write
	// is due (the delay is constant, so in the order they started
	// holding: a FIFO, no heap); timer wakes the loop when the first is
	// due, armed (armed) only while a connection holds frames.
	delay    int64
	due      []dueConn
	dueHead  int
	timer    *time.Timer
	armed    bool
	wakes    int           // the timer's wake-ups run (for tests)
	heldFree []*heldFrames // written held buffers, for reuse (see maxHeldFree)

	// permessage-deflate: this loop's compressor and inflater (made on
	// first use), and compression counters added to the Server's at the
	// end of each flush.
	z                            *deflater
	zr                           *inflater
	zMsgs, zMsgIn, zMsgOut       uint64
	zFrames, zFrameIn, zFrameOut uint64
}

// dueConn is a connection whose held frames are due at at (monotonic). The
// entry is stale once the connection wrote or closed: its Conn.due then
// differs from at.
type dueConn struct {
	at int64
	c  *Conn
}

// live reports whether e's connection still holds the frames e is about.
func (e dueConn) live() bool { return e.c.held != nil && e.c.held.due == e.at }

// failure is why a connection failed: its close frame's code and reason.
type failure struct {
	code   int
	reason string
}

// enqueue hands o to the loop; any goroutine.
func (l *loop) enqueue(o op) {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		if o.f != nil {
			o.f.Release()
		}
		return
	}
	l.q = append(l.q, o)
	kick := !l.scheduled
	l.scheduled = true
	l.mu.Unlock()
	if kick {
		if err := l.el.Execute(context.Background(), l.task); err != nil {
			l.drop()
		}
	}
}

// drop discards everything queued and refuses further work (engine stopped).
func (l *loop) drop() {
	l.mu.Lock()
	l.stopped = true
	q := l.q
	l.q = nil
	l.mu.Unlock()
	if l.timer != nil {
		l.timer.Stop()
	}
	for _, o := range q {
		if o.f != nil {
			o.f.Release()
		}
	}
}

// run applies everything queued, then writes each touched connection once.
func (l *loop) run(context.Context) error {
	l.mu.Lock()
	q := l.q
	l.q = l.spare
	l.spare = nil
	l.scheduled = false
	l.mu.Unlock()

	l.now = l.s.mono()
	for i := range q {
		l.apply(&q[i])
	}
	if l.delay > 0 {
		l.takeDue()
	}
	l.flush()
	if l.delay > 0 {
		l.arm()
	}
	for i := range q {
		if q[i].f != nil {
			q[i].f.Release()
		}
		q[i] = op{}
	}
	l.mu.Lock()
	l.spare = q[:0]
	l.mu.Unlock()
	return nil
}

func (l *loop) apply(o *op) {
	switch o.kind {
	case opFrames:
		for _, b := range o.blocks {
			for _, c := range b {
				c.queue(o.f)
			}
		}
	case opSend:
		o.c.queue(o.f)
	case opClose:
		switch o.c.state {
		case stOpen:
			o.c.closeNow(o.code, o.reason)
		case stFailing:
			o.c.finishFail() // the handler has queued what it owed
		}
	case opFail:
		o.c.finishFail()
	case opDue:
		l.armed = false // run takes the due connections after the queue
		l.wakes++
	case opAccept:
		if o.c.state == stUpgrading {
			key := l.pendingKeys[o.c]
			delete(l.pendingKeys, o.c)
			o.c.accept(key, o.reason)
			if o.c.state == stOpen && o.c.gc.InboundBuffered() > 0 {
				if o.c.readFrames() == gnet.Close {
					o.c.closeTCP()
				}
			}
		}
	case opReject:
		if o.c.state == stUpgrading {
			delete(l.pendingKeys, o.c)
			o.c.reject(o.code, o.reason)
			o.c.closeTCP()
		}
	case opResume:
		o.c.resume()
	case opScan:
		l.mu.Lock()
		l.scanQueued = false
		l.mu.Unlock()
		l.scan()
	case opShutdown:
		l.flush()
		l.sweep = append(l.sweep[:0], l.conns...)
		for _, c := range l.sweep {
			switch c.state {
			case stOpen:
				c.closeNow(1001, "server shutting down")
			case stFailing:
				c.finishFail()
			default:
				c.closeTCP()
			}
		}
		clear(l.sweep)
		l.sweep = l.sweep[:0]
	}
}

// gate turns c's read interest on or off where the loop has a read gate
// (see readgate_linux.go); a failed epoll call turns the gate off for good.
func (l *loop) gate(c *Conn, on bool) {
	if l.epfd < 0 {
		return
	}
	if !setReadInterest(l.epfd, c, on) {
		l.s.log.Warn("transport: cannot pause reading a connection; paused connections hold their bytes in memory instead", "loop", l.idx)
		l.epfd = -1
	}
}

// flush writes every dirty connection's queued frames in one call each.
func (l *loop) flush() {
	if len(l.dirty) > 0 {
		l.now = l.s.mono()
	}
	for i, c := range l.dirty {
		c.flush()
		l.dirty[i] = nil
	}
	l.dirty = l.dirty[:0]
	l.flushCounters()
}

// takeHeld returns an empty heldFrames for a connection that starts
// holding frames: a reused one, buffer included, when the loop has one.
func (l *loop) takeHeld() *heldFrames {
	if n := len(l.heldFree); n > 0 {
		h := l.heldFree[n-1]
		l.heldFree[n-1] = nil
		l.heldFree = l.heldFree[:n-1]
		return h
	}
	return &heldFrames{}
}

// maxOutFree bounds loop.outFree.
const maxOutFree = 1024

// takeOut returns an empty frame list for a connection to queue on (nil
// when the loop has none: append makes one).
func (l *loop) takeOut() [][]byte {
	n := len(l.outFree)
	if n == 0 {
		return nil
	}
	out := l.outFree[n-1]
	l.outFree[n-1] = nil
	l.outFree = l.outFree[:n-1]
	return out
}

// giveOut takes back c's written (or discarded) frame list, its entries
// cleared, or leaves it to c when the loop has enough.
func (l *loop) giveOut(c *Conn, out [][]byte) {
	if len(l.outFree) >= maxOutFree {
		c.out = out[:0]
		return
	}
	c.out = nil
	l.outFree = append(l.outFree, out[:0])
}

// giveHeld takes back held frames that were written (or discarded).
func (l *loop) giveHeld(h *heldFrames) {
	if h == nil || cap(h.b) > maxHeldKept || len(l.heldFree) >= maxHeldFree {
		return
	}
	h.b, h.n, h.due = h.b[:0], 0, 0
	l.heldFree = append(l.heldFree, h)
}

// wake asks the loop to write its due connections; the write-delay timer's
// function, on the timer's goroutine.
func (l *loop) wake() { l.enqueue(op{kind: opDue}) }

// takeDue moves the connections whose held frames are due into dirty, for
// flush to write. Nothing is written here: a write may close a connection.
func (l *loop) takeDue() {
	now := l.s.mono()
	i := l.dueHead
	for ; i < len(l.due) && l.due[i].at <= now; i++ {
		if e := l.due[i]; e.live() {
			l.dirty = append(l.dirty, e.c)
		}
		l.due[i] = dueConn{}
	}
	l.dueHead = i
	l.compactDue()
}

// compactDue reuses the due list's room: all of it once it is empty, the
// front once the entries taken fill half of it.
func (l *loop) compactDue() {
	switch {
	case l.dueHead == len(l.due):
		l.due, l.dueHead = l.due[:0], 0
	case l.dueHead >= 64 && 2*l.dueHead >= len(l.due):
		n := copy(l.due, l.due[l.dueHead:])
		clear(l.due[n:])
		l.due, l.dueHead = l.due[:n], 0
	}
}

// arm sets the write-delay timer for the first connection still holding
// frames, unless it is set already (a timer that fires early for an entry
// gone stale only costs one more pass).
func (l *loop) arm() {
	if l.armed {
		return
	}
	for l.dueHead < len(l.due) && !l.due[l.dueHead].live() {
		l.due[l.dueHead] = dueConn{}
		l.dueHead++
	}
	l.compactDue()
	if l.dueHead == len(l.due) {
		return
	}
	l.armed = true
	l.timer.Reset(time.Duration(max(l.due[l.dueHead].at-l.s.mono(), 0)))
}

// flushCounters adds the loop's compression counters to the Server's.
func (l *loop) flushCounters() {
	c := &l.s.c
	if l.zMsgs > 0 {
		c.zMsgs.Add(l.zMsgs)
		c.zMsgIn.Add(l.zMsgIn)
		c.zMsgOut.Add(l.zMsgOut)
		l.zMsgs, l.zMsgIn, l.zMsgOut = 0, 0, 0
	}
	if l.zFrames > 0 {
		c.zFrames.Add(l.zFrames)
		c.zFrameIn.Add(l.zFrameIn)
		c.zFrameOut.Add(l.zFrameOut)
		l.zFrames, l.zFrameIn, l.zFrameOut = 0, 0, 0
	}
}

// scan closes connections past their deadlines and pings idle ones.
func (l *loop) scan() {
	s := l.s
	now := s.cfg.Clock().UnixNano()
	hs, idle, ping, cw := int64(s.cfg.HandshakeTimeout), int64(s.cfg.IdleTimeout), int64(s.cfg.PingInterval), int64(s.cfg.CloseTimeout)
	l.sweep = l.sweep[:0]
	var outbound int64
	// Nothing in this loop writes or closes: OnClose would move the last
	// connection into a closed one's place while the loop runs.
	for _, c := range l.conns {
		if c.state >= stOpen && c.state <= stClosing {
			outbound += int64(c.gc.OutboundBuffered())
		}
		switch c.state {
		case stHandshake, stUpgrading:
			if now-c.since > hs {
				l.sweep = append(l.sweep, c)
			}
		case stOpen:
			switch {
			case c.paused:
				// Not idle: we stopped reading it. Past the read timeout
				// what it sent is read again, into Handler.Overflow.
				if !c.overflow && now-c.pausedAt > int64(s.cfg.ReadTimeout) {
					l.sweep = append(l.sweep, c)
				}
			case now-c.lastRead > idle:
				l.sweep = append(l.sweep, c)
			case c.gc.OutboundBuffered() > s.cfg.OutboundLimit:
				l.sweep = append(l.sweep, c) // not reading: slow consumer
			case now-c.lastPing >= ping && now-c.lastRead >= ping:
				// Pinged after this loop: a write may close the
				// connection, and OnClose reorders l.conns.
				l.pings = append(l.pings, c)
			}
		case stFailing:
			if now-c.since > cw { // a FailingHandler held it too long
				l.sweep = append(l.sweep, c)
			}
		case stClosing:
			if c.gc.OutboundBuffered() == 0 || now-c.since > cw {
				l.sweep = append(l.sweep, c)
			}
		}
	}
	l.outbound.Store(outbound)
	for _, c := range l.pings {
		if c.state == stOpen {
			c.lastPing = now
			c.writeControl(s.pingFrame)
		}
	}
	clear(l.pings)
	l.pings = l.pings[:0]
	for _, c := range l.sweep {
		switch {
		case c.state == stOpen && c.paused && !c.overflow:
			c.startOverflow()
			if c.readFrames() == gnet.Close {
				c.closeTCP()
			}
		case c.state == stOpen && c.gc.OutboundBuffered() > s.cfg.OutboundLimit:
			s.c.slowClosed.Add(1)
			c.closeNow(s.cfg.SlowCloseCode, "slow consumer")
		case c.state == stOpen:
			s.c.idleClosed.Add(1)
			c.closeNow(1001, "idle timeout")
		case c.state == stFailing:
			c.finishFail()
		default:
			c.closeTCP()
		}
	}
	clear(l.sweep)
	l.sweep = l.sweep[:0]
}
