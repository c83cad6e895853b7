//go:build linux

package bench

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The load generator runs in a child process (the test binary re-executed
// with FTBENCH_ROLE=clients) so that its sockets, its CPU and its garbage are
// not the server's. It is a minimal websocket client of its own on raw
// non-blocking sockets and epoll: a few worker goroutines read whatever each
// readable socket holds, split it into frames and check every delivery
// (envelope, topic, pad, and a per-topic sequence number that must go up by
// exactly one). The parent drives it with lines on stdin and reads answers on
// stdout:
//
//	(child)  ready <conns>                      every connection is subscribed
//	expect <perConn> <stallSeconds>  ->  ok <total> | fail <reason>
//	latrec <0|1>                     ->  ok         (record publish->receive latencies)
//	lat                              ->  lat <n> <p50ns> <p99ns> <maxns>
//	quit                                        exit
//
// expect waits until every connection has received perConn deliveries in
// all (counted since it connected), or until no delivery arrived for
// stallSeconds, then checks that each connection got exactly perConn, all
// intact and in order.

// loadConfig is read from the environment by the child.
type loadConfig struct {
	addr    string // host:port
	path    string
	flavour string
	from    int // index of the first connection
	conns   int
	topics  int // connection i subscribes to topic i % topics
	// subscribe, when set (FTBENCH_SUBSCRIBE), is what every connection
	// subscribes to instead of its topic: a wildcard pattern matching it
	// (the deliveries still carry, and are checked against, the topic).
	subscribe string
	dialers   int
	workers   int
	// deflate (FTBENCH_DEFLATE=1): offer permessage-deflate, require it
	// and inflate compressed frames; zdata (FTBENCH_ZDATA=1): expect the
	// compression scenario's 1 KiB data (compress.go)
	deflate, zdata bool
}

func loadConfigFromEnv() (loadConfig, error) {
	atoi := func(k string, def int) (int, error) {
		v := os.Getenv(k)
		if v == "" {
			return def, nil
		}
		return strconv.Atoi(v)
	}
	c := loadConfig{
		addr:    os.Getenv("FTBENCH_ADDR"),
		path:    os.Getenv("FTBENCH_PATH"),
		flavour: os.Getenv("FTBENCH_FLAVOUR"),

		subscribe: os.Getenv("FTBENCH_SUBSCRIBE"),
		deflate:   os.Getenv("FTBENCH_DEFLATE") == "1",
		zdata:     os.Getenv("FTBENCH_ZDATA") == "1",
	}
	var errs []error
	var err error
	c.from, err = atoi("FTBENCH_FROM", 0)
	errs = append(errs, err)
	c.conns, err = atoi("FTBENCH_CONNS", 1)
	errs = append(errs, err)
	c.topics, err = atoi("FTBENCH_TOPICS", 1)
	errs = append(errs, err)
	c.dialers, err = atoi("FTBENCH_DIALERS", 32)
	errs = append(errs, err)
	c.workers, err = atoi("FTBENCH_WORKERS", 2)
	errs = append(errs, err)
	if e := errors.Join(errs...); e != nil {
		return c, e
	}
	if c.addr == "" || c.path == "" || c.conns <= 0 || c.topics <= 0 || c.workers <= 0 || c.dialers <= 0 {
		return c, fmt.Errorf("bad load generator config %+v", c)
	}
	return c, nil
}

type loadConn struct {
	idx    int
	fd     int
	ti     int
	env    *envelope
	w      *loadWorker
	next   uint64 // next expected sequence number (worker only)
	count  atomic.Int64
	pend   []byte // a partial frame left from the last read (worker only)
	closed bool   // worker only
}

type loadWorker struct {
	g    *loadGen
	epfd int
	buf  []byte
	z    *inflater // compressed frames (cfg.deflate)

	latMu sync.Mutex
	lat   []int64
}

type loadGen struct {
	cfg     loadConfig
	sa      syscall.SockaddrInet4
	host    string
	conns   []*loadConn
	workers []*loadWorker

	total     atomic.Int64
	wireBytes atomic.Int64 // bytes read from the sockets since they were subscribed
	target    atomic.Int64
	notify    chan struct{}
	recLat    atomic.Bool

	errCount atomic.Int64
	errMu    sync.Mutex
	firstErr string
}

// runLoadGen is the child's main.
func runLoadGen(stdin io.Reader, stdout io.Writer) error {
	cfg, err := loadConfigFromEnv()
	if err != nil {
		return err
	}
	g, err := newLoadGen(cfg)
	if err != nil {
		return err
	}
	out := bufio.NewWriter(stdout)
	reply := func(format string, a ...any) {
		fmt.Fprintf(out, format+"\n", a...)
		_ = out.Flush()
	}
	if err := g.connectAll(); err != nil {
		reply("fail %s", oneLine(err.Error()))
		return err
	}
	for _, w := range g.workers {
		go w.run()
	}
	reply("ready %d", len(g.conns))
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "expect":
			per, _ := strconv.ParseInt(f[1], 10, 64)
			stall, _ := strconv.Atoi(f[2])
			if err := g.expect(per, time.Duration(stall)*time.Second); err != nil {
				reply("fail %s", oneLine(err.Error()))
			} else {
				reply("ok %d", g.total.Load())
			}
		case "latrec":
			g.recLat.Store(f[1] == "1")
			reply("ok")
		case "lat":
			n, p50, p99, mx := g.latencies()
			reply("lat %d %d %d %d", n, p50, p99, mx)
		case "bytes":
			reply("bytes %d", g.wireBytes.Load())
		case "quit":
			return nil
		default:
			reply("fail unknown command %q", f[0])
		}
	}
	return sc.Err()
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " | ") }

func newLoadGen(cfg loadConfig) (*loadGen, error) {
	host, port, err := net.SplitHostPort(cfg.addr)
	if err != nil {
		return nil, err
	}
	ip := net.ParseIP(host).To4()
	p, err := strconv.Atoi(port)
	if ip == nil || err != nil {
		return nil, fmt.Errorf("bad address %q", cfg.addr)
	}
	g := &loadGen{cfg: cfg, host: cfg.addr, notify: make(chan struct{}, 1)}
	g.sa.Port = p
	copy(g.sa.Addr[:], ip)
	envs := make(map[int]*envelope)
	for i := range cfg.conns {
		ti := (cfg.from + i) % cfg.topics
		env := envs[ti]
		if env == nil {
			e := deliveryEnvelope(cfg.flavour, topicName(ti))
			env = &e
			envs[ti] = env
		}
		g.conns = append(g.conns, &loadConn{idx: i, fd: -1, ti: ti, env: env})
	}
	for range cfg.workers {
		epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			return nil, err
		}
		w := &loadWorker{g: g, epfd: epfd, buf: make([]byte, 256<<10)}
		if cfg.deflate {
			w.z = newInflater()
		}
		g.workers = append(g.workers, w)
	}
	return g, nil
}

// connectAll dials, upgrades and subscribes every connection, a few
// dialers at a time, then hands each socket to a worker's epoll.
func (g *loadGen) connectAll() error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var errOnce sync.Once
	var firstErr error
	var failed atomic.Bool
	for range min(g.cfg.dialers, len(g.conns)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(g.conns) || failed.Load() {
					return
				}
				c := g.conns[i]
				if err := g.dial(c); err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("connection %d: %w", g.cfg.from+i, err) })
					failed.Store(true)
					return
				}
				c.w = g.workers[i%len(g.workers)]
				ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(i)}
				if err := syscall.EpollCtl(c.w.epfd, syscall.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
					errOnce.Do(func() { firstErr = err })
					failed.Store(true)
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// dial connects c, upgrades and subscribes it to its topic, and leaves
// the socket non-blocking.
func (g *loadGen) dial(c *loadConn) error {
	d := wsDialer{sa: g.sa, host: g.host, path: g.cfg.path, flavour: g.cfg.flavour, deflate: g.cfg.deflate}
	sub := topicName(c.ti)
	if g.cfg.subscribe != "" {
		sub = g.cfg.subscribe
	}
	fd, pend, err := d.dial(sub)
	if err != nil {
		return err
	}
	c.fd, c.pend = fd, pend
	return nil
}

// wsDialer opens subscribed websocket connections to one server.
type wsDialer struct {
	sa      syscall.SockaddrInet4
	host    string // host:port, for the Host header
	path    string
	flavour string
	deflate bool // offer permessage-deflate and require it
}

// newWSDialer resolves addr ("ip:port", IPv4).
func newWSDialer(addr, path, flavour string) (wsDialer, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return wsDialer{}, err
	}
	ip := net.ParseIP(host).To4()
	p, err := strconv.Atoi(port)
	if ip == nil || err != nil {
		return wsDialer{}, fmt.Errorf("bad address %q", addr)
	}
	d := wsDialer{host: addr, path: path, flavour: flavour}
	d.sa.Port = p
	copy(d.sa.Addr[:], ip)
	return d, nil
}

// dial connects in blocking mode (with timeouts), upgrades, subscribes to
// topic, waits for the subscription's ack and returns the socket
// non-blocking, with whatever bytes arrived after the ack (pend).
func (d wsDialer) dial(topic string) (fd int, pend []byte, err error) {
	fd, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = syscall.Close(fd)
			fd = -1
		}
	}()
	tv := syscall.Timeval{Sec: 30}
	_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &tv)
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	sa := d.sa
	for {
		err = syscall.Connect(fd, &sa)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return fd, nil, fmt.Errorf("connect: %w", err)
	}
	var k [16]byte
	_, _ = rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	req := "GET " + d.path + " HTTP/1.1\r\nHost: " + d.host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
		"\r\nSec-WebSocket-Version: 13\r\n"
	if d.deflate {
		req += "Sec-WebSocket-Extensions: " + deflateOffer + "\r\n"
	}
	req += "\r\n"
	if err := writeAll(fd, []byte(req)); err != nil {
		return fd, nil, fmt.Errorf("writing the upgrade request: %w", err)
	}
	buf := make([]byte, 0, 4096)
	end := -1
	for end < 0 {
		if len(buf) == cap(buf) {
			return fd, nil, errors.New("upgrade response too large")
		}
		n, err := readSome(fd, buf[len(buf):cap(buf)])
		if err != nil {
			return fd, nil, fmt.Errorf("reading the upgrade response: %w", err)
		}
		buf = buf[:len(buf)+n]
		end = bytes.Index(buf, []byte("\r\n\r\n"))
	}
	head := buf[:end]
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 101 ")) {
		line, _, _ := bytes.Cut(head, []byte("\r\n"))
		return fd, nil, fmt.Errorf("upgrade refused: %q", line)
	}
	h := sha1.Sum([]byte(key + wsGUID))
	if got := headerValue(head, "sec-websocket-accept"); string(got) != base64.StdEncoding.EncodeToString(h[:]) {
		return fd, nil, fmt.Errorf("bad Sec-WebSocket-Accept %q", got)
	}
	if d.deflate && !bytes.Contains(bytes.ToLower(headerValue(head, "sec-websocket-extensions")), []byte("permessage-deflate")) {
		return fd, nil, errors.New("the server did not accept permessage-deflate")
	}
	pend = append([]byte(nil), buf[end+4:]...)
	var z *inflater
	if d.deflate {
		z = newInflater()
	}

	var sub []byte
	if d.flavour == flavourCentrifuge {
		sub = []byte(`{"id":1,"connect":{}}` + "\n" + `{"id":2,"subscribe":{"channel":` + strconv.Quote(topic) + `}}`)
	} else {
		sub = []byte(`{"type":"subscribe","topic":` + strconv.Quote(topic) + `,"id":1}`)
	}
	if err := writeAll(fd, appendClientFrame(nil, 0x1, sub)); err != nil {
		return fd, nil, fmt.Errorf("writing the subscribe request: %w", err)
	}
	// Read frames until the subscription's ack.
	rbuf := make([]byte, 4096)
	for acked := false; !acked; {
		off := 0
		for {
			fin, op, payload, n, err := parseServerFrame(pend[off:])
			if err != nil {
				return fd, nil, err
			}
			if n == 0 {
				break
			}
			off += n
			if !fin {
				return fd, nil, errors.New("fragmented frame during setup")
			}
			if z != nil && pend[off-n]&0x40 != 0 { // RSV1: compressed
				if payload, err = z.inflate(nil, payload); err != nil {
					return fd, nil, err
				}
			}
			switch op {
			case 0x1, 0x2:
				done, err := d.setupMessage(fd, payload)
				if err != nil {
					return fd, nil, err
				}
				if done {
					acked = true
				}
			case 0x8:
				return fd, nil, fmt.Errorf("server closed the connection during setup: %q", payload)
			case 0x9:
				_ = writeAll(fd, appendClientFrame(nil, 0xA, payload))
			}
			if acked {
				break
			}
		}
		pend = pend[off:]
		if acked {
			break
		}
		n, err := readSome(fd, rbuf)
		if err != nil {
			return fd, nil, fmt.Errorf("waiting for the subscribe ack: %w", err)
		}
		pend = append(pend, rbuf[:n]...)
	}
	if len(pend) > 0 {
		pend = append([]byte(nil), pend...)
	} else {
		pend = nil
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		return fd, nil, err
	}
	ok = true
	return fd, pend, nil
}

// setupMessage handles a message received before the ack; done reports the
// ack of the subscription.
func (d wsDialer) setupMessage(fd int, p []byte) (done bool, err error) {
	if d.flavour == flavourCentrifuge {
		for line := range bytes.SplitSeq(p, []byte("\n")) {
			switch {
			case len(line) == 0:
			case string(line) == "{}":
				_ = writeAll(fd, appendClientFrame(nil, 0x1, []byte("{}")))
			case bytes.HasPrefix(line, []byte(`{"id":1,"connect":`)):
			case bytes.HasPrefix(line, []byte(`{"id":2,"subscribe":`)):
				done = true
			default:
				return false, fmt.Errorf("unexpected reply during setup: %q", line)
			}
		}
		return done, nil
	}
	if bytes.HasPrefix(p, []byte(`{"type":"ack"`)) {
		return true, nil
	}
	return false, fmt.Errorf("unexpected reply during setup: %q", p)
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := syscall.Write(fd, b)
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func readSome(fd int, b []byte) (int, error) {
	for {
		n, err := syscall.Read(fd, b)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

// appendClientFrame appends a masked, final frame.
func appendClientFrame(dst []byte, op byte, p []byte) []byte {
	dst = append(dst, 0x80|op)
	switch n := len(p); {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n < 1<<16:
		dst = append(dst, 0x80|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	dst = append(dst, mask[:]...)
	start := len(dst)
	dst = append(dst, p...)
	for i := range p {
		dst[start+i] ^= mask[i&3]
	}
	return dst
}

var errMaskedServerFrame = errors.New("server frame is masked")

// parseServerFrame parses one whole unmasked server frame; n is 0 when the
// frame is not complete yet.
func parseServerFrame(b []byte) (fin bool, op byte, payload []byte, n int, err error) {
	if len(b) < 2 {
		return
	}
	if b[1]&0x80 != 0 {
		err = errMaskedServerFrame
		return
	}
	ln := int(b[1] & 0x7f)
	h := 2
	switch ln {
	case 126:
		if len(b) < 4 {
			return
		}
		ln = int(binary.BigEndian.Uint16(b[2:]))
		h = 4
	case 127:
		if len(b) < 10 {
			return
		}
		ln = int(binary.BigEndian.Uint64(b[2:]))
		h = 10
	}
	if len(b)-h < ln {
		return
	}
	return b[0]&0x80 != 0, b[0] & 0x0f, b[h : h+ln], h + ln, nil
}

// run is a worker: it reads every readable socket and checks what it got.
func (w *loadWorker) run() {
	g := w.g
	events := make([]syscall.EpollEvent, 512)
	for {
		n, err := syscall.EpollWait(w.epfd, events, -1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			g.fail(nil, "epoll_wait: "+err.Error())
			return
		}
		var got int64
		for i := range n {
			got += w.read(g.conns[events[i].Fd])
		}
		if got > 0 {
			if g.total.Add(got) >= g.target.Load() {
				select {
				case g.notify <- struct{}{}:
				default:
				}
			}
		}
	}
}

// read reads what c has and processes every whole frame; it returns the
// number of intact deliveries.
func (w *loadWorker) read(c *loadConn) int64 {
	if c.closed {
		return 0
	}
	g := w.g
	n0 := copy(w.buf, c.pend)
	n, err := syscall.Read(c.fd, w.buf[n0:])
	if err == syscall.EAGAIN || err == syscall.EINTR {
		return 0
	}
	if err != nil || n == 0 {
		reason := "connection closed by the server"
		if err != nil {
			reason = "read: " + err.Error()
		}
		g.fail(c, reason)
		w.drop(c)
		return 0
	}
	data := w.buf[:n0+n]
	g.wireBytes.Add(int64(n))
	var now int64
	lat := g.recLat.Load()
	if lat {
		now = time.Now().UnixNano()
		w.latMu.Lock()
		defer w.latMu.Unlock()
	}
	var got int64
	off := 0
	for {
		fin, op, p, fn, err := parseServerFrame(data[off:])
		if err != nil {
			g.fail(c, err.Error())
			w.drop(c)
			return got
		}
		if fn == 0 {
			break
		}
		if data[off]&0x40 != 0 { // RSV1: a compressed message
			if w.z == nil {
				g.fail(c, "compressed frame without permessage-deflate")
				w.drop(c)
				return got
			}
			if p, err = w.z.cached(p); err != nil {
				g.fail(c, "inflate: "+err.Error())
				w.drop(c)
				return got
			}
		}
		off += fn
		switch op {
		case 0x1, 0x2:
			if !fin {
				g.fail(c, "fragmented message")
				continue
			}
			if g.cfg.flavour == flavourCentrifuge {
				for len(p) > 0 {
					line := p
					if i := bytes.IndexByte(p, '\n'); i >= 0 {
						line, p = p[:i], p[i+1:]
					} else {
						p = nil
					}
					if string(line) == "{}" { // application ping
						_ = writeAll(c.fd, appendClientFrame(nil, 0x1, []byte("{}")))
						continue
					}
					got += w.delivery(c, line, now, lat)
				}
			} else {
				got += w.delivery(c, p, now, lat)
			}
		case 0x8:
			g.fail(c, fmt.Sprintf("server sent close %q", p))
		case 0x9:
			_ = writeAll(c.fd, appendClientFrame(nil, 0xA, p))
		}
	}
	c.pend = append(c.pend[:0], data[off:]...)
	return got
}

func (w *loadWorker) delivery(c *loadConn, m []byte, now int64, lat bool) int64 {
	check := checkMessage
	if w.g.cfg.zdata {
		check = checkZMessage
	}
	info, err := check(m, c.env, c.ti)
	if err != nil {
		if len(m) > 200 {
			m = m[:200]
		}
		w.g.fail(c, fmt.Sprintf("%v: %q", err, m))
		return 0
	}
	if info.seq != c.next {
		w.g.fail(c, fmt.Sprintf("topic %d: got message %d, want %d", c.ti, info.seq, c.next))
	}
	c.next = info.seq + 1
	c.count.Add(1)
	if lat {
		w.lat = append(w.lat, now-info.ts)
	}
	return 1
}

func (w *loadWorker) drop(c *loadConn) {
	c.closed = true
	_ = syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
	_ = syscall.Close(c.fd)
}

func (g *loadGen) fail(c *loadConn, reason string) {
	if g.errCount.Add(1) == 1 {
		if c != nil {
			reason = fmt.Sprintf("connection %d: %s", g.cfg.from+c.idx, reason)
		}
		g.errMu.Lock()
		g.firstErr = reason
		g.errMu.Unlock()
	}
	select {
	case g.notify <- struct{}{}:
	default:
	}
}

// expect waits for perConn deliveries on every connection; see runLoadGen.
func (g *loadGen) expect(perConn int64, stall time.Duration) error {
	target := perConn * int64(len(g.conns))
	g.target.Store(target)
	last, lastChange := g.total.Load(), time.Now()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for g.total.Load() < target && g.errCount.Load() == 0 {
		select {
		case <-g.notify:
		case <-tick.C:
		}
		if t := g.total.Load(); t != last {
			last, lastChange = t, time.Now()
		} else if time.Since(lastChange) > stall {
			break
		}
	}
	if n := g.errCount.Load(); n > 0 {
		g.errMu.Lock()
		defer g.errMu.Unlock()
		return fmt.Errorf("%d bad deliveries or connection errors; first: %s", n, g.firstErr)
	}
	short, over := 0, 0
	first := -1
	for i, c := range g.conns {
		switch n := c.count.Load(); {
		case n < perConn:
			short++
			if first < 0 {
				first = i
			}
		case n > perConn:
			over++
			if first < 0 {
				first = i
			}
		}
	}
	if short > 0 || over > 0 {
		return fmt.Errorf("%d of %d connections missed deliveries and %d got too many (want %d each, total %d of %d; e.g. connection %d has %d)",
			short, len(g.conns), over, perConn, g.total.Load(), target, g.cfg.from+first, g.conns[first].count.Load())
	}
	return nil
}

// latencies returns the count, p50, p99 and max of the latencies recorded
// since the last call, and forgets them.
func (g *loadGen) latencies() (n int, p50, p99, mx int64) {
	var all []int64
	for _, w := range g.workers {
		w.latMu.Lock()
		all = append(all, w.lat...)
		w.lat = w.lat[:0]
		w.latMu.Unlock()
	}
	if len(all) == 0 {
		return 0, 0, 0, 0
	}
	slices.Sort(all)
	q := func(p float64) int64 { return all[min(len(all)-1, int(p*float64(len(all))))] }
	return len(all), q(0.50), q(0.99), all[len(all)-1]
}
