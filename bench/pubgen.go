//go:build linux

package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The publishers' load generator (FTBENCH_ROLE=publishers) is the load
// generator of the scenarios where clients publish (Ingest, Chat). Like the
// subscribers' one (loadgen.go) it runs in a child process on raw
// non-blocking sockets and epoll, so the benchmark process holds only the
// server and its CPU time is the server's. Every connection subscribes to
// one topic and publishes to that same topic:
//
//	connection g (0 <= g < total) -> topic g % topics, member g / topics
//
// so a topic has total/topics members, each of which publishes to it and
// receives every member's messages, its own included. Every delivery is
// checked (envelope, topic, pad, and per publisher a sequence number that
// must go up by one); a gap is a loss, anything duplicated, reordered,
// corrupt or unexpected is "bad". Nothing is hidden: a run ends when every
// connection has what it must have, or when nothing has moved for the
// stall time, and reports what was sent and received either way.
//
// One child runs one scenario. The parent drives it with lines on stdin:
//
//	(child)  ready <conns>                               every connection is subscribed
//	ingest <perConn> <window> <stallMs>       ->  result k=v ... first=<text>
//	chat <startUnixNs> <periodNs> <msgs> <stallMs> -> result k=v ... first=<text>
//	quit                                                 exit
//
// ingest: every connection publishes perConn messages as fast as it can,
// with at most window unacknowledged (0: no bound, everything pipelined,
// only TCP slows the writer). What acknowledges a publish depends on the
// server (FTBENCH_ACK): "reply" counts the server's answer to the request
// (firetower's ack or error for a publish with an id, centrifuge's publish
// reply or error); "delivery" counts the publisher's own delivery of its
// message (the gorilla hub and the floor answer nothing to a publish).
//
// chat: member g publishes its k-th message (k < msgs) at
// start + k*period + g*period/total, a steady rate spread evenly over the
// period; every delivery's publish->receive latency is recorded, from the
// time the publish was written (lag is how late the schedule ran at worst:
// a load generator starved of CPU would send late, not the server deliver
// late, so that time is not counted against the server; the parent logs it).

// pubConfig is read from the environment by the child.
type pubConfig struct {
	addr, path, flavour string
	from, conns, total  int
	topics              int
	ackByReply          bool
	dialers, workers    int
}

func pubConfigFromEnv() (pubConfig, error) {
	atoi := func(k string, def int) (int, error) {
		v := os.Getenv(k)
		if v == "" {
			return def, nil
		}
		return strconv.Atoi(v)
	}
	c := pubConfig{
		addr:       os.Getenv("FTBENCH_ADDR"),
		path:       os.Getenv("FTBENCH_PATH"),
		flavour:    os.Getenv("FTBENCH_FLAVOUR"),
		ackByReply: os.Getenv("FTBENCH_ACK") == "reply",
	}
	var errs []error
	var err error
	c.from, err = atoi("FTBENCH_FROM", 0)
	errs = append(errs, err)
	c.conns, err = atoi("FTBENCH_CONNS", 1)
	errs = append(errs, err)
	c.total, err = atoi("FTBENCH_TOTAL", c.conns)
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
	if c.addr == "" || c.path == "" || c.conns <= 0 || c.topics <= 0 || c.total < c.from+c.conns ||
		c.total%c.topics != 0 || c.workers <= 0 || c.dialers <= 0 {
		return c, fmt.Errorf("bad publishers config %+v", c)
	}
	return c, nil
}

type pubConn struct {
	g      *pubGen
	idx    int // in g.conns
	gi     int // global index
	topic  int
	member int
	tname  string
	env    *envelope
	w      *pubWorker

	// Writing: any goroutine, under wmu. What the socket does not take
	// waits in out until the worker sees EPOLLOUT.
	wmu     sync.Mutex
	fd      int
	out     []byte
	wantOut bool

	room chan struct{} // cap 1: an ack, a drained out buffer or a close

	// Publisher goroutine (ingest) or scheduler (chat) only.
	seq  uint64
	key  uint32
	done atomic.Bool // the publisher has sent all it will send

	// Worker only.
	pend    []byte
	next    []uint64 // next expected seq per member of the topic
	dropped bool

	sent, recv, own, acks, errs, bad, gaps atomic.Int64
	closed                                 atomic.Bool
}

type pubWorker struct {
	g    *pubGen
	epfd int
	buf  []byte

	latMu sync.Mutex
	lat   []int64
}

type pubGen struct {
	cfg     pubConfig
	members int
	conns   []*pubConn
	workers []*pubWorker

	recLat   atomic.Bool
	lastRecv atomic.Int64 // unix ns of the latest delivery
	maxLag   atomic.Int64 // chat: the most a publish went out after its time

	noteMu sync.Mutex
	notes  map[string]string // the first bad frame, error frame, close frame, closed connection
}

// runPublishers is the child's main.
func runPublishers(stdin io.Reader, stdout io.Writer) error {
	cfg, err := pubConfigFromEnv()
	if err != nil {
		return err
	}
	g := &pubGen{cfg: cfg, members: cfg.total / cfg.topics, notes: map[string]string{}}
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
		num := func(i int) int64 {
			if i >= len(f) {
				return 0
			}
			v, _ := strconv.ParseInt(f[i], 10, 64)
			return v
		}
		switch f[0] {
		case "ingest":
			reply("%s", g.ingest(num(1), int(num(2)), time.Duration(num(3))*time.Millisecond))
		case "chat":
			reply("%s", g.chat(num(1), time.Duration(num(2)), int(num(3)), time.Duration(num(4))*time.Millisecond))
		case "quit":
			return nil
		default:
			reply("fail unknown command %q", f[0])
		}
	}
	return sc.Err()
}

// connectAll dials and subscribes every connection, a few at a time, then
// hands each socket to a worker's epoll.
func (g *pubGen) connectAll() error {
	d, err := newWSDialer(g.cfg.addr, g.cfg.path, g.cfg.flavour)
	if err != nil {
		return err
	}
	for range g.cfg.workers {
		epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			return err
		}
		g.workers = append(g.workers, &pubWorker{g: g, epfd: epfd, buf: make([]byte, 256<<10)})
	}
	envs := map[int]*envelope{}
	for i := range g.cfg.conns {
		gi := g.cfg.from + i
		ti := gi % g.cfg.topics
		env := envs[ti]
		if env == nil {
			e := deliveryEnvelope(g.cfg.flavour, topicName(ti))
			env = &e
			envs[ti] = env
		}
		g.conns = append(g.conns, &pubConn{
			g: g, idx: i, gi: gi, topic: ti, member: gi / g.cfg.topics, tname: topicName(ti), env: env,
			w: g.workers[i%len(g.workers)], fd: -1, room: make(chan struct{}, 1),
			key: uint32(gi)*2654435761 + 1, next: make([]uint64, g.members),
		})
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range min(g.cfg.dialers, len(g.conns)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				mu.Lock()
				failed := firstErr != nil
				mu.Unlock()
				if i >= len(g.conns) || failed {
					return
				}
				c := g.conns[i]
				fd, pend, err := d.dial(c.tname)
				if err == nil {
					c.fd, c.pend = fd, pend
					ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(i)}
					err = syscall.EpollCtl(c.w.epfd, syscall.EPOLL_CTL_ADD, fd, &ev)
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("connection %d: %w", c.gi, err)
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// note keeps the first text of each kind (error frame, close, bad).
func (g *pubGen) note(kind string, c *pubConn, text string) {
	if len(text) > 200 {
		text = text[:200] + "..."
	}
	g.noteMu.Lock()
	defer g.noteMu.Unlock()
	if _, ok := g.notes[kind]; !ok {
		g.notes[kind] = fmt.Sprintf("connection %d: %s", c.gi, text)
	}
}

func (c *pubConn) signal() {
	select {
	case c.room <- struct{}{}:
	default:
	}
}

// markClosed records that the connection is gone (the worker closes the
// socket when it sees it).
func (c *pubConn) markClosed(reason string) {
	if c.closed.CompareAndSwap(false, true) {
		c.g.note("close", c, reason)
		c.signal()
	}
}

// send writes b, or queues what the socket does not take for the worker
// to write when the socket has room again. It never blocks.
func (c *pubConn) send(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed.Load() {
		return errConnClosed
	}
	if len(c.out) > 0 {
		c.out = append(c.out, b...)
		return nil
	}
	for len(b) > 0 {
		n, err := syscall.Write(c.fd, b)
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			break
		}
		if err != nil {
			c.markClosed("write: " + err.Error())
			return err
		}
		b = b[n:]
	}
	if len(b) > 0 {
		c.out = append(c.out, b...)
		c.watchOut(true)
	}
	return nil
}

var errConnClosed = errors.New("connection closed")

// watchOut turns EPOLLOUT on or off (under wmu).
func (c *pubConn) watchOut(on bool) {
	if c.wantOut == on {
		return
	}
	c.wantOut = on
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(c.idx)}
	if on {
		ev.Events |= syscall.EPOLLOUT
	}
	_ = syscall.EpollCtl(c.w.epfd, syscall.EPOLL_CTL_MOD, c.fd, &ev)
}

// flushOut writes what waits in out (worker, on EPOLLOUT).
func (c *pubConn) flushOut() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	w := 0
	for w < len(c.out) {
		n, err := syscall.Write(c.fd, c.out[w:])
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			break
		}
		if err != nil {
			c.markClosed("write: " + err.Error())
			c.out = c.out[:0]
			c.watchOut(false)
			return
		}
		w += n
	}
	c.out = c.out[:copy(c.out, c.out[w:])]
	if len(c.out) == 0 {
		c.watchOut(false)
		c.signal()
	}
}

func (c *pubConn) outLen() int {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return len(c.out)
}

// publishFrame appends a masked frame with c's next publish (id = seq+3:
// the subscription used ids 1 and 2).
func (c *pubConn) publishFrame(dst, scratch []byte, withID bool, ts int64) ([]byte, []byte) {
	data := appendPubData(scratch[:0], c.topic, c.member, c.seq, ts)
	req := appendPublishRequest(data[len(data):], c.g.cfg.flavour, c.tname, c.seq+3, withID, data)
	c.key ^= c.key << 13
	c.key ^= c.key >> 17
	c.key ^= c.key << 5
	dst = appendMaskedFrame(dst, 0x1, req, c.key)
	c.seq++
	return dst, data[:0]
}

// acked is how many of c's publishes are acknowledged (see FTBENCH_ACK).
func (c *pubConn) acked() int64 {
	if c.g.cfg.ackByReply {
		return c.acks.Load() + c.errs.Load()
	}
	return c.own.Load()
}

// maxOut bounds what a publisher queues in this process beyond what the
// socket took (unbounded pipelining is bounded by TCP, not by us).
const maxOut = 1 << 20

// ingestPublish publishes n messages, at most window unacknowledged
// (0: no bound).
func (c *pubConn) ingestPublish(n int64, window int) {
	defer func() {
		c.done.Store(true)
		c.signal()
	}()
	buf := make([]byte, 0, 64<<10)
	scratch := make([]byte, 0, 512)
	for sent := int64(0); sent < n; {
		if c.closed.Load() {
			return
		}
		k := min(n-sent, 256)
		if window > 0 {
			k = min(k, int64(window)-(sent-c.acked()))
		} else if c.outLen() > maxOut {
			k = 0
		}
		if k <= 0 {
			select {
			case <-c.room:
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		buf = buf[:0]
		ts := time.Now().UnixNano()
		for range k {
			buf, scratch = c.publishFrame(buf, scratch, true, ts)
		}
		if c.send(buf) != nil {
			return
		}
		sent += k
		c.sent.Add(k)
	}
}

// run is a worker: it reads every readable socket and writes what waits
// for a writable one.
func (w *pubWorker) run() {
	events := make([]syscall.EpollEvent, 512)
	for {
		n, err := syscall.EpollWait(w.epfd, events, -1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return
		}
		for i := range n {
			c := w.g.conns[events[i].Fd]
			if events[i].Events&syscall.EPOLLOUT != 0 {
				c.flushOut()
			}
			if events[i].Events&(syscall.EPOLLIN|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
				w.read(c)
			}
		}
	}
}

func (w *pubWorker) read(c *pubConn) {
	if c.dropped {
		return
	}
	g := w.g
	if len(c.pend) > len(w.buf)/2 {
		w.buf = make([]byte, 2*len(c.pend)+len(w.buf))
	}
	n0 := copy(w.buf, c.pend)
	n, err := syscall.Read(c.fd, w.buf[n0:])
	if err == syscall.EAGAIN || err == syscall.EINTR {
		return
	}
	if err != nil || n == 0 {
		reason := "connection closed by the server"
		if err != nil {
			reason = "read: " + err.Error()
		}
		c.markClosed(reason)
		w.drop(c)
		return
	}
	data := w.buf[:n0+n]
	now := time.Now().UnixNano()
	lat := g.recLat.Load()
	if lat {
		w.latMu.Lock()
		defer w.latMu.Unlock()
	}
	got := false
	off := 0
	for {
		fin, op, p, fn, err := parseServerFrame(data[off:])
		if err != nil {
			c.bad.Add(1)
			g.note("bad", c, err.Error())
			c.markClosed(err.Error())
			w.drop(c)
			return
		}
		if fn == 0 {
			break
		}
		off += fn
		switch op {
		case 0x1, 0x2:
			if !fin {
				c.bad.Add(1)
				g.note("bad", c, "fragmented message")
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
					got = w.message(c, line, now, lat) || got
				}
			} else {
				got = w.message(c, p, now, lat) || got
			}
		case 0x8:
			why := "server sent close (no status code)"
			if len(p) >= 2 {
				why = fmt.Sprintf("server sent close %d %q", int(p[0])<<8|int(p[1]), p[2:])
			}
			g.note("close frame", c, why)
			c.markClosed(why)
		case 0x9:
			_ = c.send(appendClientFrame(nil, 0xA, p))
		}
	}
	c.pend = append(c.pend[:0], data[off:]...)
	if got {
		for {
			l := g.lastRecv.Load()
			if now <= l || g.lastRecv.CompareAndSwap(l, now) {
				break
			}
		}
	}
}

// message handles one message; it reports a delivery.
func (w *pubWorker) message(c *pubConn, m []byte, now int64, lat bool) bool {
	g := w.g
	if bytes.HasPrefix(m, c.env.prefix) {
		info, err := checkPubMessage(m, c.env, c.topic)
		if err == nil && info.member >= len(c.next) {
			err = fmt.Errorf("publisher %d of %d", info.member, len(c.next))
		}
		if err != nil {
			c.bad.Add(1)
			g.note("bad", c, fmt.Sprintf("%v: %q", err, m))
			return false
		}
		want := c.next[info.member]
		if info.seq < want {
			c.bad.Add(1)
			g.note("bad", c, fmt.Sprintf("topic %d, publisher %d: got message %d after %d (duplicate or out of order)", c.topic, info.member, info.seq, want-1))
			return false
		}
		if info.seq > want {
			c.gaps.Add(int64(info.seq - want))
		}
		c.next[info.member] = info.seq + 1
		c.recv.Add(1)
		if info.member == c.member {
			c.own.Add(1)
			if !g.cfg.ackByReply {
				c.signal()
			}
		}
		if lat {
			w.lat = append(w.lat, now-info.ts)
		}
		return true
	}
	if g.cfg.flavour == flavourCentrifuge {
		switch {
		case len(m) == 0:
		case string(m) == "{}": // application ping
			_ = c.send(appendClientFrame(nil, 0x1, []byte("{}")))
		case bytes.HasPrefix(m, []byte(`{"id":`)) && bytes.Contains(m, []byte(`"error":`)):
			c.errs.Add(1)
			g.note("error", c, string(m))
			c.signal()
		case bytes.HasPrefix(m, []byte(`{"id":`)) && bytes.Contains(m, []byte(`"publish":`)):
			c.acks.Add(1)
			c.signal()
		default:
			c.bad.Add(1)
			g.note("bad", c, fmt.Sprintf("unexpected message %q", m))
		}
		return false
	}
	switch {
	case bytes.HasPrefix(m, []byte(`{"type":"ack"`)):
		c.acks.Add(1)
		c.signal()
	case bytes.HasPrefix(m, []byte(`{"type":"error"`)):
		c.errs.Add(1)
		g.note("error", c, string(m))
		c.signal()
	case bytes.HasPrefix(m, []byte(`{"type":"pong"`)):
	default:
		c.bad.Add(1)
		g.note("bad", c, fmt.Sprintf("unexpected message %q", m))
	}
	return false
}

func (w *pubWorker) drop(c *pubConn) {
	c.dropped = true
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
	_ = syscall.Close(c.fd)
	c.out = nil
}

// progress changes whenever anything is sent or received.
func (g *pubGen) progress() int64 {
	var p int64
	for _, c := range g.conns {
		p += c.sent.Load() + c.recv.Load() + c.acks.Load() + c.errs.Load() + c.bad.Load()
		if c.closed.Load() {
			p++
		}
	}
	return p
}

// settleQuiet is how long a run waits, once every connection is complete
// or accounted for by error frames and closes, for anything still on its
// way.
const settleQuiet = 300 * time.Millisecond

// wait returns when every connection is complete, or when every one is
// complete or settled and nothing moved for settleQuiet, or when nothing
// moved for stall.
func (g *pubGen) wait(stall time.Duration, complete, settled func(*pubConn) bool) {
	last, lastChange := g.progress(), time.Now()
	for {
		allComplete, allSettled := true, true
		for _, c := range g.conns {
			if !complete(c) {
				allComplete = false
				if !settled(c) {
					allSettled = false
				}
			}
		}
		if allComplete {
			return
		}
		if p := g.progress(); p != last {
			last, lastChange = p, time.Now()
		}
		quiet := time.Since(lastChange)
		if allSettled && quiet > settleQuiet || quiet > stall {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (g *pubGen) ingest(n int64, window int, stall time.Duration) string {
	start := time.Now().UnixNano()
	g.lastRecv.Store(start)
	for _, c := range g.conns {
		go c.ingestPublish(n, window)
	}
	g.wait(stall,
		func(c *pubConn) bool { return c.recv.Load() >= n },
		func(c *pubConn) bool {
			return c.closed.Load() || c.done.Load() && c.recv.Load()+c.errs.Load() >= n
		})
	return g.result(start, n)
}

func (g *pubGen) chat(start int64, period time.Duration, msgs int, stall time.Duration) string {
	g.recLat.Store(true)
	g.lastRecv.Store(start)
	var sched sync.WaitGroup
	sched.Add(1)
	go func() {
		defer sched.Done()
		scratch := make([]byte, 0, 512)
		var buf []byte
		total := int64(g.cfg.total)
		for k := range int64(msgs) {
			base := start + k*int64(period)
			for _, c := range g.conns {
				due := base + int64(c.gi)*int64(period)/total
				if d := due - time.Now().UnixNano(); d > int64(500*time.Microsecond) {
					time.Sleep(time.Duration(d))
				}
				if c.closed.Load() {
					continue
				}
				now := time.Now().UnixNano()
				if now-due > g.maxLag.Load() {
					g.maxLag.Store(now - due)
				}
				buf, scratch = c.publishFrame(buf[:0], scratch, false, now)
				if c.send(buf) == nil {
					c.sent.Add(1)
				}
			}
		}
		for _, c := range g.conns {
			c.done.Store(true)
		}
	}()
	expected := int64(g.members) * int64(msgs)
	sched.Wait() // nothing is complete before the schedule ends
	g.wait(stall,
		func(c *pubConn) bool { return c.recv.Load() >= expected },
		func(c *pubConn) bool { return c.closed.Load() })
	return g.result(start, expected)
}

// result is the answer line of a run: counts summed over this process's
// connections (expected is per connection), the time from start to the
// last delivery, latency quantiles when recorded, and the first note of
// each kind.
func (g *pubGen) result(start, expected int64) string {
	var sent, recv, acks, errs, bad, gaps, closed int64
	for _, c := range g.conns {
		sent += c.sent.Load()
		recv += c.recv.Load()
		acks += c.acks.Load()
		errs += c.errs.Load()
		bad += c.bad.Load()
		gaps += c.gaps.Load()
		if c.closed.Load() {
			closed++
		}
	}
	var all []int64
	for _, w := range g.workers {
		w.latMu.Lock()
		all = append(all, w.lat...)
		w.lat = w.lat[:0]
		w.latMu.Unlock()
	}
	var p50, p99, mx int64
	if len(all) > 0 {
		slices.Sort(all)
		q := func(p float64) int64 { return all[min(len(all)-1, int(p*float64(len(all))))] }
		p50, p99, mx = q(0.50), q(0.99), all[len(all)-1]
	}
	g.noteMu.Lock()
	var notes []string
	for _, k := range []string{"bad", "error", "close frame", "close"} {
		if v, ok := g.notes[k]; ok {
			notes = append(notes, k+": "+v)
		}
	}
	g.noteMu.Unlock()
	return fmt.Sprintf("result sent=%d recv=%d expected=%d acks=%d errors=%d bad=%d gaps=%d closed=%d elapsed=%d latn=%d p50=%d p99=%d max=%d lag=%d first=%s",
		sent, recv, expected*int64(len(g.conns)), acks, errs, bad, gaps, closed, g.lastRecv.Load()-start,
		len(all), p50, p99, mx, g.maxLag.Load(), oneLine(strings.Join(notes, "; ")))
}
