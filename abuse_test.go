package firetower_test

// Abuse tests (issue 6, "a server that bad clients cannot hurt"): slowloris on the
// handshake and on frame bytes, a handshake flood, a ping flood, clients that never
// read, giant declared lengths, unauthenticated and forbidden requests, a per-IP cap,
// and floods of tiny frames.
//
// Every case runs a well-behaved client alongside (abWatcher): it is subscribed to a
// topic the server publishes to every few milliseconds and must receive every one of
// those messages, in order, during and after the abuse. Each case asserts what the
// abuser gets: its close code, HTTP status or error code.
//
// The abusers are raw net.Conns driven by a few goroutines that each own many
// connections (never a goroutine per connection), so the counts stay far below the
// race detector's goroutine limit and the process's descriptor limit (~20,000: the
// biggest case holds 2,000 client sockets and 2,000 server sockets at once). Under
// -short, and unless FIRETOWER_FULL_TESTS=1 (harness_test.go), every count is divided by 10.
//
// Helpers in this file are prefixed "ab" so they cannot clash with other test files.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/middleware"
)

// abTimeout bounds every wait of these tests. It is a deadline, never a synchronisation.
const abTimeout = 20 * time.Second

const abWatchTopic = "/abuse/watch"

// abScale divides a count by 10 under -short, and unless the full sizes are asked
// for (fullTests, FIRETOWER_FULL_TESTS=1: .ci/run's -race step).
func abScale(n int) int {
	if testing.Short() || !fullTests() {
		return max(n/10, 1)
	}
	return n
}

// abServer starts a tower on a free loopback port and shuts it down at the end of the test.
func abServer(t testing.TB, opts ...firetower.Option) *firetower.Tower {
	t.Helper()
	return startTower(t, abTimeout, opts...)
}

// abHeap is the heap in use, after a collection when gc is set.
func abHeap(gc bool) uint64 {
	if gc {
		runtime.GC()
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// abMiB formats a byte count.
func abMiB(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// abGrowth is after-before, 0 when the heap shrank.
func abGrowth(before, after uint64) uint64 {
	if after < before {
		return 0
	}
	return after - before
}

// abPeaks are the largest heap figures seen by abPeak.
type abPeaks struct {
	inuse uint64 // HeapInuse: live objects and garbage not yet collected
	live  uint64 // the live heap as of the latest collection (runtime/metrics)
}

// abLive is the live heap as of the latest collection.
func abLive() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// abPeak samples the heap (without collecting) until stop is closed and returns
// the largest values seen.
func abPeak(stop <-chan struct{}) <-chan abPeaks {
	out := make(chan abPeaks, 1)
	go func() {
		var p abPeaks
		tick := time.NewTicker(10 * time.Millisecond) // sampling interval
		defer tick.Stop()
		for {
			p.inuse, p.live = max(p.inuse, abHeap(false)), max(p.live, abLive())
			select {
			case <-stop:
				p.inuse, p.live = max(p.inuse, abHeap(false)), max(p.live, abLive())
				out <- p
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

// abWaitStats polls the tower's counters until cond holds, or fails the test.
func abWaitStats(t testing.TB, tw *firetower.Tower, what string, cond func(firetower.Stats) bool) {
	t.Helper()
	waitStats(t, tw, abTimeout, what, cond)
}

// abSettle waits until the server has exactly open connections (those of earlier
// steps are gone), so that counters read next belong to the next step alone.
func abSettle(t testing.TB, tw *firetower.Tower, open int64) {
	t.Helper()
	abWaitStats(t, tw, "earlier connections to be gone", func(s firetower.Stats) bool {
		return s.Transport.Open == open && s.Connections == open
	})
}

// abWaitGoroutines waits until the number of goroutines is back to base.
func abWaitGoroutines(t testing.TB, base int) {
	t.Helper()
	if !waitFor(abTimeout, func() bool { return runtime.NumGoroutine() <= base }) {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("goroutines: %d, baseline %d\n%s", runtime.NumGoroutine(), base, buf)
	}
}

// abGroups runs fn on g goroutines, each given its share [lo, hi) of n items, and
// waits for them.
func abGroups(n, g int, fn func(lo, hi int)) {
	var wg sync.WaitGroup
	for i := range g {
		lo, hi := i*n/g, (i+1)*n/g
		if lo == hi {
			continue
		}
		wg.Go(func() { fn(lo, hi) })
	}
	wg.Wait()
}

// ---------------------------------------------------------------------------------------
// raw websocket client pieces

// abRequest is an upgrade request for /ws on addr; extra are more header lines.
func abRequest(addr, query string, extra ...string) []byte {
	target := "/ws"
	if query != "" {
		target += "?" + query
	}
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n", target, addr)
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// abDial opens a TCP connection to addr.
func abDial(addr string) (net.Conn, error) {
	return net.DialTimeout("tcp", addr, abTimeout)
}

// abUpgrade sends the upgrade request on c and reads the answer. The reader is the
// connection's from then on (it may hold bytes read past the answer).
func abUpgrade(c net.Conn, req []byte) (*bufio.Reader, *http.Response, error) {
	_ = c.SetDeadline(time.Now().Add(abTimeout))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(req); err != nil {
		return nil, nil, err
	}
	br := bufio.NewReaderSize(c, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return br, resp, fmt.Errorf("upgrade refused: %s: %q", resp.Status, body)
	}
	return br, resp, nil
}

// abConnect dials addr and upgrades; it fails the test when it cannot.
func abConnect(t testing.TB, addr, query string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := abDial(addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	br, _, err := abUpgrade(c, abRequest(addr, query))
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	return c, br
}

var abMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// abHeader is a masked client frame header declaring n payload bytes.
func abHeader(fin bool, op ws.OpCode, n uint64) []byte {
	b0 := byte(op)
	if fin {
		b0 |= 0x80
	}
	var b []byte
	switch {
	case n <= 125:
		b = []byte{b0, 0x80 | byte(n)}
	case n <= 0xffff:
		b = []byte{b0, 0x80 | 126, 0, 0}
		binary.BigEndian.PutUint16(b[2:], uint16(n))
	default:
		b = []byte{b0, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint64(b[2:], n)
	}
	return append(b, abMask[:]...)
}

// abFrame is a masked client frame.
func abFrame(op ws.OpCode, fin bool, payload []byte) []byte {
	b := abHeader(fin, op, uint64(len(payload)))
	start := len(b)
	b = append(b, payload...)
	for i := range b[start:] {
		b[start+i] ^= abMask[i%4]
	}
	return b
}

// abText is a final masked text frame.
func abText(s string) []byte { return abFrame(ws.OpText, true, []byte(s)) }

// abServerFrame is a frame from the server.
type abServerFrame struct {
	op      ws.OpCode
	payload []byte
}

// code is the close code of a close frame (1005 when it has none).
func (f abServerFrame) code() int {
	if len(f.payload) < 2 {
		return 1005
	}
	return int(binary.BigEndian.Uint16(f.payload))
}

func (f abServerFrame) String() string {
	if f.op == ws.OpClose {
		return fmt.Sprintf("close %d %q", f.code(), f.payload[min(2, len(f.payload)):])
	}
	if len(f.payload) > 80 {
		return fmt.Sprintf("op %d %q...", f.op, f.payload[:80])
	}
	return fmt.Sprintf("op %d %q", f.op, f.payload)
}

// abParse parses the server frame at the start of b: n is 0 while it is incomplete.
func abParse(b []byte) (f abServerFrame, n int, err error) {
	if len(b) < 2 {
		return f, 0, nil
	}
	if b[1]&0x80 != 0 {
		return f, 0, errors.New("masked server frame")
	}
	if b[0]&0x80 == 0 {
		return f, 0, errors.New("fragmented server frame")
	}
	l, hn := uint64(b[1]&0x7f), 2
	switch l {
	case 126:
		if len(b) < 4 {
			return f, 0, nil
		}
		l, hn = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return f, 0, nil
		}
		l, hn = binary.BigEndian.Uint64(b[2:]), 10
	}
	if l > 16<<20 {
		return f, 0, fmt.Errorf("server frame of %d bytes", l)
	}
	if uint64(len(b)-hn) < l {
		return f, 0, nil
	}
	n = hn + int(l)
	return abServerFrame{op: ws.OpCode(b[0] & 0x0f), payload: b[hn:n]}, n, nil
}

// abRead reads one server frame.
func abRead(br *bufio.Reader) (abServerFrame, error) {
	h, err := ws.ReadHeader(br)
	if err != nil {
		return abServerFrame{}, err
	}
	if h.Masked || !h.Fin || h.Length > 16<<20 {
		return abServerFrame{}, fmt.Errorf("unexpected server frame header %+v", h)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(br, p); err != nil {
		return abServerFrame{}, err
	}
	return abServerFrame{op: h.OpCode, payload: p}, nil
}

// abReadClose reads frames until a close frame and returns it; other frames
// are returned too. It fails the test when the connection ends first.
func abReadClose(t testing.TB, c net.Conn, br *bufio.Reader) (abServerFrame, []abServerFrame) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(abTimeout))
	var before []abServerFrame
	for {
		f, err := abRead(br)
		if err != nil {
			t.Fatalf("reading until a close frame (after %d frames %v): %v", len(before), before, err)
		}
		if f.op == ws.OpClose {
			return f, before
		}
		before = append(before, f)
	}
}

// abExpectEOF reads until the server closes TCP: the frame stream must end there.
func abExpectEOF(t testing.TB, c net.Conn, br *bufio.Reader) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(abTimeout))
	rest, err := io.ReadAll(br)
	if err != nil && !abIsReset(err) {
		t.Fatalf("after the close frame: %v (read %q)", err, rest)
	}
}

// abIsReset reports whether err is the peer resetting or closing the connection.
func abIsReset(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed)
}

// abErrKind names the kind of a connection error, for reports.
func abErrKind(err error) string {
	switch {
	case errors.Is(err, io.EOF):
		return "eof"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case abIsTimeout(err):
		return "timeout"
	}
	return err.Error()
}

// abIsTimeout reports whether err is a deadline passing.
func abIsTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// abMsg is a JSON message from the server.
type abMsg struct {
	Type  string          `json:"type"`
	ID    json.RawMessage `json:"id"`
	Code  string          `json:"code"`
	Topic string          `json:"topic"`
	Data  json.RawMessage `json:"data"`
}

// abDecode decodes a text frame from the server.
func abDecode(t testing.TB, f abServerFrame) abMsg {
	t.Helper()
	if f.op != ws.OpText {
		t.Fatalf("expected a text frame, got %v", f)
	}
	var m abMsg
	if err := json.Unmarshal(f.payload, &m); err != nil {
		t.Fatalf("server sent invalid JSON %q: %v", f.payload, err)
	}
	return m
}

// ---------------------------------------------------------------------------------------
// the well-behaved client

// abWatcher is a well-behaved client: subscribed to abWatchTopic, to which the server
// publishes a numbered message every 2 ms; it must receive every one, in order.
type abWatcher struct {
	tw       *firetower.Tower
	ws       *websocket.Conn
	quit     chan struct{}
	pubDone  chan struct{}
	readDone chan struct{}
	quitOnce sync.Once
	once     sync.Once

	published atomic.Int64
	received  atomic.Int64
	maxLag    atomic.Int64 // nanoseconds, publish to receipt
	closing   atomic.Bool

	firstErr // the first failure
}

// abWatch connects a well-behaved client (query is the upgrade's query string) and
// starts publishing to it.
func abWatch(t testing.TB, tw *firetower.Tower, query string) *abWatcher {
	t.Helper()
	url := "ws://" + tw.Addr() + "/ws"
	if query != "" {
		url += "?" + query
	}
	d := websocket.Dialer{HandshakeTimeout: abTimeout}
	conn, resp, err := d.Dial(url, nil)
	if err != nil {
		status := ""
		if resp != nil {
			status = resp.Status
		}
		t.Fatalf("watcher dial: %v %s", err, status)
	}
	w := &abWatcher{tw: tw, ws: conn, quit: make(chan struct{}), pubDone: make(chan struct{}), readDone: make(chan struct{})}
	t.Cleanup(w.stop)
	_ = conn.SetReadDeadline(time.Now().Add(abTimeout))
	if err := conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"subscribe","topic":"`+abWatchTopic+`","id":"w"}`)); err != nil {
		t.Fatalf("watcher subscribe: %v", err)
	}
	_, p, err := conn.ReadMessage()
	if err != nil || !bytes.Contains(p, []byte(`"ack"`)) {
		t.Fatalf("watcher subscribe: %q, %v", p, err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	go w.read()
	go w.publish()
	// it is running once a first message went round
	if !waitFor(abTimeout, func() bool { return w.received.Load() > 0 || w.failed() != nil }) {
		t.Fatal("watcher: no message within the deadline")
	}
	if err := w.failed(); err != nil {
		t.Fatalf("watcher: %v", err)
	}
	return w
}

func (w *abWatcher) publish() {
	defer close(w.pubDone)
	tick := time.NewTicker(2 * time.Millisecond) // publishing pace
	defer tick.Stop()
	for {
		select {
		case <-w.quit:
			return
		case <-tick.C:
		}
		n := w.published.Load() + 1
		ctx, cancel := context.WithTimeout(context.Background(), abTimeout)
		err := w.tw.Publish(ctx, abWatchTopic, fmt.Appendf(nil, `{"seq":%d,"ns":%d}`, n, time.Now().UnixNano()))
		cancel()
		if err != nil {
			w.fail(fmt.Errorf("publish %d: %w", n, err))
			return
		}
		w.published.Store(n)
	}
}

func (w *abWatcher) read() {
	defer close(w.readDone)
	for {
		_, p, err := w.ws.ReadMessage()
		if err != nil {
			if !w.closing.Load() {
				w.fail(fmt.Errorf("watcher connection ended after %d messages: %w", w.received.Load(), err))
			}
			return
		}
		var m struct {
			Type, Topic string
			Data        struct{ Seq, Ns int64 }
		}
		if err := json.Unmarshal(p, &m); err != nil || m.Type != "publish" || m.Topic != abWatchTopic {
			w.fail(fmt.Errorf("watcher got %q (%v)", p, err))
			return
		}
		if want := w.received.Load() + 1; m.Data.Seq != want {
			w.fail(fmt.Errorf("watcher got message %d, want %d: lost or out of order", m.Data.Seq, want))
			return
		}
		if lag := time.Now().UnixNano() - m.Data.Ns; lag > w.maxLag.Load() {
			w.maxLag.Store(lag)
		}
		w.received.Add(1)
	}
}

// halt stops publishing.
func (w *abWatcher) halt() {
	w.quitOnce.Do(func() { close(w.quit) })
	<-w.pubDone
}

func (w *abWatcher) stop() {
	w.once.Do(func() {
		w.halt()
		w.closing.Store(true)
		_ = w.ws.Close()
		<-w.readDone
	})
}

// finish stops publishing, waits for the last message and checks that every message
// arrived in order.
func (w *abWatcher) finish(t testing.TB) {
	t.Helper()
	w.halt()
	n := w.published.Load()
	waitFor(abTimeout, func() bool { return w.received.Load() >= n || w.failed() != nil })
	if err := w.failed(); err != nil {
		t.Errorf("well-behaved client: %v", err)
	} else if got := w.received.Load(); got != n {
		t.Errorf("well-behaved client received %d of %d messages", got, n)
	}
	t.Logf("well-behaved client: %d messages in order, max latency %v", w.received.Load(), time.Duration(w.maxLag.Load()))
	w.stop()
}

// ---------------------------------------------------------------------------------------
// slowloris

// abSlowConn is one connection of a slowloris attack.
type abSlowConn struct {
	c      net.Conn
	r      io.Reader // c, or the reader that read the upgrade answer
	opened time.Time
	closed time.Time // zero while open
	how    string    // how the end showed: "eof", "reset: ...", "write: ..."
	sent   int
	got    []byte // bytes from the server
}

// abDribble writes one more byte of data to every open connection once per pace, and
// probes each connection for what the server sent or for its end, until every one is
// closed or until passes. It never writes the last byte of data.
func abDribble(conns []*abSlowConn, data []byte, pace time.Duration, until time.Time) {
	var buf [4096]byte
	for {
		round := time.Now()
		open := 0
		for _, sc := range conns {
			if !sc.closed.IsZero() {
				continue
			}
			if sc.sent < len(data)-1 {
				_ = sc.c.SetWriteDeadline(time.Now().Add(abTimeout))
				if _, err := sc.c.Write(data[sc.sent : sc.sent+1]); err != nil {
					sc.closed, sc.how = time.Now(), "write: "+abErrKind(err)
					// what the server sent before it closed is still there
					_ = sc.c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
					rest, _ := io.ReadAll(sc.r)
					sc.got = append(sc.got, rest...)
					_ = sc.c.Close()
					continue
				}
				sc.sent++
			}
			// a short read deadline is how a goroutine owning many connections
			// asks "anything there?" without blocking on any one of them
			_ = sc.c.SetReadDeadline(time.Now().Add(200 * time.Microsecond))
			n, err := sc.r.Read(buf[:])
			sc.got = append(sc.got, buf[:n]...)
			switch {
			case err == nil, abIsTimeout(err):
				open++
			case errors.Is(err, io.EOF):
				sc.closed, sc.how = time.Now(), "eof"
				_ = sc.c.Close()
			default:
				sc.closed, sc.how = time.Now(), "read: "+abErrKind(err)
				_ = sc.c.Close()
			}
		}
		if open == 0 || time.Now().After(until) {
			return
		}
		time.Sleep(time.Until(round.Add(pace))) // dribbling pace
	}
}

// abSlowReport summarises how a slowloris attack ended.
func abSlowReport(conns []*abSlowConn) (open int, maxLife time.Duration, hows map[string]int) {
	hows = map[string]int{}
	for _, sc := range conns {
		if sc.closed.IsZero() {
			open++
			continue
		}
		maxLife = max(maxLife, sc.closed.Sub(sc.opened))
		hows[sc.how]++
	}
	return open, maxLife, hows
}

// TestAbuseSlowlorisHandshake: 2,000 connections dribble their upgrade request one
// byte per 50 ms, far slower than the 300 ms handshake timeout. The server must close
// every one of them (no answer: TCP closed) about when the timeout says, keep its
// memory bounded, and keep serving the well-behaved client.
func TestAbuseSlowlorisHandshake(t *testing.T) {
	const hsTimeout = 300 * time.Millisecond
	n := abScale(2000)
	tw := abServer(t, firetower.WithHandshakeTimeout(hsTimeout))
	w := abWatch(t, tw, "")
	base := runtime.NumGoroutine()
	heap0 := abHeap(true)
	st0 := tw.Stats()

	req := abRequest(tw.Addr(), "")
	conns := make([]*abSlowConn, n)
	stopPeak := make(chan struct{})
	peak := abPeak(stopPeak)
	start := time.Now()
	var dialErrs atomic.Int64
	abGroups(n, 16, func(lo, hi int) {
		mine := conns[lo:hi]
		for i := range mine {
			c, err := abDial(tw.Addr())
			if err != nil {
				dialErrs.Add(1)
				mine[i] = &abSlowConn{closed: time.Now(), how: "dial: " + err.Error()}
				continue
			}
			mine[i] = &abSlowConn{c: c, r: c, opened: time.Now()}
		}
		abDribble(mine, req, 50*time.Millisecond, time.Now().Add(abTimeout))
	})
	close(stopPeak)
	pk := <-peak
	heapPeak := pk.inuse
	elapsed := time.Since(start)
	for _, sc := range conns {
		if sc.c != nil {
			_ = sc.c.Close()
		}
	}
	if dialErrs.Load() > 0 {
		t.Fatalf("%d of %d dials failed", dialErrs.Load(), n)
	}

	open, maxLife, hows := abSlowReport(conns)
	t.Logf("%d slowloris connections in %v: ends %v, longest life %v", n, elapsed.Round(time.Millisecond), hows, maxLife.Round(time.Millisecond))
	if open > 0 {
		t.Errorf("%d of %d slowloris connections still open after %v", open, n, abTimeout)
	}
	// Closed by the handshake timeout, not by the request's end: no
	// connection got to send its whole request (which takes len(req) x 50 ms,
	// many times the timeout). How long each lived is logged, not asserted:
	// a busy machine stretches it.
	for i, sc := range conns {
		if len(sc.got) > 0 {
			t.Errorf("connection %d got an answer %q; a handshake timeout closes without one", i, sc.got)
			break
		}
		if sc.sent >= len(req)-1 {
			t.Errorf("connection %d sent its whole request before it was closed", i)
			break
		}
	}
	abWaitStats(t, tw, "the slowloris connections to be gone", func(s firetower.Stats) bool {
		return s.Transport.Open == st0.Transport.Open && s.Connections == st0.Connections
	})
	st := tw.Stats()
	if got := st.Transport.Accepted - st0.Transport.Accepted; got != uint64(n) {
		t.Errorf("server accepted %d connections, want %d", got, n)
	}
	if st.Transport.Upgraded != st0.Transport.Upgraded || st.Transport.Rejected != st0.Transport.Rejected {
		t.Errorf("slowloris connections were upgraded (%d) or answered (%d)", st.Transport.Upgraded-st0.Transport.Upgraded, st.Transport.Rejected-st0.Transport.Rejected)
	}
	w.finish(t)
	abWaitGoroutines(t, base-2) // base counted the watcher's two goroutines, which finish ended
	heap1 := abHeap(true)
	t.Logf("heap in use: before %s, peak %s, after %s", abMiB(heap0), abMiB(heapPeak), abMiB(heap1))
	// A pending handshake holds its partial request (< 200 bytes here) and a
	// connection record; garbage between collections comes on top. 16 KiB per
	// connection is several times what is needed and far below a leak.
	if g := abGrowth(heap0, heapPeak); g > uint64(n)*16<<10+16<<20 {
		t.Errorf("heap grew by %s during the attack, want at most %s", abMiB(g), abMiB(uint64(n)*16<<10+16<<20))
	}
	if g := abGrowth(heap0, heap1); g > 8<<20 {
		t.Errorf("heap grew by %s after the attack, want at most 8 MiB", abMiB(g))
	}
}

// TestAbuseSlowlorisFrame: 500 upgraded connections each declare a 1,000-byte text
// frame and then dribble its payload one byte per 50 ms, forever. Every byte resets a
// timer that counts bytes, so such a connection would never be idle; yet it sends
// nothing the server can use and it holds a socket, a partial frame and a connection
// slot for as long as it likes (a 64 KiB frame at this pace takes 55 minutes, and the
// next one can start at once).
//
// What a server should do: count only whole frames as traffic, so a frame must be
// complete within the idle timeout. The connection is then closed like any idle one,
// with 1001 "idle timeout", however slowly its bytes trickle in. That is what this test
// asserts; it costs a well-behaved client nothing (any whole frame, a pong included,
// keeps it alive, and a 64 KiB message needs only about 1 KiB/s to arrive within the
// default 60 s).
func TestAbuseSlowlorisFrame(t *testing.T) {
	const idle = 1 * time.Second
	n := abScale(500)
	tw := abServer(t, firetower.WithIdleTimeout(idle), firetower.WithPingInterval(400*time.Millisecond))
	w := abWatch(t, tw, "")
	heap0 := abHeap(true)
	st0 := tw.Stats()

	const declared = 1000
	frame := abFrame(ws.OpText, true, bytes.Repeat([]byte("a"), declared))
	hdr := len(frame) - declared
	req := abRequest(tw.Addr(), "")
	conns := make([]*abSlowConn, n)
	var setupErr atomic.Pointer[error]
	start := time.Now()
	abGroups(n, 16, func(lo, hi int) {
		mine := conns[lo:hi]
		for i := range mine {
			mine[i] = &abSlowConn{closed: time.Now(), how: "setup failed"}
			c, err := abDial(tw.Addr())
			if err != nil {
				setupErr.CompareAndSwap(nil, &err)
				continue
			}
			br, _, err := abUpgrade(c, req)
			if err == nil {
				_, err = c.Write(frame[:hdr]) // the header at once, then the payload byte by byte
			}
			if err != nil {
				setupErr.CompareAndSwap(nil, &err)
				_ = c.Close()
				continue
			}
			mine[i] = &abSlowConn{c: c, r: br, opened: time.Now(), sent: hdr}
		}
		abDribble(mine, frame, 50*time.Millisecond, time.Now().Add(3*idle+2*time.Second))
	})
	elapsed := time.Since(start)
	heapPeak := abHeap(false)
	for _, sc := range conns {
		if sc.c != nil {
			_ = sc.c.Close()
		}
	}
	if e := setupErr.Load(); e != nil {
		t.Fatalf("setting up the connections: %v", *e)
	}

	open, maxLife, hows := abSlowReport(conns)
	codes := map[string]int{}
	for _, sc := range conns {
		codes[abCloseOf(sc.got)]++
	}
	t.Logf("%d frame-slowloris connections for %v: %d still open when the test stopped dribbling, ends %v, close frames %v, longest life %v",
		n, elapsed.Round(time.Millisecond), open, hows, codes, maxLife.Round(time.Millisecond))
	if open > 0 {
		t.Errorf("BUG: %d of %d connections dribbling a frame (1 byte per 50 ms, idle timeout %v) were still open after %v: "+
			"partial frames count as traffic, so the idle timeout never closes them", open, n, idle, elapsed.Round(time.Millisecond))
	} else {
		// close 1001 for every one: the idle timeout closed them (how long
		// each lived is logged above, not asserted)
		if codes["close 1001"] != n {
			t.Errorf("close frames %v, want close 1001 for all %d", codes, n)
		}
	}
	abWaitStats(t, tw, "the connections to be gone", func(s firetower.Stats) bool {
		return s.Transport.Open == st0.Transport.Open && s.Connections == st0.Connections
	})
	w.finish(t)
	t.Logf("heap in use: before %s, at the end of the attack %s", abMiB(heap0), abMiB(heapPeak))
	// each connection holds at most its partial frame (< 1 KiB here) and its records
	if g := abGrowth(heap0, heapPeak); g > uint64(n)*16<<10+16<<20 {
		t.Errorf("heap grew by %s during the attack", abMiB(g))
	}
}

// abCloseOf names the close frame in the server frames of b ("none" without one).
func abCloseOf(b []byte) string {
	for len(b) > 0 {
		f, n, err := abParse(b)
		if err != nil {
			return "unparsable: " + err.Error()
		}
		if n == 0 {
			return "none (truncated frame)"
		}
		if f.op == ws.OpClose {
			return fmt.Sprintf("close %d", f.code())
		}
		b = b[n:]
	}
	return "none"
}

// ---------------------------------------------------------------------------------------
// handshake flood

// TestAbuseHandshakeFlood: 5,000 connections complete their upgrade as fast as 8
// goroutines can make them and close at once (half with a close frame, half by
// dropping TCP). The server keeps serving, every one of them gets its OnDisconnect,
// and goroutines, connections and memory return to where they were.
func TestAbuseHandshakeFlood(t *testing.T) {
	n := abScale(5000)
	var disconnects atomic.Int64
	tw := abServer(t, firetower.OnDisconnect(func(next firetower.Handler) firetower.Handler {
		return func(c *firetower.Context) error { disconnects.Add(1); return next(c) }
	}))
	w := abWatch(t, tw, "")
	base := runtime.NumGoroutine()
	heap0 := abHeap(true)
	st0 := tw.Stats()
	d0 := disconnects.Load()

	req := abRequest(tw.Addr(), "")
	closeFrame := abFrame(ws.OpClose, true, []byte{0x03, 0xe8})
	var fails atomic.Int64
	var firstErr atomic.Pointer[error]
	start := time.Now()
	abGroups(n, 8, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			c, err := abDial(tw.Addr())
			if err == nil {
				_, _, err = abUpgrade(c, req)
				if err == nil && i%2 == 0 {
					_, err = c.Write(closeFrame)
				}
				_ = c.Close()
			}
			if err != nil {
				fails.Add(1)
				firstErr.CompareAndSwap(nil, &err)
			}
		}
	})
	elapsed := time.Since(start)
	if e := firstErr.Load(); e != nil {
		t.Fatalf("%d of %d handshakes failed, first: %v", fails.Load(), n, *e)
	}
	t.Logf("%d handshakes in %v (%.0f/s)", n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	abWaitStats(t, tw, "every flood connection to be gone", func(s firetower.Stats) bool {
		return s.Transport.Open == st0.Transport.Open && s.Connections == st0.Connections &&
			disconnects.Load()-d0 == int64(n)
	})
	st := tw.Stats()
	if got := st.Transport.Upgraded - st0.Transport.Upgraded; got != uint64(n) {
		t.Errorf("upgrades: %d, want %d", got, n)
	}
	w.finish(t)
	abWaitGoroutines(t, base-2) // base counted the watcher's two goroutines, which finish ended
	heap1 := abHeap(true)
	t.Logf("heap in use: before %s, after %s; goroutines back to %d", abMiB(heap0), abMiB(heap1), base-2)
	if g := abGrowth(heap0, heap1); g > 8<<20 {
		t.Errorf("heap grew by %s after the flood, want at most 8 MiB", abMiB(g))
	}
}

// ---------------------------------------------------------------------------------------
// ping flood

// abPings is count masked ping frames with payload p.
func abPings(count int, p []byte) []byte {
	one := abFrame(ws.OpPing, true, p)
	return bytes.Repeat(one, count)
}

// TestAbusePingFlood: a client sends websocket pings as fast as it can.
//
// NeverReads: it never reads, so the pongs pile up; once more than the outbound
// limit (64 KiB here) waits for it, the server closes it as a slow consumer (counted
// in SlowClosed; close code 4000 queued behind the pongs it will never read).
//
// Reads: it reads its pongs (never more than 4,096 unanswered): every ping is
// answered, in order, and it stays connected.
func TestAbusePingFlood(t *testing.T) {
	const limit = 64 << 10
	tw := abServer(t, firetower.WithOutboundLimit(limit))
	w := abWatch(t, tw, "")

	t.Run("NeverReads", func(t *testing.T) {
		abSettle(t, tw, 1)
		abHeap(true)
		live0 := abLive()
		st0 := tw.Stats()
		c, err := abDial(tw.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// (no small SO_RCVBUF here: on loopback a receive buffer smaller than one
		// segment makes the kernel drop the server's segments and stall both ways)
		br, _, err := abUpgrade(c, abRequest(tw.Addr(), ""))
		if err != nil {
			t.Fatal(err)
		}
		payload := bytes.Repeat([]byte("p"), 125)
		chunk := abPings(256, payload)
		stopPeak := make(chan struct{})
		peak := abPeak(stopPeak)
		sent := 0
		deadline := time.Now().Add(abTimeout)
		_ = c.SetWriteDeadline(deadline)
		for {
			if _, err = c.Write(chunk); err != nil {
				break
			}
			sent += 256
		}
		close(stopPeak)
		pk := <-peak
		if abIsTimeout(err) {
			t.Fatalf("still not closed after %d pings and %v: %+v", sent, abTimeout, tw.Stats())
		}
		// what reached the client: its pongs, then maybe the close frame
		_ = c.SetReadDeadline(time.Now().Add(abTimeout))
		got, rerr := io.ReadAll(br)
		pongs, end := 0, "none"
		for b := got; len(b) > 0; {
			f, n, perr := abParse(b)
			if perr != nil {
				t.Fatalf("server sent garbage: %v", perr)
			}
			if n == 0 {
				end = "truncated frame"
				break
			}
			b = b[n:]
			switch {
			case f.op == ws.OpPong && bytes.Equal(f.payload, payload):
				pongs++
			case f.op == ws.OpClose:
				end = f.String()
			default:
				t.Fatalf("unexpected frame %v", f)
			}
		}
		abWaitStats(t, tw, "the slow-consumer close to be counted", func(s firetower.Stats) bool {
			return s.SlowClosed == st0.SlowClosed+1 && s.Transport.Open == st0.Transport.Open
		})
		st := tw.Stats()
		t.Logf("pings sent %d (write ended: %s), pongs read afterwards %d, then %s (read ended: %v); live heap peak +%s (heap in use peak %s)",
			sent, abErrKind(err), pongs, end, rerr, abMiB(abGrowth(live0, pk.live)), abMiB(pk.inuse))
		if st.Transport.ProtocolClose != st0.Transport.ProtocolClose {
			t.Errorf("closed as a protocol error, want a slow-consumer close")
		}
		if strings.HasPrefix(end, "close") && !strings.HasPrefix(end, "close 4000") {
			t.Errorf("close frame %s, want 4000", end)
		}
		if pongs > sent {
			t.Errorf("%d pongs for %d pings", pongs, sent)
		}
		// the server holds at most the outbound limit (and one pong) for it,
		// in a buffer that may be twice that; 2 MiB leaves room for the rest
		if g := abGrowth(live0, pk.live); g > 2<<20 {
			t.Errorf("live heap grew by %s during the ping flood", abMiB(g))
		}
	})

	t.Run("Reads", func(t *testing.T) {
		abSettle(t, tw, 1)
		st0 := tw.Stats()
		total := abScale(200000)
		const window, batch = 4096, 512
		c, br := abConnect(t, tw.Addr(), "")
		var received atomic.Int64
		progress := make(chan struct{}, 1)
		readErr := make(chan error, 1)
		go func() {
			for i := 0; i < total; i++ {
				_ = c.SetReadDeadline(time.Now().Add(abTimeout))
				f, err := abRead(br)
				if err == nil && (f.op != ws.OpPong || len(f.payload) != 8 || binary.BigEndian.Uint64(f.payload) != uint64(i)) {
					err = fmt.Errorf("pong %d: got %v", i, f)
				}
				if err != nil {
					readErr <- err
					return
				}
				received.Add(1)
				select {
				case progress <- struct{}{}:
				default:
				}
			}
			readErr <- nil
		}()
		var buf []byte
		var p [8]byte
		start := time.Now()
		timer := time.NewTimer(abTimeout)
		defer timer.Stop()
		for sent := 0; sent < total; {
			for sent-int(received.Load()) > window-batch {
				select {
				case <-progress:
				case err := <-readErr:
					t.Fatalf("reader: %v", err)
				case <-timer.C:
					t.Fatalf("pongs stopped at %d of %d sent", received.Load(), sent)
				}
			}
			buf = buf[:0]
			for range min(batch, total-sent) {
				binary.BigEndian.PutUint64(p[:], uint64(sent))
				buf = append(buf, abFrame(ws.OpPing, true, p[:])...)
				sent++
			}
			_ = c.SetWriteDeadline(time.Now().Add(abTimeout))
			if _, err := c.Write(buf); err != nil {
				t.Fatalf("write after %d pings: %v", sent, err)
			}
		}
		select {
		case err := <-readErr:
			if err != nil {
				t.Fatalf("reader: %v", err)
			}
		case <-timer.C:
			t.Fatalf("got %d of %d pongs", received.Load(), total)
		}
		t.Logf("%d pings answered in order in %v", total, time.Since(start).Round(time.Millisecond))
		// still connected: a close handshake completes
		_, _ = c.Write(abFrame(ws.OpClose, true, []byte{0x03, 0xe8}))
		if f, _ := abReadClose(t, c, br); f.code() != 1000 {
			t.Errorf("close answer %v, want 1000", f)
		}
		if st := tw.Stats(); st.SlowClosed != st0.SlowClosed {
			t.Errorf("a client that reads was closed as a slow consumer")
		}
	})
	w.finish(t)
}

// ---------------------------------------------------------------------------------------
// clients that never read

const abFloodTopic = "/abuse/flood"

// abNonReaders connects n clients that subscribe to abFloodTopic and never read.
func abNonReaders(t *testing.T, tw *firetower.Tower, n int) ([]net.Conn, []*bufio.Reader) {
	t.Helper()
	conns := make([]net.Conn, n)
	readers := make([]*bufio.Reader, n)
	st0 := tw.Stats()
	req := abRequest(tw.Addr(), "")
	sub := abText(`{"type":"subscribe","topic":"` + abFloodTopic + `"}`)
	var firstErr atomic.Pointer[error]
	abGroups(n, 16, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			c, err := abDial(tw.Addr())
			if err != nil {
				firstErr.CompareAndSwap(nil, &err)
				return
			}
			conns[i] = c
			br, _, err := abUpgrade(c, req)
			if err == nil {
				_, err = c.Write(sub)
			}
			if err != nil {
				firstErr.CompareAndSwap(nil, &err)
				return
			}
			readers[i] = br
		}
	})
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	})
	if e := firstErr.Load(); e != nil {
		t.Fatalf("connecting the non-readers: %v", *e)
	}
	abWaitStats(t, tw, "the non-readers' subscriptions", func(s firetower.Stats) bool {
		return s.Subscriptions == st0.Subscriptions+int64(n)
	})
	return conns, readers
}

// abFloodMsg is flood message seq, about 1 KiB.
func abFloodMsg(seq int) []byte {
	return fmt.Appendf(nil, `{"seq":%d,"pad":"%s"}`, seq, strings.Repeat("f", 1000))
}

// abFloodSeq decodes a delivery of abFloodTopic and returns its number.
func abFloodSeq(f abServerFrame) (int, error) {
	var m struct {
		Type, Topic string
		Data        struct{ Seq int }
	}
	if f.op != ws.OpText || json.Unmarshal(f.payload, &m) != nil || m.Type != "publish" || m.Topic != abFloodTopic {
		return 0, fmt.Errorf("unexpected frame %v", f)
	}
	return m.Data.Seq, nil
}

// abFloodSeqs parses the deliveries of abFloodTopic in b and returns their
// numbers and how the stream ended: "close N", "none" or "none (truncated frame)".
func abFloodSeqs(b []byte) (seqs []int, end string, err error) {
	end = "none"
	for len(b) > 0 {
		f, n, perr := abParse(b)
		if perr != nil {
			return seqs, end, perr
		}
		if n == 0 {
			return seqs, "none (truncated frame)", nil
		}
		b = b[n:]
		if f.op == ws.OpClose {
			end = fmt.Sprintf("close %d", f.code())
			if len(b) > 0 {
				return seqs, end, fmt.Errorf("%d bytes after the close frame", len(b))
			}
			break
		}
		seq, err := abFloodSeq(f)
		if err != nil {
			return seqs, end, err
		}
		seqs = append(seqs, seq)
	}
	return seqs, end, nil
}

// abFollower is a well-behaved subscriber of abFloodTopic: it reads every flood
// message, checks that they come in order without gaps, and paces the flood.
type abFollower struct {
	c        net.Conn
	last     atomic.Int64
	closing  atomic.Bool
	done     chan struct{}
	firstErr // the first failure
}

func abFollow(t testing.TB, tw *firetower.Tower) *abFollower {
	t.Helper()
	c, br := abConnect(t, tw.Addr(), "")
	if _, err := c.Write(abText(`{"type":"subscribe","topic":"` + abFloodTopic + `","id":1}`)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(abTimeout))
	if f, err := abRead(br); err != nil || abDecode(t, f).Type != "ack" {
		t.Fatalf("follower subscribe: %v %v", f, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	fl := &abFollower{c: c, done: make(chan struct{})}
	go func() {
		defer close(fl.done)
		for {
			f, err := abRead(br)
			if err != nil {
				if !fl.closing.Load() {
					fl.fail(fmt.Errorf("follower connection ended after message %d: %w", fl.last.Load(), err))
				}
				return
			}
			if f.op == ws.OpPing {
				continue // the server's keepalive; a pong is not needed while messages flow
			}
			seq, err := abFloodSeq(f)
			if err == nil && int64(seq) != fl.last.Load()+1 {
				err = fmt.Errorf("follower got flood message %d after %d", seq, fl.last.Load())
			}
			if err != nil {
				fl.fail(err)
				return
			}
			fl.last.Store(int64(seq))
		}
	}()
	t.Cleanup(fl.stop)
	return fl
}

func (fl *abFollower) stop() {
	fl.closing.Store(true)
	_ = fl.c.Close()
	<-fl.done
}

// abFlood publishes flood messages from a client, the follower itself (it is
// subscribed, so it may publish there), at abFloodRate a second: round k of
// abFloodRound messages is due at start + k x abFloodRound/abFloodRate (one
// write per round), sent late only if the follower has fallen more than
// abFloodLag messages behind (it would otherwise become a slow consumer
// itself) or TCP slows the write. It goes on until done holds, then waits for
// the follower to have everything, and reports whether that happened before
// the deadline. *seq is the number of the last message published. Every
// publish goes through the client protocol; an error frame would end the
// follower with a failure. The rate reached is logged.
func abFlood(t testing.TB, tw *firetower.Tower, fl *abFollower, seq *int, done func() bool) bool {
	t.Helper()
	start := time.Now()
	deadline := start.Add(abTimeout)
	first := *seq
	defer func() {
		el := time.Since(start)
		t.Logf("flood: %d messages from a client in %v (%.0f/s; the pace is %d/s)",
			*seq-first, el.Round(time.Millisecond), float64(*seq-first)/el.Seconds(), abFloodRate)
	}()
	check := func() {
		if err := fl.failed(); err != nil {
			t.Fatalf("well-behaved flood subscriber: %v", err)
		}
	}
	var round []byte
	for k := 0; ; k++ {
		check()
		if done() {
			ok := waitFor(time.Until(deadline), func() bool { return fl.last.Load() >= int64(*seq) || fl.failed() != nil })
			check()
			return ok
		}
		if time.Now().After(deadline) {
			return false
		}
		if due := time.Until(start.Add(time.Duration(k) * abFloodRound * time.Second / abFloodRate)); due > 0 {
			time.Sleep(due) // the pace, not a synchronisation
		}
		if !waitFor(time.Until(deadline), func() bool {
			return fl.last.Load() >= int64(*seq-abFloodLag) || fl.failed() != nil
		}) {
			return false
		}
		round = round[:0]
		for range abFloodRound {
			*seq++
			round = append(round, abText(`{"type":"publish","topic":"`+abFloodTopic+`","data":`+string(abFloodMsg(*seq))+`}`)...)
		}
		_ = fl.c.SetWriteDeadline(deadline)
		if _, err := fl.c.Write(round); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
}

// The flood's pace (messages a second), its rounds (messages a write), and how
// far the follower may fall behind before the next round waits for it.
const (
	abFloodRate  = 10000
	abFloodRound = 20
	abFloodLag   = 200
)

// abCheckNonReaderHeap checks the live heap's peak growth (live0 before, pk during
// the flood) against n non-readers x limit x 3, and logs it. The documented cost
// of a slow consumer is up to about 2.5x the outbound limit: what is buffered past
// the limit in the last write, and gnet's ring buffer, which grows in powers of
// two (a little over 64 KiB takes 128 KiB). 2 MiB more are allowed for what does
// not depend on n (the flood's frames in flight, the follower).
func abCheckNonReaderHeap(t *testing.T, n, limit int, live0 uint64, pk abPeaks) {
	t.Helper()
	g := abGrowth(live0, pk.live)
	t.Logf("live heap: before %s, peak %s (+%s, %d KiB per non-reader for an outbound limit of %d KiB); heap in use peak %s",
		abMiB(live0), abMiB(pk.live), abMiB(g), g/uint64(n)>>10, limit>>10, abMiB(pk.inuse))
	if bound := uint64(n)*uint64(limit)*3 + 2<<20; g >= bound {
		t.Errorf("live heap grew by %s, want under %s (%d non-readers x %d KiB x 3, + 2 MiB): "+
			"each slow consumer costs more than the documented bound", abMiB(g), abMiB(bound), n, limit>>10)
	}
}

// TestAbuseNonReaders: 1,000 clients subscribe to a topic and never read while a
// client publishes 1 KiB messages to it at 10,000 a second (abFlood; that client also
// follows the flood and must get every flood message in order); the outbound limit
// is 64 KiB.
//
// SlowClose (the default policy): each is closed as a slow consumer (SlowClosed counts
// all of them), memory stays far below 1,000 x limit x 2, and what each one finds when
// it finally reads is an in-order run of the flood's first messages; a close frame, if
// it got that far, is 4000.
//
// SlowDrop: they stay connected, the messages past the limit are dropped and counted
// (SlowDropped, equal to the transport's count), and a client that starts reading
// again gets the rest in order (with gaps) and new messages once it has drained.
//
// LateReader: one subscriber stops reading, is closed as a slow consumer, and starts
// reading again the moment the server counts the close: it must find the messages
// that were queued for it, in order, then the close frame 4000 (PROTOCOL.md 5 and 7:
// "closed with code 4000 after what was already queued for it").
func TestAbuseNonReaders(t *testing.T) {
	const limit = 64 << 10
	n := abScale(1000)

	t.Run("SlowClose", func(t *testing.T) {
		tw := abServer(t, firetower.WithOutboundLimit(limit))
		w := abWatch(t, tw, "")
		fl := abFollow(t, tw)
		conns, readers := abNonReaders(t, tw, n)
		heap0 := abHeap(true) // with the connections made: what grows next is the flood's
		live0 := abLive()
		st0 := tw.Stats()

		stopPeak := make(chan struct{})
		peak := abPeak(stopPeak)
		start := time.Now()
		published := 0
		ok := abFlood(t, tw, fl, &published, func() bool { return tw.Stats().SlowClosed-st0.SlowClosed >= uint64(n) })
		close(stopPeak)
		pk := <-peak
		heapPeak := pk.inuse
		st := tw.Stats()
		t.Logf("%d messages published in %v; slow-closed %d, deliveries %d; heap in use before %s, peak %s (+%s)",
			published, time.Since(start).Round(time.Millisecond), st.SlowClosed-st0.SlowClosed, st.Deliveries-st0.Deliveries,
			abMiB(heap0), abMiB(heapPeak), abMiB(abGrowth(heap0, heapPeak)))
		if !ok {
			t.Fatalf("only %d of %d non-readers were closed as slow consumers", st.SlowClosed-st0.SlowClosed, n)
		}
		abCheckNonReaderHeap(t, n, limit, live0, pk)
		abWaitStats(t, tw, "the non-readers to be gone", func(s firetower.Stats) bool {
			return s.Connections == st0.Connections-int64(n) && s.Transport.Open == st0.Transport.Open-int64(n) &&
				s.Subscriptions == st0.Subscriptions-int64(n)
		})

		// now some of them read what reached them (all of them would read 1-2 GB:
		// see the log for what the kernels hold per connection)
		sample := min(n, 40)
		drainStart := time.Now()
		ends := map[string]int{}
		var mu sync.Mutex
		var bad atomic.Pointer[string]
		var bytesIn, maxIn atomic.Int64
		abGroups(sample, 8, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				_ = conns[i].SetReadDeadline(time.Now().Add(abTimeout))
				got, rerr := io.ReadAll(readers[i])
				bytesIn.Add(int64(len(got)))
				for m := maxIn.Load(); int64(len(got)) > m && !maxIn.CompareAndSwap(m, int64(len(got))); m = maxIn.Load() {
				}
				seqs, end, err := abFloodSeqs(got)
				for j, s := range seqs {
					if s != j+1 && err == nil {
						err = fmt.Errorf("message %d is %d: not the flood's first messages in order", j, s)
					}
				}
				if err != nil {
					msg := fmt.Sprintf("non-reader %d: %v", i, err)
					bad.CompareAndSwap(nil, &msg)
				}
				if rerr != nil {
					end += " then " + abErrKind(rerr)
				}
				mu.Lock()
				ends[end]++
				mu.Unlock()
			}
		})
		t.Logf("what %d non-readers found when they read (in %v): %v; %s on average, at most %s (held by the kernels' socket buffers, not the heap)",
			sample, time.Since(drainStart).Round(time.Millisecond), ends, abMiB(uint64(bytesIn.Load()/int64(sample))), abMiB(uint64(maxIn.Load())))
		if b := bad.Load(); b != nil {
			t.Error(*b)
		}
		for end, c := range ends {
			if strings.HasPrefix(end, "close") && !strings.HasPrefix(end, "close 4000") {
				t.Errorf("%d non-readers got %s, want close 4000", c, end)
			}
			if strings.HasSuffix(end, "timeout") {
				t.Errorf("%d non-readers were not closed: %s", c, end)
			}
		}
		if fl.last.Load() != int64(published) {
			t.Errorf("the flood's follower got %d of %d", fl.last.Load(), published)
		}
		w.finish(t)
		heap1 := abHeap(true)
		t.Logf("heap in use after: %s", abMiB(heap1))
		if g := abGrowth(heap0, heap1); g > 8<<20 {
			t.Errorf("heap grew by %s after the non-readers left", abMiB(g))
		}
	})

	t.Run("SlowDrop", func(t *testing.T) {
		tw := abServer(t, firetower.WithOutboundLimit(limit), firetower.WithSlowConsumerPolicy(firetower.SlowDrop))
		w := abWatch(t, tw, "")
		fl := abFollow(t, tw)
		conns, readers := abNonReaders(t, tw, n)
		heap0 := abHeap(true) // with the connections made: what grows next is the flood's
		live0 := abLive()
		st0 := tw.Stats()

		stopPeak := make(chan struct{})
		peak := abPeak(stopPeak)
		start := time.Now()
		published := 0
		// flood until the server dropped, on average, 64 messages per non-reader
		ok := abFlood(t, tw, fl, &published, func() bool {
			return tw.Stats().SlowDropped-st0.SlowDropped >= uint64(n)*64
		})
		close(stopPeak)
		pk := <-peak
		heapPeak := pk.inuse
		heapHeld := abHeap(true)
		st := tw.Stats()
		t.Logf("live heap while they hold their buffers: %s (+%s, %d KiB per non-reader)", abMiB(heapHeld), abMiB(abGrowth(heap0, heapHeld)), abGrowth(heap0, heapHeld)/uint64(n)>>10)
		t.Logf("%d messages published in %v; dropped %d of %d deliveries; heap in use before %s, peak %s (+%s)",
			published, time.Since(start).Round(time.Millisecond), st.SlowDropped-st0.SlowDropped, st.Deliveries-st0.Deliveries,
			abMiB(heap0), abMiB(heapPeak), abMiB(abGrowth(heap0, heapPeak)))
		if !ok {
			t.Fatalf("dropped only %d", st.SlowDropped-st0.SlowDropped)
		}
		abCheckNonReaderHeap(t, n, limit, live0, pk)
		if st.SlowClosed != st0.SlowClosed || st.Connections != st0.Connections || st.Transport.Open != st0.Transport.Open {
			t.Errorf("non-readers were closed under SlowDrop: %+v", st)
		}
		// Frames already queued when the flood stopped may still be dropped:
		// the two counts must meet once the loops are done with them (the
		// transport counts a drop just before the Tower does).
		if !waitFor(abTimeout, func() bool {
			s := tw.Stats()
			return s.Transport.Dropped-st0.Transport.Dropped == s.SlowDropped-st0.SlowDropped
		}) {
			s := tw.Stats()
			t.Errorf("transport dropped %d, Stats.SlowDropped %d", s.Transport.Dropped-st0.Transport.Dropped, s.SlowDropped-st0.SlowDropped)
		}

		// a few of them read again: the rest of what was queued, in order, then
		// new messages once drained
		sample := min(n, 8)
		last := published
		var wg sync.WaitGroup
		results := make([]error, sample)
		var caughtUp atomic.Int64
		for i := range sample {
			wg.Go(func() {
				defer caughtUp.Add(1)
				prev := 0
				_ = conns[i].SetReadDeadline(time.Now().Add(abTimeout))
				for {
					f, err := abRead(readers[i])
					if err != nil {
						results[i] = fmt.Errorf("after message %d: %w", prev, err)
						return
					}
					if f.op == ws.OpPing {
						continue
					}
					seq, err := abFloodSeq(f)
					if err != nil || seq <= prev {
						results[i] = fmt.Errorf("after message %d got %v (%v): out of order", prev, f, err)
						return
					}
					prev = seq
					if prev > last {
						return // a message published after it drained
					}
				}
			})
		}
		// new messages, paced by the follower, until every reader got one
		abFlood(t, tw, fl, &published, func() bool { return caughtUp.Load() == int64(sample) })
		for _, c := range conns[:sample] {
			_ = c.SetReadDeadline(time.Now()) // unblock a reader that is still waiting
		}
		wg.Wait()
		for i, err := range results {
			if err != nil {
				t.Errorf("reader %d: %v", i, err)
			}
		}
		w.finish(t)
	})

	t.Run("SlowDropBurstToReader", func(t *testing.T) {
		// Not an abuser: a client that reads at once, and bursts of 8 messages
		// of 16 KiB published together (then a small one) (twice the limit, nothing the kernel's
		// socket buffer cannot take at once). Nothing waits to be sent to it
		// that the socket would not accept, so nothing may be dropped; SlowClose
		// does not close it either.
		for _, pol := range []firetower.SlowConsumerPolicy{firetower.SlowClose, firetower.SlowDrop} {
			tw := abServer(t, firetower.WithOutboundLimit(limit), firetower.WithSlowConsumerPolicy(pol))
			fl := abFollow(t, tw)
			pad := strings.Repeat("x", 16<<10)
			seq := 0
			for round := range 20 {
				for range 8 {
					seq++
					if err := tw.Publish(context.Background(), abFloodTopic, fmt.Appendf(nil, `{"seq":%d,"pad":"%s"}`, seq, pad)); err != nil {
						t.Fatal(err)
					}
				}
				// and a small one: the follower has them all, or sees a gap
				seq++
				if err := tw.Publish(context.Background(), abFloodTopic, abFloodMsg(seq)); err != nil {
					t.Fatal(err)
				}
				waitFor(abTimeout, func() bool { return fl.last.Load() == int64(seq) || fl.failed() != nil })
				st := tw.Stats()
				if err := fl.failed(); err != nil || fl.last.Load() != int64(seq) || st.SlowDropped != 0 || st.SlowClosed != 0 {
					t.Errorf("policy %d, round %d: the reader got %d of %d (%v); SlowDropped %d, SlowClosed %d; want all and no drop: "+
						"BUG: under SlowDrop the limit is checked against the frames queued in the current loop turn before any of them "+
						"is written, so a burst bigger than the limit is dropped however fast the client reads", pol, round, fl.last.Load(), seq, err, st.SlowDropped, st.SlowClosed)
					break
				}
			}
		}
	})

	t.Run("LateReader", func(t *testing.T) {
		tw := abServer(t, firetower.WithOutboundLimit(limit))
		w := abWatch(t, tw, "")
		fl := abFollow(t, tw)
		conns, readers := abNonReaders(t, tw, 1)
		st0 := tw.Stats()
		published := 0
		if !abFlood(t, tw, fl, &published, func() bool { return tw.Stats().SlowClosed > st0.SlowClosed }) {
			t.Fatal("the non-reader was not closed as a slow consumer")
		}
		// it reads at once
		_ = conns[0].SetReadDeadline(time.Now().Add(abTimeout))
		got, rerr := io.ReadAll(readers[0])
		seqs, end, err := abFloodSeqs(got)
		for j, s := range seqs {
			if s != j+1 && err == nil {
				err = fmt.Errorf("message %d is %d", j, s)
			}
		}
		t.Logf("%d messages published; the late reader got %d of them (%s), then %s, then %v", published, len(seqs), abMiB(uint64(len(got))), end, rerr)
		if err != nil {
			t.Errorf("late reader: %v", err)
		}
		if end != "close 4000" {
			t.Errorf("BUG: the slow consumer's stream ended with %q, want close 4000 after the messages queued for it: "+
				"the server closes TCP right after queueing the close frame, and what gnet cannot write at once is lost", end)
		}
		w.finish(t)
	})
}

// ---------------------------------------------------------------------------------------
// giant declared lengths

// TestAbuseGiantFrame: frame headers declaring absurd lengths, with no payload. The
// server must answer from the header alone, without waiting for or allocating the
// payload: 1009 for a data frame over the message size limit, 1002 for a length with
// its most significant bit set (RFC 6455 5.2) and for a control frame over 125 bytes.
func TestAbuseGiantFrame(t *testing.T) {
	tw := abServer(t)
	w := abWatch(t, tw, "")
	heap0 := abHeap(true)
	cases := []struct {
		name   string
		prefix []byte // frames sent before the header
		op     ws.OpCode
		fin    bool
		length uint64
		want   int
	}{
		{name: "text 2^62", op: ws.OpText, fin: true, length: 1 << 62, want: 1009},
		{name: "binary 2^62", op: ws.OpBinary, fin: true, length: 1 << 62, want: 1009},
		{name: "text 2^62 not final", op: ws.OpText, length: 1 << 62, want: 1009},
		{name: "continuation 2^62", prefix: abFrame(ws.OpText, false, []byte(`{"type":`)), op: ws.OpContinuation, fin: true, length: 1 << 62, want: 1009},
		{name: "text 2^63 (MSB set)", op: ws.OpText, fin: true, length: 1 << 63, want: 1002},
		{name: "text 2^64-1", op: ws.OpText, fin: true, length: 1<<64 - 1, want: 1002},
		{name: "ping 2^62", op: ws.OpPing, fin: true, length: 1 << 62, want: 1002},
		{name: "text limit+1", op: ws.OpText, fin: true, length: 64<<10 + 1, want: 1009},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st0 := tw.Stats()
			c, br := abConnect(t, tw.Addr(), "")
			msg := append(append([]byte(nil), tc.prefix...), abHeader(tc.fin, tc.op, tc.length)...)
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			f, before := abReadClose(t, c, br)
			if len(before) > 0 || f.code() != tc.want {
				t.Errorf("got %v after %v, want close %d", f, before, tc.want)
			}
			abExpectEOF(t, c, br)
			abWaitStats(t, tw, "the protocol error to be counted", func(s firetower.Stats) bool {
				return s.Transport.ProtocolClose == st0.Transport.ProtocolClose+1
			})
		})
	}
	w.finish(t)
	if g := abGrowth(heap0, abHeap(true)); g > 4<<20 {
		t.Errorf("heap grew by %s", abMiB(g))
	}
}

// ---------------------------------------------------------------------------------------
// authentication, ACLs, caps

// TestAbuseUnauthenticated: with middleware.Auth in OnConnect, upgrades without a
// token or with a bad one get HTTP 401 and never become connections.
func TestAbuseUnauthenticated(t *testing.T) {
	verify := func(_ context.Context, token string) (string, error) {
		if token == "good" {
			return "alice", nil
		}
		return "", errors.New("unknown token")
	}
	tw := abServer(t, firetower.OnConnect(middleware.Auth(verify)))
	w := abWatch(t, tw, "token=good")
	st0 := tw.Stats()
	n := abScale(200)
	for i := range n {
		query := []string{"", "token=bad", "token=", "tok=good"}[i%4]
		c, err := abDial(tw.Addr())
		if err != nil {
			t.Fatal(err)
		}
		_, resp, err := abUpgrade(c, abRequest(tw.Addr(), query))
		_ = c.Close()
		if resp == nil {
			t.Fatalf("query %q: no answer: %v", query, err)
		}
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("query %q: %s, want 401", query, resp.Status)
		}
	}
	abWaitStats(t, tw, "the refused upgrades to be gone", func(s firetower.Stats) bool {
		return s.Transport.Open == st0.Transport.Open
	})
	st := tw.Stats()
	if st.Connections != st0.Connections || st.Transport.Upgraded != st0.Transport.Upgraded {
		t.Errorf("unauthenticated clients were connected: %+v", st)
	}
	if got := st.Transport.Rejected - st0.Transport.Rejected; got != uint64(n) {
		t.Errorf("rejected %d, want %d", got, n)
	}
	w.finish(t)
}

// TestAbuseForbiddenPublish: with middleware.TopicACL, a client that may subscribe to
// a topic but not publish to it gets error forbidden for each of its publishes (with
// its id, in order), and nothing reaches the topic's subscribers.
func TestAbuseForbiddenPublish(t *testing.T) {
	acl, err := middleware.TopicACL(middleware.ACLConfig{Rules: []middleware.Rule{
		middleware.Allow(middleware.OpSubscribe, "/abuse/**"),
		middleware.Allow(middleware.OpPublish, "/abuse/open"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	tw := abServer(t, firetower.OnBeforeSubscribe(acl.Middleware), firetower.OnRead(acl.Middleware))
	w := abWatch(t, tw, "")
	const topic = "/abuse/locked"
	sub := func(c net.Conn, br *bufio.Reader) {
		t.Helper()
		if _, err := c.Write(abText(`{"type":"subscribe","topic":"` + topic + `","id":"s"}`)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(abTimeout))
		f, err := abRead(br)
		if err != nil {
			t.Fatal(err)
		}
		if m := abDecode(t, f); m.Type != "ack" {
			t.Fatalf("subscribe: %q", f.payload)
		}
	}
	lc, lbr := abConnect(t, tw.Addr(), "") // a listener on the topic
	sub(lc, lbr)
	ac, abr := abConnect(t, tw.Addr(), "") // the abuser, subscribed too
	sub(ac, abr)
	st0 := tw.Stats()

	n := 50
	var batch []byte
	for i := range n {
		batch = append(batch, abText(fmt.Sprintf(`{"type":"publish","topic":"%s","data":{"evil":%d},"id":%d}`, topic, i, i))...)
	}
	if _, err := ac.Write(batch); err != nil {
		t.Fatal(err)
	}
	_ = ac.SetReadDeadline(time.Now().Add(abTimeout))
	for i := range n {
		f, err := abRead(abr)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		m := abDecode(t, f)
		if m.Type != "error" || m.Code != firetower.CodeForbidden || string(m.ID) != fmt.Sprint(i) {
			t.Fatalf("answer %d: %q, want error forbidden with id %d", i, f.payload, i)
		}
	}
	// a marker from the server: the first thing either subscriber receives on the topic
	if err := tw.Publish(context.Background(), topic, []byte(`"marker"`)); err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]struct {
		c  net.Conn
		br *bufio.Reader
	}{"listener": {lc, lbr}, "abuser": {ac, abr}} {
		_ = r.c.SetReadDeadline(time.Now().Add(abTimeout))
		f, err := abRead(r.br)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if m := abDecode(t, f); m.Type != "publish" || string(m.Data) != `"marker"` {
			t.Errorf("%s received %q before the marker: a forbidden publish was delivered", name, f.payload)
		}
	}
	st := tw.Stats()
	if got := st.Errors - st0.Errors; got != uint64(n) {
		t.Errorf("errors counted %d, want %d", got, n)
	}
	w.finish(t)
}

// TestAbuseMaxConnectionsPerIP: with WithMaxConnectionsPerIP(5), connections past the
// cap from one address get HTTP 429; a slot frees when a connection leaves.
func TestAbuseMaxConnectionsPerIP(t *testing.T) {
	const limit = 5
	tw := abServer(t, firetower.WithMaxConnectionsPerIP(limit))
	w := abWatch(t, tw, "") // from 127.0.0.1 too: it holds one of the five
	st0 := tw.Stats()
	var held []net.Conn
	for range limit - 1 {
		c, _ := abConnect(t, tw.Addr(), "")
		held = append(held, c)
	}
	n := abScale(200)
	for i := range n {
		c, err := abDial(tw.Addr())
		if err != nil {
			t.Fatal(err)
		}
		_, resp, err := abUpgrade(c, abRequest(tw.Addr(), ""))
		_ = c.Close()
		if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("connection %d past the cap: %v, %v; want 429", limit+i+1, resp, err)
		}
	}
	st := tw.Stats()
	if got := st.RefusedLimit - st0.RefusedLimit; got != uint64(n) {
		t.Errorf("RefusedLimit grew by %d, want %d", got, n)
	}
	if st.Connections != st0.Connections+limit-1 {
		t.Errorf("connections %d, want %d", st.Connections, st0.Connections+limit-1)
	}
	_ = held[0].Close()
	abWaitStats(t, tw, "a slot to free", func(s firetower.Stats) bool { return s.Connections == st0.Connections+limit-2 })
	abConnect(t, tw.Addr(), "")
	w.finish(t)
}

// ---------------------------------------------------------------------------------------
// many tiny frames

// TestAbuseTinyFrames: 100,000 tiny frames pipelined as fast as the client can write.
//
// Pings: one-byte pings; every one is answered with its pong, in order.
//
// InvalidJSON: two-byte text messages "{]". Each is answered bad_request, in order
// (on the event loop: an error needs no hook), none is dropped and the client stays.
func TestAbuseTinyFrames(t *testing.T) {
	tw := abServer(t)
	w := abWatch(t, tw, "")
	total := abScale(100000)

	t.Run("Pings", func(t *testing.T) {
		abSettle(t, tw, 1)
		st0 := tw.Stats()
		c, br := abConnect(t, tw.Addr(), "")
		var buf []byte
		for i := range total {
			buf = append(buf, abFrame(ws.OpPing, true, []byte{byte(i)})...)
		}
		werr := make(chan error, 1)
		go func() {
			_ = c.SetWriteDeadline(time.Now().Add(abTimeout))
			_, err := c.Write(buf)
			werr <- err
		}()
		start := time.Now()
		_ = c.SetReadDeadline(time.Now().Add(abTimeout))
		for i := range total {
			f, err := abRead(br)
			if err != nil {
				t.Fatalf("pong %d: %v", i, err)
			}
			if f.op != ws.OpPong || len(f.payload) != 1 || f.payload[0] != byte(i) {
				t.Fatalf("pong %d: got %v", i, f)
			}
		}
		if err := <-werr; err != nil {
			t.Fatalf("write: %v", err)
		}
		t.Logf("%d pings answered in order in %v", total, time.Since(start).Round(time.Millisecond))
		if st := tw.Stats(); st.SlowClosed != st0.SlowClosed || st.Transport.ProtocolClose != st0.Transport.ProtocolClose {
			t.Errorf("the client was closed")
		}
	})

	t.Run("InvalidJSON", func(t *testing.T) {
		abSettle(t, tw, 1)
		st0 := tw.Stats()
		c, br := abConnect(t, tw.Addr(), "")
		one := abText("{]")
		buf := bytes.Repeat(one, total)
		werr := make(chan error, 1)
		go func() {
			_ = c.SetWriteDeadline(time.Now().Add(abTimeout))
			_, err := c.Write(buf)
			werr <- err
		}()
		_ = c.SetReadDeadline(time.Now().Add(abTimeout))
		var badRequest, rateLimited uint64
		var end *abServerFrame
		for end == nil {
			f, err := abRead(br)
			if err != nil {
				t.Fatalf("after %d bad_request and %d rate_limited: %v", badRequest, rateLimited, err)
			}
			if f.op == ws.OpClose {
				end = &f
				break
			}
			switch m := abDecode(t, f); {
			case m.Type == "error" && m.Code == firetower.CodeBadRequest:
				// (may follow rate_limited answers: the queue frees up as the
				// workers answer, and the next message is taken again)
				badRequest++
			case m.Type == "error" && m.Code == firetower.CodeRateLimited:
				rateLimited++
			default:
				t.Fatalf("unexpected answer %q", f.payload)
			}
			if badRequest+rateLimited == uint64(total) {
				break // the server kept up with all of them (not expected, but fine)
			}
		}
		err := <-werr
		t.Logf("answers: %d bad_request, %d rate_limited, then %v (write ended: %v)", badRequest, rateLimited, end, err)
		if end == nil {
			if rateLimited != 0 || badRequest != uint64(total) || err != nil {
				t.Fatalf("%d bad_request and %d rate_limited of %d (write: %v): want every one answered bad_request", badRequest, rateLimited, total, err)
			}
			if st := tw.Stats(); st.ReadDropped != st0.ReadDropped || st.FloodClosed != st0.FloodClosed {
				t.Fatalf("dropped %d, flood-closed %d", st.ReadDropped-st0.ReadDropped, st.FloodClosed-st0.FloodClosed)
			}
			return
		}
		t.Errorf("closed with %v after %d bad_request: a client sending only bad requests is answered, not closed", end, badRequest)
		if end.code() != 1008 {
			t.Errorf("closed with %v, want 1008", end)
		}
		abExpectEOF(t, c, br)
		abWaitStats(t, tw, "the flood close", func(s firetower.Stats) bool {
			return s.FloodClosed == st0.FloodClosed+1 && s.Transport.Open == st0.Transport.Open
		})
		st := tw.Stats()
		in, dropped := st.MessagesIn-st0.MessagesIn, st.ReadDropped-st0.ReadDropped
		t.Logf("server: %d messages in, %d dropped, %d errors sent", in, dropped, st.Errors-st0.Errors)
		if badRequest+dropped != in {
			t.Errorf("%d answered bad_request + %d dropped != %d received", badRequest, dropped, in)
		}
		if rateLimited > dropped {
			t.Errorf("%d rate_limited answers but %d drops", rateLimited, dropped)
		}
		if got := st.Errors - st0.Errors; got != badRequest+rateLimited {
			t.Errorf("errors counted %d, the client got %d", got, badRequest+rateLimited)
		}
	})
	w.finish(t)
}
