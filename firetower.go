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
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/firetower-go/firetower/internal/protocol"
	"github.com/firetower-go/firetower/internal/wsproto"
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
	cfg    config
	log    *slog.Logger
	srv    *transport.Server
	index  *index
	conns  *registry
	work   workers
	chains chains
	mgr    Manager
	link   Link
	hist   *towerHistory // history.go; nil without WithHistory
	pres   *presence     // presence.go; nil without WithPresence
	pats   *patternIndex // wildcard.go; nil without WithWildcards
	bootID string
	nextID atomic.Uint64
	stats  counters
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

type counters struct {
	connections, subscriptions            atomic.Int64
	messagesIn, publishes, deliveries     atomic.Uint64
	readDropped, slowDropped, errors      atomic.Uint64
	remotePublishFailed, remoteDeliveries atomic.Uint64
	hookPanics, floodClosed               atomic.Uint64
	refusedOrigin, refusedLimit           atomic.Uint64
	badControl                            atomic.Uint64
}

// Stats is a snapshot of a Tower's counters. Every message that is dropped
// is counted in one of the *Dropped fields.
type Stats struct {
	Connections   int64  // open websocket connections
	Subscriptions int64  // local (connection, topic) pairs
	Topics        int64  // topics with local subscribers
	MessagesIn    uint64 // client messages received
	Publishes     uint64 // publishes delivered locally (client, server or other nodes)
	Deliveries    uint64 // frames queued for subscribers
	Errors        uint64 // error messages sent to clients
	// ReadDropped counts client messages dropped because the server could
	// not take them within the read timeout (OnReadTimeout, rate_limited).
	ReadDropped uint64
	// ReadPauses counts the times a client's reading was paused because its
	// queued requests reached the inbound budget (WithInboundLimit,
	// WithInboundTotal): backpressure, nothing lost.
	ReadPauses uint64
	// InboundBytes is the budget held now by queued client requests, all
	// connections together (at most about WithInboundTotal).
	InboundBytes int64
	// SlowDropped counts messages not sent to slow consumers (SlowDrop).
	SlowDropped uint64
	// SlowClosed counts connections closed as slow consumers (SlowClose).
	SlowClosed uint64
	// RemotePublishFailed counts publishes the Manager refused.
	RemotePublishFailed uint64
	// RemoteDeliveries counts publishes received from other nodes.
	RemoteDeliveries uint64
	// FloodClosed counts connections closed with 1008 because, paused past
	// the read timeout, they kept sending until the queue of their
	// rate_limited answers was full too (every message dropped from then on
	// is in ReadDropped too).
	FloodClosed uint64
	// RefusedOrigin counts upgrades refused for their Origin (403).
	RefusedOrigin uint64
	// RefusedLimit counts upgrades refused by WithMaxConnections (503) or
	// WithMaxConnectionsPerIP (429).
	RefusedLimit uint64
	// HookPanics counts hook calls that panicked (the client got "internal").
	HookPanics uint64
	// BadControl counts system messages from other nodes that could not
	// be used (undecodable, or on the wrong topic).
	BadControl uint64
	// HistoryStreams and HistoryBytes are the topics with a stream and the
	// memory their publications hold (WithHistory), in the Manager: shared
	// by every Tower joined to one LocalManager.
	HistoryStreams int64
	HistoryBytes   int64
	// Transport are the websocket server's own counters.
	Transport TransportStats
}

// TransportStats are the counters of a Tower's websocket server, beneath
// the hooks and the topic index: sockets, frames and writes.
type TransportStats struct {
	Accepted      uint64 // TCP connections accepted
	Upgraded      uint64 // websocket upgrades completed
	Rejected      uint64 // upgrades refused
	Open          int64  // TCP connections open now
	FramesIn      uint64 // frames received, control frames included
	MessagesIn    uint64 // whole messages received
	BytesOut      uint64 // bytes handed to the socket layer
	Writes        uint64 // write calls (frames coalesced into one write count once)
	Dropped       uint64 // frames dropped under SlowDrop
	Discarded     uint64 // frames not sent because their connection was closing or gone
	SlowClosed    uint64 // connections closed under SlowClose
	IdleClosed    uint64 // connections closed by the idle timeout
	ProtocolClose uint64 // connections failed for breaking RFC 6455 (or sending the wrong codec)
	AcceptErrors  uint64 // failed accepts (out of descriptors: EMFILE, ENFILE...), each retried after a backoff
	Hijacked      uint64 // connections taken from an HTTP server (Tower.ServeHTTP) into the event loops
	Proxied       int64  // TLS connections (from Tower.ServeHTTP) open now, relayed by a goroutine pair each
	ReadPauses    uint64 // times a connection's reading was paused
	Overflowed    uint64 // messages read from a connection paused past the read timeout
	Paused        int64  // connections whose reading is paused now
	// OutboundBuffered is the bytes waiting in connections' outbound
	// buffers, as of the last keepalive scan.
	OutboundBuffered int64
	// WriteLatency counts writes by the age of the oldest frame they
	// carried (from frame creation, i.e. publish, to the write call).
	WriteLatency LatencyHistogram
	// Compression counts permessage-deflate work (WithCompression).
	Compression CompressionStats
}

// LatencyBuckets is the number of buckets of a LatencyHistogram.
const LatencyBuckets = 28

// LatencyHistogram counts durations in power-of-two buckets: bucket i
// holds durations below 2^i microseconds (the last one: everything longer).
//
// It has the transport's bucket layout, which the conversion in
// transportStats checks at compile time.
type LatencyHistogram [LatencyBuckets]uint64

// BucketBound is the upper bound of bucket i.
func (h LatencyHistogram) BucketBound(i int) time.Duration {
	return transport.LatencyHistogram(h).BucketBound(i)
}

// Quantile estimates the q-quantile (0..1) as the upper bound of the bucket
// holding it; 0 when empty.
func (h LatencyHistogram) Quantile(q float64) time.Duration {
	return transport.LatencyHistogram(h).Quantile(q)
}

// transportStats is the one place where the transport's counters become
// firetower's.
func transportStats(ts transport.Stats) TransportStats {
	return TransportStats{
		Accepted: ts.Accepted, Upgraded: ts.Upgraded, Rejected: ts.Rejected, Open: ts.Open,
		FramesIn: ts.FramesIn, MessagesIn: ts.MessagesIn, BytesOut: ts.BytesOut, Writes: ts.Writes,
		Dropped: ts.Dropped, Discarded: ts.Discarded, SlowClosed: ts.SlowClosed, IdleClosed: ts.IdleClosed,
		ProtocolClose: ts.ProtocolClose, AcceptErrors: ts.AcceptErrors, ReadPauses: ts.ReadPauses,
		Overflowed: ts.Overflowed, Paused: ts.Paused, OutboundBuffered: ts.OutboundBuffered,
		Hijacked: ts.Hijacked, Proxied: ts.Proxied,
		WriteLatency: LatencyHistogram(ts.WriteLatency),
		Compression:  CompressionStats(ts.Compression),
	}
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

// Publish sends data to every subscriber of topic in the cluster. data that
// is valid JSON is delivered as it is; other bytes are delivered as a JSON
// string (and as they are to legacy clients). Any goroutine; it does not
// wait for the network, and does not keep data once it returns.
//
// Local subscribers get the publish before Publish returns (it is queued
// on their event loops); other nodes get it at most once, through the
// Manager (see Link.Publish): publishes made one after another on a topic
// reach every subscriber in that order.
func (t *Tower) Publish(ctx context.Context, topic string, data []byte) error {
	if t.state.Load() != 1 {
		return ErrClosed
	}
	if err := protocol.ValidateTopic(topic); err != nil {
		return &Error{Code: CodeInvalidTopic, Message: err.Error()}
	}
	if IsSystemTopic(topic) {
		return errReserved
	}
	if e := t.publishable(topic); e != nil {
		return e
	}
	j := data
	if !json.Valid(data) {
		j = protocol.AppendJSONString(nil, string(data))
	}
	return t.publish(ctx, topic, j, data)
}

// ConnectNum is the number of subscribers of topic in the whole cluster.
// Any goroutine; it may wait for the Manager, up to ctx.
func (t *Tower) ConnectNum(ctx context.Context, topic string) (int64, error) {
	if t.state.Load() != 1 {
		return 0, ErrClosed
	}
	if err := protocol.ValidateTopic(topic); err != nil {
		return 0, &Error{Code: CodeInvalidTopic, Message: err.Error()}
	}
	n, err := t.link.Count(ctx, topic)
	if err != nil {
		return 0, &Error{Code: CodeUnavailable, Message: "the cluster could not count: " + err.Error()}
	}
	return n, nil
}

// Stats returns the Tower's counters. Any goroutine; each counter is read
// atomically, the snapshot as a whole is not.
func (t *Tower) Stats() Stats {
	ts := t.srv.Stats()
	hs := t.historyStats()
	return Stats{
		ReadPauses:          ts.ReadPauses,
		Connections:         t.stats.connections.Load(),
		Subscriptions:       t.index.subs.Load(),
		Topics:              t.index.topics.Load(),
		MessagesIn:          t.stats.messagesIn.Load(),
		Publishes:           t.stats.publishes.Load(),
		Deliveries:          t.stats.deliveries.Load(),
		Errors:              t.stats.errors.Load(),
		ReadDropped:         t.stats.readDropped.Load(),
		InboundBytes:        t.inbound.total.Load(),
		SlowDropped:         t.stats.slowDropped.Load(),
		SlowClosed:          ts.SlowClosed,
		RemotePublishFailed: t.stats.remotePublishFailed.Load(),
		RemoteDeliveries:    t.stats.remoteDeliveries.Load(),
		HookPanics:          t.stats.hookPanics.Load(),
		FloodClosed:         t.stats.floodClosed.Load(),
		RefusedOrigin:       t.stats.refusedOrigin.Load(),
		RefusedLimit:        t.stats.refusedLimit.Load(),
		BadControl:          t.stats.badControl.Load(),
		HistoryStreams:      hs.Streams,
		HistoryBytes:        hs.Bytes,
		Transport:           transportStats(ts),
	}
}

// NodeID is this node's id. Any goroutine.
func (t *Tower) NodeID() uint16 { return t.cfg.nodeID }

// publish delivers locally, then to the other nodes. The cluster carries
// the raw bytes, so every node embeds them the same way (as they are when
// valid JSON, as a JSON string otherwise; raw for legacy clients).
func (t *Tower) publish(ctx context.Context, topic string, j, raw []byte) error {
	if t.hist != nil && t.hist.covers(topic) { // history.go
		_, err := t.publishHistory(ctx, topic, j, raw)
		return err
	}
	t.deliverLocal(topic, j, raw)
	if err := t.link.Publish(ctx, topic, raw); err != nil {
		t.stats.remotePublishFailed.Add(1)
		return &Error{Code: CodeUnavailable, Message: "the cluster could not take the message: " + err.Error()}
	}
	return nil
}

// deliverLocal frames the publish once per codec in use and hands the same
// frame to every event loop with subscribers.
func (t *Tower) deliverLocal(topic string, j, raw []byte) {
	if t.pats != nil && t.pats.n.Load() > 0 && !IsSystemTopic(topic) {
		t.deliverPatterns(topic, j, raw) // wildcard.go
	}
	subs := t.index.get(topic)
	if subs == nil || subs.count == 0 {
		return
	}
	t.stats.publishes.Add(1)
	var frames [2]*transport.Frame
	if subs.codecs[protocol.JSON] > 0 {
		if t.cfg.legacy {
			frames[protocol.JSON] = t.legacyFrame(raw)
		} else {
			frames[protocol.JSON] = t.deliveryFrameJSON(subs, topic, j)
		}
	}
	if subs.codecs[protocol.Msgpack] > 0 {
		p, err := protocol.AppendDeliveryMsgpack(nil, topic, j)
		if err != nil {
			t.log.Error("firetower: cannot encode a delivery as msgpack", "topic", topic, "err", err)
		} else {
			frames[protocol.Msgpack] = t.srv.NewMessageFrame(ws.OpBinary, p)
		}
	}
	t.fanOut(subs, frames)
}

// fanOut hands each codec's frame to every event loop with subscribers of
// that codec, counts the deliveries and gives up the frames (deliverLocal,
// deliverAt). A codec whose frame could not be built is not counted.
func (t *Tower) fanOut(subs *subscribers, frames [2]*transport.Frame) {
	t.broadcast(subs, frames)
	for _, f := range frames {
		if f != nil {
			f.Release()
		}
	}
}

// broadcast is fanOut without giving up the frames (the caller still
// holds them, for more subscribers: wildcard.go).
func (t *Tower) broadcast(subs *subscribers, frames [2]*transport.Frame) {
	for li := range subs.byLoop {
		for codec, blocks := range subs.byLoop[li] {
			if len(blocks) > 0 && frames[codec] != nil {
				t.srv.Broadcast(li, frames[codec], blocks)
			}
		}
	}
	n := uint64(subs.count)
	if frames[protocol.Msgpack] == nil {
		n -= uint64(subs.codecs[protocol.Msgpack])
	}
	t.stats.deliveries.Add(n)
}

// deliveryFrameJSON frames the JSON delivery envelope of a publish
// (protocol.AppendDeliveryJSON) straight into a pooled frame buffer: no
// allocation once the pool is warm. The header needs the payload's exact
// size: DeliveryJSONSize counts the topic as if it needed no escaping, and
// subs.quoted, the topic as the encoder escapes it, says by how much the
// escaping lengthens it.
func (t *Tower) deliveryFrameJSON(subs *subscribers, topic string, j []byte) *transport.Frame {
	n := protocol.DeliveryJSONSize(topic, j) + len(subs.quoted) - (len(topic) + 2)
	f := t.srv.NewFrame(wsproto.HeaderSize(n) + n)
	f.B = wsproto.AppendHeader(f.B, ws.OpText, n)
	f.B = protocol.AppendDeliveryJSON(f.B, topic, j)
	return f
}

// readFinal ends the OnRead chain: it publishes the message (for a client
// publish, it queues it until every topic's chain has passed).
func (t *Tower) readFinal(c *Context) error {
	m := c.Message()
	if m == nil {
		return nil
	}
	if IsSystemTopic(m.Topic) {
		return errReserved // an OnRead hook rewrote the topic to a reserved one
	}
	if e := t.publishable(m.Topic); e != nil {
		return e // an OnRead hook rewrote the topic to a pattern
	}
	if c.outbox != nil {
		*c.outbox = append(*c.outbox, *m)
		return nil
	}
	return t.publish(c.Context(), m.Topic, m.Data, m.Data)
}

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

// towerNode is the Tower as its Manager sees it (see Node for where its
// methods are called from).
type towerNode struct{ t *Tower }

func (n towerNode) NodeID() uint16 { return n.t.cfg.nodeID }

func (n towerNode) Deliver(topic string, data []byte) {
	if _, ok := presenceTopicOf(topic); ok {
		if n.t.pres != nil {
			n.t.presenceRemote(topic, data) // presence.go
		}
		return
	}
	if IsSystemTopic(topic) && topic != StatsTopic {
		n.t.control(topic, data)
		return
	}
	n.t.stats.remoteDeliveries.Add(1)
	j := data
	if !json.Valid(data) {
		j = protocol.AppendJSONString(nil, string(data))
	}
	n.t.deliverLocal(topic, j, data)
}

func (n towerNode) Interest() map[string]int64 {
	m := n.t.index.counts()
	if n.t.pres != nil {
		for topic, cnt := range m {
			if n.t.pres.covers(topic) {
				m[presenceTopicPrefix+topic] = cnt
			}
		}
	}
	return n.t.systemInterest(m)
}

// wsHandler receives the transport's events, on the event loop of the
// connection each is about.
type wsHandler struct{ t *Tower }

func (h wsHandler) Handshake(tc *transport.Conn, hs *transport.Handshake) transport.Decision {
	t := h.t
	if !t.originAllowed(hs.Request) {
		t.stats.refusedOrigin.Add(1)
		return transport.Decision{Status: http.StatusForbidden, Reason: "origin not allowed"}
	}
	ip := ""
	if a := tc.RemoteAddr(); a != nil && t.cfg.maxConnsPerIP > 0 {
		ip = hostOf(a.String())
	}
	if d, ok := t.admit(ip); !ok {
		return d
	}
	c := &Conn{t: t, tc: tc, id: t.newID(), ip: ip, system: t.systemRequest(hs.Request)}
	for _, p := range hs.Protocols {
		if p == protocol.SubprotocolJSON || p == protocol.SubprotocolMsgpack {
			c.echo = true
			if p == protocol.SubprotocolMsgpack {
				c.codec = protocol.Msgpack
			}
			break
		}
	}
	tc.Value = c
	t.liveAdd()
	if c.system || !t.chains.has(HookConnect) {
		t.opened(c)
		return transport.Decision{Protocol: c.subprotocol()}
	}
	c.req = hs.Request
	c.post(item{kind: itemConnect})
	return transport.Decision{Pending: true}
}

func (h wsHandler) Dropped(tc *transport.Conn, _ int) {
	c := tc.Value.(*Conn)
	h.t.stats.slowDropped.Add(1)
	if h.t.chains.has(HookSlowConsumer) {
		c.post(item{kind: itemSlow})
	}
}

func (h wsHandler) Closed(tc *transport.Conn, _ int, _ error) {
	c := tc.Value.(*Conn)
	c.gone.Store(true)
	c.post(item{kind: itemClosed})
}

// subprotocol is the Sec-WebSocket-Protocol to echo ("" for none).
func (c *Conn) subprotocol() string {
	switch {
	case !c.echo:
		return ""
	case c.codec == protocol.Msgpack:
		return protocol.SubprotocolMsgpack
	}
	return protocol.SubprotocolJSON
}

func (t *Tower) opened(c *Conn) {
	c.open.Store(true)
	t.stats.connections.Add(1)
	t.conns.add(c)
}

// drain runs up to max items of c's inbox; it reports whether more are left.
func (t *Tower) drain(c *Conn, max int) bool {
	for range max {
		it, ok := c.next()
		if !ok {
			return false
		}
		t.process(c, it)
	}
	return true
}

func (t *Tower) process(c *Conn, it item) {
	switch it.kind {
	case itemConnect:
		t.connect(c)
	case itemRequest:
		n := requestCost(it.buf)
		t.handle(c, it.req, it.rerr)
		t.srv.PutBuffer(it.buf)
		c.handled(n)
	case itemReadTimeout:
		t.readTimeout(c, it)
		if it.buf != nil {
			t.srv.PutBuffer(it.buf)
		}
	case itemSlow:
		_ = t.run(HookSlowConsumer, &Context{conn: c})
	case itemFlood:
		c.tc.Close(wsproto.ClosePolicyViolation, "too many messages waiting: slow down")
	case itemFunc:
		it.fn()
	case itemClosed:
		t.disconnect(c)
	}
}

func (t *Tower) connect(c *Conn) {
	err := t.run(HookConnect, &Context{conn: c})
	c.req = nil
	if err != nil {
		status := http.StatusForbidden
		switch {
		case errors.Is(err, ErrUnauthorized):
			status = http.StatusUnauthorized
		case errors.Is(err, &Error{Code: CodeInternal}):
			status = http.StatusInternalServerError
		}
		c.tc.Reject(status, asError(err, CodeForbidden).Message)
		return
	}
	t.opened(c)
	c.tc.Accept(c.subprotocol())
}

func (t *Tower) disconnect(c *Conn) {
	defer t.liveDone()
	t.release(c.ip)
	t.conns.remove(c) // also the id a refused connection set in OnConnect
	if !c.open.Swap(false) {
		return // refused by OnConnect: it never joined, so no hooks
	}
	t.stats.connections.Add(-1)
	t.conns.remove(c)
	c.mu.Lock()
	topics := c.topics
	c.topics = nil
	c.mu.Unlock()
	for _, topic := range topics {
		t.unsubscribeOne(c, topic)
	}
	t.presenceChange(c, topics, false)
	for _, topic := range topics {
		_ = t.run(HookUnsubscribe, &Context{conn: c, topics: []string{topic}})
	}
	_ = t.run(HookDisconnect, &Context{conn: c})
}

func (t *Tower) decode(c *Conn, p []byte) (*protocol.Request, *protocol.RequestError) {
	if c.codec == protocol.Msgpack {
		return protocol.DecodeMsgpack(p)
	}
	return protocol.DecodeJSON(p)
}

// handle answers one decoded client request (or its decoding error), on a
// worker or inline on the event loop (see inbound.go).
func (t *Tower) handle(c *Conn, req *protocol.Request, rerr *protocol.RequestError) {
	if rerr != nil {
		c.sendError(rerr.ID, &Error{Code: rerr.Code, Message: rerr.Message})
		return
	}
	switch req.Type {
	case protocol.TypeSubscribe:
		t.subscribe(c, req)
	case protocol.TypeUnsubscribe:
		t.unsubscribe(c, req)
	case protocol.TypePublish:
		t.clientPublish(c, req)
	case protocol.TypePing:
		c.reply(func(r protocol.Reply, dst []byte) []byte { return r.Pong(dst, req.ID) })
	default:
		c.sendError(req.ID, &Error{Code: CodeUnknownType, Message: fmt.Sprintf("unknown message type %q", req.RawType)})
	}
}

func validTopics(topics []string) *Error {
	if len(topics) == 0 {
		return &Error{Code: CodeInvalidTopic, Message: "no topic given"}
	}
	for _, tp := range topics {
		if err := protocol.ValidateTopic(tp); err != nil {
			return &Error{Code: CodeInvalidTopic, Message: err.Error()}
		}
	}
	return nil
}

func (t *Tower) subscribe(c *Conn, req *protocol.Request) {
	if e := validTopics(req.Topics); e != nil {
		c.sendError(req.ID, e)
		return
	}
	if e := t.checkPatterns(req.Topics); e != nil {
		c.sendError(req.ID, e)
		return
	}
	cx := &Context{conn: c, topics: req.Topics}
	if e := systemTopicsAllowed(c, req.Topics); e != nil {
		c.sendError(req.ID, e)
		return
	}
	if err := t.run(HookBeforeSubscribe, cx); err != nil {
		c.sendError(req.ID, asError(err, CodeForbidden))
		return
	}
	topics := cx.topics
	if e := validTopics(topics); e != nil {
		c.sendError(req.ID, e)
		return
	}
	if e := t.checkPatterns(topics); e != nil {
		c.sendError(req.ID, e) // OnBeforeSubscribe rewrote it to a bad pattern
		return
	}
	if e := systemTopicsAllowed(c, topics); e != nil {
		c.sendError(req.ID, e) // OnBeforeSubscribe rewrote to a system topic
		return
	}
	c.mu.Lock()
	var added []string
	for _, tp := range topics {
		if !containsString(c.topics, tp) && !containsString(added, tp) {
			added = append(added, tp)
		}
	}
	if len(c.topics)+len(added) > t.cfg.maxTopics {
		c.mu.Unlock()
		c.sendError(req.ID, &Error{Code: CodeTooManyTopics, Message: fmt.Sprintf("a connection may subscribe to at most %d topics", t.cfg.maxTopics)})
		return
	}
	c.topics = append(c.topics, added...)
	c.mu.Unlock()
	if t.hist != nil { // history.go: topics with history subscribe, ack and replay there
		if qs := t.historyQueries(req, topics); len(qs) > 0 {
			if t.subscribeHistory(c, req, topics, added, qs) && len(added) > 0 {
				t.presenceChange(c, added, true)
				_ = t.run(HookSubscribe, &Context{conn: c, topics: added})
			}
			return
		}
	}
	for _, tp := range added {
		t.index.update(tp, c.tc, c.codec, true, func(n int64) { t.reportInterest(tp, n) })
	}
	if len(added) > 0 {
		// In effect locally at once; cluster-wide once the Manager has it.
		// A Manager that is down gets the subscription on resync.
		if err := t.link.Flush(t.ctx); err != nil {
			t.log.Debug("firetower: subscription not yet confirmed by the cluster", "err", err)
		}
	}
	if req.ID != nil {
		c.reply(func(r protocol.Reply, dst []byte) []byte { return r.Ack(dst, req.ID, topics, true) })
	}
	if len(added) > 0 {
		t.presenceChange(c, added, true)
		_ = t.run(HookSubscribe, &Context{conn: c, topics: added})
	}
}

// systemTopicsAllowed checks a subscription against the system topics: a
// system connection may subscribe to StatsTopic only, others to none.
func systemTopicsAllowed(c *Conn, topics []string) *Error {
	for _, tp := range topics {
		switch {
		case c.system && tp != StatsTopic:
			return &Error{Code: CodeForbidden, Message: "a system connection may subscribe only to " + StatsTopic}
		case !c.system && IsSystemTopic(tp):
			return errReserved
		}
	}
	return nil
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (t *Tower) unsubscribeOne(c *Conn, topic string) {
	t.index.update(topic, c.tc, c.codec, false, func(n int64) { t.reportInterest(topic, n) })
}

func (t *Tower) unsubscribe(c *Conn, req *protocol.Request) {
	if e := validTopics(req.Topics); e != nil {
		c.sendError(req.ID, e)
		return
	}
	c.mu.Lock()
	var removed []string
	kept := c.topics[:0]
	for _, tp := range c.topics {
		if containsString(req.Topics, tp) {
			removed = append(removed, tp)
		} else {
			kept = append(kept, tp)
		}
	}
	clear(c.topics[len(kept):])
	c.topics = kept
	c.mu.Unlock()
	for _, tp := range removed {
		t.unsubscribeOne(c, tp)
	}
	if len(removed) > 0 {
		if err := t.link.Flush(t.ctx); err != nil {
			t.log.Debug("firetower: unsubscribe not yet confirmed by the cluster", "err", err)
		}
	}
	if req.ID != nil {
		c.reply(func(r protocol.Reply, dst []byte) []byte { return r.Ack(dst, req.ID, req.Topics, true) })
	}
	if len(removed) > 0 {
		t.presenceChange(c, removed, false)
		_ = t.run(HookUnsubscribe, &Context{conn: c, topics: removed})
	}
}

func (t *Tower) clientPublish(c *Conn, req *protocol.Request) {
	if e := validTopics(req.Topics); e != nil {
		c.sendError(req.ID, e)
		return
	}
	if c.system {
		c.sendError(req.ID, &Error{Code: CodeForbidden, Message: "a system connection may not publish"})
		return
	}
	for _, tp := range req.Topics {
		if IsSystemTopic(tp) {
			c.sendError(req.ID, errReserved)
			return
		}
		if e := t.publishable(tp); e != nil {
			c.sendError(req.ID, e)
			return
		}
	}
	switch t.cfg.publishPolicy {
	case PublishNone:
		c.sendError(req.ID, &Error{Code: CodeForbidden, Message: "clients may not publish on this server"})
		return
	case PublishSubscribed:
		for _, tp := range req.Topics {
			if !c.subscribed(tp) {
				c.sendError(req.ID, &Error{Code: CodeForbidden, Message: "publish to a topic you are not subscribed to: " + tp})
				return
			}
		}
	}
	if t.chains.plainRead {
		for _, tp := range req.Topics {
			if err := t.publish(t.ctx, tp, req.Data, req.Data); err != nil {
				c.sendError(req.ID, asError(err, CodeUnavailable))
				return
			}
		}
		if req.ID != nil {
			c.reply(func(r protocol.Reply, dst []byte) []byte { return r.Ack(dst, req.ID, nil, false) })
		}
		return
	}
	// Every topic's OnRead chain runs first and the publishes go out only
	// when all passed: a publish to several topics is all or nothing.
	var out []Message
	for _, tp := range req.Topics {
		cx := &Context{conn: c, msg: &Message{Topic: tp, Data: req.Data}, outbox: &out}
		if err := t.run(HookRead, cx); err != nil {
			c.sendError(req.ID, asError(err, CodeForbidden))
			return
		}
	}
	for _, m := range out {
		if err := t.publish(t.ctx, m.Topic, m.Data, m.Data); err != nil {
			c.sendError(req.ID, asError(err, CodeUnavailable))
			return
		}
	}
	if req.ID != nil {
		c.reply(func(r protocol.Reply, dst []byte) []byte { return r.Ack(dst, req.ID, nil, false) })
	}
}

// readTimeout answers a request dropped over the inbound budget: OnReadTimeout
// sees it (c.Message()), the client gets rate_limited with its id.
func (t *Tower) readTimeout(c *Conn, it item) {
	var id []byte
	if it.rerr != nil {
		id = it.rerr.ID
	} else if it.req != nil {
		id = it.req.ID
	}
	if t.chains.has(HookReadTimeout) {
		cx := &Context{conn: c}
		if it.req != nil {
			topic := ""
			if len(it.req.Topics) > 0 {
				topic = it.req.Topics[0]
			}
			cx.msg = &Message{Topic: topic, Data: it.req.Data}
		} else {
			cx.msg = &Message{Data: append([]byte(nil), it.buf...)}
		}
		_ = t.run(HookReadTimeout, cx)
	}
	c.sendError(id, &Error{Code: CodeRateLimited, Message: "message dropped: the server could not keep up with this connection's messages"})
}

// originAllowed applies the Origin policy (see WithAllowedOrigins).
func (t *Tower) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	host := strings.ToLower(u.Hostname())
	if len(t.cfg.origins) == 0 {
		return host == strings.ToLower(hostOf(r.Host))
	}
	for _, o := range t.cfg.origins {
		o = strings.ToLower(strings.TrimSpace(o))
		switch {
		case o == "*":
			return true
		case strings.Contains(o, "://"):
			if strings.EqualFold(strings.TrimSuffix(o, "/"), u.Scheme+"://"+u.Host) {
				return true
			}
		case strings.HasPrefix(o, "*."):
			if strings.HasSuffix(host, o[1:]) {
				return true
			}
		case o == host:
			return true
		}
	}
	return false
}

// hostOf strips the port from "host:port" (and brackets from IPv6).
func hostOf(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

// admit counts a new connection against the connection caps.
func (t *Tower) admit(ip string) (transport.Decision, bool) {
	t.admitMu.Lock()
	defer t.admitMu.Unlock()
	if t.cfg.maxConns > 0 && t.admitN >= t.cfg.maxConns {
		t.stats.refusedLimit.Add(1)
		return transport.Decision{Status: http.StatusServiceUnavailable, Reason: "server at its connection limit"}, false
	}
	if t.cfg.maxConnsPerIP > 0 {
		if t.perIP[ip] >= t.cfg.maxConnsPerIP {
			t.stats.refusedLimit.Add(1)
			return transport.Decision{Status: http.StatusTooManyRequests, Reason: "too many connections from this address"}, false
		}
		if t.perIP == nil {
			t.perIP = make(map[string]int)
		}
		t.perIP[ip]++
	}
	t.admitN++
	return transport.Decision{}, true
}

func (t *Tower) release(ip string) {
	t.admitMu.Lock()
	defer t.admitMu.Unlock()
	t.admitN--
	if t.cfg.maxConnsPerIP > 0 {
		if t.perIP[ip]--; t.perIP[ip] <= 0 {
			delete(t.perIP, ip)
		}
	}
}
