package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	gerrors "github.com/panjf2000/gnet/v2/pkg/errors"
)

// Mounting: the Server as an http.Handler.
//
// ServeHTTP takes a websocket upgrade request that net/http has read,
// hijacks its connection and hands it to an event loop, where it goes
// through the same handshake parser as a connection from the Server's own
// listener: the request head is written out again from the *http.Request
// and fed to that parser (readHandshake), so validation, path rules, the
// Handler's decision and every later step are literally the same code.
//
// A plain TCP connection goes to gnet as it is (its descriptor is
// duplicated into the loop, as for the native listener): same speed. A
// connection gnet cannot take (TLS, or bytes the client sent ahead of the
// response that net/http had already buffered) is served through a proxy:
// one end of a socketpair is registered with gnet, and a goroutine pair
// copies between the other end and the connection, the re-written request
// head first. Everything above the socket is the same code either way.

// handoff is what a connection taken from net/http brings to its event
// loop, through gnet's connection context (gnet.NewContext).
type handoff struct {
	head   []byte        // the request head to parse (nil: it comes through the socket)
	req    *http.Request // the request as net/http parsed it
	remote net.Addr      // the client's address
}

// ServeHTTP upgrades a websocket request on a connection from an
// http.Server: mount the Server with mux.Handle(path, s). The request goes
// through the same checks and Handler.Handshake as on the Server's own
// listener; the Handshake's Request carries r's context (without its
// cancellation: a hijacked request's context ends when ServeHTTP returns),
// RemoteAddr and TLS state, and the headers as r has them when it gets
// here (a middleware may add some). Any goroutine, once Start returned.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.started() {
		refuse(w, http.StatusServiceUnavailable, "websocket server not started")
		return
	}
	if s.closing.Load() {
		refuse(w, http.StatusServiceUnavailable, "server shutting down")
		return
	}
	if r.ProtoMajor != 1 {
		// RFC 8441 (websockets over HTTP/2) is not supported: an HTTP/2
		// connection cannot be hijacked.
		refuse(w, http.StatusHTTPVersionNotSupported, "websocket needs HTTP/1.1")
		return
	}
	head := requestHead(r, s.cfg.MaxHeaderBytes)
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		refuse(w, http.StatusInternalServerError, "this connection cannot be taken over for a websocket")
		s.log.Warn("transport: cannot hijack an upgrade request's connection", "err", err)
		return
	}
	// net/http may have set deadlines; the loop runs its own timeouts.
	_ = nc.SetDeadline(time.Time{})
	ctx := context.WithoutCancel(r.Context())
	h := &handoff{req: r.WithContext(ctx), remote: nc.RemoteAddr()}
	extra := brw.Reader.Buffered()
	if tc, ok := nc.(*net.TCPConn); ok && extra == 0 {
		h.head = head
		s.c.hijacked.Add(1)
		s.enroll(tc, h)
		return
	}
	pre := head
	if extra > 0 {
		// At most the bufio's size: not sized by anything the peer sent.
		more, _ := brw.Peek(extra)
		pre = append(pre, more...)
	}
	s.proxy(nc, pre, h)
}

// started reports whether Start has brought the loops up.
func (s *Server) started() bool {
	select {
	case <-s.booted:
		return true
	default:
		return false
	}
}

// refuse answers an upgrade request that is not taken over, and closes
// its connection as the native listener does.
func refuse(w http.ResponseWriter, status int, reason string) {
	w.Header().Set("Connection", "close")
	http.Error(w, reason, status)
}

// requestHead writes r's request line and headers out again, as the
// client sent them modulo order and case, for the handshake parser. It
// stops past max bytes, so the parser answers 431 as it would on the
// native listener.
func requestHead(r *http.Request, max int) []byte {
	b := make([]byte, 0, 512)
	uri := r.RequestURI
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	b = append(b, r.Method...)
	b = append(b, ' ')
	b = append(b, uri...)
	b = append(b, ' ')
	b = append(b, r.Proto...)
	b = append(b, "\r\nHost: "...)
	b = append(b, r.Host...)
	b = append(b, "\r\n"...)
	for k, vs := range r.Header {
		for _, v := range vs {
			if len(b) > max {
				return b
			}
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	return append(b, "\r\n"...)
}

// enroll hands c to an event loop with h in its context. gnet duplicates
// the descriptor and closes c; a failure closes c and is counted.
func (s *Server) enroll(c net.Conn, h *handoff) {
	ctx := gnet.NewNetConnContext(gnet.NewContext(context.Background(), h), c)
	if _, err := s.eng.Register(ctx); err != nil {
		s.c.acceptErrors.Add(1)
		_ = c.Close()
		if !errors.Is(err, gerrors.ErrEngineInShutdown) {
			s.log.Warn("transport: cannot hand a connection to an event loop", "err", err)
		}
	}
}

// openHandoff runs in OnOpen for a connection that came through ServeHTTP:
// it records the client's address and parses the request head it brought,
// if any, with the native handshake parser.
func (c *Conn) openHandoff(h *handoff) gnet.Action {
	if c.l.handoffs == nil {
		c.l.handoffs = make(map[*Conn]*handoff)
	}
	c.l.handoffs[c] = h
	c.remote = h.remote
	if h.head == nil {
		return gnet.None // the head comes through the proxy's socket
	}
	return c.readHandshake()
}

// handoff is what ServeHTTP handed over with c (its loop keeps it until
// the handshake is parsed), or nil.
func (c *Conn) handoff() *handoff {
	if len(c.l.handoffs) == 0 {
		return nil
	}
	return c.l.handoffs[c]
}

// handshakeBytes is what readHandshake parses: what the socket brought,
// or the head a mounted connection carried in.
func (c *Conn) handshakeBytes() []byte {
	if h := c.handoff(); h != nil && h.head != nil {
		return h.head
	}
	buf, _ := c.gc.Peek(-1)
	return buf
}

// consumeHandshake drops the n bytes of the request head readHandshake
// parsed.
func (c *Conn) consumeHandshake(n int) {
	if h := c.handoff(); h != nil && h.head != nil {
		h.head = nil
		return
	}
	_, _ = c.gc.Discard(n)
}

// adopt completes the parsed request of a handshake: the client's address,
// and for a mounted connection the context and TLS state of the request
// net/http read. The handoff is let go.
func (c *Conn) adopt(req *http.Request) *http.Request {
	if c.remote == nil {
		c.remote = c.gc.RemoteAddr()
	}
	h := c.handoff()
	if h != nil {
		delete(c.l.handoffs, c)
	}
	if h != nil && h.req != nil {
		req = req.WithContext(h.req.Context())
		req.TLS = h.req.TLS
	}
	if c.remote != nil {
		req.RemoteAddr = c.remote.String()
	}
	return req
}

// proxyBuffer is the copy buffer of each direction of a proxied
// connection: each direction's goroutine holds one while it waits.
const proxyBuffer = 4 << 10

// proxy serves nc through a socketpair whose other end is registered with
// gnet; pre (the request head, and whatever the client sent after it) goes
// first. The two goroutines are the Server's: Shutdown waits for them.
func (s *Server) proxy(nc net.Conn, pre []byte, h *handoff) {
	s.proxyMu.Lock()
	if s.closing.Load() {
		s.proxyMu.Unlock()
		_ = nc.Close()
		return
	}
	s.proxies.Add(2)
	if s.relayed == nil {
		s.relayed = make(map[net.Conn]struct{})
	}
	s.relayed[nc] = struct{}{}
	s.proxyMu.Unlock()
	mine, theirs, err := socketPair()
	if err != nil {
		s.c.acceptErrors.Add(1)
		s.unrelay(nc)
		_ = nc.Close()
		s.log.Warn("transport: cannot make a socketpair for a connection gnet cannot take", "err", err, "hint", acceptHint(err))
		s.proxies.Add(-2)
		return
	}
	s.c.proxied.Add(1)
	// Client to loop. On the client's EOF or error, the loop sees EOF.
	go func() {
		defer s.proxies.Done()
		if _, err := mine.Write(pre); err == nil {
			buf := make([]byte, proxyBuffer)
			_, _ = io.CopyBuffer(onlyWriter{mine}, onlyReader{nc}, buf)
		}
		_ = mine.CloseWrite()
	}()
	// Loop to client. Ends when the loop closes its end (or the client is
	// gone), and closes both.
	go func() {
		defer s.proxies.Done()
		defer s.c.proxied.Add(-1)
		buf := make([]byte, proxyBuffer)
		// A client that takes nothing for IdleTimeout is gone; without
		// the deadline, this goroutine would wait on it after its loop
		// gave the connection up.
		_, _ = io.CopyBuffer(deadlineWriter{nc, s.cfg.IdleTimeout}, onlyReader{mine}, buf)
		s.unrelay(nc)
		if tc, ok := nc.(*tls.Conn); ok {
			// A close_notify alert, bounded: the client may not read.
			_ = tc.SetWriteDeadline(time.Now().Add(s.cfg.CloseTimeout))
		}
		_ = nc.Close()
		_ = mine.Close()
	}()
	s.enroll(theirs, h)
}

// onlyReader and onlyWriter hide ReadFrom/WriteTo so io.CopyBuffer uses
// the small buffer it is given.
type onlyReader struct{ io.Reader }
type onlyWriter struct{ io.Writer }

// deadlineWriter bounds each write to c by d.
type deadlineWriter struct {
	c net.Conn
	d time.Duration
}

func (w deadlineWriter) Write(p []byte) (int, error) {
	_ = w.c.SetWriteDeadline(time.Now().Add(w.d))
	return w.c.Write(p)
}

func (s *Server) unrelay(nc net.Conn) {
	s.proxyMu.Lock()
	delete(s.relayed, nc)
	s.proxyMu.Unlock()
}

// stopProxies waits for the relay goroutines (their loops have closed
// their ends of the socketpairs: they are sending the last bytes, the
// close frame, to their clients), for at most CloseTimeout; then it closes
// the clients that do not take them, and waits until ctx ends.
func (s *Server) stopProxies(ctx context.Context) error {
	// None starts after this: closing is set (see proxy).
	s.proxyMu.Lock()
	n := len(s.relayed)
	s.proxyMu.Unlock()
	if n == 0 {
		return waitGroup(ctx, &s.proxies)
	}
	grace, cancel := context.WithTimeout(ctx, s.cfg.CloseTimeout)
	err := waitGroup(grace, &s.proxies)
	cancel()
	if err == nil {
		return nil
	}
	s.proxyMu.Lock()
	for nc := range s.relayed {
		_ = nc.Close()
	}
	s.proxyMu.Unlock()
	return waitGroup(ctx, &s.proxies)
}

// socketPair is a connected pair of unix stream sockets.
func socketPair() (mine, theirs *net.UnixConn, err error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	a, err := fileUnixConn(fds[0], "firetower-proxy")
	if err != nil {
		_ = syscall.Close(fds[1])
		return nil, nil, err
	}
	b, err := fileUnixConn(fds[1], "firetower-loop")
	if err != nil {
		_ = a.Close()
		return nil, nil, err
	}
	return a, b, nil
}

// fileUnixConn makes a *net.UnixConn of fd, which it closes (net.FileConn
// works on a duplicate).
func fileUnixConn(fd int, name string) (*net.UnixConn, error) {
	f := os.NewFile(uintptr(fd), name)
	defer func() { _ = f.Close() }() // the original fd: c holds a duplicate, nothing to report
	c, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		_ = c.Close()
		return nil, errors.New("transport: socketpair end is not a unix conn")
	}
	return uc, nil
}
