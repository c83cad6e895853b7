package manager

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/internal/topicpattern"
)

// ServerConfig configures a topic-manager node. Zero values get the
// defaults noted.
type ServerConfig struct {
	Addr string // listen address; default "127.0.0.1:6666"
	// HeartbeatTimeout drops a gateway that sent nothing (gateways ping
	// every second) for this long, and its counts with it. Default 5s.
	HeartbeatTimeout time.Duration
	// WriteTimeout drops a gateway that does not read what is sent to it.
	// Default 10s.
	WriteTimeout time.Duration
	// MaxFrame is the largest frame accepted. Default DefaultMaxFrame.
	MaxFrame int
	// QueueBytes bounds what waits to be written to one gateway. DELIVERs
	// past it are dropped (and counted); control messages are never dropped:
	// a session whose queue reaches twice the bound is reset, and the
	// gateway reconnects and resyncs. Default 64 MiB.
	QueueBytes int
	// MaxTopicsPerNode bounds the topics one gateway may have interest in
	// (its system topics included). A SYNC or SUB past it ends the session
	// with a GOAWAY. A topic costs the manager about 260 bytes per node
	// with a 32-byte name (measured), so the default allows about 256 MiB
	// per node. Default DefaultMaxTopicsPerNode (1,048,576).
	MaxTopicsPerNode int

	// History (history.go): HistoryMaxSize and HistoryMaxTTL cap the size
	// and TTL a gateway asks for a history topic's stream; HistoryMaxBytes
	// bounds what all streams hold together (past it, an append evicts
	// its own stream's oldest publications). Defaults 65,536, 24h and
	// 256 MiB.
	HistoryMaxSize  int
	HistoryMaxTTL   time.Duration
	HistoryMaxBytes int64

	// Secret is the cluster's shared secret. When set, a gateway joins only
	// after proving it knows the secret, and the manager proves it in
	// return (an HMAC challenge in each direction; the secret is never
	// sent). Use 32 random bytes. A manager whose Addr is not a loopback
	// address needs a Secret (NewServer refuses otherwise), unless TLS
	// requires client certificates or AllowInsecure is set.
	Secret []byte
	// TLS, when set, serves the manager port over TLS. For mutual TLS set
	// ClientAuth to tls.RequireAndVerifyClientCert and ClientCAs.
	TLS *tls.Config
	// AllowInsecure lets a manager listen on a non-loopback address with no
	// Secret and no mutual TLS: then any process that can reach the port
	// joins as a gateway, receives the traffic of every topic it asks for
	// and publishes to every subscriber. Only for networks where something
	// else keeps strangers out.
	AllowInsecure bool

	Logger *slog.Logger
}

// ServerStats are a manager node's counters.
type ServerStats struct {
	Nodes          int
	Topics         int    // topics with subscribers (system topics left out)
	Publishes      uint64 // PUBs received
	Deliveries     uint64 // DELIVERs queued
	DroppedDeliver uint64 // DELIVERs dropped for a gateway that was too slow
	Refused        uint64 // sessions refused (bad HELLO, failed authentication, duplicate node id)
	BadFrames      uint64 // sessions ended by a malformed frame
	Resets         uint64 // sessions reset (too slow, heartbeat timeout)
	HistoryStreams int64  // history topics with a stream (history.go)
	HistoryBytes   int64  // what the streams hold: data and bookkeeping
}

// Server is a topic-manager node.
type Server struct {
	cfg ServerConfig
	log *slog.Logger
	ln  net.Listener

	mu       sync.RWMutex
	sessions map[uint16]*session
	topics   map[string]map[uint16]int64
	ntopics  map[uint16]int        // node -> topics it has interest in
	conns    map[*session]struct{} // every live session, also before HELLO
	nholds   map[uint16]int        // node -> recoveries it holds (history.go)

	hist histStore // history.go
	// pats holds the topics with interest that are wildcard patterns
	// (firetower.WithWildcards): a publish goes to the nodes with interest
	// in its topic and in every pattern that matches it.
	pats topicpattern.Trie

	wg      sync.WaitGroup
	closing atomic.Bool

	publishes, deliveries, dropped, refused, badFrames, resets atomic.Uint64
}

// NewServer returns a manager node; Start binds it. It returns an error
// wrapping ErrInsecureAddr when cfg.Addr is not a loopback address and
// nothing authenticates the gateways (no Secret, no mutual TLS) unless
// cfg.AllowInsecure is set.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:6666"
	}
	mtls := cfg.TLS != nil && cfg.TLS.ClientAuth == tls.RequireAndVerifyClientCert
	if len(cfg.Secret) == 0 && !mtls && !cfg.AllowInsecure {
		if err := insecureAddrs(cfg.Addr); err != nil {
			return nil, err
		}
	}
	if cfg.MaxTopicsPerNode <= 0 {
		cfg.MaxTopicsPerNode = DefaultMaxTopicsPerNode
	}
	if cfg.HeartbeatTimeout <= 0 {
		cfg.HeartbeatTimeout = 5 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.MaxFrame <= 0 {
		cfg.MaxFrame = DefaultMaxFrame
	}
	if cfg.QueueBytes <= 0 {
		cfg.QueueBytes = 64 << 20
	}
	if cfg.HistoryMaxSize <= 0 {
		cfg.HistoryMaxSize = defaultHistoryMaxSize
	}
	if cfg.HistoryMaxTTL <= 0 {
		cfg.HistoryMaxTTL = defaultHistoryMaxTTL
	}
	if cfg.HistoryMaxBytes <= 0 {
		cfg.HistoryMaxBytes = defaultHistoryMaxBytes
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	return &Server{
		cfg:      cfg,
		log:      lg,
		sessions: make(map[uint16]*session),
		topics:   make(map[string]map[uint16]int64),
		ntopics:  make(map[uint16]int),
		conns:    make(map[*session]struct{}),
		nholds:   make(map[uint16]int),
	}, nil
}

// Start binds the listener and serves in the background.
func (s *Server) Start(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return err
	}
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.accept()
	return nil
}

// Addr is the bound address.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Shutdown stops accepting, sends GOAWAY to every gateway, closes them and
// waits for every goroutine of the server.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.ln == nil || !s.closing.CompareAndSwap(false, true) {
		return nil
	}
	_ = s.ln.Close()
	s.mu.Lock()
	all := make([]*session, 0, len(s.conns))
	for ss := range s.conns {
		all = append(all, ss)
	}
	s.mu.Unlock()
	for _, ss := range all {
		ss.goAway("manager shutting down")
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, ss := range all {
			_ = ss.conn.Close()
		}
		<-done
		return ctx.Err()
	}
}

// Stats returns the node's counters.
func (s *Server) Stats() ServerStats {
	s.mu.RLock()
	nodes, topics := len(s.sessions), 0
	for t := range s.topics {
		if !firetower.IsSystemTopic(t) {
			topics++
		}
	}
	s.mu.RUnlock()
	return ServerStats{
		Nodes: nodes, Topics: topics,
		Publishes: s.publishes.Load(), Deliveries: s.deliveries.Load(), DroppedDeliver: s.dropped.Load(),
		Refused: s.refused.Load(), BadFrames: s.badFrames.Load(), Resets: s.resets.Load(),
		HistoryStreams: s.hist.streams.Load(), HistoryBytes: s.hist.bytes.Load(),
	}
}

// Count is the cluster-wide subscriber count of topic.
func (s *Server) Count(topic string) int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var n int64
	for _, c := range s.topics[topic] {
		n += c
	}
	return n
}

// Topics returns every topic with its cluster-wide count (the nodes'
// system topics left out).
func (s *Server) Topics() map[string]int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]int64, len(s.topics))
	for t, per := range s.topics {
		if firetower.IsSystemTopic(t) {
			continue
		}
		for _, c := range per {
			out[t] += c
		}
	}
	return out
}

func (s *Server) accept() {
	defer s.wg.Done()
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors and the like: back off and go on.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("manager: accept", "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		ss := newSession(s, c)
		s.mu.Lock()
		if s.closing.Load() {
			s.mu.Unlock()
			_ = c.Close()
			continue
		}
		s.conns[ss] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(2)
		go ss.readLoop()
		go ss.writeLoop()
	}
}

// isPattern reports whether a topic with interest is a wildcard pattern
// the manager routes by (system topics never are).
func isPattern(topic string) bool {
	return !firetower.IsSystemTopic(topic) && topicpattern.IsPattern(topic) && topicpattern.Check(topic) == nil
}

// maxNodeCount bounds the count one node may report for a topic, so that
// the sum over every node (65,536 at most) cannot overflow.
const maxNodeCount = 1 << 40

// setLocked records node's absolute count for topic.
func (s *Server) setLocked(node uint16, topic string, count int64) {
	per := s.topics[topic]
	if count <= 0 {
		if per != nil {
			if _, ok := per[node]; ok {
				delete(per, node)
				if s.ntopics[node]--; s.ntopics[node] <= 0 {
					delete(s.ntopics, node)
				}
			}
			if len(per) == 0 {
				delete(s.topics, topic)
				if isPattern(topic) {
					s.pats.Remove(topic)
				}
			}
		}
		return
	}
	if per == nil {
		per = make(map[uint16]int64, 2)
		s.topics[topic] = per
		if isPattern(topic) {
			s.pats.Add(topic)
		}
	}
	if _, ok := per[node]; !ok {
		s.ntopics[node]++
	}
	per[node] = min(count, maxNodeCount)
}

// dropNodeLocked forgets every count of node.
func (s *Server) dropNodeLocked(node uint16) {
	if s.ntopics[node] == 0 {
		return
	}
	for topic, per := range s.topics {
		if _, ok := per[node]; ok {
			s.setLocked(node, topic, 0)
		}
	}
	delete(s.ntopics, node)
}

// Publish delivers data on topic to every gateway with interest in it (a
// publish from outside the cluster, e.g. the manager's HTTP push API). It
// returns how many gateways it was queued for. A topic whose history the
// manager keeps (a gateway made its stream: see history.go) gets the
// publish appended, with the bounds the gateways use, and delivered with
// its offset. An invalid topic is refused
// with a *firetower.Error of code invalid_topic, and a system topic (one
// starting with firetower.SystemTopicPrefix, which only the nodes
// themselves may use) with code forbidden.
func (s *Server) Publish(topic string, data []byte) (int, error) {
	if err := firetower.ValidateTopic(topic); err != nil {
		return 0, err
	}
	if firetower.IsSystemTopic(topic) {
		return 0, &firetower.Error{Code: firetower.CodeForbidden, Message: "topics starting with " + firetower.SystemTopicPrefix + " are reserved for the nodes of the cluster"}
	}
	if o, ok := s.streamOptions(topic); ok {
		_, n := s.appendHistory(nil, 0, topic, append([]byte(nil), data...), o)
		return n, nil
	}
	return s.routeFrom(nil, topic, data), nil
}

// route queues a DELIVER of a publish to every other node with interest.
func (s *Server) route(origin uint16, topic string, data []byte) {
	s.routeFrom(&origin, topic, data)
}

// routeFrom routes a publish to every node with interest but the origin
// (nil: no origin), and returns how many it was queued for.
func (s *Server) routeFrom(origin *uint16, topic string, data []byte) int {
	s.publishes.Add(1)
	s.mu.RLock()
	per := s.topics[topic]
	var targets []*session
	add := func(node uint16) {
		if origin == nil || node != *origin {
			if ss := s.sessions[node]; ss != nil && !slices.Contains(targets, ss) {
				targets = append(targets, ss)
			}
		}
	}
	for node := range per {
		add(node)
	}
	if s.pats.Len() > 0 && !firetower.IsSystemTopic(topic) {
		s.pats.Match(topic, func(p string) {
			for node := range s.topics[p] {
				add(node)
			}
		})
	}
	s.mu.RUnlock()
	if len(targets) == 0 {
		return 0
	}
	m := &Msg{Type: MsgDeliver, Topic: topic, Data: data}
	if origin != nil {
		m.Node = *origin
	}
	frame, err := AppendFrame(nil, m)
	if err != nil {
		return 0
	}
	n := 0
	for _, ss := range targets {
		if ss.send(frame, false) {
			s.deliveries.Add(1)
			n++
		} else {
			s.dropped.Add(1)
		}
	}
	return n
}

// NodeInfo describes one gateway as the manager sees it.
type NodeInfo struct {
	Node          uint16 `json:"node"`
	Remote        string `json:"remote"`
	Topics        int    `json:"topics"`
	Subscriptions int64  `json:"subscriptions"`
}

// Nodes lists the connected gateways.
func (s *Server) Nodes() []NodeInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]NodeInfo, 0, len(s.sessions))
	idx := make(map[uint16]int, len(s.sessions))
	for id, ss := range s.sessions {
		idx[id] = len(out)
		out = append(out, NodeInfo{Node: id, Remote: ss.conn.RemoteAddr().String()})
	}
	for t, per := range s.topics {
		if firetower.IsSystemTopic(t) {
			continue
		}
		for id, n := range per {
			if i, ok := idx[id]; ok {
				out[i].Topics++
				out[i].Subscriptions += n
			}
		}
	}
	return out
}

// session is one gateway connection.
type session struct {
	s    *Server
	conn net.Conn
	node uint16
	boot string

	mu     sync.Mutex
	cond   sync.Cond
	out    [][]byte
	bytes  int
	closed bool
	bye    bool // a GOAWAY is queued: the writer closes the connection after it
	hello  bool // registered: HELLO (and with a secret, AUTH) accepted

	// Between a HELLO and its AUTH (readLoop's goroutine only): the
	// HELLO and both nonces.
	pending                    *Msg
	gatewayNonce, managerNonce []byte
}

func newSession(s *Server, c net.Conn) *session {
	ss := &session{s: s, conn: c}
	ss.cond.L = &ss.mu
	return ss
}

// send queues a frame. Data frames are dropped past the queue bound
// (false); a control frame that would pass twice the bound resets the
// session instead.
func (ss *session) send(frame []byte, control bool) bool {
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		return false
	}
	limit := ss.s.cfg.QueueBytes
	if !control && ss.bytes+len(frame) > limit {
		ss.mu.Unlock()
		return false
	}
	if control && ss.bytes+len(frame) > 2*limit {
		ss.mu.Unlock()
		ss.s.resets.Add(1)
		ss.s.log.Warn("manager: gateway does not keep up, resetting its session", "node", ss.node)
		ss.close()
		return false
	}
	ss.out = append(ss.out, frame)
	ss.bytes += len(frame)
	ss.mu.Unlock()
	ss.cond.Signal()
	return true
}

func (ss *session) sendMsg(m *Msg) {
	if f, err := AppendFrame(nil, m); err == nil {
		ss.send(f, true)
	}
}

// goAway sends GOAWAY and closes the session once it is written.
func (ss *session) goAway(reason string) {
	f, _ := AppendFrame(nil, &Msg{Type: MsgGoAway, Text: reason})
	ss.mu.Lock()
	if !ss.closed {
		ss.out = append(ss.out, f, nil) // nil: close after writing
		ss.bytes += len(f)
		ss.bye = true
	}
	ss.mu.Unlock()
	ss.cond.Signal()
}

func (ss *session) close() {
	ss.mu.Lock()
	ss.closed = true
	ss.mu.Unlock()
	ss.cond.Broadcast()
	_ = ss.conn.Close()
}

func (ss *session) writeLoop() {
	defer ss.s.wg.Done()
	defer ss.close()
	var batch net.Buffers
	for {
		ss.mu.Lock()
		for len(ss.out) == 0 && !ss.closed {
			ss.cond.Wait()
		}
		if ss.closed {
			ss.mu.Unlock()
			return
		}
		frames := ss.out
		ss.out, ss.bytes = nil, 0
		ss.mu.Unlock()
		last := false
		batch = batch[:0]
		for _, f := range frames {
			if f == nil {
				last = true
				break
			}
			batch = append(batch, f)
		}
		_ = ss.conn.SetWriteDeadline(time.Now().Add(ss.s.cfg.WriteTimeout))
		if _, err := batch.WriteTo(ss.conn); err != nil {
			if !last {
				ss.s.resets.Add(1)
				ss.s.log.Warn("manager: writing to gateway failed", "node", ss.node, "err", err)
			}
			return
		}
		if last {
			return
		}
	}
}

func (ss *session) readLoop() {
	s := ss.s
	defer s.wg.Done()
	defer ss.end()
	// Until the peer is registered, a small buffer and a small frame
	// limit: an unauthenticated peer costs little.
	r := bufio.NewReaderSize(ss.conn, PreAuthMaxFrame)
	limit := PreAuthMaxFrame
	for {
		if ss.hello && limit == PreAuthMaxFrame {
			r, limit = growReader(r, ss.conn), s.cfg.MaxFrame
		}
		_ = ss.conn.SetReadDeadline(time.Now().Add(s.cfg.HeartbeatTimeout))
		p, err := ReadFrame(r, limit, nil)
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, ErrFrameTooLarge), errors.Is(err, ErrEmptyFrame):
				s.badFrames.Add(1)
				ss.goAway(err.Error())
			case errors.As(err, &ne) && ne.Timeout():
				s.resets.Add(1)
				ss.goAway("heartbeat timeout")
			}
			return
		}
		m, err := DecodeLimited(p, s.cfg.MaxTopicsPerNode)
		if err != nil {
			s.badFrames.Add(1)
			ss.goAway(err.Error())
			return
		}
		if !ss.handle(m) {
			return
		}
	}
}

// growReader moves to a large read buffer, keeping what r has buffered.
func growReader(r *bufio.Reader, conn net.Conn) *bufio.Reader {
	n := r.Buffered()
	if n == 0 {
		return bufio.NewReaderSize(conn, 64<<10)
	}
	b, _ := r.Peek(n)
	return bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(b)), conn), 64<<10)
}

// refuse ends a session that has not been registered, with a GOAWAY.
func (ss *session) refuse(reason string) bool {
	ss.s.refused.Add(1)
	ss.s.log.Warn("manager: refused a peer", "remote", ss.conn.RemoteAddr().String(), "reason", reason)
	ss.goAway(reason)
	return false
}

// protocolError ends a registered session that broke the protocol.
func (ss *session) protocolError(reason string) bool {
	ss.s.badFrames.Add(1)
	ss.s.log.Warn("manager: ending a gateway's session", "node", ss.node, "reason", reason)
	ss.goAway(reason)
	return false
}

// checkTopic validates a topic a gateway sent: the rules of the client
// protocol (1 to 256 bytes of printable UTF-8, no comma, no white space).
// System topics are the nodes' own and pass, since only registered (and,
// with a secret, authenticated) gateways get here.
func checkTopic(what, topic string) error {
	if err := firetower.ValidateTopic(topic); err != nil {
		return fmt.Errorf("invalid topic %.64q in %s: %v", topic, what, err)
	}
	return nil
}

// handle processes one message; false ends the session.
func (ss *session) handle(m *Msg) bool {
	s := ss.s
	if !ss.hello {
		switch {
		case ss.pending == nil && m.Type == MsgHello:
			return ss.onHello(m)
		case ss.pending != nil && m.Type == MsgAuth:
			return ss.onAuth(m)
		case ss.pending != nil:
			return ss.refuse("authentication failed: expected AUTH after CHALLENGE")
		}
		return ss.refuse("first message must be HELLO")
	}
	switch m.Type {
	case MsgSync:
		for _, tc := range m.Topics {
			if err := checkTopic("SYNC", tc.Topic); err != nil {
				return ss.protocolError(err.Error())
			}
		}
		s.mu.Lock()
		s.dropNodeLocked(ss.node)
		// (DecodeLimited refused a SYNC of more than MaxTopicsPerNode.)
		for _, tc := range m.Topics {
			s.setLocked(ss.node, tc.Topic, tc.Count)
		}
		s.mu.Unlock()
	case MsgSub:
		if err := checkTopic("SUB", m.Topic); err != nil {
			return ss.protocolError(err.Error())
		}
		s.mu.Lock()
		over := m.Count > 0 && s.ntopics[ss.node] >= s.cfg.MaxTopicsPerNode && s.topics[m.Topic][ss.node] == 0
		if !over {
			s.setLocked(ss.node, m.Topic, m.Count)
		}
		s.mu.Unlock()
		if over {
			return ss.protocolError(fmt.Sprintf("%v: node %d has interest in %d topics (limit %d)", ErrTooManyTopics, ss.node, s.cfg.MaxTopicsPerNode, s.cfg.MaxTopicsPerNode))
		}
	case MsgPub:
		if err := checkTopic("PUB", m.Topic); err != nil {
			return ss.protocolError(err.Error())
		}
		s.route(ss.node, m.Topic, m.Data)
	case MsgCount:
		if err := checkTopic("COUNT", m.Topic); err != nil {
			return ss.protocolError(err.Error())
		}
		ss.sendMsg(&Msg{Type: MsgCountReply, Seq: m.Seq, Topic: m.Topic, Count: s.Count(m.Topic)})
	case MsgPing:
		// The PONG also carries the manager's history memory (history.go).
		ss.sendMsg(&Msg{Type: MsgPong, Seq: m.Seq, Count: s.hist.bytes.Load(), Text: strconv.FormatInt(s.hist.streams.Load(), 10)})
	case MsgPong:
	case MsgAppend:
		if err := checkTopic("APPEND", m.Topic); err != nil {
			return ss.protocolError(err.Error())
		}
		if firetower.IsSystemTopic(m.Topic) {
			return ss.protocolError("system topics keep no history: " + m.Topic)
		}
		o, err := s.histOptions(m)
		if err != nil {
			return ss.protocolError(err.Error())
		}
		s.appendHistory(ss, m.Seq, m.Topic, m.Data, o)
	case MsgHistory, MsgRecover:
		return s.queryHistory(ss, m, m.Type == MsgRecover)
	case MsgRecoverDone:
		s.recoverDone(ss.node, m.Topics)
	case MsgGoAway:
		return false
	default:
		return ss.protocolError(fmt.Sprintf("unexpected message type %d from a gateway", m.Type))
	}
	return true
}

// onHello answers a HELLO: without a secret it registers the gateway; with
// one it sends the CHALLENGE and waits for the AUTH.
func (ss *session) onHello(m *Msg) bool {
	secret := ss.s.cfg.Secret
	if len(secret) == 0 {
		if len(m.Data) > 0 {
			return ss.refuse("authentication failed: the gateway has a cluster secret and this manager has none (set the same --cluster-secret on both)")
		}
		return ss.register(m)
	}
	if len(m.Data) != nonceLen {
		return ss.refuse("authentication required: this manager needs the cluster secret (--cluster-secret)")
	}
	ss.pending = m
	ss.gatewayNonce = m.Data
	ss.managerNonce = newNonce()
	mp := proof(secret, labelManager, ss.gatewayNonce, ss.managerNonce, m.Node, m.Text)
	ss.sendMsg(&Msg{Type: MsgChallenge, Data: append(bytes.Clone(ss.managerNonce), mp...)})
	return true
}

// onAuth checks the gateway's proof and registers it.
func (ss *session) onAuth(m *Msg) bool {
	h := ss.pending
	want := proof(ss.s.cfg.Secret, labelGateway, ss.gatewayNonce, ss.managerNonce, h.Node, h.Text)
	ss.pending, ss.gatewayNonce, ss.managerNonce = nil, nil, nil
	if !hmac.Equal(m.Data, want) {
		return ss.refuse("authentication failed: wrong cluster secret")
	}
	return ss.register(h)
}

func (ss *session) register(m *Msg) bool {
	s := ss.s
	s.mu.Lock()
	replaced := false
	if old := s.sessions[m.Node]; old != nil {
		if old.boot != m.Text {
			s.mu.Unlock()
			return ss.refuse(fmt.Sprintf("duplicate node id %d: another gateway process holds it", m.Node))
		}
		// The same process reconnected before its old session ended.
		delete(s.sessions, m.Node)
		s.dropNodeLocked(m.Node)
		replaced = true
		defer old.close()
	}
	ss.node, ss.boot, ss.hello = m.Node, m.Text, true
	s.sessions[m.Node] = ss
	s.mu.Unlock()
	if replaced { // the old session's recoveries are over (history.go)
		s.dropHolds(m.Node)
	}
	s.log.Info("manager: gateway joined", "node", m.Node, "remote", ss.conn.RemoteAddr().String())
	ss.sendMsg(&Msg{Type: MsgWelcome})
	return true
}

// end forgets the session and its node's counts.
func (ss *session) end() {
	s := ss.s
	s.mu.Lock()
	delete(s.conns, ss)
	current := ss.hello && s.sessions[ss.node] == ss
	if current {
		delete(s.sessions, ss.node)
		s.dropNodeLocked(ss.node)
		s.log.Info("manager: gateway left", "node", ss.node)
	}
	s.mu.Unlock()
	if current {
		s.dropHolds(ss.node)
	}
	// Let a queued GOAWAY go out; the writer closes the connection. (The
	// writer may already have taken it from the queue, so the queue does
	// not tell.)
	ss.mu.Lock()
	pendingGoAway := ss.bye
	ss.mu.Unlock()
	if !pendingGoAway {
		ss.close()
	}
}
