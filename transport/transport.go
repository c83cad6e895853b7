// Package transport is firetower's websocket server on gnet event loops.
//
// It parses the HTTP upgrade and websocket frames incrementally from gnet's
// inbound buffer (nothing ever blocks a loop), answers control frames, runs
// keepalive and timeouts from the engine's one ticker, and delivers outbound
// frames in batches: every frame queued for a loop is applied in one loop
// task, and each connection gets one write per task, however many frames it
// was sent. With Config.WriteDelay a connection's frames are held across
// tasks, up to that delay, and leave in one write.
//
// Concurrency: every Server and Conn method says where it may be called
// from: "any goroutine" (concurrently, event loops included), or "only on
// the connection's event loop" (inside the Handler's methods for that
// connection). The Handler's methods are called on the event loop of the
// connection they are about, with no lock of this package held, and must
// not block. The gnet callbacks (OnBoot, OnOpen, OnClose, OnTick,
// OnTraffic) are gnet's to call, not the user's.
//
// Locks: each loop's queue mutex (loop.mu) and the Server's loopsMu are
// leaves, held for a few instructions; nothing is called with one held.
//
// # Failing a connection
//
// A client that breaks RFC 6455 (close 1002), sends text that is not UTF-8
// (1007) or a message over the size limit (1009) fails its connection, as
// does a close code returned by Handler.Message. Everything accepted before
// the bad frame is still answered: pings read before it were answered as they
// were parsed, and the close frame is written in a later loop task, behind
// every operation already in the loop's queue, so the Conn.Send calls that
// Handler.Message made for the earlier messages leave first. Meanwhile the
// connection reads nothing more (the bytes after the bad frame are dropped)
// and still sends what it is given. A Handler that answers from other
// goroutines implements FailingHandler to hold the close frame until it has
// sent what it owes, for at most Config.CloseTimeout. After the close frame
// the connection closes TCP once that frame has left (or CloseTimeout later),
// without waiting for the client's reply.
//
// UTF-8 is checked as text arrives, across fragments and within a frame still
// being received: a message fails as soon as its bytes so far cannot start
// valid UTF-8, not at its end.
//
// # Conformance
//
// internal/cmd/echo is an echo server over this package, and
// internal/autobahn/run.sh runs Autobahn|Testsuite's fuzzingclient against
// it (not in CI: the suite needs Python 2.7; the script says how to get it):
//
//	WSTEST=/path/to/wstest internal/autobahn/run.sh
//
// On the 301 cases without compression (12.* and 13.*, permessage-deflate,
// are excluded: the echo server does not turn Compression on), with a 16 MiB message limit for the
// 9.* cases, the result is 298 OK and 3 INFORMATIONAL, with no NON-STRICT
// and no FAILED case. The informational ones are behaviour the RFC leaves
// open: 7.1.6 (a 256 KiB message, a close frame and a ping back to back),
// 7.13.1 and 7.13.2 (close codes 5000 and 65536).
package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/pool/pbytes"
	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	gerrors "github.com/panjf2000/gnet/v2/pkg/errors"

	"github.com/firetower-go/firetower/internal/wsproto"
)

// SlowPolicy is what happens to a connection whose outbound buffer is full.
type SlowPolicy uint8

const (
	// SlowClose closes the connection with Config.SlowCloseCode once the
	// next frame would take its buffer past OutboundLimit (a frame finding
	// the buffer empty is written whatever its size); frames not written
	// are counted in Stats.Discarded.
	SlowClose SlowPolicy = iota
	// SlowDrop drops frames for the connection until its buffer drains.
	SlowDrop
)

// PathMatcher decides whether an upgrade request's path is served.
type PathMatcher func(path string) bool

// Config configures a Server. Zero values get the defaults noted.
type Config struct {
	Addr             string           // "host:port"
	Served           PathMatcher      // nil: every path
	EventLoops       int              // default: GOMAXPROCS (gnet's multicore)
	MaxMessageSize   int              // default 64 KiB
	MaxHeaderBytes   int              // default 8 KiB
	HandshakeTimeout time.Duration    // default 10s
	IdleTimeout      time.Duration    // default 60s
	PingInterval     time.Duration    // default 25s
	OutboundLimit    int              // bytes buffered per connection; default 4 MiB
	SlowPolicy       SlowPolicy       // default SlowClose
	Logger           *slog.Logger     // default: discard
	Clock            func() time.Time // default time.Now (tests may inject)
	PendingLimit     int              // inbound bytes held while an upgrade is pending; default MaxHeaderBytes+MaxMessageSize
	// CloseTimeout bounds how long a connection that sent its close frame
	// stays open for its outbound buffer to drain or the peer to answer,
	// and how long a FailingHandler may hold a failing connection's close
	// frame. Default 2s.
	CloseTimeout time.Duration
	// SlowCloseCode is the close code sent to a connection closed as a slow
	// consumer: under SlowClose, or when it keeps pinging while its
	// outbound buffer is over OutboundLimit. Default 1008 (policy
	// violation); applications usually pick one of their own range
	// (4000-4999), as firetower does.
	SlowCloseCode int
	// ReadTimeout is how long a connection may stay paused (Conn.PauseReading)
	// before what it sends is read again and handed to Handler.Overflow.
	// Default 3s.
	ReadTimeout time.Duration
	// PausedBufferLimit bounds the unparsed bytes a paused connection may
	// hold (where its socket cannot be taken out of the loop's read
	// interest, or while gnet re-arms it); past it, its frames are read and
	// handed to Handler.Overflow. Default 1 MiB + MaxMessageSize.
	PausedBufferLimit int
	// Compression is permessage-deflate; off by default (see Compression).
	Compression Compression
	// WriteDelay holds a connection's outgoing frames for up to this long,
	// so that the frames queued meanwhile leave in one write: fewer write
	// calls for up to WriteDelay more latency. The first frame queued for
	// a connection with nothing held makes its write due WriteDelay later.
	// Close frames do not wait: they go out at once, behind what is held.
	// Websocket pings and pongs are written at once as ever. 0 (the
	// default): each connection's frames are written at the end of the
	// loop task that queued them, with no timer.
	WriteDelay time.Duration
	_          [0]func() // not comparable
}

// Decision is a Handler's answer to an upgrade request (Handler.Handshake).
type Decision struct {
	// Pending defers the decision: call Conn.Accept or Conn.Reject later,
	// from any goroutine.
	Pending bool
	// Status refuses the upgrade with this HTTP status when non-zero.
	Status int
	Reason string
	// Protocol is the subprotocol to echo ("" for none).
	Protocol string
}

// Handshake is a valid websocket upgrade request, as Handler.Handshake
// sees it.
type Handshake struct {
	// Request is the parsed request head (its Body is empty). The handler
	// may keep it.
	Request *http.Request
	// Key is the client's Sec-WebSocket-Key.
	Key string
	// Protocols are the subprotocols the client offered
	// (Sec-WebSocket-Protocol), in its order of preference.
	Protocols []string
	// Compressed reports that the connection will use permessage-deflate
	// if it is accepted (the server enables it and the client offered it).
	Compressed bool
}

// Handler receives a Server's events. Its methods run on the event loop of
// the connection they are about, one at a time per loop, and must not
// block.
type Handler interface {
	// Handshake is called with each valid upgrade request.
	Handshake(c *Conn, hs *Handshake) Decision
	// Message is called with each whole message (text messages are valid
	// UTF-8). payload belongs to the handler, which returns it with
	// Server.PutBuffer when done. A non-zero result fails the connection
	// with that code: its close frame leaves after what is queued for it
	// (see FailingHandler).
	Message(c *Conn, op ws.OpCode, payload []byte) (closeCode int)
	// Overflow is called instead of Message with each whole message read
	// from a paused connection (Conn.PauseReading) because it stayed paused
	// longer than ReadTimeout or held more than PausedBufferLimit unparsed
	// bytes. The handler must not keep the message for processing: it is
	// over the connection's budget. payload is the handler's, as in Message.
	Overflow(c *Conn, op ws.OpCode, payload []byte)
	// Dropped is called for each frame dropped under SlowDrop.
	Dropped(c *Conn, size int)
	// Closed is called once for every connection that reached Handshake,
	// after it is gone. code is the close code sent or received (0 if none).
	Closed(c *Conn, code int, err error)
}

// FailingHandler is a Handler that answers messages off the event loop
// (from other goroutines, with Conn.Send) and wants those answers to leave
// before a failing connection's close frame.
//
// A connection fails on a protocol error (1002), invalid UTF-8 (1007), a
// message too big (1009), or a close code returned by Handler.Message. It
// then stops reading, and its close frame leaves after everything queued for
// it, including the operations already in its event loop's queue (such as
// the Conn.Send calls Handler.Message made). A plain Handler gets no more;
// a FailingHandler is also asked whether to wait for answers still in
// flight.
type FailingHandler interface {
	Handler
	// Failing is called on the event loop when c fails with code, after
	// the last message handed to Message. It must not block. Returning
	// true holds the close frame until the handler calls c.Close, once its
	// answers to the earlier messages are sent (Conn.Send), or until
	// Config.CloseTimeout passes; the close frame carries code either way.
	Failing(c *Conn, code int) (hold bool)
}

// Stats are a Server's counters.
type Stats struct {
	Accepted      uint64 // TCP connections accepted
	Upgraded      uint64 // websocket upgrades completed
	Rejected      uint64 // upgrades refused
	Open          int64  // TCP connections open now
	FramesIn      uint64
	MessagesIn    uint64
	BytesOut      uint64 // bytes handed to the socket layer
	Writes        uint64 // write calls (coalesced frames count once)
	Dropped       uint64 // frames dropped under SlowDrop
	Discarded     uint64 // frames not sent because their connection was closing or gone
	SlowClosed    uint64 // connections closed under SlowClose
	IdleClosed    uint64
	ProtocolClose uint64 // connections closed for a protocol error
	AcceptErrors  uint64 // failed accepts (out of descriptors: EMFILE, ENFILE...), each retried after a backoff
	Hijacked      uint64 // connections taken from net/http (ServeHTTP) straight into an event loop
	Proxied       int64  // connections served through a proxy goroutine pair now (TLS; see ServeHTTP)
	ReadPauses    uint64 // times a connection's reading was paused (Conn.PauseReading)
	Overflowed    uint64 // messages handed to Handler.Overflow
	Paused        int64  // connections paused now
	// OutboundBuffered is the bytes waiting in connections' outbound
	// buffers, as of the last keepalive scan.
	OutboundBuffered int64
	// WriteLatency counts writes by the age of the oldest frame they
	// carried (from frame creation, i.e. publish, to the write call).
	WriteLatency LatencyHistogram
	Compression  CompressionStats
}

// CompressionStats are the permessage-deflate counters.
type CompressionStats struct {
	Conns int64 // connections open now that negotiated permessage-deflate
	// Messages is the messages compressed: once per Frame, however many
	// connections it went to. MessageBytesIn and MessageBytesOut are their
	// payload bytes before and after compression.
	Messages        uint64
	MessageBytesIn  uint64
	MessageBytesOut uint64
	// Frames is the compressed frames queued for connections (one per
	// connection a compressed Frame went to). FrameBytesIn and
	// FrameBytesOut are their sizes as plain frames and as sent: what
	// compression saved on the wire is FrameBytesIn - FrameBytesOut.
	Frames        uint64
	FrameBytesIn  uint64
	FrameBytesOut uint64
	// Inflated is the compressed client messages decompressed;
	// InflatedBytesIn and InflatedBytesOut are their sizes before and
	// after.
	Inflated         uint64
	InflatedBytesIn  uint64
	InflatedBytesOut uint64
}

// LatencyBuckets is the number of buckets of a LatencyHistogram.
const LatencyBuckets = 28

// LatencyHistogram counts durations in power-of-two buckets: bucket i
// holds durations below 2^i microseconds (the last one: everything longer).
type LatencyHistogram [LatencyBuckets]uint64

// BucketBound is the upper bound of bucket i.
func (LatencyHistogram) BucketBound(i int) time.Duration {
	return time.Duration(1<<i) * time.Microsecond
}

// Quantile estimates the q-quantile (0..1) as the upper bound of the bucket
// holding it; 0 when empty.
func (h LatencyHistogram) Quantile(q float64) time.Duration {
	var total uint64
	for _, n := range h {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := uint64(q * float64(total))
	if rank >= total {
		rank = total - 1 // q = 1: the largest
	}
	var seen uint64
	for i, n := range h {
		seen += n
		if seen > rank {
			return h.BucketBound(i)
		}
	}
	return h.BucketBound(LatencyBuckets - 1)
}

type counters struct {
	accepted, upgraded, rejected             atomic.Uint64
	open                                     atomic.Int64
	framesIn, messagesIn, bytesOut, writes   atomic.Uint64
	dropped, slowClosed, idleClosed, protErr atomic.Uint64
	discarded, pauses, overflowed            atomic.Uint64
	acceptErrors, hijacked                   atomic.Uint64
	proxied                                  atomic.Int64
	paused                                   atomic.Int64
	latency                                  [LatencyBuckets]atomic.Uint64
	zConns                                   atomic.Int64
	zMsgs, zMsgIn, zMsgOut                   atomic.Uint64
	zFrames, zFrameIn, zFrameOut             atomic.Uint64
	inflated, inflatedIn, inflatedOut        atomic.Uint64
}

// Server is a websocket server on a gnet engine. Its methods may be called
// from any goroutine, except Shutdown (not on an event loop, whose work it
// waits for) and Start (once).
type Server struct {
	gnet.BuiltinEventEngine

	cfg    Config
	h      Handler
	fh     FailingHandler // h, if it is one
	log    *slog.Logger
	bufs   *pbytes.Pool
	frames sync.Pool

	loopsMu sync.Mutex // guards byEL and the growth of loops
	loops   atomic.Pointer[[]*loop]
	byEL    map[gnet.EventLoop]*loop

	eng        gnet.Engine
	addr       string
	ln         net.Listener
	booted     chan struct{} // the engine's loops are running (first OnTick)
	bootOnce   sync.Once
	runDone    chan struct{}
	runErr     error
	acceptDone chan struct{} // closed when acceptLoop returns
	stopAccept chan struct{} // closed by Shutdown
	stopOnce   sync.Once
	idleDir    string // holds the unix socket gnet listens on (see Start)
	closing    atomic.Bool
	drained    chan struct{}
	drainOne   sync.Once
	tick       time.Duration
	c          counters
	proxies    sync.WaitGroup        // the goroutines of proxied connections (mount.go)
	proxyMu    sync.Mutex            // guards relayed; orders proxies.Add with Shutdown's Wait (a leaf)
	relayed    map[net.Conn]struct{} // the clients of the relay goroutines

	pingFrame []byte
	epoch     time.Time

	zlevel, zmin int // Config.Compression with defaults
}

// New makes a Server; call Start to bind it. Any goroutine.
func New(cfg Config, h Handler) *Server {
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = 64 << 10
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = 8 << 10
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 60 * time.Second
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 25 * time.Second
	}
	if cfg.CloseTimeout <= 0 {
		cfg.CloseTimeout = 2 * time.Second
	}
	if cfg.SlowCloseCode == 0 {
		cfg.SlowCloseCode = wsproto.ClosePolicyViolation
	}
	if cfg.OutboundLimit <= 0 {
		cfg.OutboundLimit = 4 << 20
	}
	if cfg.PendingLimit <= 0 {
		cfg.PendingLimit = cfg.MaxHeaderBytes + cfg.MaxMessageSize
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 3 * time.Second
	}
	if cfg.PausedBufferLimit <= 0 {
		cfg.PausedBufferLimit = 1<<20 + cfg.MaxMessageSize
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	cfg.WriteDelay = max(cfg.WriteDelay, 0)
	if cfg.Compression.Level <= 0 {
		cfg.Compression.Level = 1
	}
	cfg.Compression.Level = min(cfg.Compression.Level, 9)
	if cfg.Compression.MinSize <= 0 {
		cfg.Compression.MinSize = DefaultMinSize
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:        cfg,
		h:          h,
		log:        lg,
		bufs:       pbytes.New(128, 1<<22),
		byEL:       make(map[gnet.EventLoop]*loop),
		booted:     make(chan struct{}),
		runDone:    make(chan struct{}),
		acceptDone: make(chan struct{}),
		stopAccept: make(chan struct{}),
		drained:    make(chan struct{}),
	}
	s.fh, _ = h.(FailingHandler)
	s.zlevel, s.zmin = cfg.Compression.Level, cfg.Compression.MinSize
	s.frames.New = func() any { return &Frame{s: s} }
	s.epoch = time.Now()
	s.pingFrame = wsproto.AppendFrame(nil, ws.OpPing, nil)
	m := min(cfg.PingInterval, cfg.IdleTimeout, cfg.HandshakeTimeout, cfg.CloseTimeout, cfg.ReadTimeout)
	s.tick = min(max(m/4, 5*time.Millisecond), time.Second)
	return s
}

// Start binds the listener and starts the event loops. It returns once the
// server accepts connections, or with the bind error. Call it once, from
// any goroutine.
//
// With Config.Addr empty the Server has no listener of its own: it serves
// only the connections ServeHTTP hands it.
func (s *Server) Start(ctx context.Context) error {
	ln, err := s.listen()
	if err != nil {
		return err
	}
	opts := []gnet.Option{
		gnet.WithTicker(true),
		gnet.WithLogger(gnetLogger{s.log}),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		// Register is called from the accept goroutine: not RoundRobin
		// (see gnet's Engine.Register).
		gnet.WithLoadBalancing(gnet.LeastConnections),
	}
	if s.cfg.EventLoops > 0 {
		opts = append(opts, gnet.WithNumEventLoop(s.cfg.EventLoops))
	} else {
		opts = append(opts, gnet.WithMulticore(true))
	}
	// gnet wants a listener of its own (Engine.Register refuses an engine
	// without one): a unix socket in a directory only this process's user
	// can enter, which nothing connects to. acceptLoop feeds the engine.
	idleDir, err := os.MkdirTemp("", "firetower-")
	if err != nil {
		closeListener(ln)
		return err
	}
	s.idleDir = idleDir
	go func() {
		defer close(s.runDone)
		defer func() { _ = os.RemoveAll(idleDir) }() // best effort: a temp directory
		s.runErr = gnet.Run(s, "unix://"+filepath.Join(idleDir, "idle.sock"), opts...)
		if !s.closing.Load() {
			s.log.Error("transport: the event loops stopped; no more websocket connections are served", "err", s.runErr)
		}
	}()
	select {
	case <-s.booted:
		if ln == nil {
			close(s.acceptDone)
		} else {
			go s.acceptLoop(ln)
		}
		return nil
	case <-s.runDone:
		closeListener(ln)
		close(s.acceptDone)
		if s.runErr == nil {
			s.runErr = errors.New("transport: engine stopped before it started")
		}
		return s.runErr
	case <-ctx.Done():
		closeListener(ln)
		close(s.acceptDone)
		// Stop the engine once it runs (Stop needs a running engine); if it
		// ends before booting, there is nothing to stop. Either way this
		// goroutine ends with the engine.
		go func() { //nolint:gosec // G118: ctx is already done here; Stop needs a context that is not
			select {
			case <-s.booted:
				_ = s.eng.Stop(context.Background())
			case <-s.runDone:
			}
		}()
		return ctx.Err()
	}
}

// Addr is the bound "host:port" ("" before Start). Any goroutine once Start
// has returned.
func (s *Server) Addr() string { return s.addr }

// Err is nil while the server runs; once its event loops have stopped it
// says why (after Shutdown: ErrClosed). Any goroutine.
func (s *Server) Err() error {
	select {
	case <-s.runDone:
	default:
		return nil
	}
	if s.closing.Load() {
		return ErrClosed
	}
	if s.runErr != nil {
		return fmt.Errorf("transport: the event loops stopped: %w", s.runErr)
	}
	return errors.New("transport: the event loops stopped")
}

// ErrClosed is Server.Err after Shutdown.
var ErrClosed = errors.New("transport: server shut down")

// OnBoot implements gnet.EventHandler.
func (s *Server) OnBoot(eng gnet.Engine) gnet.Action {
	s.eng = eng
	return gnet.None
}

// Shutdown stops accepting, sends every websocket client a close frame with
// code 1001, waits until the connections are gone (or ctx ends), and stops
// the engine and its goroutines. Any goroutine but an event loop (it waits
// for the loops to close their connections).
func (s *Server) Shutdown(ctx context.Context) error {
	select {
	case <-s.booted:
	default:
		return nil
	}
	s.closing.Store(true)
	s.stopOnce.Do(func() {
		close(s.stopAccept)
		closeListener(s.ln)
	})
	<-s.acceptDone // no connection is handed to a loop after this
	loops := s.loopList()
	for _, l := range loops {
		l.enqueue(op{kind: opShutdown})
	}
	if s.c.open.Load() == 0 {
		s.drainOne.Do(func() { close(s.drained) })
	}
	var err error
	select {
	case <-s.drained:
	case <-ctx.Done():
		err = fmt.Errorf("transport: connections still open at shutdown: %w", ctx.Err())
	}
	// gnet's Engine.Stop polls every 500ms; a loop task that returns
	// ErrEngineShutdown stops the engine at once. Without a known loop (no
	// connection ever came) fall back to Stop.
	if len(loops) > 0 {
		shut := gnet.RunnableFunc(func(context.Context) error { return gerrors.ErrEngineShutdown })
		if e := loops[0].el.Execute(context.Background(), shut); e != nil {
			_ = s.eng.Stop(ctx)
		}
	} else if e := s.eng.Stop(ctx); e != nil && err == nil {
		err = e
	}
	select {
	case <-s.runDone:
	case <-ctx.Done():
		if err == nil {
			err = fmt.Errorf("transport: engine still stopping: %w", ctx.Err())
		}
		return err
	}
	for _, l := range loops {
		l.drop()
	}
	// The loops closed their ends of the proxies' socketpairs: the relay
	// goroutines are ending (mount.go).
	if e := s.stopProxies(ctx); e != nil && err == nil {
		err = fmt.Errorf("transport: proxied connections still open at shutdown: %w", e)
	}
	return err
}

// listen binds Config.Addr; nil without an address (ServeHTTP only).
func (s *Server) listen() (net.Listener, error) {
	if s.cfg.Addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return nil, err
	}
	s.ln = ln
	s.addr = ln.Addr().String()
	return ln, nil
}

func closeListener(ln net.Listener) {
	if ln != nil {
		_ = ln.Close()
	}
}

// waitGroup waits for wg, or until ctx ends.
func waitGroup(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats returns the server's counters. Any goroutine.
func (s *Server) Stats() Stats {
	var lat LatencyHistogram
	for i := range lat {
		lat[i] = s.c.latency[i].Load()
	}
	var outbound int64
	for _, l := range s.loopList() {
		outbound += l.outbound.Load()
	}
	return Stats{
		OutboundBuffered: outbound, WriteLatency: lat,
		Accepted: s.c.accepted.Load(), Upgraded: s.c.upgraded.Load(), Rejected: s.c.rejected.Load(),
		Open: s.c.open.Load(), FramesIn: s.c.framesIn.Load(), MessagesIn: s.c.messagesIn.Load(),
		BytesOut: s.c.bytesOut.Load(), Writes: s.c.writes.Load(), Dropped: s.c.dropped.Load(), Discarded: s.c.discarded.Load(),
		SlowClosed: s.c.slowClosed.Load(), IdleClosed: s.c.idleClosed.Load(), ProtocolClose: s.c.protErr.Load(),
		AcceptErrors: s.c.acceptErrors.Load(), Hijacked: s.c.hijacked.Load(), Proxied: s.c.proxied.Load(),
		ReadPauses: s.c.pauses.Load(), Overflowed: s.c.overflowed.Load(), Paused: s.c.paused.Load(),
		Compression: CompressionStats{
			Conns:    s.c.zConns.Load(),
			Messages: s.c.zMsgs.Load(), MessageBytesIn: s.c.zMsgIn.Load(), MessageBytesOut: s.c.zMsgOut.Load(),
			Frames: s.c.zFrames.Load(), FrameBytesIn: s.c.zFrameIn.Load(), FrameBytesOut: s.c.zFrameOut.Load(),
			Inflated: s.c.inflated.Load(), InflatedBytesIn: s.c.inflatedIn.Load(), InflatedBytesOut: s.c.inflatedOut.Load(),
		},
	}
}

// NumLoops is the number of event loops that have had a connection; loop
// indexes (Conn.Loop) are below it. Any goroutine.
func (s *Server) NumLoops() int { return len(s.loopList()) }

func (s *Server) loopList() []*loop {
	if p := s.loops.Load(); p != nil {
		return *p
	}
	return nil
}

// GetBuffer returns a pooled buffer of length n. Any goroutine.
func (s *Server) GetBuffer(n int) []byte { return s.bufs.GetLen(n) }

// PutBuffer returns a buffer from GetBuffer or Handler.Message to the pool.
// Any goroutine.
func (s *Server) PutBuffer(b []byte) { s.bufs.Put(b) }

// Frame is an encoded websocket frame shared by every connection it is sent
// to. It is reference counted: the creator holds one reference and gives it
// up with Release once it has handed the frame to Broadcast or Conn.Send.
//
// B is written only by the frame's creator, before the frame is first
// handed on; after that every goroutine only reads it. Release may be
// called from any goroutine, once per reference.
//
// When B is one whole text or binary frame and the server compresses, the
// first event loop that sends it to a connection that negotiated
// permessage-deflate compresses it (see Compression); every compressing
// connection then gets that same compressed frame.
type Frame struct {
	B    []byte
	refs atomic.Int32
	s    *Server
	born int64 // monotonic nanoseconds at creation

	zstate atomic.Uint32 // zUntried, zReady, zPlain
	zmu    sync.Mutex    // held while compressing
	z      []byte        // the compressed frame (zReady), within zbuf
	zbuf   []byte        // the compressed frame's buffer, kept with the pooled Frame
}

// NewFrame returns a frame with an empty buffer of capacity size, holding
// one reference. Any goroutine.
func (s *Server) NewFrame(size int) *Frame {
	f := s.frames.Get().(*Frame)
	if cap(f.B) < size {
		f.B = make([]byte, 0, max(size, 256))
	}
	f.refs.Store(1)
	f.born = s.mono()
	return f
}

// NewMessageFrame frames payload as one final message frame of opcode op,
// holding one reference. Any goroutine.
func (s *Server) NewMessageFrame(op ws.OpCode, payload []byte) *Frame {
	f := s.NewFrame(wsproto.HeaderSize(len(payload)) + len(payload))
	f.B = wsproto.AppendFrame(f.B, op, payload)
	return f
}

func (f *Frame) retain() { f.refs.Add(1) }

// Release gives up one reference. Any goroutine.
func (f *Frame) Release() {
	if n := f.refs.Add(-1); n == 0 {
		// The buffer stays with the pooled Frame (putting a slice in a
		// pool by itself allocates); a large one is let go.
		if cap(f.B) > maxPooledFrame {
			f.B = nil
		} else {
			f.B = f.B[:0]
		}
		f.z = nil
		if cap(f.zbuf) > maxPooledFrame {
			f.zbuf = nil
		}
		f.zstate.Store(zUntried)
		f.s.frames.Put(f)
	} else if n < 0 {
		panic("transport: frame released too often")
	}
}

// maxPooledFrame is the largest frame buffer kept for reuse.
const maxPooledFrame = 64 << 10

// mono is a monotonic clock in nanoseconds.
func (s *Server) mono() int64 { return int64(time.Since(s.epoch)) }

// observe records one write latency.
func (s *Server) observe(d int64) {
	us := uint64(max(d, 0)) / 1000
	i := 0
	for i < LatencyBuckets-1 && us >= 1<<i {
		i++
	}
	s.c.latency[i].Add(1)
}

// Broadcast queues f for every connection in blocks, which must all be on
// event loop index loopIdx (see Conn.Loop). Any goroutine. The slices must
// not be modified afterwards within their lengths (firetower passes
// copy-on-write snapshots).
func (s *Server) Broadcast(loopIdx int, f *Frame, blocks [][]*Conn) {
	l := s.loopList()[loopIdx]
	f.retain()
	l.enqueue(op{kind: opFrames, f: f, blocks: blocks})
}

func (s *Server) loopFor(el gnet.EventLoop) *loop {
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	l := s.byEL[el]
	if l == nil {
		old := s.loopList()
		l = &loop{s: s, idx: len(old), el: el, epfd: epollFD(el), pendingKeys: make(map[*Conn]string), failing: make(map[*Conn]failure)}
		l.task = gnet.RunnableFunc(l.run)
		if d := s.cfg.WriteDelay; d > 0 {
			l.delay = int64(d)
			// Made stopped, with the loop: Reset arms it on the loop,
			// drop stops it from any goroutine.
			l.timer = time.AfterFunc(d, l.wake)
			l.timer.Stop()
		}
		next := append(append(make([]*loop, 0, len(old)+1), old...), l)
		s.loops.Store(&next)
		s.byEL[el] = l
	}
	return l
}

// OnOpen implements gnet.EventHandler.
func (s *Server) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	l := s.loopFor(gc.EventLoop())
	// Checked after the loop is registered: Shutdown sets closing before it
	// snapshots the loops, so either it sees this loop (and its sweep closes
	// this connection) or this check sees closing.
	if s.closing.Load() {
		return nil, gnet.Close
	}
	now := s.cfg.Clock().UnixNano()
	c := &Conn{l: l, gc: gc, idx: len(l.conns), since: now, lastRead: now}
	l.conns = append(l.conns, c)
	h, _ := gc.Context().(*handoff)
	gc.SetContext(c)
	s.c.accepted.Add(1)
	s.c.open.Add(1)
	if h != nil {
		return nil, c.openHandoff(h)
	}
	return nil, gnet.None
}

// OnClose implements gnet.EventHandler.
func (s *Server) OnClose(gc gnet.Conn, err error) gnet.Action {
	c, _ := gc.Context().(*Conn)
	if c == nil {
		return gnet.None
	}
	gc.SetContext(nil)
	l := c.l
	last := len(l.conns) - 1
	if c.idx <= last && l.conns[c.idx] == c {
		l.conns[c.idx] = l.conns[last]
		l.conns[c.idx].idx = c.idx
		l.conns[last] = nil
		l.conns = l.conns[:last]
	}
	wasWS := c.state >= stUpgrading
	delete(l.pendingKeys, c)
	delete(l.failing, c)
	delete(l.handoffs, c)
	c.state = stClosed
	held := 0
	if c.held != nil {
		held = c.held.n
	}
	s.c.discarded.Add(uint64(len(c.out) + held)) //nolint:gosec // G115: counts, never negative
	l.giveHeld(c.held)
	c.out, c.held = nil, nil // a stale entry in the loop's due list now matches nothing
	c.outBytes = 0
	if c.frag != nil {
		s.bufs.Put(c.frag)
		c.frag = nil
	}
	if c.paused {
		c.paused = false
		s.c.paused.Add(-1)
	}
	if c.zCounted {
		c.zCounted = false
		s.c.zConns.Add(-1)
	}
	if wasWS {
		s.h.Closed(c, int(c.closeCode), err)
	}
	if s.c.open.Add(-1) == 0 && s.closing.Load() {
		s.drainOne.Do(func() { close(s.drained) })
	}
	return gnet.None
}

// OnTick implements gnet.EventHandler: it asks every loop to scan its
// connections for timeouts and due pings.
func (s *Server) OnTick() (time.Duration, gnet.Action) {
	// The first tick comes once every loop runs: Register works from now.
	s.bootOnce.Do(func() { close(s.booted) })
	for _, l := range s.loopList() {
		l.mu.Lock()
		due := !l.scanQueued
		l.scanQueued = true
		l.mu.Unlock()
		if due {
			l.enqueue(op{kind: opScan})
		}
	}
	return s.tick, gnet.None
}

// OnTraffic implements gnet.EventHandler.
func (s *Server) OnTraffic(gc gnet.Conn) gnet.Action {
	c, _ := gc.Context().(*Conn)
	if c == nil {
		return gnet.Close
	}
	switch c.state {
	case stHandshake:
		return c.readHandshake()
	case stUpgrading:
		if gc.InboundBuffered() > s.cfg.PendingLimit {
			return gnet.Close
		}
		return gnet.None
	case stOpen, stClosing:
		if c.paused && !c.overflow {
			if gc.InboundBuffered() <= s.cfg.PausedBufferLimit {
				c.l.gate(c, false) // gnet re-armed reading: take it out again
				return gnet.None
			}
			c.startOverflow() // over the bound: read on, into Handler.Overflow
		}
		return c.readFrames()
	}
	_, _ = gc.Discard(-1)
	return gnet.None
}

type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Info(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Warn(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Errorf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...), "component", "gnet") }
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...), "component", "gnet") }
