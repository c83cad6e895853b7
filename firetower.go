// Package firetower is a websocket push and pub/sub server for Go: clients
// subscribe to topics and publish to them, business logic plugs in as chains
// of middleware on hooks, and Towers on several nodes form a cluster through
// a Manager.
//
// A Tower serves websockets on gnet event loops. A publish is encoded and
// framed once, the same bytes go to every subscriber, and the frames queued
// for a connection within one event-loop turn leave in one write. Hooks run
// on a bounded pool of workers, in order per connection, so they may block.
//
//	t, err := firetower.New(
//		firetower.WithAddr(":9999"),
//		firetower.OnBeforeSubscribe(func(next firetower.Handler) firetower.Handler {
//			return func(c *firetower.Context) error {
//				if c.Conn().UserID() == "" {
//					return firetower.ErrForbidden
//				}
//				return next(c)
//			}
//		}),
//	)
//	if err != nil { ... }
//	err = t.Serve(ctx)
//
// The client protocol is described in PROTOCOL.md.
package firetower

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/firetower-go/firetower/transport"
)

// Tower is a firetower server node.
//
// Concurrency: every method of a Tower may be called from any goroutine,
// concurrently, hooks included, with these exceptions:
//   - Start once, before anything that needs a running Tower.
//   - Shutdown and Serve wait for the hooks in flight, so a hook must not
//     call them (it would wait for itself): call them from a goroutine of
//     their own.
//   - Unsubscribe runs in order with the connection's own requests and
//     waits for that: a hook running for the same connection that calls
//     it waits until ctx ends.
//   - The cluster operations (ConnectNum, Disconnect, DisconnectUser,
//     Unsubscribe, ClusterTopics, Presence) may wait for the Manager and
//     the other nodes, up to ctx; call them from hooks that may block,
//     not from those declared with WithNonBlockingHooks, which run on an
//     event loop.
type Tower struct {
	cfg config
	log *slog.Logger
	srv *transport.Server
	// replyBufs holds *replyBuf: where Conn.reply builds an answer (a
	// buffer on the stack would escape through the builder, and the
	// transport's GetBuffer/PutBuffer pool boxes every slice put back).
	replyBufs sync.Pool
	index     *index
	conns     *registry
	work      workers
	chains    chains
	mgr       Manager
	link      Link
	hist      *towerHistory // history.go; nil without WithHistory
	pres      *presence     // presence.go; nil without WithPresence
	pats      *patternIndex // wildcard.go; nil without WithWildcards
	bootID    string
	nextID    atomic.Uint64
	stats     counters
	// inbound is the total budget of queued client requests (inbound.go).
	inbound inboundBudget

	tokenKey [32]byte       // signs SystemToken
	bg       sync.WaitGroup // the stats loop

	callMu  sync.Mutex
	callSeq uint64
	calls   map[uint64]chan ctlMsg // cluster-wide operations waiting for answers

	ctx    context.Context // cancelled at Shutdown: hooks' context
	cancel context.CancelFunc

	state    atomic.Int32  // 0 new, 1 started, 2 shut down
	done     chan struct{} // closed when Shutdown finishes
	stopOnce sync.Once
	stopErr  error

	admitMu sync.Mutex
	admitN  int            // connections admitted and not yet disconnected
	perIP   map[string]int // admitted connections per IP (when capped)

	liveMu   sync.Mutex
	live     int           // connections whose disconnect has not been processed
	liveZero chan struct{} // closed when live reaches 0 during shutdown
}

// New builds a Tower from options. It validates them and returns an error
// for a bad one; it never panics. Hook chains are built here, once. Any
// goroutine.
func New(opts ...Option) (*Tower, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: nil option", ErrBadOption)
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	t := &Tower{
		cfg:    cfg,
		log:    cfg.logger,
		index:  newIndex(),
		conns:  newRegistry(),
		mgr:    cfg.manager,
		bootID: strconv.FormatInt(time.Now().UnixNano()%(1<<40), 36),
		done:   make(chan struct{}),

		tokenKey: newTokenKey(),
		calls:    make(map[uint64]chan ctlMsg),
	}
	// Request numbers start at random, so answers meant for a previous
	// process with this node id match no call of this one.
	var seed [8]byte
	_, _ = rand.Read(seed[:]) // crypto/rand.Read never fails (Go 1.24+)
	t.callSeq = binary.LittleEndian.Uint64(seed[:]) >> 1
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if cfg.presence != nil {
		t.pres = newPresence(cfg.presence, cfg.presenceInterval)
	}
	if cfg.wildcards {
		t.pats = &patternIndex{}
	}
	if t.mgr == nil {
		t.mgr = NewLocalManager()
	}
	t.chains = buildChains(&cfg, t.readFinal)
	t.srv = transport.New(cfg.transportConfig(t.log), wsHandler{t})
	return t, nil
}

// Start joins the Manager, binds the listener and returns; serving goes on
// in the background until Shutdown. Call it once, from any goroutine.
func (t *Tower) Start(ctx context.Context) error {
	if !t.state.CompareAndSwap(0, 1) {
		return ErrStarted
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.work.start(t.cfg.workers, t.drain)
	link, err := t.mgr.Join(ctx, towerNode{t})
	if err != nil {
		t.cancel()
		t.work.stop()
		t.state.Store(2)
		close(t.done)
		return fmt.Errorf("firetower: joining the manager: %w", err)
	}
	t.link = link
	if err := t.startHistory(link); err != nil {
		_ = link.Close()
		t.cancel()
		t.work.stop()
		t.state.Store(2)
		close(t.done)
		return err
	}
	for topic, n := range t.systemInterest(nil) {
		link.SetInterest(topic, n) // in Interest too; set here for Managers that do not ask
	}
	if err := t.srv.Start(ctx); err != nil {
		_ = link.Close()
		t.cancel()
		t.work.stop()
		t.state.Store(2)
		close(t.done)
		return fmt.Errorf("firetower: starting the websocket server: %w", err)
	}
	if t.cfg.statsInterval > 0 {
		t.bg.Add(1)
		go t.statsLoop()
	}
	if t.pres != nil {
		t.bg.Add(1)
		go t.presenceLoop() // presence.go
	}
	t.log.Info("firetower started", "addr", t.srv.Addr(), "node", t.cfg.nodeID)
	return nil
}

// Addr is the websocket address actually bound, "host:port" ("" before
// Start). Any goroutine.
func (t *Tower) Addr() string {
	if t.state.Load() == 0 {
		return ""
	}
	return t.srv.Addr()
}

// Health is nil while the Tower serves websockets, and says why not
// otherwise: not started, shut down, or its event loops stopped (which is
// logged; the binary's /healthz answers 503 with it). Any goroutine.
func (t *Tower) Health() error {
	switch t.state.Load() {
	case 0:
		return ErrNotStarted
	case 2:
		return ErrClosed
	}
	if err := t.srv.Err(); err != nil {
		return err
	}
	return nil
}

// Path is the upgrade path (WithPath). Any goroutine.
func (t *Tower) Path() string { return t.cfg.path }

// Serve starts the Tower and blocks until ctx is done (then shuts down,
// allowing 10 seconds) or Shutdown is called. Any goroutine but a hook's
// (see Shutdown).
func (t *Tower) Serve(ctx context.Context) error {
	if err := t.Start(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return t.Shutdown(sctx)
	case <-t.done:
		return t.stopErr
	}
}

// Shutdown stops accepting, closes every client with 1001, waits for
// in-flight hooks (their context is cancelled) and stops every goroutine the
// Tower started. It returns when that is done or ctx ends. Any goroutine
// but a hook's: it waits for the hooks in flight, a hook's own call too.
// Calls after the first wait for the first one's outcome.
func (t *Tower) Shutdown(ctx context.Context) error {
	switch t.state.Load() {
	case 0:
		return ErrNotStarted
	}
	t.stopOnce.Do(func() {
		err := t.srv.Shutdown(ctx)
		t.cancel()
		t.bg.Wait()
		if e := t.waitLive(ctx); e != nil && err == nil {
			err = e
		}
		t.work.stop()
		if e := t.link.Close(); e != nil && err == nil {
			err = e
		}
		t.stopErr = err
		t.state.Store(2)
		close(t.done)
	})
	select {
	case <-t.done:
		return t.stopErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (t *Tower) liveAdd() {
	t.liveMu.Lock()
	t.live++
	t.liveMu.Unlock()
}

func (t *Tower) liveDone() {
	t.liveMu.Lock()
	t.live--
	if t.live == 0 && t.liveZero != nil {
		close(t.liveZero)
		t.liveZero = nil
	}
	t.liveMu.Unlock()
}

func (t *Tower) waitLive(ctx context.Context) error {
	t.liveMu.Lock()
	if t.live == 0 {
		t.liveMu.Unlock()
		return nil
	}
	if t.liveZero == nil {
		t.liveZero = make(chan struct{})
	}
	ch := t.liveZero
	t.liveMu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("firetower: disconnect hooks still running: %w", ctx.Err())
	}
}

// NodeID is this node's id. Any goroutine.
func (t *Tower) NodeID() uint16 { return t.cfg.nodeID }

func (t *Tower) newID() string {
	n := t.nextID.Add(1)
	b := make([]byte, 0, 24)
	b = strconv.AppendUint(b, uint64(t.cfg.nodeID), 10)
	b = append(b, '-')
	b = append(b, t.bootID...)
	b = append(b, '-')
	b = strconv.AppendUint(b, n, 36)
	return string(b)
}
