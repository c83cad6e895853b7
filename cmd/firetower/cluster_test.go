package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The cluster across processes: the real binary as a topic manager and as
// gateways, driven through websockets and the HTTP APIs.

const (
	clusterWait = 10 * time.Second // bound of every wait
	// heartbeatTimeout is the manager's default (the binary has no flag).
	heartbeatTimeout = 5 * time.Second
	perConn          = 1000 // topics per connection, below the default limit of 1024
)

var (
	managerLineRE = regexp.MustCompile(`^manager listening on (\S+)$`)
	wsLineRE      = regexp.MustCompile(`^websocket listening on ws://(\S+)/ws$`)
	httpLineRE    = regexp.MustCompile(`^http listening on http://(\S+)$`)
)

func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns manager and gateway processes")
	}
	bin := filepath.Join(t.TempDir(), "firetower")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Run("ManagerRestart", func(t *testing.T) { testManagerRestart(t, bin, 0, 0) })
	t.Run("ManagerRestart10kTopics", func(t *testing.T) { testManagerRestart(t, bin, 10000, 0) })
	// down long enough for the gateways' redial backoff to reach its maximum
	t.Run("ManagerRestart10kTopicsAfterOutage", func(t *testing.T) { testManagerRestart(t, bin, 10000, 2*time.Second) })
	t.Run("TwoManagersOneKilled", func(t *testing.T) { testTwoManagers(t, bin) })
	t.Run("GatewayKilled", func(t *testing.T) { testGatewayGone(t, bin, syscall.SIGKILL) })
	t.Run("GatewayFrozen", func(t *testing.T) { testGatewayGone(t, bin, syscall.SIGSTOP) })
}

// ---- processes -------------------------------------------------------------

type stampedLine struct {
	text string
	at   time.Time
}

// lineLog is a process's output: it keeps every line with the time it was
// written and wakes waiters.
type lineLog struct {
	mu      sync.Mutex
	partial []byte
	lines   []stampedLine
	notify  chan struct{}
}

func newLineLog() *lineLog { return &lineLog{notify: make(chan struct{})} }

func (l *lineLog) Write(b []byte) (int, error) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, b...)
	added := false
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, stampedLine{string(l.partial[:i]), now})
		l.partial = l.partial[i+1:]
		added = true
	}
	if added {
		close(l.notify)
		l.notify = make(chan struct{})
	}
	return len(b), nil
}

// wait returns the first match of re in a line, and when it was written.
func (l *lineLog) wait(t *testing.T, what string, re *regexp.Regexp) (string, time.Time) {
	t.Helper()
	timer := time.NewTimer(clusterWait)
	defer timer.Stop()
	for {
		l.mu.Lock()
		for _, ln := range l.lines {
			if m := re.FindStringSubmatch(ln.text); m != nil {
				l.mu.Unlock()
				return m[1], ln.at
			}
		}
		ch := l.notify
		l.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("%s: no line matching %q within %v", what, re, clusterWait)
		}
	}
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, ln := range l.lines {
		b.WriteString(ln.text)
		b.WriteByte('\n')
	}
	b.Write(l.partial)
	return b.String()
}

type proc struct {
	name     string
	cmd      *exec.Cmd
	out, err *lineLog
	done     chan struct{}
}

func startProc(t *testing.T, bin, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(bin, args...), out: newLineLog(), err: newLineLog(), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.err
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s (%s) stdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), p.out, tail(p.err.String(), 60))
		}
	})
	return p
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// kill sends SIGKILL (also to a stopped process) and waits for the exit.
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

type managerProc struct {
	*proc
	addr, http string
	ready      time.Time // when "manager listening" was printed
}

func startManager(t *testing.T, bin, name, addr, httpAddr string) *managerProc {
	t.Helper()
	p := startProc(t, bin, name, "manager", "--addr", addr, "--http-addr", httpAddr)
	m := &managerProc{proc: p}
	m.addr, m.ready = p.out.wait(t, name, managerLineRE)
	m.http, _ = p.out.wait(t, name, httpLineRE)
	return m
}

type gatewayProc struct {
	*proc
	ws, http string
}

func startGateway(t *testing.T, bin string, node int, managers ...string) *gatewayProc {
	t.Helper()
	name := fmt.Sprintf("gateway %d", node)
	p := startProc(t, bin, name, "serve", "--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--manager", strings.Join(managers, ","), "--node-id", strconv.Itoa(node))
	g := &gatewayProc{proc: p}
	g.ws, _ = p.out.wait(t, name, wsLineRE)
	g.http, _ = p.out.wait(t, name, httpLineRE)
	return g
}

// ---- HTTP ------------------------------------------------------------------

var httpc = &http.Client{Timeout: 2 * time.Second}

func getJSON(addr, path string, v any) error {
	resp, err := httpc.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s %s", path, resp.Status, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, v)
}

// topicCount is GET /api/v1/topics/<topic> on a gateway or a manager.
func topicCount(addr, topic string) (int64, error) {
	var r struct {
		Topic string `json:"topic"`
		Count int64  `json:"count"`
	}
	if err := getJSON(addr, "/api/v1/topics/"+url.PathEscape(topic), &r); err != nil {
		return -1, err
	}
	if r.Topic != topic {
		return -1, fmt.Errorf("answer for topic %q, asked for %q", r.Topic, topic)
	}
	return r.Count, nil
}

type managerStats struct {
	Nodes, Topics int
}

func statsOf(m *managerProc) (managerStats, error) {
	var s managerStats
	err := getJSON(m.http, "/api/v1/stats", &s)
	return s, err
}

// publish is POST /api/v1/publish on a gateway.
func publish(g *gatewayProc, topic, data string) error {
	body := fmt.Sprintf(`{"topic":%q,"data":%s}`, topic, data)
	resp, err := httpc.Post("http://"+g.http+"/api/v1/publish", "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("publish: %s %s", resp.Status, bytes.TrimSpace(b))
	}
	return nil
}

// poll calls cond until it is true or clusterWait passes; it returns how
// long that took and the last error cond reported.
func poll(t *testing.T, what string, cond func() (bool, error)) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok, err := cond()
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > clusterWait {
			t.Fatalf("%s: not within %v (last: %v)", what, clusterWait, err)
		}
		time.Sleep(5 * time.Millisecond) // polling another process, bounded by the deadline
	}
}

func countIs(addr, topic string, want int64) func() (bool, error) {
	return func() (bool, error) {
		n, err := topicCount(addr, topic)
		if err != nil {
			return false, err
		}
		return n == want, fmt.Errorf("count of %s on %s is %d, want %d", topic, addr, n, want)
	}
}

// ---- websocket clients -----------------------------------------------------

type wsFrame struct {
	Type    string          `json:"type"`
	ID      json.RawMessage `json:"id"`
	Topic   string          `json:"topic"`
	Data    json.RawMessage `json:"data"`
	Code    string          `json:"code"`
	Message string          `json:"message"`
}

type wsClient struct {
	t          *testing.T
	ws         *websocket.Conn
	seq        int
	deliveries chan wsFrame
	replies    chan wsFrame
	done       chan struct{}
}

func dialWS(t *testing.T, g *gatewayProc) *wsClient {
	t.Helper()
	return dialURL(t, "ws://"+g.ws+"/ws", 1<<16)
}

// subscribe subscribes to topics and waits for the ack.
func (c *wsClient) subscribe(topics ...string) {
	c.t.Helper()
	c.seq++
	id := strconv.Itoa(c.seq)
	msg, _ := json.Marshal(map[string]any{"type": "subscribe", "topics": topics, "id": id})
	if err := c.ws.WriteMessage(websocket.TextMessage, msg); err != nil {
		c.t.Fatal(err)
	}
	timer := time.NewTimer(clusterWait)
	defer timer.Stop()
	for {
		select {
		case f := <-c.replies:
			if string(f.ID) != strconv.Quote(id) {
				continue
			}
			if f.Type != "ack" {
				c.t.Fatalf("subscribe %d topics: %s %s %s", len(topics), f.Type, f.Code, f.Message)
			}
			return
		case <-timer.C:
			c.t.Fatalf("subscribe %d topics: no ack within %v", len(topics), clusterWait)
		}
	}
}

// payload is what the tests publish.
type payload struct {
	Epoch int `json:"epoch"`
	Seq   int `json:"seq"`
}

func mustPayload(t *testing.T, f wsFrame) payload {
	t.Helper()
	var p payload
	if err := json.Unmarshal(f.Data, &p); err != nil {
		t.Fatalf("delivery %s: %v", f.Data, err)
	}
	return p
}

// ---- scenarios -------------------------------------------------------------

// cluster is one manager, two gateways, a client on each subscribed to
// probe, and optionally bulk topics spread over more connections.
type cluster struct {
	bin    string
	m      *managerProc
	g1, g2 *gatewayProc
	c1, c2 *wsClient
	bulk   []string
	bulkOn map[string]*wsClient // the client holding each bulk topic
}

const probe = "probe/a%b?c#d" // needs path escaping

func newCluster(t *testing.T, bin string, bulk int) *cluster {
	t.Helper()
	cl := &cluster{bin: bin, bulkOn: map[string]*wsClient{}}
	cl.m = startManager(t, bin, "manager", "127.0.0.1:0", "127.0.0.1:0")
	cl.g1 = startGateway(t, bin, 1, cl.m.addr)
	cl.g2 = startGateway(t, bin, 2, cl.m.addr)
	cl.c1, cl.c2 = dialWS(t, cl.g1), dialWS(t, cl.g2)
	cl.c1.subscribe(probe)
	cl.c2.subscribe(probe)
	// bulk topics: the first half on gateway 1, the rest on gateway 2
	for i := 0; i < bulk; i += perConn {
		g := cl.g1
		if i >= bulk/2 {
			g = cl.g2
		}
		c := dialWS(t, g)
		var ts []string
		for j := i; j < min(i+perConn, bulk); j++ {
			ts = append(ts, fmt.Sprintf("bulk-%05d", j))
		}
		c.subscribe(ts...)
		for _, topic := range ts {
			cl.bulkOn[topic] = c
		}
		cl.bulk = append(cl.bulk, ts...)
	}
	poll(t, "the manager to hold every topic", cl.managerTopicsAre(bulk+1))
	cl.checkCounts(t)
	cl.crossDelivery(t, 1)
	return cl
}

func (cl *cluster) managerTopicsAre(n int) func() (bool, error) {
	return func() (bool, error) {
		s, err := statsOf(cl.m)
		if err != nil {
			return false, err
		}
		return s.Topics == n && s.Nodes == 2, fmt.Errorf("manager stats %+v, want %d topics and 2 nodes", s, n)
	}
}

// checkCounts: both gateways and the manager see both subscribers of probe.
func (cl *cluster) checkCounts(t *testing.T) {
	t.Helper()
	for _, addr := range []string{cl.g1.http, cl.g2.http, cl.m.http} {
		if ok, err := countIs(addr, probe, 2)(); !ok {
			t.Fatal(err)
		}
	}
}

// crossDelivery publishes on each gateway and expects the message on the
// other one (and locally).
func (cl *cluster) crossDelivery(t *testing.T, epoch int) {
	t.Helper()
	for i, dir := range []struct {
		pub      *gatewayProc
		sub, loc *wsClient
	}{{cl.g1, cl.c2, cl.c1}, {cl.g2, cl.c1, cl.c2}} {
		want := payload{Epoch: epoch, Seq: -1 - i}
		data, _ := json.Marshal(want)
		if err := publish(dir.pub, probe, string(data)); err != nil {
			t.Fatal(err)
		}
		for _, c := range []*wsClient{dir.sub, dir.loc} {
			expectPayload(t, c, want)
		}
	}
}

// expectPayload reads deliveries until want, skipping older ones.
func expectPayload(t *testing.T, c *wsClient, want payload) {
	t.Helper()
	timer := time.NewTimer(clusterWait)
	defer timer.Stop()
	for {
		select {
		case f := <-c.deliveries:
			if mustPayload(t, f) == want {
				return
			}
		case <-timer.C:
			t.Fatalf("delivery %+v: not within %v", want, clusterWait)
		}
	}
}

func testManagerRestart(t *testing.T, bin string, bulk int, outage time.Duration) {
	cl := newCluster(t, bin, bulk)
	old := cl.m
	old.kill()
	// while the only manager is down, the gateways say so: 503 unavailable
	for _, g := range []*gatewayProc{cl.g1, cl.g2} {
		poll(t, "the gateway to notice the manager is gone", func() (bool, error) {
			err := publish(g, probe, `{"epoch":0,"seq":0}`)
			return err != nil && strings.Contains(err.Error(), "503"), fmt.Errorf("publish with no manager: %v", err)
		})
		if _, err := topicCount(g.http, probe); err == nil || !strings.Contains(err.Error(), "503") {
			t.Errorf("topic count with no manager: %v, want 503 unavailable", err)
		}
	}
	if outage > 0 {
		time.Sleep(outage) // the scenario: the manager stays down this long
	}
	t.Logf("manager killed, restarting after an outage of at least %v", outage)
	cl.m = startManager(t, bin, "manager (restarted)", old.addr, old.http)
	ready := cl.m.ready

	// from the restart's "manager listening" line: publish from gateway 1
	// until one reaches gateway 2, and poll the counts, all at once
	var delivered, counted, synced time.Duration
	seq := 0
	start := time.Now()
	for delivered == 0 || counted == 0 || synced == 0 {
		if time.Since(start) > clusterWait {
			s, err := statsOf(cl.m)
			t.Fatalf("not recovered within %v of the restart: delivered %v, counted %v, synced %v (manager stats %+v %v)",
				clusterWait, delivered, counted, synced, s, err)
		}
		if delivered == 0 {
			seq++
			_ = publish(cl.g1, probe, fmt.Sprintf(`{"epoch":2,"seq":%d}`, seq)) // fails until gateway 1 is back
		drain:
			for {
				select {
				case f := <-cl.c2.deliveries:
					if mustPayload(t, f).Epoch == 2 {
						delivered = time.Since(ready) // read as it arrives
						break drain
					}
				default:
					break drain
				}
			}
		}
		if counted == 0 {
			ok1, _ := countIs(cl.g1.http, probe, 2)()
			ok2, _ := countIs(cl.g2.http, probe, 2)()
			if ok1 && ok2 {
				counted = time.Since(ready)
			}
		}
		if synced == 0 {
			if ok, _ := cl.managerTopicsAre(bulk + 1)(); ok {
				synced = time.Since(ready)
			}
		}
		time.Sleep(2 * time.Millisecond) // polling other processes, bounded above
	}
	t.Logf("recovery after the manager restart (%d topics + probe, %v outage, %d publish attempts): cross-gateway delivery after %v, counts right on both gateways after %v, all %d topics on the manager after %v (target < 1s)",
		bulk, outage, seq, delivered, counted, bulk+1, synced)

	// no subscription lost: every count is right on the manager, and
	// deliveries reach the old subscriptions on both gateways
	cl.checkCounts(t)
	cl.crossDelivery(t, 3)
	cl.checkBulk(t)
}

// checkBulk checks every bulk topic's count on the manager and delivery on
// a sample, published on the other gateway.
func (cl *cluster) checkBulk(t *testing.T) {
	t.Helper()
	if len(cl.bulk) == 0 {
		return
	}
	var wrong atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	work := make(chan string)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for topic := range work {
				if ok, err := countIs(cl.m.http, topic, 1)(); !ok {
					wrong.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	for _, topic := range cl.bulk {
		work <- topic
	}
	close(work)
	wg.Wait()
	if n := wrong.Load(); n > 0 {
		t.Fatalf("%d of %d bulk topics have a wrong count on the manager; first: %v", n, len(cl.bulk), firstErr.Load())
	}
	for i := 0; i < len(cl.bulk); i += len(cl.bulk) / 20 {
		topic := cl.bulk[i]
		pub := cl.g2
		if i >= len(cl.bulk)/2 {
			pub = cl.g1
		}
		want := payload{Epoch: 4, Seq: i}
		data, _ := json.Marshal(want)
		if err := publish(pub, topic, string(data)); err != nil {
			t.Fatal(err)
		}
		expectPayload(t, cl.bulkOn[topic], want)
	}
}

func testTwoManagers(t *testing.T, bin string) {
	m1 := startManager(t, bin, "manager 1", "127.0.0.1:0", "127.0.0.1:0")
	m2 := startManager(t, bin, "manager 2", "127.0.0.1:0", "127.0.0.1:0")
	g1 := startGateway(t, bin, 1, m1.addr, m2.addr)
	g2 := startGateway(t, bin, 2, m1.addr, m2.addr)
	c1, c2 := dialWS(t, g1), dialWS(t, g2)
	const topic = "seq"
	c1.subscribe(topic)
	c2.subscribe(topic)
	for _, m := range []*managerProc{m1, m2} {
		poll(t, "both managers to see both subscribers", countIs(m.http, topic, 2))
	}

	// publish on gateway 1 every 2 ms; gateway 1 publishes through manager
	// 1 (the first healthy one), which is killed
	type sent struct {
		at time.Time
		ok bool
	}
	var (
		mu       sync.Mutex
		log      []sent // by seq
		stop     = make(chan struct{})
		finished = make(chan struct{})
	)
	go func() {
		defer close(finished)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for seq := 0; ; seq++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			at := time.Now()
			err := publish(g1, topic, fmt.Sprintf(`{"epoch":1,"seq":%d}`, seq))
			mu.Lock()
			log = append(log, sent{at, err == nil})
			mu.Unlock()
		}
	}()
	stopPublishing := sync.OnceFunc(func() { close(stop); <-finished })
	defer stopPublishing()

	got := map[int]time.Time{}
	var order []int
	receive := func(until func() bool) {
		timer := time.NewTimer(clusterWait)
		defer timer.Stop()
		for !until() {
			select {
			case f := <-c2.deliveries:
				p := mustPayload(t, f)
				got[p.Seq] = time.Now()
				order = append(order, p.Seq)
			case <-timer.C:
				t.Fatalf("gateway 2 received %d messages, then nothing for %v", len(got), clusterWait)
			}
		}
	}
	receive(func() bool { return len(got) >= 100 })
	m1.kill()
	killed := time.Now()
	mu.Lock()
	killSeq := len(log)
	mu.Unlock()
	t.Logf("manager 1 killed at seq ~%d", killSeq)
	// go on for a second and at least 200 more deliveries
	afterKill := func() int {
		n := 0
		for s := range got {
			if s > killSeq {
				n++
			}
		}
		return n
	}
	receive(func() bool { return afterKill() >= 200 && time.Since(killed) > time.Second })
	stopPublishing()
	mu.Lock()
	sentLog := slices.Clone(log)
	mu.Unlock()
	last := -1
	for s, e := range sentLog {
		if e.ok {
			last = s
		}
	}
	// everything accepted eventually arrives or is lost; wait for the last
	receive(func() bool { _, ok := got[last]; return ok })

	var lost, failed, lostLate, failedLate []int
	for s, e := range sentLog {
		late := e.at.After(killed.Add(500 * time.Millisecond))
		switch _, ok := got[s]; {
		case !e.ok:
			failed = append(failed, s)
			if late {
				failedLate = append(failedLate, s)
			}
		case !ok:
			lost = append(lost, s)
			if late {
				lostLate = append(lostLate, s)
			}
		}
	}
	var maxGap time.Duration
	var prev time.Time
	for _, s := range slices.Sorted(func(yield func(int) bool) {
		for s := range got {
			if !yield(s) {
				return
			}
		}
	}) {
		if at := got[s]; !prev.IsZero() && at.Sub(prev) > maxGap {
			maxGap = at.Sub(prev)
		}
		prev = got[s]
	}
	outOfOrder := 0
	for i := 1; i < len(order); i++ {
		if order[i] < order[i-1] {
			outOfOrder++
		}
	}
	t.Logf("two managers, one killed: %d published (%d refused by the gateway: seqs %v), %d delivered to gateway 2, %d after the kill; lost %d (seqs %v); longest gap between deliveries %v; %d out of order",
		len(sentLog), len(failed), failed, len(got), afterKill(), len(lost), lost, maxGap, outOfOrder)
	if afterKill() == 0 {
		t.Fatal("no delivery after manager 1 was killed")
	}
	if len(lostLate) > 0 || len(failedLate) > 0 {
		t.Errorf("publishes made over 500ms after the kill (failure long detected): %d lost %v, %d refused %v",
			len(lostLate), lostLate, len(failedLate), failedLate)
	}
	// counts still answered, through manager 2
	for _, g := range []*gatewayProc{g1, g2} {
		if ok, err := countIs(g.http, topic, 2)(); !ok {
			t.Error(err)
		}
	}
}

// testGatewayGone kills (SIGKILL: the kernel closes its connections) or
// freezes (SIGSTOP: the connection stays open and silent) gateway 2 and
// waits for its counts to leave the cluster.
func testGatewayGone(t *testing.T, bin string, sig syscall.Signal) {
	cl := newCluster(t, bin, 0)
	// three more subscribers on gateway 2
	for range 3 {
		dialWS(t, cl.g2).subscribe(probe)
	}
	poll(t, "count 5", countIs(cl.m.http, probe, 5))
	if err := cl.g2.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	took := poll(t, "gateway 2's counts to leave the cluster", func() (bool, error) {
		for _, addr := range []string{cl.m.http, cl.g1.http} {
			if ok, err := countIs(addr, probe, 1)(); !ok {
				return false, err
			}
		}
		s, err := statsOf(cl.m)
		if err != nil {
			return false, err
		}
		return s.Nodes == 1, fmt.Errorf("manager stats %+v, want 1 node", s)
	})
	t.Logf("%v to gateway 2: its counts left the cluster after %v (heartbeat timeout %v)", sig, took, heartbeatTimeout)
	// (an upper bound would measure the machine's load: poll's deadline is
	// the guard; the lower bound below cannot be met early by a slow machine)
	if sig == syscall.SIGSTOP && took < heartbeatTimeout/2 {
		t.Errorf("a frozen gateway was dropped after %v, well before the heartbeat timeout", took)
	}
	// gateway 1 goes on working
	want := payload{Epoch: 9, Seq: 1}
	data, _ := json.Marshal(want)
	if err := publish(cl.g1, probe, string(data)); err != nil {
		t.Fatal(err)
	}
	expectPayload(t, cl.c1, want)
}
