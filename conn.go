package firetower

import (
	"net/http"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/gobwas/ws"

	"github.com/firetower-go/firetower/internal/protocol"
	"github.com/firetower-go/firetower/transport"
)

// Conn is one client connection.
//
// Concurrency: its methods may be called from any goroutine, concurrently,
// inside its hooks and outside them (a *Conn may be kept after a hook
// returns), except SetID and Request, which are only for OnConnect. Once
// the client is gone, Send and Close return ErrClosed and the other methods
// keep answering with the connection's last state.
type Conn struct {
	t     *Tower
	tc    *transport.Conn
	codec protocol.Codec
	echo  bool // the client named our subprotocol: echo it in the upgrade
	// system: upgraded with a valid SystemToken; no hooks run for it and
	// it may subscribe only to StatsTopic.
	system bool
	// guarded by imu (see the inbox below), kept here with the other flags
	// so that they share one word
	busy       bool
	paused     bool // reading paused for the inbound budget
	waiting    bool // in the Tower's list of connections waiting for the total budget
	slowQueued bool
	flooding   bool // closed for flooding: further messages are dropped

	id  string
	ip  string        // remote IP, only when the per-IP cap is on
	req *http.Request // only during OnConnect

	// mu guards userID and topics. It is a leaf but for one order: a
	// registry shard's read lock, then mu (registry.each calling UserID
	// in disconnectUserLocal). No other lock is taken while it is held.
	mu     sync.Mutex
	userID string
	topics []string

	open atomic.Bool // upgraded and not yet gone
	gone atomic.Bool

	// inbox: requests waiting for a worker; at most one worker drains it.
	// busy is true while a worker owns the inbox or the event loop is
	// handling a request inline (wsHandler.Message): whoever sets it runs
	// the connection's requests, one at a time, in order.
	//
	// Lock order: imu, then the Tower's inbound budget mutex
	// (inboundBudget.wait from Conn.handled); never the reverse
	// (inboundBudget.wake lets go of its mutex before Conn.wake takes
	// imu). Nothing else is taken under imu: the transport calls
	// (PauseReading, ResumeReading) and the workers' queue come after it
	// is released.
	imu      sync.Mutex
	inbox    fifo[item]
	inBytes  int // budget held by requests in inbox (see requestCost)
	timeouts int // read-timeout items in inbox
	// (busy, paused, waiting, slowQueued and flooding, above, are imu's too)
}

type itemKind uint8

const (
	itemConnect     itemKind = iota
	itemRequest              // a decoded request (or its decoding error)
	itemReadTimeout          // a request dropped over the budget (OnReadTimeout)
	itemSlow
	itemFlood
	itemFunc // run fn in order with the connection's requests
	itemClosed
)

type item struct {
	kind itemKind
	req  *protocol.Request
	rerr *protocol.RequestError
	buf  []byte // the message, returned to the pool once handled
	fn   func()
}

// System reports whether this is a system connection (see
// Tower.SystemToken). Any goroutine.
func (c *Conn) System() bool { return c.system }

// ID is the connection's id, unique in the cluster. Any goroutine (it
// changes only in OnConnect, before anyone else can see the connection).
func (c *Conn) ID() string { return c.id }

// SetID replaces the connection's id; only in OnConnect. An id is unique on
// its node: SetID fails with ErrEmptyID for "" and with ErrIDInUse for an id
// another connection has; return the error to refuse the connection. Only
// from inside OnConnect, on the goroutine running it.
func (c *Conn) SetID(id string) error { return setConnID(c, id) }

// UserID is the user id set by SetUserID ("" if none). Any goroutine.
func (c *Conn) UserID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.userID
}

// SetUserID sets the user id (usually in OnConnect). Any goroutine.
func (c *Conn) SetUserID(id string) {
	c.mu.Lock()
	c.userID = id
	c.mu.Unlock()
}

// Request is the upgrade request; only inside OnConnect (nil afterwards).
func (c *Conn) Request() *http.Request { return c.req }

// Protocol is the connection's codec: "json" or "msgpack". Any goroutine.
func (c *Conn) Protocol() string {
	if c.codec == protocol.Msgpack {
		return "msgpack"
	}
	return "json"
}

// RemoteAddr is the client's address. Any goroutine.
func (c *Conn) RemoteAddr() string {
	if a := c.tc.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

// Topics returns the topics the connection is subscribed to (a copy). Any
// goroutine.
func (c *Conn) Topics() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.topics)
}

func (c *Conn) subscribed(topic string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Contains(c.topics, topic)
}

// Send sends data to this client alone, as one message: a text frame on a
// JSON connection, a binary frame on a msgpack one. The bytes are sent as
// they are. Any goroutine; it queues the message and returns, without
// keeping data. Messages sent from one goroutine leave in the order sent,
// and one sent from a hook leaves after the answers to the client's earlier
// requests.
func (c *Conn) Send(data []byte) error {
	if c.gone.Load() {
		return ErrClosed
	}
	op := ws.OpText
	if c.codec == protocol.Msgpack {
		op = ws.OpBinary
	}
	f := c.t.srv.NewMessageFrame(op, data)
	c.tc.Send(f)
	f.Release()
	return nil
}

// Close closes the connection with a close code (1000, or 3000-4999 for
// applications) and a reason, after what is already queued for it. Any
// goroutine; it returns at once, and the client is closed on its event
// loop (OnDisconnect follows on a worker).
func (c *Conn) Close(code int, reason string) error {
	if err := checkCloseCode(code); err != nil {
		return err
	}
	if c.gone.Load() {
		return ErrClosed
	}
	c.tc.Close(code, reason)
	return nil
}

// reply sends an answer built by fn in the connection's codec.
func (c *Conn) reply(build func(r protocol.Reply, dst []byte) []byte) {
	if c.gone.Load() {
		return
	}
	rb, _ := c.t.replyBufs.Get().(*replyBuf)
	if rb == nil {
		rb = &replyBuf{b: make([]byte, 0, 256)}
	}
	p := build(protocol.Reply{Codec: c.codec}, rb.b[:0])
	op := ws.OpText
	if c.codec == protocol.Msgpack {
		op = ws.OpBinary
	}
	f := c.t.srv.NewMessageFrame(op, p) // copies p
	if cap(p) <= maxReplyBuf {
		rb.b = p[:0]
		c.t.replyBufs.Put(rb)
	}
	c.tc.Send(f)
	f.Release()
}

// replyBuf is a buffer of Tower.replyBufs; one that grew past maxReplyBuf
// is let go.
type replyBuf struct{ b []byte }

const maxReplyBuf = 4 << 10

func (c *Conn) sendError(id []byte, e *Error) {
	c.t.stats.errors.Add(1)
	c.reply(func(r protocol.Reply, dst []byte) []byte { return r.Error(dst, id, e.Code, e.Message) })
}

// post queues an item for the workers. Any goroutine; requests
// (itemRequest, itemReadTimeout) come only from the event loop.
//
// A request's bytes count against the connection's inbound budget and the
// Tower's total; past either, the connection's reading is paused, so the
// client waits in TCP. A request dropped over the budget (itemReadTimeout)
// is queued behind the accepted ones, so every answer leaves in request
// order. A client that overflows even that queue is closed with 1008 (the
// last resort): the close is queued behind everything already accepted, and
// what it sends meanwhile is dropped and counted.
func (c *Conn) post(it item) {
	t := c.t
	pause := false
	c.imu.Lock()
	switch it.kind {
	case itemRequest:
		n := requestCost(it.buf)
		c.inBytes += n
		total := t.inbound.add(n)
		if !c.paused && (c.inBytes >= t.cfg.inboundLimit || total >= t.cfg.inboundTotal) {
			c.paused, pause = true, true
		}
	case itemReadTimeout:
		if c.flooding {
			c.imu.Unlock()
			t.srv.PutBuffer(it.buf)
			return
		}
		if c.timeouts >= maxTimeoutsQueued {
			c.flooding = true
			t.srv.PutBuffer(it.buf)
			t.stats.floodClosed.Add(1)
			it = item{kind: itemFlood}
			break
		}
		c.timeouts++
	case itemSlow:
		if c.slowQueued {
			c.imu.Unlock()
			return
		}
		c.slowQueued = true
	}
	c.inbox.push(it)
	kick := !c.busy
	c.busy = true
	c.imu.Unlock()
	if pause {
		c.tc.PauseReading() // on the loop: only requests pause
	}
	if kick {
		t.work.push(c)
	}
}

// maxTimeoutsQueued bounds the answers to dropped requests waiting behind a
// connection's accepted ones.
const maxTimeoutsQueued = 1024

// requestCost is what a queued request counts against the inbound budget:
// its bytes plus the request's own bookkeeping.
func requestCost(buf []byte) int { return len(buf) + 256 }

// claim lets the event loop handle a request inline when no worker owns
// the connection's inbox (so order is kept); release gives it back.
func (c *Conn) claim() bool {
	c.imu.Lock()
	defer c.imu.Unlock()
	if c.busy {
		return false
	}
	c.busy = true
	return true
}

func (c *Conn) release() {
	c.imu.Lock()
	kick := c.inbox.len() > 0 // posted meanwhile (a cluster operation, a close)
	c.busy = kick
	c.imu.Unlock()
	if kick {
		c.t.work.push(c)
	}
}

// next pops the next item; ok is false (and the inbox released) when it
// is empty.
func (c *Conn) next() (it item, ok bool) {
	c.imu.Lock()
	defer c.imu.Unlock()
	it, ok = c.inbox.pop()
	if !ok {
		c.busy = false
		return it, false
	}
	switch it.kind {
	case itemReadTimeout:
		c.timeouts--
	case itemSlow:
		c.slowQueued = false
	}
	return it, true
}

// handled gives back the budget of a request a worker has finished, and
// resumes the connection's reading once it is under half its budget and
// the Tower's total is under its cap (otherwise it waits in the total's
// list, woken by the first request handled while the total is under it).
func (c *Conn) handled(n int) {
	t := c.t
	total := t.inbound.add(-n)
	c.imu.Lock()
	c.inBytes -= n
	resume := false
	if c.paused && c.inBytes <= t.cfg.inboundLimit/2 {
		if total < t.cfg.inboundTotal {
			c.paused, resume = false, true
		} else if !c.waiting {
			c.waiting = true
			t.inbound.wait(c)
		}
	}
	c.imu.Unlock()
	if resume {
		c.tc.ResumeReading()
	}
	if total < t.cfg.inboundTotal {
		t.inbound.wake()
	}
}

// wake resumes a connection that waited for the Tower's total budget.
func (c *Conn) wake() {
	c.imu.Lock()
	c.waiting = false
	resume := c.paused && c.inBytes <= c.t.cfg.inboundLimit/2
	if resume {
		c.paused = false
	}
	c.imu.Unlock()
	if resume {
		c.tc.ResumeReading()
	}
}
