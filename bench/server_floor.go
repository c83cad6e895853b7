//go:build linux

package bench

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/klauspost/compress/flate"
	"github.com/panjf2000/gnet/v2"
)

// floorServer is the physical floor: a gnet server that accepts websocket
// upgrades, records each connection's subscription from its first text
// frame (answering with a fixed ack), fans out a client's publish frame
// (found by its prefix, the data cut out of it by position, no answer to
// the publisher), and writes pre-built delivery frames
// to subscribers, queued per event loop and written once per connection per
// loop turn (the frames queued for a connection are copied into one buffer
// and written with one write). No hooks, no limits, no keepalive, no
// validation: what the machine allows for the same frames on the same
// sockets.
//
// With deflate (newFloorServerDeflate, the compression scenario's floor) it
// also accepts a permessage-deflate offer (answering with both
// no_context_takeover parameters) and compresses each publish once at level
// 1, sending the same compressed frame to every connection that
// negotiated it.
type floorServer struct {
	gnet.BuiltinEventEngine

	eng     gnet.Engine
	addr    string
	booted  chan struct{}
	stopped chan struct{}
	runErr  error

	loopsMu sync.Mutex
	byEL    map[gnet.EventLoop]*floorLoop
	loops   atomic.Pointer[[]*floorLoop]

	topicsMu sync.RWMutex
	topics   map[string]*floorTopic

	writes atomic.Uint64
	writev bool // FTBENCH_FLOOR_WRITEV: gnet's Writev instead of copy+Write (diagnostics)

	deflate bool          // accept permessage-deflate offers
	zmu     sync.Mutex    // guards zw and zbuf (Publish may be called from any goroutine)
	zw      *flate.Writer // level 1, reset per publish (no context takeover)
	zbuf    bytes.Buffer
}

type floorTopic struct {
	byLoop atomic.Pointer[[][]*floorConn] // copy-on-write
}

type floorLoop struct {
	s    *floorServer
	idx  int
	el   gnet.EventLoop
	task gnet.Runnable

	mu        sync.Mutex
	q, spare  []floorItem
	scheduled bool

	dirty   []*floorConn // loop goroutine only
	scratch []byte       // loop goroutine only
}

type floorItem struct {
	frame  []byte
	zframe []byte // the compressed frame (deflate floor), nil otherwise
	conns  []*floorConn
}

type floorConn struct {
	gc       gnet.Conn
	loop     *floorLoop
	upgraded bool
	deflate  bool // negotiated permessage-deflate
	closed   bool
	topic    string
	out      [][]byte
}

var floorAck = func() []byte {
	p := []byte(`{"type":"ack"}`)
	return append([]byte{0x81, byte(len(p))}, p...)
}()

func newFloorServer() (*floorServer, error) { return startFloor(false) }

// newFloorServerDeflate is the floor of the compression scenario.
func newFloorServerDeflate() (*floorServer, error) { return startFloor(true) }

func startFloor(deflate bool) (*floorServer, error) {
	s := &floorServer{
		deflate: deflate,
		booted:  make(chan struct{}),
		stopped: make(chan struct{}),
		byEL:    make(map[gnet.EventLoop]*floorLoop),
		topics:  make(map[string]*floorTopic),
		writev:  os.Getenv("FTBENCH_FLOOR_WRITEV") != "",
	}
	if deflate {
		zw, err := flate.NewWriter(nil, 1)
		if err != nil {
			return nil, err
		}
		s.zw = zw
	}
	go func() {
		defer close(s.stopped)
		s.runErr = gnet.Run(s, "tcp://127.0.0.1:0",
			gnet.WithMulticore(true),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithLogger(nopLogger{}))
	}()
	select {
	case <-s.booted:
	case <-s.stopped:
		if s.runErr == nil {
			s.runErr = errors.New("floor: engine stopped at boot")
		}
		return nil, s.runErr
	}
	if s.addr == "" {
		_ = s.Close()
		return nil, errors.New("floor: cannot read the bound address")
	}
	return s, nil
}

func (s *floorServer) OnBoot(eng gnet.Engine) gnet.Action {
	s.eng = eng
	if fd, err := eng.Dup(); err == nil {
		if sa, err := syscall.Getsockname(fd); err == nil {
			if a, ok := sa.(*syscall.SockaddrInet4); ok {
				s.addr = net.JoinHostPort(net.IP(a.Addr[:]).String(), strconv.Itoa(a.Port))
			}
		}
		_ = syscall.Close(fd)
	}
	close(s.booted)
	return gnet.None
}

func (s *floorServer) Addr() string    { return s.addr }
func (s *floorServer) Path() string    { return "/ws" }
func (s *floorServer) Flavour() string { return flavourFiretower }

// Writes is the number of write calls to client sockets so far.
func (s *floorServer) Writes() uint64 { return s.writes.Load() }

func (s *floorServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.eng.Stop(ctx)
	<-s.stopped
	return err
}

func (s *floorServer) loopFor(el gnet.EventLoop) *floorLoop {
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	l := s.byEL[el]
	if l == nil {
		var old []*floorLoop
		if p := s.loops.Load(); p != nil {
			old = *p
		}
		l = &floorLoop{s: s, idx: len(old), el: el}
		l.task = gnet.RunnableFunc(l.run)
		next := append(append([]*floorLoop(nil), old...), l)
		s.loops.Store(&next)
		s.byEL[el] = l
	}
	return l
}

func (s *floorServer) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	gc.SetContext(&floorConn{gc: gc, loop: s.loopFor(gc.EventLoop())})
	return nil, gnet.None
}

func (s *floorServer) OnClose(gc gnet.Conn, _ error) gnet.Action {
	c, _ := gc.Context().(*floorConn)
	if c == nil {
		return gnet.None
	}
	c.closed = true
	c.out = nil
	if c.topic != "" {
		s.update(c, false)
	}
	return gnet.None
}

func (s *floorServer) OnTraffic(gc gnet.Conn) gnet.Action {
	c := gc.Context().(*floorConn)
	buf, _ := gc.Peek(-1)
	if !c.upgraded {
		end := bytes.Index(buf, []byte("\r\n\r\n"))
		if end < 0 {
			if len(buf) > 8192 {
				return gnet.Close
			}
			return gnet.None
		}
		key := headerValue(buf[:end], "sec-websocket-key")
		if key == nil {
			return gnet.Close
		}
		h := sha1.New()
		h.Write(key)
		h.Write([]byte("258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		resp := make([]byte, 0, 160)
		resp = append(resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
		resp = base64.StdEncoding.AppendEncode(resp, h.Sum(nil))
		if s.deflate && bytes.Contains(bytes.ToLower(headerValue(buf[:end], "sec-websocket-extensions")), []byte("permessage-deflate")) {
			c.deflate = true
			resp = append(resp, "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover"...)
		}
		resp = append(resp, "\r\n\r\n"...)
		_, _ = gc.Write(resp)
		_, _ = gc.Discard(end + 4)
		c.upgraded = true
		buf = buf[end+4:]
	}
	off := 0
	for {
		op, payload, n := parseClientFrame(buf[off:])
		if n == 0 {
			break
		}
		off += n
		switch op {
		case 0x1: // text: a publish, or a subscribe request
			if bytes.HasPrefix(payload, floorPublishPrefix) {
				s.clientPublish(payload)
				continue
			}
			if c.topic == "" {
				if t := jsonTopic(payload); t != "" {
					c.topic = t
					s.update(c, true)
				}
			}
			_, _ = gc.Write(floorAck)
		case 0x8:
			return gnet.Close
		case 0x9:
			pong := append([]byte{0x8a, byte(len(payload))}, payload...)
			_, _ = gc.Write(pong)
		}
	}
	_, _ = gc.Discard(off)
	return gnet.None
}

// parseClientFrame parses one whole masked client frame and unmasks its
// payload in place; n is 0 when the frame is not complete yet.
func parseClientFrame(b []byte) (op byte, payload []byte, n int) {
	if len(b) < 2 {
		return 0, nil, 0
	}
	op = b[0] & 0x0f
	masked := b[1]&0x80 != 0
	ln := int(b[1] & 0x7f)
	h := 2
	switch ln {
	case 126:
		if len(b) < 4 {
			return 0, nil, 0
		}
		ln = int(binary.BigEndian.Uint16(b[2:]))
		h = 4
	case 127:
		if len(b) < 10 {
			return 0, nil, 0
		}
		ln = int(binary.BigEndian.Uint64(b[2:]))
		h = 10
	}
	var mask []byte
	if masked {
		if len(b) < h+4 {
			return 0, nil, 0
		}
		mask = b[h : h+4]
		h += 4
	}
	if len(b) < h+ln {
		return 0, nil, 0
	}
	payload = b[h : h+ln]
	for i := range payload {
		payload[i] ^= mask[i&3]
	}
	return op, payload, h + ln
}

var floorPublishPrefix = []byte(`{"type":"publish",`)

// clientPublish fans out a client's publish with no protocol work: the
// topic is what follows "topic":", the data everything between "data": and
// the closing brace (the load generator puts data last), and nothing
// answers the publisher (it gets its own delivery, as every subscriber).
func (s *floorServer) clientPublish(p []byte) {
	topic := jsonTopic(p)
	i := bytes.Index(p, []byte(`"data":`))
	if topic == "" || i < 0 || p[len(p)-1] != '}' {
		return
	}
	_ = s.Publish(topic, p[i+len(`"data":`):len(p)-1])
}

// jsonTopic finds "topic":"..." in a subscribe request.
func jsonTopic(p []byte) string {
	i := bytes.Index(p, []byte(`"topic":"`))
	if i < 0 {
		return ""
	}
	p = p[i+9:]
	j := bytes.IndexByte(p, '"')
	if j <= 0 {
		return ""
	}
	return string(p[:j])
}

// headerValue returns the trimmed value of header name (lower case) in an
// HTTP request head.
func headerValue(head []byte, name string) []byte {
	for line := range bytes.SplitSeq(head, []byte("\r\n")) {
		i := bytes.IndexByte(line, ':')
		if i == len(name) && bytes.EqualFold(line[:i], []byte(name)) {
			return bytes.TrimSpace(line[i+1:])
		}
	}
	return nil
}

// update adds or removes c as a subscriber of c.topic (on c's loop).
func (s *floorServer) update(c *floorConn, add bool) {
	s.topicsMu.Lock()
	defer s.topicsMu.Unlock()
	t := s.topics[c.topic]
	if t == nil {
		if !add {
			return
		}
		t = &floorTopic{}
		s.topics[c.topic] = t
	}
	var old [][]*floorConn
	if p := t.byLoop.Load(); p != nil {
		old = *p
	}
	next := make([][]*floorConn, max(len(old), c.loop.idx+1))
	copy(next, old)
	cur := next[c.loop.idx]
	l := make([]*floorConn, 0, len(cur)+1)
	for _, x := range cur {
		if x != c {
			l = append(l, x)
		}
	}
	if add {
		l = append(l, c)
	}
	next[c.loop.idx] = l
	t.byLoop.Store(&next)
}

// Publish builds the delivery frame once and queues it on every loop that
// has subscribers.
func (s *floorServer) Publish(topic string, data []byte) error {
	s.topicsMu.RLock()
	t := s.topics[topic]
	s.topicsMu.RUnlock()
	if t == nil {
		return nil
	}
	p := t.byLoop.Load()
	if p == nil {
		return nil
	}
	n := len(`{"type":"publish","topic":"","data":}`) + len(topic) + len(data)
	frame := appendFloorHeader(make([]byte, 0, n+10), 0x81, n)
	frame = appendDelivery(frame, topic, data)
	var zframe []byte
	if s.deflate {
		zframe = s.compress(frame[len(frame)-n:])
	}
	loops := *s.loops.Load()
	for li, conns := range *p {
		if len(conns) > 0 {
			loops[li].enqueue(floorItem{frame: frame, zframe: zframe, conns: conns})
		}
	}
	return nil
}

// appendFloorHeader appends a server frame header: first byte b0, payload
// length n.
func appendFloorHeader(frame []byte, b0 byte, n int) []byte {
	frame = append(frame, b0)
	switch {
	case n < 126:
		return append(frame, byte(n))
	case n < 1<<16:
		return append(frame, 126, byte(n>>8), byte(n))
	default:
		frame = append(frame, 127)
		return binary.BigEndian.AppendUint64(frame, uint64(n))
	}
}

// compress returns the compressed text frame (RSV1) of payload p: deflated
// at level 1 from a fresh window, the final empty block's 00 00 ff ff cut
// off (RFC 7692 section 7.2.1).
func (s *floorServer) compress(p []byte) []byte {
	s.zmu.Lock()
	defer s.zmu.Unlock()
	s.zbuf.Reset()
	s.zw.Reset(&s.zbuf)
	_, _ = s.zw.Write(p)
	_ = s.zw.Flush()
	z := bytes.TrimSuffix(s.zbuf.Bytes(), deflateTail)
	return append(appendFloorHeader(make([]byte, 0, len(z)+10), 0xc1, len(z)), z...)
}

func (l *floorLoop) enqueue(it floorItem) {
	l.mu.Lock()
	l.q = append(l.q, it)
	kick := !l.scheduled
	l.scheduled = true
	l.mu.Unlock()
	if kick {
		_ = l.el.Execute(context.Background(), l.task)
	}
}

// run runs on the loop: it queues every pending frame on its connections,
// then writes each connection once.
func (l *floorLoop) run(context.Context) error {
	l.mu.Lock()
	q := l.q
	l.q, l.spare = l.spare, nil
	l.scheduled = false
	l.mu.Unlock()
	for _, it := range q {
		for _, c := range it.conns {
			if c.closed {
				continue
			}
			if len(c.out) == 0 {
				l.dirty = append(l.dirty, c)
			}
			if c.deflate && it.zframe != nil {
				c.out = append(c.out, it.zframe)
			} else {
				c.out = append(c.out, it.frame)
			}
			if len(c.out) == 1024 {
				c.flush()
			}
		}
	}
	for i, c := range l.dirty {
		c.flush()
		l.dirty[i] = nil
	}
	l.dirty = l.dirty[:0]
	clear(q)
	l.mu.Lock()
	l.spare = q[:0]
	l.mu.Unlock()
	return nil
}

func (c *floorConn) flush() {
	if len(c.out) == 0 {
		return
	}
	c.loop.s.writes.Add(1)
	switch {
	case len(c.out) == 1:
		_, _ = c.gc.Write(c.out[0])
	case c.loop.s.writev:
		_, _ = c.gc.Writev(c.out)
	default:
		// One contiguous copy and one write: gnet keeps whatever the
		// socket does not take in its own buffer, so the scratch buffer
		// is free again at once, and nothing is allocated.
		b := c.loop.scratch[:0]
		for _, f := range c.out {
			b = append(b, f...)
		}
		c.loop.scratch = b
		_, _ = c.gc.Write(b)
	}
	if c.closed {
		return
	}
	clear(c.out)
	c.out = c.out[:0]
}

type nopLogger struct{}

func (nopLogger) Debugf(string, ...any) {}
func (nopLogger) Infof(string, ...any)  {}
func (nopLogger) Warnf(string, ...any)  {}
func (nopLogger) Errorf(string, ...any) {}
func (nopLogger) Fatalf(string, ...any) {}
