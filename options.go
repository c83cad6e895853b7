package firetower

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/firetower-go/firetower/transport"
)

// Option configures a Tower. Options are applied in order by New, which
// validates the result once and returns an error for a bad value.
type Option func(*config) error

// PublishPolicy says which topics a client may publish to.
type PublishPolicy uint8

const (
	// PublishSubscribed lets a client publish only to topics it is
	// subscribed to (the default).
	PublishSubscribed PublishPolicy = iota
	// PublishAny lets a client publish to any valid topic.
	PublishAny
	// PublishNone refuses every client publish; only the server publishes.
	PublishNone
)

// SlowConsumerPolicy is what happens when a client's outbound buffer passes
// the limit set by WithOutboundLimit.
type SlowConsumerPolicy uint8

const (
	// SlowClose closes the connection with close code CloseSlowConsumer.
	// The default.
	SlowClose SlowConsumerPolicy = iota
	// SlowDrop drops messages for the connection until its buffer drains,
	// counts each drop and runs the OnSlowConsumer chain.
	SlowDrop
)

// CloseSlowConsumer is the close code sent to a client closed by SlowClose.
const CloseSlowConsumer = 4000

// transport maps the policy to the transport's own. This is the one place
// where the root's slow-consumer policy and close code meet the
// transport's (see transportConfig).
func (p SlowConsumerPolicy) transport() transport.SlowPolicy {
	if p == SlowDrop {
		return transport.SlowDrop
	}
	return transport.SlowClose
}

type config struct {
	addr             string
	path             string
	anyPath          bool
	nodeID           uint16
	manager          Manager
	legacy           bool
	logger           *slog.Logger
	maxMessage       int
	pingInterval     time.Duration
	idleTimeout      time.Duration
	handshakeTimeout time.Duration
	publishPolicy    PublishPolicy
	outboundLimit    int
	slowPolicy       SlowConsumerPolicy
	writeDelay       time.Duration
	inboundLimit     int
	inboundTotal     int
	readTimeout      time.Duration
	nonBlocking      [numHooks]bool
	workers          int
	maxTopics        int
	eventLoops       int
	origins          []string
	maxConns         int
	maxConnsPerIP    int
	statsInterval    time.Duration
	statsTopics      int
	history          *historyConfig  // history.go
	presence         *presenceConfig // presence.go
	presenceInterval time.Duration
	wildcards        bool // wildcard.go

	compression transport.Compression // compression.go

	use   []Middleware
	hooks [numHooks][]Middleware
}

func defaultConfig() config {
	return config{
		addr:             "0.0.0.0:9999",
		path:             "/ws",
		nodeID:           1,
		maxMessage:       64 << 10,
		pingInterval:     25 * time.Second,
		idleTimeout:      60 * time.Second,
		handshakeTimeout: 10 * time.Second,
		outboundLimit:    4 << 20,
		inboundLimit:     1 << 20,
		inboundTotal:     256 << 20,
		readTimeout:      3 * time.Second,
		workers:          64,
		maxTopics:        1024,
		statsInterval:    time.Second,
		statsTopics:      20,
	}
}

// transportConfig is the websocket server's configuration for these
// options.
func (c *config) transportConfig(log *slog.Logger) transport.Config {
	var served transport.PathMatcher
	if !c.anyPath {
		p := c.path
		served = func(path string) bool { return path == p }
	}
	return transport.Config{
		Addr:             c.addr,
		Served:           served,
		EventLoops:       c.eventLoops,
		MaxMessageSize:   c.maxMessage,
		HandshakeTimeout: c.handshakeTimeout,
		IdleTimeout:      c.idleTimeout,
		PingInterval:     c.pingInterval,
		OutboundLimit:    c.outboundLimit,
		SlowPolicy:       c.slowPolicy.transport(),
		SlowCloseCode:    CloseSlowConsumer,
		Logger:           log,
		ReadTimeout:      c.readTimeout,
		// What waits unparsed beside what waits queued: while the socket
		// is out of the read interest only what gnet read before stays.
		PausedBufferLimit: c.inboundLimit + c.maxMessage,
		Compression:       c.compression,
		WriteDelay:        c.writeDelay,
	}
}

func (c *config) validate() error {
	var errs []error
	if c.presenceInterval > 0 && c.presence == nil {
		errs = append(errs, errors.New("WithPresenceInterval without WithPresence"))
	}
	if !c.anyPath && (c.path == "" || c.path[0] != '/') {
		errs = append(errs, fmt.Errorf("path %q must start with /", c.path))
	}
	if c.idleTimeout <= c.pingInterval {
		errs = append(errs, fmt.Errorf("idle timeout %v must be longer than the ping interval %v", c.idleTimeout, c.pingInterval))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrBadOption, errors.Join(errs...))
	}
	return nil
}

func positive[T int | time.Duration](name string, v T, set func()) error {
	if v <= 0 {
		return fmt.Errorf("%w: %s must be positive, got %v", ErrBadOption, name, v)
	}
	set()
	return nil
}

// WithAddr sets the websocket listen address, "host:port". Default
// "0.0.0.0:9999"; port 0 picks a free port (see Tower.Addr). An empty
// address gives the Tower no listener of its own: it then serves only the
// requests an HTTP server hands it (Tower.ServeHTTP).
func WithAddr(addr string) Option {
	return func(c *config) error { c.addr = addr; return nil }
}

// WithPath sets the upgrade path. Default "/ws".
func WithPath(p string) Option {
	return func(c *config) error { c.path = p; return nil }
}

// WithAnyPath upgrades requests on every path when on. Default off.
func WithAnyPath(on bool) Option {
	return func(c *config) error { c.anyPath = on; return nil }
}

// WithNodeID sets this node's id, unique in a cluster. Default 1.
func WithNodeID(id uint16) Option {
	return func(c *config) error { c.nodeID = id; return nil }
}

// WithManager sets the cluster backend. Default: a LocalManager of this
// Tower's own (one process, no setup).
func WithManager(m Manager) Option {
	return func(c *config) error {
		if m == nil {
			return fmt.Errorf("%w: nil Manager", ErrBadOption)
		}
		c.manager = m
		return nil
	}
}

// WithLegacyDelivery sends deliveries to JSON clients as the raw data bytes,
// with no envelope, as firetower v0.4 servers did. Default off.
func WithLegacyDelivery(on bool) Option {
	return func(c *config) error { c.legacy = on; return nil }
}

// WithLogger sets the logger. Default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error { c.logger = l; return nil }
}

// WithMaxMessageSize sets the largest client message in bytes; a larger one
// closes the connection with 1009. Default 64 KiB.
func WithMaxMessageSize(n int) Option {
	return func(c *config) error { return positive("max message size", n, func() { c.maxMessage = n }) }
}

// WithPingInterval sets how often an otherwise quiet connection is pinged.
// Default 25s.
func WithPingInterval(d time.Duration) Option {
	return func(c *config) error { return positive("ping interval", d, func() { c.pingInterval = d }) }
}

// WithIdleTimeout closes (1001) a connection that sent no frame of any kind
// for d. Default 60s; it must be longer than the ping interval.
func WithIdleTimeout(d time.Duration) Option {
	return func(c *config) error { return positive("idle timeout", d, func() { c.idleTimeout = d }) }
}

// WithHandshakeTimeout closes a connection whose upgrade is not complete
// within d. Default 10s.
func WithHandshakeTimeout(d time.Duration) Option {
	return func(c *config) error { return positive("handshake timeout", d, func() { c.handshakeTimeout = d }) }
}

// WithPublishPolicy sets which topics clients may publish to. Default
// PublishSubscribed.
func WithPublishPolicy(p PublishPolicy) Option {
	return func(c *config) error {
		if p > PublishNone {
			return fmt.Errorf("%w: unknown publish policy %d", ErrBadOption, p)
		}
		c.publishPolicy = p
		return nil
	}
}

// WithOutboundLimit sets how many bytes may wait to be written to one
// client before the slow-consumer policy applies. Default 4 MiB. A client
// that stops reading costs up to about 2.5 times this in memory (what one
// write buffers past the limit, and the event loop's buffer growing in
// powers of two), plus the kernel's socket buffers.
func WithOutboundLimit(n int) Option {
	return func(c *config) error { return positive("outbound limit", n, func() { c.outboundLimit = n }) }
}

// WithSlowConsumerPolicy sets the slow-consumer policy. Default SlowClose.
func WithSlowConsumerPolicy(p SlowConsumerPolicy) Option {
	return func(c *config) error {
		if p > SlowDrop {
			return fmt.Errorf("%w: unknown slow consumer policy %d", ErrBadOption, p)
		}
		c.slowPolicy = p
		return nil
	}
}

// WithWriteDelay lets a client's outgoing messages wait up to d so that
// all those sent to it meanwhile leave in one write. It trades latency for
// CPU: under chat-like loads, where every member of many rooms receives
// tens to hundreds of messages a second, most of a server's time goes to
// the write system call, one per client per event-loop turn, and a delay
// of a few milliseconds turns many of those writes into one. Each message
// may arrive up to d later (plus event-loop scheduling): the first message
// for a client with nothing waiting makes its write due d later.
//
// What does not wait: a close frame goes out at once, behind what waits,
// and websocket pings and pongs are answered at once. Acks, errors and
// other answers to a client's requests wait like messages, in order.
// Waiting messages count toward WithOutboundLimit.
//
// Default 0: every client's messages are written at the end of the
// event-loop turn that queued them, with no timer. Values of 5 to 50 ms
// suit high-fan-out rooms; a negative d is an error.
func WithWriteDelay(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("%w: write delay must not be negative, got %v", ErrBadOption, d)
		}
		c.writeDelay = d
		return nil
	}
}

// WithInboundLimit sets how many bytes of one client's requests may wait
// for the hook workers (each request counts its size plus 256 bytes). Past
// it the server stops reading that client until the workers have brought it
// under half: what the client sends waits in TCP, and nothing is lost. Only
// requests that run hooks which may block wait for workers; the others are
// handled on the event loop as they arrive (see WithNonBlockingHooks).
// Default 1 MiB.
func WithInboundLimit(n int) Option {
	return func(c *config) error { return positive("inbound limit", n, func() { c.inboundLimit = n }) }
}

// WithInboundTotal bounds the bytes of requests waiting for the hook
// workers across all clients; past it, a client that adds a request has its
// reading paused like one over its own limit, so the total is exceeded by
// at most one message per client. Default 256 MiB.
func WithInboundTotal(n int) Option {
	return func(c *config) error { return positive("inbound total", n, func() { c.inboundTotal = n }) }
}

// WithReadTimeout sets how long a client's reading may stay paused for its
// inbound budget. Past it, the server reads the client again and drops its
// messages until the workers catch up: each runs OnReadTimeout, is counted
// in Stats.ReadDropped and answered with error rate_limited, in order
// behind the requests already accepted. A client that fills even that
// queue of answers (1,024) is closed with 1008, the last resort. Default 3s,
// as in firetower v0.4.
func WithReadTimeout(d time.Duration) Option {
	return func(c *config) error { return positive("read timeout", d, func() { c.readTimeout = d }) }
}

// WithNonBlockingHooks declares that the chains of these hooks (their own
// middleware and Use's) never block: no I/O, no waiting on locks held for
// long. Requests that run only such chains are handled on the event loop as
// they arrive, without a handoff to a worker; the other requests keep
// running on workers. A client publish with no OnRead middleware is always
// handled on the loop. Only HookRead matters today: subscribes wait for the
// Manager and always run on workers.
func WithNonBlockingHooks(hooks ...Hook) Option {
	return func(c *config) error {
		for _, h := range hooks {
			if h.index() == HookSlowConsumer.index() && h != HookSlowConsumer {
				return fmt.Errorf("%w: unknown hook %q", ErrBadOption, h)
			}
			c.nonBlocking[h.index()] = true
		}
		return nil
	}
}

// WithWorkers sets the number of goroutines that run hooks and client
// requests. Hooks may block; a blocked hook holds one worker. Default 64.
func WithWorkers(n int) Option {
	return func(c *config) error { return positive("workers", n, func() { c.workers = n }) }
}

// WithMaxTopics sets how many topics one connection may subscribe to.
// Default 1024.
func WithMaxTopics(n int) Option {
	return func(c *config) error { return positive("max topics", n, func() { c.maxTopics = n }) }
}

// WithEventLoops sets the number of event loops. Default GOMAXPROCS.
func WithEventLoops(n int) Option {
	return func(c *config) error { return positive("event loops", n, func() { c.eventLoops = n }) }
}

func hookOption(h Hook, mws []Middleware) Option {
	return func(c *config) error {
		for _, m := range mws {
			if m == nil {
				return fmt.Errorf("%w: nil middleware for %s", ErrBadOption, h)
			}
		}
		c.hooks[h.index()] = append(c.hooks[h.index()], mws...)
		return nil
	}
}

// OnConnect runs during the upgrade, before the client is accepted; an error
// refuses it with HTTP 401 (ErrUnauthorized) or 403 (any other error). It may
// set the connection's id and user id.
func OnConnect(mws ...Middleware) Option { return hookOption(HookConnect, mws) }

// OnBeforeSubscribe runs before a subscription; an error refuses it (the
// client gets error "forbidden", or the *Error's code). It may rewrite the
// topics with Context.SetTopics.
func OnBeforeSubscribe(mws ...Middleware) Option { return hookOption(HookBeforeSubscribe, mws) }

// OnSubscribe runs after a subscription is in effect cluster-wide.
func OnSubscribe(mws ...Middleware) Option { return hookOption(HookSubscribe, mws) }

// OnUnsubscribe runs after an unsubscribe, and for every topic still
// subscribed when a client disconnects.
func OnUnsubscribe(mws ...Middleware) Option { return hookOption(HookUnsubscribe, mws) }

// OnRead runs for every client publish; the end of the chain publishes
// c.Message(). An error stops the publish and reaches the client.
func OnRead(mws ...Middleware) Option { return hookOption(HookRead, mws) }

// OnReadTimeout runs for a client message the server could not take within
// the read timeout (WithReadTimeout) because the client's earlier requests
// still filled its inbound budget (WithInboundLimit); c.Message() is the
// dropped message, and the client gets error rate_limited.
func OnReadTimeout(mws ...Middleware) Option { return hookOption(HookReadTimeout, mws) }

// OnDisconnect runs once a client is gone, after OnUnsubscribe for its topics.
func OnDisconnect(mws ...Middleware) Option { return hookOption(HookDisconnect, mws) }

// OnSlowConsumer runs when messages to a client were dropped under SlowDrop,
// once per run of drops (c.Message() is nil; Tower.Stats counts every drop).
func OnSlowConsumer(mws ...Middleware) Option { return hookOption(HookSlowConsumer, mws) }

// Use adds middleware around every hook, outside the hook's own chain.
func Use(mws ...Middleware) Option {
	return func(c *config) error {
		for _, m := range mws {
			if m == nil {
				return fmt.Errorf("%w: nil middleware in Use", ErrBadOption)
			}
		}
		c.use = append(c.use, mws...)
		return nil
	}
}

// WithAllowedOrigins sets the browser origins allowed to connect. An entry
// is "*" (any origin), a host name ("example.com", any scheme and port), a
// host name with a leading wildcard ("*.example.com"), or a full origin
// ("https://example.com:8443"). By default, with no entries, an Origin is
// allowed when its host name equals the one the client connected to (any
// port), so pages served by the same host work. A request without an Origin
// header (not a browser) is always allowed. A refused Origin gets HTTP 403.
func WithAllowedOrigins(origins ...string) Option {
	return func(c *config) error {
		for _, o := range origins {
			if strings.TrimSpace(o) == "" {
				return fmt.Errorf("%w: empty allowed origin", ErrBadOption)
			}
		}
		c.origins = append(c.origins, origins...)
		return nil
	}
}

// WithMaxConnections caps the open websocket connections; an upgrade past
// it gets HTTP 503. Default 0: no cap (a cap is a policy for your load).
func WithMaxConnections(n int) Option {
	return func(c *config) error {
		if n < 0 {
			return fmt.Errorf("%w: max connections must not be negative", ErrBadOption)
		}
		c.maxConns = n
		return nil
	}
}

// WithMaxConnectionsPerIP caps the open websocket connections from one IP
// address; an upgrade past it gets HTTP 429. Default 0: no cap (a default
// cap would refuse users behind one NAT, and load tests).
func WithMaxConnectionsPerIP(n int) Option {
	return func(c *config) error {
		if n < 0 {
			return fmt.Errorf("%w: max connections per IP must not be negative", ErrBadOption)
		}
		c.maxConnsPerIP = n
		return nil
	}
}

// WithStatsInterval sets how often the Tower publishes its NodeStats on
// StatsTopic, which it does only while someone in the cluster subscribes
// to it (the dashboard does). Default 1s; 0 turns it off.
func WithStatsInterval(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("%w: stats interval must not be negative, got %v", ErrBadOption, d)
		}
		c.statsInterval = d
		return nil
	}
}

// WithStatsTopics sets how many of its topics (those with the most local
// subscribers) a node lists in its NodeStats. Default 20.
func WithStatsTopics(n int) Option {
	return func(c *config) error { return positive("stats topics", n, func() { c.statsTopics = n }) }
}
