package manager

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/firetower-go/firetower"
)

// ClientConfig configures the gateway side. Zero values get the defaults
// noted.
type ClientConfig struct {
	// Addrs are the manager nodes. The gateway keeps every one of them in
	// sync and publishes through one healthy one.
	Addrs []string
	// PingInterval is how often each manager is pinged. The connection is
	// dropped and redialled when nothing arrives for 3 intervals. Default 1s.
	PingInterval time.Duration
	// MinBackoff and MaxBackoff bound the redial delay, which doubles from
	// MinBackoff with ±25% jitter after every attempt that did not end in
	// a session (a failed dial, a refused HELLO or authentication), and
	// starts again from MinBackoff once the manager has welcomed the
	// gateway. Defaults 50ms and 500ms, so a manager that comes back is
	// rejoined within about half a second.
	MinBackoff, MaxBackoff time.Duration
	// RequestTimeout bounds COUNT and flush round trips. Default 2s.
	RequestTimeout time.Duration
	// QueueBytes bounds the publishes waiting to be written to one manager;
	// past it Publish fails. Default 16 MiB.
	QueueBytes int
	MaxFrame   int // default DefaultMaxFrame

	// Secret is the cluster's shared secret: the gateway proves it to every
	// manager and joins only a manager that proves it in return (see
	// ServerConfig.Secret). NewClient refuses a manager address that is
	// not loopback when there is no Secret, unless TLS carries a client
	// certificate and verifies the manager's, or AllowInsecure is set.
	Secret []byte
	// TLS, when set, dials the managers over TLS with a copy of this
	// configuration (ServerName defaults to each address's host). Set
	// Certificates for mutual TLS and RootCAs for a private CA.
	TLS *tls.Config
	// AllowInsecure accepts manager addresses that are not loopback with
	// no Secret: the gateway then joins whatever answers at the address.
	AllowInsecure bool

	Logger *slog.Logger
}

// ClientStats are a gateway's counters for its managers.
type ClientStats struct {
	Connected     int    // managers connected now
	Dials         uint64 // connection attempts
	Published     uint64 // PUBs queued
	PublishFailed uint64 // publishes refused (no manager, queue full)
	Lost          uint64 // PUBs queued but lost with a dropped connection
	Delivered     uint64 // DELIVERs received
	GoAways       uint64
	Refused       uint64 // sessions that did not open: refused by the manager, or a manager that failed to authenticate
	HoldDropped   uint64 // deliveries dropped while a recovery held its topic past its bound (client_history.go)
}

// Client is a firetower.Manager backed by topic-manager nodes.
type Client struct {
	cfg ClientConfig
	log *slog.Logger

	joined                                                             atomic.Bool
	dials, published, publishFailed, lost, delivered, goAways, refused atomic.Uint64
	holdDropped                                                        atomic.Uint64
	peers                                                              []*peer
}

// NewClient returns a Manager that connects to the manager nodes at
// cfg.Addrs when a Tower joins it. It returns an error wrapping
// ErrInsecureAddr when an address is not loopback and nothing
// authenticates the managers (see ClientConfig.Secret).
func NewClient(cfg ClientConfig) (*Client, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("manager: no manager address")
	}
	mtls := cfg.TLS != nil && !cfg.TLS.InsecureSkipVerify && (len(cfg.TLS.Certificates) > 0 || cfg.TLS.GetClientCertificate != nil)
	if len(cfg.Secret) == 0 && !mtls && !cfg.AllowInsecure {
		if err := insecureAddrs(cfg.Addrs...); err != nil {
			return nil, err
		}
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 50 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(500*time.Millisecond, cfg.MinBackoff)
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 2 * time.Second
	}
	if cfg.QueueBytes <= 0 {
		cfg.QueueBytes = 16 << 20
	}
	if cfg.MaxFrame <= 0 {
		cfg.MaxFrame = DefaultMaxFrame
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	return &Client{cfg: cfg, log: lg}, nil
}

// Stats returns the client's counters.
func (c *Client) Stats() ClientStats {
	n := 0
	for _, p := range c.peers {
		if p.isUp() {
			n++
		}
	}
	return ClientStats{
		Connected: n, Dials: c.dials.Load(), Published: c.published.Load(), PublishFailed: c.publishFailed.Load(),
		Lost: c.lost.Load(), Delivered: c.delivered.Load(), GoAways: c.goAways.Load(), Refused: c.refused.Load(),
		HoldDropped: c.holdDropped.Load(),
	}
}

// Join implements firetower.Manager: it starts one connection per manager
// (redialling forever, until the Link is closed) and waits until each
// manager was tried once: connected and synced, or its first dial failed.
// So a gateway starts even while every manager is down, and one that
// starts while they are up is in sync when Start returns.
func (c *Client) Join(ctx context.Context, n firetower.Node) (firetower.Link, error) {
	if !c.joined.CompareAndSwap(false, true) {
		return nil, errors.New("manager: a Client serves one Tower; make one per Tower")
	}
	l := &link{c: c, node: n, stop: make(chan struct{})}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.boot = strconv.FormatUint(rand.Uint64(), 36) //nolint:gosec // G404: boot tells one run of the client from the next; the handshake nonces come from crypto/rand
	for _, a := range c.cfg.Addrs {
		p := &peer{l: l, addr: a, dirty: make(map[string]int64), pending: make(map[uint64]chan *Msg), tried: make(chan struct{})}
		p.cond.L = &p.mu
		l.peers = append(l.peers, p)
	}
	c.peers = l.peers
	for _, p := range l.peers {
		l.wg.Add(1)
		go p.run()
	}
	for _, p := range l.peers {
		select {
		case <-p.tried:
		case <-ctx.Done():
			return l, nil // still joining in the background
		}
	}
	return l, nil
}

// ErrNoManager is returned when no manager node is reachable.
var ErrNoManager = errors.New("manager: no manager node reachable")

type link struct {
	c      *Client
	node   firetower.Node
	boot   string
	peers  []*peer
	stop   chan struct{}
	ctx    context.Context // ends with stop: bounds dials and TLS handshakes
	cancel context.CancelFunc
	once   sync.Once
	wg     sync.WaitGroup
	seq    atomic.Uint64
	hist   linkHistory // client_history.go
}

func (l *link) SetInterest(topic string, count int64) {
	for _, p := range l.peers {
		p.mu.Lock()
		p.dirty[topic] = count
		p.mu.Unlock()
		p.cond.Signal()
	}
}

// healthy returns the first connected peer, in configuration order, so
// every gateway prefers the same manager while it is up.
func (l *link) healthy() *peer {
	for _, p := range l.peers {
		if p.isUp() {
			return p
		}
	}
	return nil
}

func (l *link) Publish(_ context.Context, topic string, data []byte) error {
	f, err := AppendFrame(nil, &Msg{Type: MsgPub, Topic: topic, Data: data})
	if err != nil {
		return err
	}
	for _, p := range l.peers {
		if p.isUp() && p.enqueue(f) {
			l.c.published.Add(1)
			return nil
		}
	}
	l.c.publishFailed.Add(1)
	return ErrNoManager
}

// request sends m (with a fresh Seq) to p and waits for the reply.
func (l *link) request(ctx context.Context, p *peer, m *Msg) (*Msg, error) {
	m.Seq = l.seq.Add(1)
	return l.requestSeq(ctx, p, m)
}

// requestSeq is request with m.Seq already set.
func (l *link) requestSeq(ctx context.Context, p *peer, m *Msg) (*Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, l.c.cfg.RequestTimeout)
	defer cancel()
	ch := make(chan *Msg, 1)
	p.mu.Lock()
	if !p.up {
		p.mu.Unlock()
		return nil, ErrNoManager
	}
	p.pending[m.Seq] = ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.pending, m.Seq)
		p.mu.Unlock()
	}()
	f, err := AppendFrame(nil, m)
	if err != nil {
		return nil, err
	}
	p.enqueueControl(f)
	select {
	case r := <-ch:
		if r == nil {
			return nil, fmt.Errorf("manager %s: connection lost", p.addr)
		}
		return r, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("manager %s: %w", p.addr, ctx.Err())
	case <-l.stop:
		return nil, firetower.ErrClosed
	}
}

func (l *link) Count(ctx context.Context, topic string) (int64, error) {
	last := ErrNoManager
	for _, p := range l.peers {
		if !p.isUp() {
			continue
		}
		r, err := l.request(ctx, p, &Msg{Type: MsgCount, Topic: topic})
		if err == nil {
			return r.Count, nil
		}
		last = err
	}
	return 0, last
}

// Flush waits until every connected manager has applied the interest sent
// so far: a PING is queued behind the pending SUBs and its PONG confirms them.
func (l *link) Flush(ctx context.Context) error {
	var errs []error
	any := false
	for _, p := range l.peers {
		if !p.isUp() {
			continue
		}
		any = true
		if _, err := l.request(ctx, p, &Msg{Type: MsgPing}); err != nil {
			errs = append(errs, err)
		}
	}
	if !any {
		return ErrNoManager
	}
	return errors.Join(errs...)
}

func (l *link) Close() error {
	l.once.Do(func() {
		close(l.stop)
		l.cancel()
		for _, p := range l.peers {
			p.mu.Lock()
			if p.conn != nil {
				_ = p.conn.Close()
			}
			p.mu.Unlock()
			p.cond.Broadcast()
		}
	})
	l.wg.Wait()
	return nil
}

// peer is the connection to one manager node.
type peer struct {
	l    *link
	addr string

	mu      sync.Mutex
	cond    sync.Cond
	conn    net.Conn
	up      bool
	dirty   map[string]int64 // SUBs not yet written (latest absolute count)
	out     [][]byte         // PUBs and requests not yet written
	bytes   int
	pubs    int           // PUBs in out
	tried   chan struct{} // closed after the first connection attempt
	once    sync.Once
	pending map[uint64]chan *Msg
}

func (p *peer) isUp() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.up
}

func (p *peer) enqueue(f []byte) bool {
	p.mu.Lock()
	if !p.up || p.bytes+len(f) > p.l.c.cfg.QueueBytes {
		p.mu.Unlock()
		return false
	}
	p.out = append(p.out, f)
	p.bytes += len(f)
	p.pubs++
	p.mu.Unlock()
	p.cond.Signal()
	return true
}

func (p *peer) enqueueControl(f []byte) {
	p.mu.Lock()
	p.out = append(p.out, f)
	p.bytes += len(f)
	p.mu.Unlock()
	p.cond.Signal()
}

func (p *peer) stopped() bool {
	select {
	case <-p.l.stop:
		return true
	default:
		return false
	}
}

// run dials, serves and redials until the link is closed.
func (p *peer) run() {
	defer p.l.wg.Done()
	cfg := &p.l.c.cfg
	backoff := cfg.MinBackoff
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for !p.stopped() {
		p.l.c.dials.Add(1)
		conn, err := p.dial()
		if err == nil {
			// The delay starts over only after a session: a manager that
			// accepts connections and refuses the gateway is redialled
			// ever more slowly, like one that is down.
			if p.serve(conn) {
				backoff = cfg.MinBackoff
			}
		} else {
			p.l.c.log.Debug("manager: dial failed", "addr", p.addr, "err", err)
		}
		p.once.Do(func() { close(p.tried) })
		if p.stopped() {
			return
		}
		jitter := time.Duration(float64(backoff) * (0.75 + 0.5*rand.Float64())) //nolint:gosec // G404: reconnect jitter, not a secret
		timer.Reset(jitter)
		select {
		case <-timer.C:
		case <-p.l.stop:
			return
		}
		backoff = min(2*backoff, cfg.MaxBackoff)
	}
}

// dial connects to the manager, over TLS when configured.
func (p *peer) dial() (net.Conn, error) {
	l := p.l
	ctx, cancel := context.WithTimeout(l.ctx, 2*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil || l.c.cfg.TLS == nil {
		return conn, err
	}
	tc := tls.Client(conn, clientTLSFor(l.c.cfg.TLS, p.addr))
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("manager %s: TLS: %w", p.addr, err)
	}
	return tc, nil
}

// errRefused marks a session that did not open for a reason a redial
// will not fix at once (refused, or the manager failed to authenticate).
var errRefused = errors.New("refused")

// syncFrame appends the SYNC of the node's whole interest. The dirty set
// is cleared before the snapshot is taken: a change made after the
// snapshot is marked again and sent after the SYNC (counts are absolute,
// so sending one twice is harmless).
func (p *peer) syncFrame(dst []byte) ([]byte, error) {
	p.mu.Lock()
	clear(p.dirty)
	p.mu.Unlock()
	interest := p.l.node.Interest()
	sync := &Msg{Type: MsgSync, Topics: make([]TopicCount, 0, len(interest))}
	for t, n := range interest {
		sync.Topics = append(sync.Topics, TopicCount{Topic: t, Count: n})
	}
	return AppendFrame(dst, sync)
}

// handshake opens a session: HELLO and SYNC, and with a secret the
// challenge in both directions between them (see auth.go), then WELCOME.
// The manager's frames are read with the small pre-session limit.
func (p *peer) handshake(conn net.Conn, r *bufio.Reader) error {
	l := p.l
	cfg := &l.c.cfg
	node := l.node.NodeID()
	write := func(b []byte) error {
		_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, err := conn.Write(b)
		return err
	}
	read := func() (*Msg, error) {
		_ = conn.SetReadDeadline(time.Now().Add(3 * cfg.PingInterval))
		pl, err := ReadFrame(r, PreAuthMaxFrame, nil)
		if err != nil {
			return nil, err
		}
		m, err := Decode(pl)
		if err != nil {
			return nil, err
		}
		if m.Type == MsgGoAway {
			l.c.goAways.Add(1)
			return nil, fmt.Errorf("%w by the manager: %s", errRefused, m.Text)
		}
		return m, nil
	}
	hello := &Msg{Type: MsgHello, Node: node, Text: l.boot}
	if len(cfg.Secret) == 0 {
		// No challenge: HELLO and SYNC go out together.
		b, _ := AppendFrame(nil, hello)
		b, err := p.syncFrame(b)
		if err != nil {
			return err
		}
		if err := write(b); err != nil {
			return err
		}
		m, err := read()
		switch {
		case err != nil:
			return err
		case m.Type == MsgChallenge:
			return fmt.Errorf("%w: the manager wants a cluster secret and this gateway has none", errRefused)
		case m.Type != MsgWelcome:
			return fmt.Errorf("no WELCOME (message type %d)", m.Type)
		}
		return nil
	}
	gatewayNonce := newNonce()
	hello.Data = gatewayNonce
	b, _ := AppendFrame(nil, hello)
	if err := write(b); err != nil {
		return err
	}
	m, err := read()
	if err != nil {
		return err
	}
	if m.Type != MsgChallenge || len(m.Data) != nonceLen+proofLen {
		return fmt.Errorf("%w: the manager did not prove the cluster secret (message type %d)", errRefused, m.Type)
	}
	managerNonce := m.Data[:nonceLen]
	if !hmac.Equal(m.Data[nonceLen:], proof(cfg.Secret, labelManager, gatewayNonce, managerNonce, node, l.boot)) {
		return fmt.Errorf("%w: the manager failed to prove the cluster secret", errRefused)
	}
	b, _ = AppendFrame(nil, &Msg{Type: MsgAuth, Data: proof(cfg.Secret, labelGateway, gatewayNonce, managerNonce, node, l.boot)})
	if b, err = p.syncFrame(b); err != nil {
		return err
	}
	if err := write(b); err != nil {
		return err
	}
	if m, err = read(); err != nil {
		return err
	}
	if m.Type != MsgWelcome {
		return fmt.Errorf("no WELCOME (message type %d)", m.Type)
	}
	return nil
}

// serve runs one connection: the handshake, then the writer here and a
// reader goroutine, until either fails. It reports whether a session was
// established.
func (p *peer) serve(conn net.Conn) bool {
	l := p.l
	p.mu.Lock()
	p.conn = conn
	p.mu.Unlock()
	r := bufio.NewReaderSize(conn, 64<<10)
	if err := p.handshake(conn, r); err != nil {
		if errors.Is(err, errRefused) {
			l.c.refused.Add(1)
			l.c.log.Warn("manager: no session", "addr", p.addr, "err", err)
		} else {
			l.c.log.Debug("manager: handshake failed", "addr", p.addr, "err", err)
		}
		p.mu.Lock()
		p.conn = nil
		p.mu.Unlock()
		_ = conn.Close()
		return false
	}
	p.mu.Lock()
	p.up = true
	p.mu.Unlock()
	p.once.Do(func() { close(p.tried) })
	l.c.log.Info("manager: connected", "addr", p.addr)

	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		p.readLoop(conn, r)
	}()
	p.writeLoop(conn)
	_ = conn.Close()
	<-readDone

	p.mu.Lock()
	p.up = false
	p.conn = nil
	lost := p.pubs
	p.out, p.bytes, p.pubs = nil, 0, 0
	for seq, ch := range p.pending {
		ch <- nil
		delete(p.pending, seq)
	}
	p.mu.Unlock()
	l.c.lost.Add(uint64(lost)) //nolint:gosec // G115: lost is a count, never negative
	l.c.log.Warn("manager: disconnected", "addr", p.addr)
	return true
}

func (p *peer) readLoop(conn net.Conn, r *bufio.Reader) {
	l := p.l
	cfg := &l.c.cfg
	defer p.cond.Broadcast() // wake the writer to notice
	defer func() { p.mu.Lock(); p.up = false; p.mu.Unlock() }()
	for {
		_ = conn.SetReadDeadline(time.Now().Add(3 * cfg.PingInterval))
		pl, err := ReadFrame(r, cfg.MaxFrame, nil)
		if err != nil {
			return
		}
		m, err := Decode(pl)
		if err != nil {
			l.c.log.Warn("manager: bad frame from manager", "addr", p.addr, "err", err)
			return
		}
		switch m.Type {
		case MsgDeliver:
			l.c.delivered.Add(1)
			l.node.Deliver(m.Topic, m.Data)
		case MsgDeliverAt:
			l.onDeliverAt(p, m)
		case MsgCountReply, MsgPong, MsgAppendReply, MsgHistoryReply:
			switch m.Type {
			case MsgPong:
				l.onPong(p, m)
			case MsgHistoryReply:
				l.onHistoryReply(p, m)
			}
			p.mu.Lock()
			ch := p.pending[m.Seq]
			delete(p.pending, m.Seq)
			p.mu.Unlock()
			if ch != nil {
				ch <- m
			}
		case MsgPing:
			f, _ := AppendFrame(nil, &Msg{Type: MsgPong, Seq: m.Seq})
			p.enqueueControl(f)
		case MsgGoAway:
			l.c.goAways.Add(1)
			l.c.log.Warn("manager: GOAWAY", "addr", p.addr, "reason", m.Text)
			return
		}
	}
}

// writeLoop writes SUB updates, queued frames and pings until the
// connection fails or the link closes.
func (p *peer) writeLoop(conn net.Conn) {
	cfg := &p.l.c.cfg
	ping, _ := AppendFrame(nil, &Msg{Type: MsgPing})
	nextPing := time.Now().Add(cfg.PingInterval)
	wake := time.AfterFunc(cfg.PingInterval, func() { p.cond.Broadcast() })
	defer wake.Stop()
	var batch net.Buffers
	for {
		p.mu.Lock()
		for p.up && len(p.dirty) == 0 && len(p.out) == 0 && time.Now().Before(nextPing) && !p.stopped() {
			p.cond.Wait()
		}
		if !p.up || p.stopped() {
			p.mu.Unlock()
			return
		}
		batch = batch[:0]
		for t, n := range p.dirty {
			f, err := AppendFrame(nil, &Msg{Type: MsgSub, Topic: t, Count: n})
			if err == nil {
				batch = append(batch, f)
			}
		}
		clear(p.dirty)
		batch = append(batch, p.out...)
		p.out, p.bytes, p.pubs = nil, 0, 0
		p.mu.Unlock()
		if now := time.Now(); !now.Before(nextPing) {
			batch = append(batch, ping)
			nextPing = now.Add(cfg.PingInterval)
			wake.Reset(cfg.PingInterval)
		}
		_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := batch.WriteTo(conn); err != nil {
			return
		}
		// The manager took our bytes, so it is alive even if its PONG
		// waits behind a long backlog: liveness is any progress.
		_ = conn.SetReadDeadline(time.Now().Add(3 * cfg.PingInterval))
	}
}
