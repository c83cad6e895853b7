// Package natsmanager is a firetower.Manager on NATS (github.com/nats-io/nats.go):
// the gateways of a cluster route their publishes through an existing NATS
// server or cluster instead of firetower's own topic-manager nodes.
//
// # Routing
//
// Every topic is one NATS subject, one token per "/" segment of the topic:
//
//	<SubjectPrefix>t._<base64url(segment 1)>._<base64url(segment 2)>...
//
// (RawURLEncoding: letters, digits, '-' and '_', no padding; the "_" keeps
// an empty segment's token from being empty), because a firetower topic
// may contain '.', '*' and '>', which are token separators and wildcards in
// NATS. Keeping the segments apart lets NATS route wildcard subscriptions
// (firetower.WithWildcards): a node's interest in the pattern "/md/*" is a
// subscription to <SubjectPrefix>t._._bWQ.*, and in "/md/**" to
// <SubjectPrefix>t._._bWQ.> (NATS's "*" is one token, its ">" one or more,
// as firetower's "*" and "**" are). A publish always goes to a concrete
// subject. A node whose interests overlap (a topic and a pattern that
// matches it) gets a message from NATS once per subscription and hands it
// to its Tower once. [Manager.Subject] computes it, so another NATS
// client (a backend) can publish to a topic directly: the bytes it sends are
// delivered as if given to Tower.Publish.
//
// A gateway subscribes to a topic's subject when its local interest goes
// from 0 to 1 and unsubscribes when it goes back to 0, so NATS sends a
// gateway only the topics it has subscribers for. The connection is made
// with NoEcho: a gateway never gets its own publishes back (it delivers them
// locally first). A subscription is in effect on the server the gateway
// is connected to when Flush returns (so when a client's subscribe is
// acknowledged); the other servers of a NATS cluster learn of it over
// their routes asynchronously, so a publish made through another server in
// that instant may miss it. Delivery is at most once, as in NATS core: a message that
// arrives while the delivery queue (Config.PendingMsgs) is full is dropped
// and counted in [Stats].Dropped; a publish that cannot be taken (the
// connection is closed, or the reconnect buffer is full during a failover)
// returns an error.
//
// # Failover
//
// nats.go reconnects by itself, forever, to the configured URLs and to the
// servers the cluster advertises, waiting Config.ReconnectWait between
// rounds, and resubscribes every subscription after a reconnect. Publishes
// made while it reconnects are buffered by nats.go (8 MiB by default; past
// that Publish fails) and sent once it is connected again.
//
// # Counts and their staleness
//
// NATS has no notion of subscriber counts, so every node publishes its
// interest (topic -> local count) on <SubjectPrefix>r, and every node keeps
// the latest report of every other node:
//
//   - a full report every ReportInterval (msgpack, split into chunks of at
//     most 64 KiB, replacing the node's previous report once complete);
//   - a delta report of the topics that changed, Config.Coalesce (50ms)
//     after a change, so counts converge in about 50ms plus a NATS round;
//   - a full report at once, on request, when a node joins or reconnects, so
//     it learns the others' counts without waiting a whole interval;
//   - a goodbye on Link.Close, which removes the node at once.
//
// Count is the node's own current counts plus the last report of every
// other node that is not older than that node's CountTTL (carried in its
// reports; default 3 x ReportInterval). So, for another node's subscribers,
// Count lags by Coalesce plus the NATS latency when nothing is lost; by at
// most ReportInterval when a report is lost (a NATS slow consumer, a
// reconnect); and a node that vanishes without saying goodbye (killed,
// partitioned) is still counted for at most its CountTTL. Count returns an
// error while the connection is down.
//
// Node ids must be unique in the cluster: reports are keyed by node id, and
// a node that restarts (a new boot id) replaces its previous reports.
//
// # Credentials and TLS
//
// Whoever can publish on the cluster's subjects reaches every subscriber,
// and whoever can subscribe reads every topic, so a NATS server off the
// local machine must authenticate its clients. Config takes the usual NATS
// credentials (Token; User and Password; CredsFile for a user JWT and NKey
// seed) and a TLS configuration (RootCAs for a private CA, Certificates for
// a client certificate); credentials in a URL (nats://user:pass@host) and
// in Config.Options count too. New refuses a URL whose host is not
// loopback when none of them is given, unless AllowInsecure is set.
// Restrict the subjects each user may use (SubjectPrefix) in the NATS
// server's authorization settings. Reports from other nodes are decoded
// with every length checked against the message's size and every topic
// validated, so whatever can publish on the report subject cannot make a
// node allocate more than the bytes it sends.
package natsmanager

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/internal/mpcheck"
	"github.com/firetower-go/firetower/internal/topicpattern"
)

// Config configures a Manager. Zero values get the defaults noted.
type Config struct {
	// URLs are NATS server URLs (nats://host:port). The client also uses
	// the servers the cluster advertises.
	URLs []string
	// SubjectPrefix starts every subject this package uses. It must end
	// with '.' (one is added if missing) and contain no wildcard or space.
	// Default "firetower.". Gateways of one cluster must share it.
	SubjectPrefix string
	// ReportInterval is how often a node publishes its full interest
	// report. Default 1s.
	ReportInterval time.Duration
	// CountTTL is how long other nodes keep counting this node's last
	// report. It must be longer than ReportInterval. Default 3 x
	// ReportInterval.
	CountTTL time.Duration
	// Coalesce is how long interest changes are gathered before they are
	// reported. Default 50ms.
	Coalesce time.Duration
	// FlushTimeout bounds Link.Flush. Default 2s.
	FlushTimeout time.Duration
	// DialTimeout bounds one connection attempt. Default 2s.
	DialTimeout time.Duration
	// ReconnectWait is the pause between two rounds of reconnection
	// attempts (with up to as much again of jitter). Default 100ms.
	ReconnectWait time.Duration
	// WriteTimeout bounds a write to the NATS server; a server that takes
	// nothing for that long is dropped and another one tried. Default 2s.
	WriteTimeout time.Duration
	// PendingMsgs bounds the messages received and not yet delivered to
	// the Tower; past it messages are dropped and counted. Default 65536.
	PendingMsgs int
	// Token authenticates with a NATS server token.
	Token string
	// User and Password authenticate with a NATS user name and password.
	User, Password string
	// CredsFile authenticates with a NATS credentials file (a user JWT and
	// its NKey seed, as issued in operator mode).
	CredsFile string
	// TLS, when set, connects over TLS with this configuration: RootCAs
	// for a private CA, Certificates for a client certificate (mutual
	// TLS). ServerName defaults to each URL's host.
	TLS *tls.Config
	// AllowInsecure accepts URLs whose host is not loopback when no
	// credential is configured: then anything that answers at those
	// addresses gets the cluster's traffic, and anyone the NATS server
	// lets in can publish to every subscriber.
	AllowInsecure bool
	// Options are extra nats.go options, applied after this package's
	// defaults and the credentials above. The connection's event handlers
	// (reconnect, disconnect, closed, error) belong to this package.
	Options []nats.Option
	// Logger receives connection events. Default: discard.
	Logger *slog.Logger

	// History (history.go): the JetStream streams of history topics are
	// kept in HistoryStorage (default file storage) with HistoryReplicas
	// replicas (default 1); HistoryTimeout bounds each JetStream request
	// (default 5s).
	HistoryStorage  jetstream.StorageType
	HistoryReplicas int
	HistoryTimeout  time.Duration
}

// Errors.
var (
	// ErrNotConnected is returned by Flush and Count while the connection
	// to NATS is down (nats.go is reconnecting).
	ErrNotConnected = errors.New("natsmanager: not connected to NATS")
	// ErrInsecureURL is returned by New for a URL whose host is not
	// loopback when no credential is configured (see Config.AllowInsecure).
	ErrInsecureURL = errors.New("natsmanager: a NATS URL that is not loopback needs a credential (Token, User and Password, CredsFile or a TLS client certificate)")
	errJoined      = errors.New("natsmanager: a Manager serves one Tower; make one per Tower")
)

// reportChunk bounds the encoded size of one report message.
const reportChunk = 64 << 10

// Manager is a firetower.Manager on NATS. It serves one Tower.
type Manager struct {
	cfg    Config
	log    *slog.Logger
	joined atomic.Bool
	link   atomic.Pointer[link]
}

// New validates cfg and returns a Manager that connects to NATS when its
// Tower joins it (at Tower.Start).
func New(cfg Config) (*Manager, error) {
	var errs []error
	if len(cfg.URLs) == 0 {
		errs = append(errs, errors.New("no NATS URL"))
	}
	if cfg.SubjectPrefix == "" {
		cfg.SubjectPrefix = "firetower."
	}
	if !strings.HasSuffix(cfg.SubjectPrefix, ".") {
		cfg.SubjectPrefix += "."
	}
	for _, tok := range strings.Split(strings.TrimSuffix(cfg.SubjectPrefix, "."), ".") {
		if tok == "" || strings.ContainsAny(tok, "*> \t\r\n") {
			errs = append(errs, fmt.Errorf("bad SubjectPrefix %q", cfg.SubjectPrefix))
			break
		}
	}
	if cfg.ReportInterval <= 0 {
		cfg.ReportInterval = time.Second
	}
	if cfg.CountTTL == 0 {
		cfg.CountTTL = 3 * cfg.ReportInterval
	}
	if cfg.CountTTL <= cfg.ReportInterval {
		errs = append(errs, fmt.Errorf("CountTTL %v must be longer than ReportInterval %v", cfg.CountTTL, cfg.ReportInterval))
	}
	if cfg.Coalesce <= 0 {
		cfg.Coalesce = 50 * time.Millisecond
	}
	if cfg.FlushTimeout <= 0 {
		cfg.FlushTimeout = 2 * time.Second
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 2 * time.Second
	}
	if cfg.ReconnectWait <= 0 {
		cfg.ReconnectWait = 100 * time.Millisecond
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 2 * time.Second
	}
	if cfg.PendingMsgs <= 0 {
		cfg.PendingMsgs = 65536
	}
	if cfg.HistoryReplicas <= 0 {
		cfg.HistoryReplicas = 1
	}
	if cfg.HistoryTimeout <= 0 {
		cfg.HistoryTimeout = defaultHistoryTimeout
	}
	kinds := 0
	for _, set := range []bool{cfg.Token != "", cfg.User != "" || cfg.Password != "", cfg.CredsFile != ""} {
		if set {
			kinds++
		}
	}
	if kinds > 1 {
		errs = append(errs, errors.New("give one of Token, User and Password, CredsFile"))
	}
	if cfg.Password != "" && cfg.User == "" {
		errs = append(errs, errors.New("Password without User")) //nolint:staticcheck // ST1005: starts with the name of the field, Password
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("natsmanager: %w", errors.Join(errs...))
	}
	if !cfg.AllowInsecure {
		if err := checkCredentials(&cfg); err != nil {
			return nil, err
		}
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	return &Manager{cfg: cfg, log: lg}, nil
}

// checkCredentials refuses URLs whose host is not loopback when nothing
// authenticates the connection. The extra Options are applied to a
// scratch nats.Options to see whether they set a credential.
func checkCredentials(cfg *Config) error {
	var open []string
	inURL := false
	for _, u := range cfg.URLs {
		host, user := urlHost(u)
		if user {
			inURL = true
		}
		if !isLoopbackHost(host) {
			open = append(open, u)
		}
	}
	if len(open) == 0 || inURL || cfg.Token != "" || cfg.User != "" || cfg.CredsFile != "" || hasClientCert(cfg.TLS) {
		return nil
	}
	o := nats.GetDefaultOptions()
	for _, opt := range cfg.Options {
		if err := opt(&o); err != nil {
			return fmt.Errorf("natsmanager: bad Options: %w", err)
		}
	}
	if o.Token != "" || o.TokenHandler != nil || o.User != "" || o.UserInfo != nil || o.UserJWT != nil || o.Nkey != "" ||
		o.TLSCertCB != nil || hasClientCert(o.TLSConfig) {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInsecureURL, strings.Join(open, ", "))
}

func hasClientCert(c *tls.Config) bool {
	return c != nil && (len(c.Certificates) > 0 || c.GetClientCertificate != nil)
}

// urlHost returns the host of a NATS URL (nats://, tls://, ws://, or a
// bare host:port) and whether the URL carries a user or token.
func urlHost(s string) (host string, user bool) {
	if !strings.Contains(s, "://") {
		s = "nats://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", false
	}
	return u.Hostname(), u.User != nil && u.User.String() != ""
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Subject is the NATS subject of topic.
func (m *Manager) Subject(topic string) string {
	return topicSubject(m.cfg.SubjectPrefix, topic)
}

func topicSubject(prefix, topic string) string {
	return appendSubject(prefix, topic, false)
}

// interestSubject is the subject a node subscribes to for its interest in
// topic: topicSubject, but for a wildcard pattern (firetower.WithWildcards)
// a "*" segment becomes NATS's "*" and a last "**" NATS's ">", so NATS
// itself routes by pattern.
func interestSubject(prefix, topic string) string {
	return appendSubject(prefix, topic, isPattern(topic))
}

// isPattern reports whether interest in topic is interest in a wildcard
// pattern (system topics never are).
func isPattern(topic string) bool {
	return !firetower.IsSystemTopic(topic) && topicpattern.IsPattern(topic) && topicpattern.Check(topic) == nil
}

// appendSubject encodes topic segment by segment: one token per "/"
// segment, "_" then the segment in base64url (so no token is empty, none
// is a wildcard, and none holds a separator); with pattern, "*" and "**"
// segments become NATS wildcards.
func appendSubject(prefix, topic string, pattern bool) string {
	var b strings.Builder
	b.Grow(len(prefix) + 2 + base64.RawURLEncoding.EncodedLen(len(topic)) + 2*strings.Count(topic, "/") + 1)
	b.WriteString(prefix)
	b.WriteString("t")
	for rest := topic; ; {
		seg, after, more := strings.Cut(rest, "/")
		b.WriteByte('.')
		switch {
		case pattern && seg == "*":
			b.WriteByte('*')
		case pattern && seg == "**":
			b.WriteByte('>')
		default:
			b.WriteByte('_')
			b.WriteString(base64.RawURLEncoding.EncodeToString([]byte(seg)))
		}
		if !more {
			return b.String()
		}
		rest = after
	}
}

// subjectTopic is the inverse of topicSubject (and of interestSubject:
// "*" and ">" tokens decode to "*" and "**").
func subjectTopic(prefix, subject string) (string, bool) {
	toks, ok := strings.CutPrefix(subject, prefix+"t.")
	if !ok || toks == "" {
		return "", false
	}
	var b strings.Builder
	for i, tok := range strings.Split(toks, ".") {
		if i > 0 {
			b.WriteByte('/')
		}
		switch {
		case tok == "*":
			b.WriteByte('*')
		case tok == ">":
			b.WriteString("**")
		case strings.HasPrefix(tok, "_"):
			seg, err := base64.RawURLEncoding.DecodeString(tok[1:])
			if err != nil {
				return "", false
			}
			b.Write(seg)
		default:
			return "", false
		}
	}
	if b.Len() == 0 {
		return "", false
	}
	return b.String(), true
}

// Stats are a Manager's counters.
type Stats struct {
	Connected       bool   // connected to a NATS server now
	Reconnects      uint64 // successful reconnections
	Published       uint64 // publishes handed to NATS
	PublishFailed   uint64 // publishes refused (closed, reconnect buffer full)
	Delivered       uint64 // messages handed to the Tower
	Dropped         uint64 // messages dropped because the delivery queue was full
	ReportsSent     uint64 // report messages published
	ReportsReceived uint64 // report messages received from other nodes
	BadReports      uint64 // report messages that could not be decoded
	Peers           int    // other nodes whose reports are current
	HistoryDups     uint64 // history messages received twice (at or below an offset delivered), dropped
}

// Stats returns the counters (zero before Join).
func (m *Manager) Stats() Stats {
	l := m.link.Load()
	if l == nil {
		return Stats{}
	}
	s := Stats{
		Connected:       l.nc.IsConnected(),
		Reconnects:      l.reconnects.Load(),
		Published:       l.published.Load(),
		PublishFailed:   l.publishFailed.Load(),
		Delivered:       l.delivered.Load(),
		ReportsSent:     l.reportsSent.Load(),
		ReportsReceived: l.reportsRecv.Load(),
		BadReports:      l.badReports.Load(),
	}
	l.h.hmu.Lock()
	s.HistoryDups = l.h.dups
	s.Dropped += l.h.held
	l.h.hmu.Unlock()
	l.applyMu.Lock()
	s.Dropped += l.droppedGone
	for _, sub := range l.subs {
		if n, err := sub.Dropped(); err == nil {
			s.Dropped += uint64(n) //nolint:gosec // G115: a count of dropped messages, never negative
		}
	}
	l.applyMu.Unlock()
	now := time.Now()
	l.pmu.Lock()
	for _, p := range l.peers {
		if p.live(now) {
			s.Peers++
		}
	}
	l.pmu.Unlock()
	return s
}

// Join implements firetower.Manager: it connects to NATS, subscribes to the
// reports and to the node's current topics, announces the node and starts
// the goroutines that deliver and report, which Link.Close stops.
func (m *Manager) Join(ctx context.Context, n firetower.Node) (firetower.Link, error) {
	if !m.joined.CompareAndSwap(false, true) {
		return nil, errJoined
	}
	cfg := &m.cfg
	l := &link{
		m:          m,
		node:       n,
		boot:       rand.Uint64(), //nolint:gosec // G404: boot tells one run from the next; not a secret
		local:      make(map[string]int64),
		dirtySubs:  make(map[string]struct{}),
		delta:      make(map[string]int64),
		subs:       make(map[string]*nats.Subscription),
		peers:      make(map[uint16]*peer),
		msgs:       make(chan *nats.Msg, cfg.PendingMsgs),
		reps:       make(chan *nats.Msg, 4096),
		kick:       make(chan struct{}, 1),
		stop:       make(chan struct{}),
		closed:     make(chan struct{}),
		repSubj:    cfg.SubjectPrefix + "r",
		recovering: make(map[string]int),
	}
	l.h.streams = make(map[string]*topicStream)
	l.h.holds = make(map[string]*natsHold)
	l.h.seen = make(map[string]uint64)
	l.h.hist = make(map[string]bool)
	l.h.subd = make(map[string]bool)
	var closedOnce sync.Once
	opts := []nats.Option{
		nats.Name(fmt.Sprintf("firetower node %d", n.NodeID())),
		nats.NoEcho(),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(cfg.ReconnectWait),
		nats.ReconnectJitter(cfg.ReconnectWait, cfg.ReconnectWait),
		nats.Timeout(cfg.DialTimeout),
		nats.FlusherTimeout(cfg.WriteTimeout),
	}
	switch {
	case cfg.Token != "":
		opts = append(opts, nats.Token(cfg.Token))
	case cfg.User != "":
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	case cfg.CredsFile != "":
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.TLS != nil {
		opts = append(opts, nats.Secure(cfg.TLS))
	}
	opts = append(opts, cfg.Options...)
	opts = append(opts,
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			m.log.Warn("natsmanager: disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			l.reconnects.Add(1)
			m.log.Info("natsmanager: reconnected", "url", c.ConnectedUrlRedacted())
			l.wantFull.Store(true) // others may have expired us meanwhile
			l.wantAsk.Store(true)  // and we missed their reports
			l.poke()
		}),
		nats.ClosedHandler(func(*nats.Conn) { closedOnce.Do(func() { close(l.closed) }) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				m.log.Warn("natsmanager: subscription error", "subject", sub.Subject, "err", err)
			} else {
				m.log.Warn("natsmanager: error", "err", err)
			}
		}),
	)
	nc, err := nats.Connect(strings.Join(cfg.URLs, ","), opts...)
	if err != nil {
		m.joined.Store(false)
		return nil, fmt.Errorf("natsmanager: connecting to %v: %w", cfg.URLs, err)
	}
	l.nc = nc
	if l.h.js, err = jetstream.New(nc); err != nil {
		nc.Close()
		m.joined.Store(false)
		return nil, fmt.Errorf("natsmanager: JetStream: %w", err)
	}
	if _, err := nc.ChanSubscribe(l.repSubj, l.reps); err != nil {
		nc.Close()
		m.joined.Store(false)
		return nil, fmt.Errorf("natsmanager: subscribing to reports: %w", err)
	}
	for t, c := range n.Interest() {
		if c > 0 {
			l.local[t] = c
			l.dirtySubs[t] = struct{}{}
		}
	}
	l.apply()
	l.wantAsk.Store(true)
	l.sendReport(true)
	fctx, cancel := context.WithTimeout(ctx, cfg.FlushTimeout)
	if err := nc.FlushWithContext(fctx); err != nil {
		m.log.Warn("natsmanager: first flush", "err", err)
	}
	cancel()
	m.link.Store(l)
	m.log.Info("natsmanager: connected", "url", nc.ConnectedUrlRedacted(), "node", n.NodeID())
	l.wg.Add(2)
	go l.deliverLoop()
	go l.controlLoop()
	return l, nil
}

// link is the attachment of one Tower.
type link struct {
	m       *Manager
	node    firetower.Node
	nc      *nats.Conn
	boot    uint64
	repSubj string

	mu        sync.Mutex
	local     map[string]int64    // current local counts (> 0)
	pats      topicpattern.Trie   // the wildcard patterns among local (see link.first)
	dirtySubs map[string]struct{} // topics whose subscription may have to change
	delta     map[string]int64    // changes not yet reported (absolute counts)
	// recovering: history topics subscribed for a recovery (history.go)
	recovering map[string]int

	h natsHistory // history.go

	applyMu     sync.Mutex
	subs        map[string]*nats.Subscription
	droppedGone uint64 // Dropped of unsubscribed subscriptions

	reportGen uint64 // only the control loop (and Join, before it) touch it
	wantFull  atomic.Bool
	wantAsk   atomic.Bool

	pmu    sync.Mutex
	peers  map[uint16]*peer
	dupLog time.Time

	msgs   chan *nats.Msg
	reps   chan *nats.Msg
	kick   chan struct{}
	stop   chan struct{}
	closed chan struct{} // closed by nats.go's closed handler
	once   sync.Once
	wg     sync.WaitGroup

	reconnects, published, publishFailed, delivered atomic.Uint64
	reportsSent, reportsRecv, badReports            atomic.Uint64
}

// peer is what a node knows of another node.
type peer struct {
	boot    uint64
	seen    time.Time
	ttl     time.Duration
	counts  map[string]int64
	gen     uint64           // generation of the full report being assembled
	pending map[string]int64 // its chunks so far
	parts   uint32
}

func (p *peer) live(now time.Time) bool { return now.Sub(p.seen) <= p.ttl }

// Report kinds.
const (
	kindFull  = 1
	kindDelta = 2
	kindBye   = 3
)

// report is one message on the reports subject. A full report may span
// several messages (Part of Parts, same Gen); it replaces the sender's
// previous report once every part has arrived. A delta carries absolute
// counts (0: no more interest) and applies at once.
type report struct {
	_msgpack struct{} `msgpack:",as_array"` //nolint:unused // read through its tag: msgpack encodes the struct as an array
	Kind     uint8
	Node     uint16
	Boot     uint64
	TTL      int64 // ms: how long to keep counting this report
	Ask      bool  // receivers send their full report soon
	Gen      uint64
	Part     uint32
	Parts    uint32
	Counts   map[string]int64
}

func (l *link) poke() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// SetInterest implements firetower.Link. It records the count; the
// subscription changes on the control goroutine (or in Flush).
func (l *link) SetInterest(topic string, count int64) {
	l.mu.Lock()
	pattern := isPattern(topic)
	if count > 0 {
		l.local[topic] = count
		if pattern {
			l.pats.Add(topic)
		}
	} else {
		delete(l.local, topic)
		if pattern {
			l.pats.Remove(topic)
		}
		count = 0
	}
	l.dirtySubs[topic] = struct{}{}
	l.delta[topic] = count
	l.mu.Unlock()
	l.poke()
}

// apply subscribes and unsubscribes as the local counts require.
func (l *link) apply() {
	l.applyMu.Lock()
	defer l.applyMu.Unlock()
	l.mu.Lock()
	if len(l.dirtySubs) == 0 {
		l.mu.Unlock()
		return
	}
	want := make(map[string]bool, len(l.dirtySubs))
	for t := range l.dirtySubs {
		want[t] = l.local[t] > 0 || l.recovering[t] > 0
	}
	clear(l.dirtySubs)
	l.mu.Unlock()
	var retry []string
	for t, on := range want {
		sub := l.subs[t]
		switch {
		case on && sub == nil:
			subj := interestSubject(l.m.cfg.SubjectPrefix, t)
			if l.isHistory(t) { // history.go
				subj = republishSubject(l.m.cfg.SubjectPrefix, t)
				l.subscribed(t)
			}
			s, err := l.nc.ChanSubscribe(subj, l.msgs)
			if err != nil {
				l.unsubscribed(t)
				if !l.nc.IsClosed() {
					l.m.log.Warn("natsmanager: subscribe", "topic", t, "err", err)
					retry = append(retry, t)
				}
				continue
			}
			l.subs[t] = s
		case !on && sub != nil:
			if n, err := sub.Dropped(); err == nil {
				l.droppedGone += uint64(n) //nolint:gosec // G115: a count of dropped messages, never negative
			}
			if err := sub.Unsubscribe(); err != nil && !l.nc.IsClosed() {
				l.m.log.Warn("natsmanager: unsubscribe", "topic", t, "err", err)
			}
			delete(l.subs, t)
			l.unsubscribed(t)
		}
	}
	if len(retry) > 0 { // the control loop retries at its next tick
		l.mu.Lock()
		for _, t := range retry {
			l.dirtySubs[t] = struct{}{}
		}
		l.mu.Unlock()
	}
}

// Flush implements firetower.Link: the subscriptions are made and a round
// trip to the server confirms it has them (so it routes publishes made
// from now on; other servers of a NATS cluster learn of them
// asynchronously). Counts follow within Config.Coalesce.
func (l *link) Flush(ctx context.Context) error {
	l.apply()
	if !l.nc.IsConnected() {
		return ErrNotConnected
	}
	ctx, cancel := context.WithTimeout(ctx, l.m.cfg.FlushTimeout)
	defer cancel()
	if err := l.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("natsmanager: flush: %w", err)
	}
	return nil
}

// Publish implements firetower.Link.
func (l *link) Publish(_ context.Context, topic string, data []byte) error {
	if err := l.nc.Publish(topicSubject(l.m.cfg.SubjectPrefix, topic), data); err != nil {
		l.publishFailed.Add(1)
		return fmt.Errorf("natsmanager: publish: %w", err)
	}
	l.published.Add(1)
	return nil
}

// Count implements firetower.Link: the local count plus the current
// reports of the other nodes (see the package doc for their staleness).
func (l *link) Count(_ context.Context, topic string) (int64, error) {
	if l.nc.IsClosed() {
		return 0, firetower.ErrClosed
	}
	if !l.nc.IsConnected() {
		return 0, ErrNotConnected
	}
	l.mu.Lock()
	n := l.local[topic]
	l.mu.Unlock()
	now := time.Now()
	l.pmu.Lock()
	for _, p := range l.peers {
		if p.live(now) {
			n += p.counts[topic]
		}
	}
	l.pmu.Unlock()
	return n, nil
}

// Close implements firetower.Link: it stops the goroutines, says goodbye
// to the other nodes and closes the connection.
func (l *link) Close() error {
	l.once.Do(func() {
		close(l.stop)
		l.wg.Wait()
		if l.nc.IsConnected() {
			l.publishReport(&report{Kind: kindBye}, nil)
		}
		l.nc.Close() // flushes what is buffered
		select {     // nats.go's callback goroutine ends after the closed handler
		case <-l.closed:
		case <-time.After(time.Second):
		}
	})
	return nil
}

// deliverLoop hands received publishes to the Tower, in arrival order.
func (l *link) deliverLoop() {
	defer l.wg.Done()
	prefix := l.m.cfg.SubjectPrefix
	for {
		select {
		case <-l.stop:
			return
		case msg := <-l.msgs:
			if topic, ok := subjectTopic(prefix, msg.Subject); ok && l.first(prefix, topic, msg) {
				l.delivered.Add(1)
				l.node.Deliver(topic, msg.Data)
			} else if topic, ok := republishTopic(prefix, msg.Subject); ok {
				l.deliverHistory(topic, msg) // history.go
			}
		}
	}
}

// first reports whether msg, a publish on topic, arrived through the one
// subscription of the link that delivers it: NATS sends a message once
// per matching subscription, and with wildcard patterns a node may have
// several (the topic's own and patterns, or overlapping patterns), while
// the Tower delivers one publish to all its matching subscribers at once.
// That one is the topic's own subscription when the node has interest in
// the topic, else the smallest matching pattern. (While interest in a
// topic or pattern changes, a message in flight may be delivered through
// the subscription that stopped being that one and again through the new
// one, or through neither.)
func (l *link) first(prefix, topic string, msg *nats.Msg) bool {
	if msg.Sub == nil {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pats.Len() == 0 {
		return true // no patterns: one subscription per topic
	}
	via, ok := subjectTopic(prefix, msg.Sub.Subject)
	if !ok {
		return false
	}
	if l.local[topic] > 0 {
		return via == topic
	}
	best := ""
	l.pats.Match(topic, func(p string) {
		if best == "" || p < best {
			best = p
		}
	})
	return via == best
}

// controlLoop makes the subscriptions, sends and receives reports and
// expires the reports of nodes gone silent.
func (l *link) controlLoop() {
	defer l.wg.Done()
	cfg := &l.m.cfg
	tick := time.NewTicker(cfg.ReportInterval)
	defer tick.Stop()
	coalesce := time.NewTimer(time.Hour)
	coalesce.Stop()
	defer coalesce.Stop()
	armed := false
	arm := func() {
		if !armed {
			armed = true
			coalesce.Reset(cfg.Coalesce)
		}
	}
	for {
		select {
		case <-l.stop:
			return
		case <-l.kick:
			l.apply()
			arm()
		case msg := <-l.reps:
			if l.receive(msg.Data, time.Now()) {
				arm()
			}
		case <-coalesce.C:
			armed = false
			l.sendReport(l.wantFull.Swap(false))
		case <-tick.C:
			l.apply() // retries failed subscriptions
			l.wantFull.Store(false)
			l.sendReport(true)
			l.expire(time.Now())
		}
	}
}

// sendReport publishes the full interest or the changes since the last
// report. Reports are not sent while disconnected: the reconnect handler
// asks for a full one.
func (l *link) sendReport(full bool) {
	l.mu.Lock()
	var counts map[string]int64
	if full {
		counts = make(map[string]int64, len(l.local))
		for t, c := range l.local {
			counts[t] = c
		}
		clear(l.delta)
	} else {
		if len(l.delta) == 0 {
			l.mu.Unlock()
			return
		}
		counts = l.delta
		l.delta = make(map[string]int64)
	}
	l.mu.Unlock()
	if !l.nc.IsConnected() {
		l.wantFull.Store(true)
		return
	}
	r := &report{Kind: kindDelta}
	if full {
		l.reportGen++
		r.Kind, r.Gen = kindFull, l.reportGen
	}
	if !l.publishReport(r, counts) {
		l.wantFull.Store(true)
	}
}

// publishReport sends r with counts, in as many chunks as needed.
func (l *link) publishReport(r *report, counts map[string]int64) bool {
	r.Node, r.Boot = l.node.NodeID(), l.boot
	r.TTL = l.m.cfg.CountTTL.Milliseconds()
	r.Ask = l.wantAsk.Swap(false)
	limit := min(int64(reportChunk), l.nc.MaxPayload()/2)
	if limit < 1024 {
		limit = reportChunk
	}
	var chunks []map[string]int64
	cur, size := make(map[string]int64), int64(0)
	for t, c := range counts {
		if size > 0 && size+int64(len(t))+16 > limit {
			chunks = append(chunks, cur)
			cur, size = make(map[string]int64), 0
		}
		cur[t] = c
		size += int64(len(t)) + 16
	}
	chunks = append(chunks, cur)
	r.Parts = uint32(len(chunks)) //nolint:gosec // G115: a count of chunks held in memory, far below 1<<32
	for i, ch := range chunks {
		r.Part, r.Counts = uint32(i), ch
		b, err := msgpack.Marshal(r)
		if err == nil {
			err = l.nc.Publish(l.repSubj, b)
		}
		if err != nil {
			l.m.log.Debug("natsmanager: report not sent", "err", err)
			return false
		}
		l.reportsSent.Add(1)
	}
	return true
}

// decodeReport decodes a report from another node (or from anything that
// can publish on the report subject). Every declared length is checked
// against the message's size first, nothing is sized by a declared
// count, and every topic must be valid.
func decodeReport(data []byte, r *report) error {
	if err := mpcheck.Check(data); err != nil {
		return err
	}
	d := msgpack.NewDecoder(bytes.NewReader(data))
	n, err := d.DecodeArrayLen()
	if err != nil {
		return err
	}
	bounded := func(limit uint64) (uint64, error) {
		v, err := d.DecodeUint64()
		if err == nil && v > limit {
			err = fmt.Errorf("%d out of range", v)
		}
		return v, err
	}
	for i := range max(n, 0) {
		var v uint64
		switch i {
		case 0:
			v, err = bounded(0xff)
			r.Kind = uint8(v) //nolint:gosec // G115: bounded(0xff) checked v <= 0xff
		case 1:
			v, err = bounded(0xffff)
			r.Node = uint16(v) //nolint:gosec // G115: bounded(0xffff) checked v <= 0xffff
		case 2:
			r.Boot, err = d.DecodeUint64()
		case 3:
			r.TTL, err = d.DecodeInt64()
		case 4:
			r.Ask, err = d.DecodeBool()
		case 5:
			r.Gen, err = d.DecodeUint64()
		case 6:
			v, err = bounded(1<<32 - 1)
			r.Part = uint32(v) //nolint:gosec // G115: bounded(1<<32 - 1) checked v < 1<<32
		case 7:
			v, err = bounded(1<<32 - 1)
			r.Parts = uint32(v) //nolint:gosec // G115: bounded(1<<32 - 1) checked v < 1<<32
		case 8:
			r.Counts, err = decodeCounts(d)
		default:
			err = d.Skip()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func decodeCounts(d *msgpack.Decoder) (map[string]int64, error) {
	n, err := d.DecodeMapLen()
	if err != nil || n <= 0 {
		return nil, err
	}
	m := make(map[string]int64, min(n, 64))
	for range n {
		k, err := d.DecodeString()
		if err != nil {
			return nil, err
		}
		if err := firetower.ValidateTopic(k); err != nil {
			return nil, err
		}
		if m[k], err = d.DecodeInt64(); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// receive applies a report from another node. It returns true when a
// report of ours should be sent soon.
func (l *link) receive(data []byte, now time.Time) bool {
	var r report
	if err := decodeReport(data, &r); err != nil || r.Kind < kindFull || r.Kind > kindBye {
		l.badReports.Add(1)
		return false
	}
	l.reportsRecv.Add(1)
	l.pmu.Lock()
	defer l.pmu.Unlock()
	if r.Node == l.node.NodeID() {
		if r.Boot != l.boot && now.Sub(l.dupLog) > 10*time.Second {
			l.dupLog = now
			l.m.log.Error("natsmanager: another node uses this node's id; counts are wrong", "node", r.Node)
		}
		return false
	}
	p := l.peers[r.Node]
	if r.Kind == kindBye {
		if p != nil && p.boot == r.Boot {
			delete(l.peers, r.Node)
		}
		return false
	}
	if p == nil || p.boot != r.Boot {
		if p != nil {
			l.m.log.Info("natsmanager: node restarted", "node", r.Node)
		}
		p = &peer{boot: r.Boot, counts: make(map[string]int64)}
		l.peers[r.Node] = p
	}
	p.seen = now
	p.ttl = time.Duration(r.TTL) * time.Millisecond
	switch r.Kind {
	case kindFull:
		if p.pending == nil || p.gen != r.Gen {
			p.gen, p.pending, p.parts = r.Gen, make(map[string]int64, len(r.Counts)), 0
		}
		for t, c := range r.Counts {
			if c > 0 {
				p.pending[t] = c
			}
		}
		p.parts++
		if p.parts >= r.Parts {
			p.counts, p.pending = p.pending, nil
		}
	case kindDelta:
		for t, c := range r.Counts {
			if c > 0 {
				p.counts[t] = c
			} else {
				delete(p.counts, t)
			}
		}
	}
	if r.Ask {
		l.wantFull.Store(true)
		return true
	}
	return false
}

// expire forgets the nodes whose last report is older than their TTL.
func (l *link) expire(now time.Time) {
	l.pmu.Lock()
	defer l.pmu.Unlock()
	for id, p := range l.peers {
		if !p.live(now) {
			l.m.log.Info("natsmanager: node expired", "node", id)
			delete(l.peers, id)
		}
	}
}
