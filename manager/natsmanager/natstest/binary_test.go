package natstest

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
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The NATS failover across processes: an embedded 3-node NATS cluster and
// two real `firetower serve --nats` processes, driven through websockets
// and the HTTP API.

const (
	binWait         = 10 * time.Second // bound of every ordinary wait
	binFailoverWait = 15 * time.Second // bound of the failover itself
	binPublishEvery = 2 * time.Millisecond
	// binTopic has '.', '*' and '>', which the subject must escape, and '/',
	// which the HTTP path must.
	binTopic = "/nats/fail.over*>"
)

var (
	binWSLine          = regexp.MustCompile(`^websocket listening on ws://(\S+)/ws$`)
	binHTTPLine        = regexp.MustCompile(`^http listening on http://(\S+)$`)
	binConnectedLine   = regexp.MustCompile(`msg="natsmanager: connected" url=(\S+)`)
	binReconnectedLine = regexp.MustCompile(`msg="natsmanager: reconnected" url=(\S+)`)
)

// TestBinaryNATSFailover: gateway A uses NATS node 1, gateway B node 2;
// a client on B publishes a numbered message every 2ms while node 1 is
// shut down. Gateway A must fail over to another node (nats.go knows them
// from the cluster's advertised URLs), its subscriber must receive again,
// and its cluster-wide count must be whole again. Delivery is at most
// once: messages around the shutdown may be lost, none after the first
// one that gets through again.
func TestBinaryNATSFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and spawns gateway processes")
	}
	ss := startCluster(t, 3)
	bin := binBuild(t)
	ga := binStartGateway(t, bin, 1, ss[0].ClientURL())
	gb := binStartGateway(t, bin, 2, ss[1].ClientURL())
	if u := ga.stderr.wait(t, "gateway 1 connected", binConnectedLine, ga.done); u != ss[0].ClientURL() {
		t.Fatalf("gateway 1 connected to %s, want node 1 %s", u, ss[0].ClientURL())
	}

	a, b := binDial(t, "client A", ga), binDial(t, "client B", gb)
	a.subscribe(binTopic)
	b.subscribe(binTopic)
	for _, g := range []*binProc{ga, gb} {
		binPoll(t, binWait, g.name+": count 2", binCountIs(g, 2))
	}
	// interest crosses the NATS routes asynchronously: probe both ways
	binProbe(t, b, a)
	binProbe(t, a, b)

	// b publishes every binPublishEvery; its own deliveries are local
	var (
		mu      sync.Mutex
		sentAt  []time.Time // by seq
		sendErr error
		stop    = make(chan struct{})
		stopped = make(chan struct{})
	)
	go func() {
		defer close(stopped)
		tick := time.NewTicker(binPublishEvery)
		defer tick.Stop()
		for seq := 0; ; seq++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			mu.Lock()
			sentAt = append(sentAt, time.Now())
			mu.Unlock()
			if err := b.send("publish", "s"+strconv.Itoa(seq), binTopic, binData("s", seq)); err != nil {
				mu.Lock()
				sendErr = err
				mu.Unlock()
				return
			}
		}
	}()
	stopPublishing := sync.OnceFunc(func() { close(stop); <-stopped })
	defer stopPublishing()
	sentSoFar := func() int { mu.Lock(); defer mu.Unlock(); return len(sentAt) }

	got := map[int]time.Time{} // seq -> arrival at A
	var order []int
	dups := 0
	// receive reads A's deliveries until done or the deadline; false on
	// the deadline.
	receive := func(deadline time.Time, done func() bool) bool {
		for !done() {
			select {
			case f := <-a.deliveries:
				k, n := binPayload(t, f)
				if k != "s" {
					continue
				}
				if _, seen := got[n]; seen {
					dups++
					continue
				}
				got[n] = time.Now()
				order = append(order, n)
			case <-time.After(time.Until(deadline)):
				return false
			}
		}
		return true
	}
	if !receive(time.Now().Add(binWait), func() bool { return len(got) >= 100 }) {
		t.Fatalf("client A received %d of %d messages before the shutdown", len(got), sentSoFar())
	}

	// shut down the NATS node gateway A is connected to
	shutdownAt := time.Now()
	seqAtShutdown := sentSoFar()
	ss[0].Shutdown()
	ss[0].WaitForShutdown()
	shutdownDone := time.Now()
	seqAtShutdownDone := sentSoFar()
	t.Logf("NATS node 1 shut down at seq %d, in %v (seq %d)", seqAtShutdown, shutdownDone.Sub(shutdownAt), seqAtShutdownDone)

	// A receives again: 200 messages published after the shutdown was over
	after := func() int {
		n := 0
		for s := range got {
			if s >= seqAtShutdownDone {
				n++
			}
		}
		return n
	}
	if !receive(shutdownAt.Add(binFailoverWait), func() bool { return after() >= 200 }) {
		t.Fatalf("client A: %d messages published after the shutdown arrived within %v of it (%d published); gateway 1 stderr:\n%s",
			after(), binFailoverWait, sentSoFar(), binTail(ga.stderr.String(), 30))
	}
	reURL, reAt := ga.stderr.waitAt(t, "gateway 1 to reconnect", binReconnectedLine, ga.done)
	if reURL == ss[0].ClientURL() {
		t.Errorf("gateway 1 reconnected to the node that was shut down (%s)", reURL)
	}
	node := 0
	for i, s := range ss {
		if s.ClientURL() == reURL {
			node = i + 1
		}
	}
	t.Logf("gateway 1 reconnected to %s (node %d) %v after the shutdown began", reURL, node, reAt.Sub(shutdownAt))

	stopPublishing()
	mu.Lock()
	sent, err := slices.Clone(sentAt), sendErr
	mu.Unlock()
	if err != nil {
		t.Fatalf("client B stopped publishing: %v", err)
	}
	last := len(sent) - 1

	// every publish is answered (B's gateway and NATS node are fine)
	refused := b.tallyStream(t, len(sent))
	if len(refused) > 0 {
		t.Errorf("gateway 2 refused %d publishes: %v", len(refused), refused)
	}
	// the last publish reaches A
	if !receive(time.Now().Add(binWait), func() bool { _, ok := got[last]; return ok }) {
		t.Errorf("client A never received the last message, seq %d", last)
	}
	// B gets its own publishes locally, all of them
	if missing := b.ownDeliveries(t, len(sent)); len(missing) > 0 {
		t.Errorf("client B (local delivery) misses %d of its own publishes: %v", len(missing), binRanges(missing))
	}

	// the gap and the losses at A
	var lost []int
	firstBack := -1 // first seq published after the shutdown began that reached A
	for s := range sent {
		if _, ok := got[s]; !ok {
			lost = append(lost, s)
		} else if firstBack < 0 && s >= seqAtShutdown {
			firstBack = s
		}
	}
	// Messages sent after A had reconnected (its old connection closed)
	// can only reach it over the new one: once one has, the route from
	// B's node to A's new one is in place and every later one follows it.
	// (A message sent as the shutdown began may still arrive over node 1,
	// with losses after it: seq 100 arrives, 101-102 do not.)
	firstNew := -1
	for s, at := range sent {
		if _, ok := got[s]; ok && at.After(reAt) {
			firstNew = s
			break
		}
	}
	var lostAfterBack []int
	for _, s := range lost {
		if s > firstNew {
			lostAfterBack = append(lostAfterBack, s)
		}
	}
	var maxGap time.Duration
	var gapFrom, gapTo int
	for i := 1; i < len(order); i++ {
		if d := got[order[i]].Sub(got[order[i-1]]); d > maxGap {
			maxGap, gapFrom, gapTo = d, order[i-1], order[i]
		}
	}
	outOfOrder := 0
	for i := 1; i < len(order); i++ {
		if order[i] < order[i-1] {
			outOfOrder++
		}
	}
	var recovery time.Duration
	if firstBack >= 0 {
		recovery = got[firstBack].Sub(shutdownAt)
	}
	// the silence at A across the shutdown: from its last delivery before
	// the shutdown began to its first one after
	var lastBefore, firstAfter time.Time
	for _, s := range order {
		if at := got[s]; at.Before(shutdownAt) {
			lastBefore = at
		} else if firstAfter.IsZero() {
			firstAfter = at
		}
	}
	silence := firstAfter.Sub(lastBefore)
	t.Logf("NATS node 1 shut down under a publish every %v: %d published by client B, %d received by client A; "+
		"lost %d (seqs %s, shutdown began at seq %d); first message published after the shutdown began to arrive: seq %d, %v after it began; "+
		"first one published after the reconnection: seq %d; silence at A across the shutdown %v; longest gap between deliveries at A %v (seq %d -> %d); "+
		"%d duplicates, %d out of order",
		binPublishEvery, len(sent), len(got), len(lost), binRanges(lost), seqAtShutdown, firstBack, recovery,
		firstNew, silence, maxGap, gapFrom, gapTo, dups, outOfOrder)
	if firstNew < 0 {
		t.Errorf("no message published after gateway 1 reconnected reached client A")
	} else if len(lostAfterBack) > 0 {
		t.Errorf("%d messages lost after one published after the reconnection (seq %d) reached A: %s", len(lostAfterBack), firstNew, binRanges(lostAfterBack))
	}
	if dups > 0 {
		t.Errorf("%d duplicate deliveries: delivery is at most once", dups)
	}
	if outOfOrder > 0 {
		t.Errorf("%d deliveries out of order: one publisher's order is kept", outOfOrder)
	}

	// the counts are cluster-wide again on both gateways
	for _, g := range []*binProc{ga, gb} {
		binPoll(t, binFailoverWait, g.name+": count 2 after the failover", binCountIs(g, 2))
		t.Logf("%s: GET /api/v1/topics/%s answers 2 (checked %v after the shutdown was over)", g.name, url.PathEscape(binTopic), time.Since(shutdownDone))
	}
	// and they follow changes, both ways: a report from before the
	// shutdown is still counted until its TTL, so 2 alone proves little
	b2 := binDial(t, "client B2", gb)
	b2.subscribe(binTopic)
	tookB := binPoll(t, binWait, "gateway 1 to count a new subscriber on gateway 2", binCountIs(ga, 3))
	a2 := binDial(t, "client A2", ga)
	a2.subscribe(binTopic)
	tookA := binPoll(t, binWait, "gateway 2 to count a new subscriber on gateway 1", binCountIs(gb, 4))
	a2.close()
	b2.close()
	for _, g := range []*binProc{ga, gb} {
		binPoll(t, binWait, g.name+": count 2 after two disconnects", binCountIs(g, 2))
	}
	t.Logf("after the failover, a subscribe on gateway 2 was counted on gateway 1 within %v, one on gateway 1 on gateway 2 within %v", tookB, tookA)

	// and A publishes to B through its new node
	a.publish("m", 1)
	b.expect(t, "m", 1)
	a.expect(t, "m", 1)
}

// ---- the binary and its processes ------------------------------------------

// binBuild builds cmd/firetower into a temporary directory. It builds in
// the root module (found through this module's replace directive), whose
// go.sum covers the binary's dependencies (gRPC, Prometheus), which this
// module's does not.
func binBuild(t *testing.T) string {
	t.Helper()
	const pkg = "github.com/firetower-go/firetower"
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", pkg).Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", pkg, err)
	}
	root := strings.TrimSpace(string(out))
	bin := filepath.Join(t.TempDir(), "firetower")
	build := exec.Command("go", "build", "-o", bin, "./cmd/firetower")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build (in %s): %v\n%s", root, err, out)
	}
	return bin
}

// binLog is a process's output as lines, each with the time it was read.
type binLog struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
	at      []time.Time
	notify  chan struct{} // closed and replaced when lines are added
}

func newBinLog() *binLog { return &binLog{notify: make(chan struct{})} }

func (l *binLog) Write(b []byte) (int, error) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, b...)
	n := len(l.lines)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, string(l.partial[:i]))
		l.at = append(l.at, now)
		l.partial = l.partial[i+1:]
	}
	if len(l.lines) > n {
		close(l.notify)
		l.notify = make(chan struct{})
	}
	return len(b), nil
}

// waitAt returns the first submatch of re in a line and when the line was
// read; it fails when the process exits or binWait passes first.
func (l *binLog) waitAt(t *testing.T, what string, re *regexp.Regexp, exited <-chan struct{}) (string, time.Time) {
	t.Helper()
	timer := time.NewTimer(binWait)
	defer timer.Stop()
	gone := false
	for seen := 0; ; {
		l.mu.Lock()
		for ; seen < len(l.lines); seen++ {
			if m := re.FindStringSubmatch(l.lines[seen]); m != nil {
				at := l.at[seen]
				l.mu.Unlock()
				return m[1], at
			}
		}
		ch := l.notify
		l.mu.Unlock()
		if gone {
			t.Fatalf("%s: the process exited with no line matching %q", what, re)
		}
		select {
		case <-ch:
		case <-exited:
			// cmd.Wait has copied all its output: one more look
			gone, exited = true, nil
		case <-timer.C:
			t.Fatalf("%s: no line matching %q within %v", what, re, binWait)
		}
	}
}

func (l *binLog) wait(t *testing.T, what string, re *regexp.Regexp, exited <-chan struct{}) string {
	t.Helper()
	s, _ := l.waitAt(t, what, re, exited)
	return s
}

func (l *binLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n") + "\n" + string(l.partial)
}

func binTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// binProc is a `firetower serve` process.
type binProc struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr *binLog
	done           chan struct{} // closed when it has exited
	ws, http       string        // its listen addresses
}

func binStartGateway(t *testing.T, bin string, node int, natsURLs ...string) *binProc {
	t.Helper()
	p := &binProc{
		name:   fmt.Sprintf("gateway %d", node),
		stdout: newBinLog(),
		stderr: newBinLog(),
		done:   make(chan struct{}),
	}
	p.cmd = exec.Command(bin, "serve", "--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--nats", strings.Join(natsURLs, ","), "--node-id", strconv.Itoa(node))
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			t.Logf("%s (%s) stdout:\n%s\nstderr:\n%s", p.name, strings.Join(p.cmd.Args[1:], " "), p.stdout, binTail(p.stderr.String(), 40))
		}
	})
	p.ws = p.stdout.wait(t, p.name, binWSLine, p.done)
	p.http = p.stdout.wait(t, p.name, binHTTPLine, p.done)
	return p
}

// ---- HTTP ------------------------------------------------------------------

var binHTTP = &http.Client{Timeout: 2 * time.Second}

// binCount is GET /api/v1/topics/<binTopic> on g.
func binCount(g *binProc) (int64, error) {
	resp, err := binHTTP.Get("http://" + g.http + "/api/v1/topics/" + url.PathEscape(binTopic))
	if err != nil {
		return -1, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return -1, err
	}
	if resp.StatusCode != http.StatusOK {
		return -1, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
	}
	var r struct {
		Topic string `json:"topic"`
		Count int64  `json:"count"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return -1, err
	}
	if r.Topic != binTopic {
		return -1, fmt.Errorf("answer for topic %q", r.Topic)
	}
	return r.Count, nil
}

func binCountIs(g *binProc, want int64) func() (bool, error) {
	return func() (bool, error) {
		n, err := binCount(g)
		if err != nil {
			return false, err
		}
		return n == want, fmt.Errorf("count %d, want %d", n, want)
	}
}

// binPoll calls cond until it holds or wait passes, and returns how long
// that took.
func binPoll(t *testing.T, wait time.Duration, what string, cond func() (bool, error)) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok, err := cond()
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > wait {
			t.Fatalf("%s: not within %v (last: %v)", what, wait, err)
		}
		time.Sleep(5 * time.Millisecond) // polling another process, bounded by the deadline
	}
}

// ---- websocket clients -----------------------------------------------------

type binFrame struct {
	Type    string          `json:"type"`
	ID      json.RawMessage `json:"id"`
	Topic   string          `json:"topic"`
	Data    json.RawMessage `json:"data"`
	Code    string          `json:"code"`
	Message string          `json:"message"`
}

// binClient is a JSON-protocol client; its reader sorts what arrives into
// deliveries and replies (large buffers: a publisher gets thousands of
// acks and its own deliveries).
type binClient struct {
	t          *testing.T
	name       string
	ws         *websocket.Conn
	seq        int
	deliveries chan binFrame
	replies    chan binFrame
	done       chan struct{}
}

func binDial(t *testing.T, name string, g *binProc) *binClient {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+g.ws+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &binClient{
		t: t, name: name, ws: ws,
		deliveries: make(chan binFrame, 1<<16),
		replies:    make(chan binFrame, 1<<16),
		done:       make(chan struct{}),
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			var f binFrame
			if json.Unmarshal(b, &f) != nil {
				continue
			}
			ch := c.replies
			if f.Type == "publish" {
				ch = c.deliveries
			}
			select {
			case ch <- f:
			case <-c.done:
				return
			}
		}
	})
	t.Cleanup(func() { close(c.done); _ = ws.Close(); wg.Wait() })
	return c
}

func (c *binClient) close() { _ = c.ws.Close() }

// send writes one request; data is raw JSON or empty.
func (c *binClient) send(typ, id, topic, data string) error {
	msg := fmt.Sprintf(`{"type":%q,"id":%q,"topic":%q`, typ, id, topic)
	if data != "" {
		msg += `,"data":` + data
	}
	return c.ws.WriteMessage(websocket.TextMessage, []byte(msg+"}"))
}

// request sends a request and waits for its ack.
func (c *binClient) request(typ, topic, data string) {
	c.t.Helper()
	c.seq++
	id := "r" + strconv.Itoa(c.seq)
	if err := c.send(typ, id, topic, data); err != nil {
		c.t.Fatalf("%s: %v", c.name, err)
	}
	timer := time.NewTimer(binWait)
	defer timer.Stop()
	for {
		select {
		case f := <-c.replies:
			if string(f.ID) != strconv.Quote(id) {
				continue
			}
			if f.Type != "ack" {
				c.t.Fatalf("%s: %s: %s %s %s", c.name, typ, f.Type, f.Code, f.Message)
			}
			return
		case <-timer.C:
			c.t.Fatalf("%s: %s: no answer within %v", c.name, typ, binWait)
		}
	}
}

func (c *binClient) subscribe(topic string) { c.t.Helper(); c.request("subscribe", topic, "") }
func (c *binClient) publish(kind string, n int) {
	c.t.Helper()
	c.request("publish", binTopic, binData(kind, n))
}

// binData is the data of a test publish: a kind ("s" stream, "p" probe,
// "m" marker) and a number.
func binData(kind string, n int) string { return fmt.Sprintf(`{"k":%q,"n":%d}`, kind, n) }

func binPayload(t *testing.T, f binFrame) (string, int) {
	t.Helper()
	var p struct {
		K string `json:"k"`
		N int    `json:"n"`
	}
	if f.Topic != binTopic {
		t.Fatalf("delivery on %q, want %q", f.Topic, binTopic)
	}
	if err := json.Unmarshal(f.Data, &p); err != nil {
		t.Fatalf("delivery %s: %v", f.Data, err)
	}
	return p.K, p.N
}

// expect reads deliveries until kind n, skipping others.
func (c *binClient) expect(t *testing.T, kind string, n int) {
	t.Helper()
	timer := time.NewTimer(binWait)
	defer timer.Stop()
	for {
		select {
		case f := <-c.deliveries:
			if k, m := binPayload(t, f); k == kind && m == n {
				return
			}
		case <-timer.C:
			t.Fatalf("%s: no delivery %s %d within %v", c.name, kind, n, binWait)
		}
	}
}

// binProbe publishes probes from pub until one reaches sub: interest
// crosses the NATS routes asynchronously.
func binProbe(t *testing.T, pub, sub *binClient) {
	t.Helper()
	deadline := time.Now().Add(binWait)
	for i := 0; ; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("no probe from %s reached %s within %v", pub.name, sub.name, binWait)
		}
		pub.publish("p", i)
		wait := time.NewTimer(100 * time.Millisecond)
	read:
		for {
			select {
			case f := <-sub.deliveries:
				if k, _ := binPayload(t, f); k == "p" {
					wait.Stop()
					return
				}
			case <-wait.C:
				break read
			}
		}
	}
}

// tallyStream reads the answers to the n stream publishes ("s<seq>" ids)
// and returns the seqs that were refused.
func (c *binClient) tallyStream(t *testing.T, n int) []int {
	t.Helper()
	var refused []int
	answered := 0
	timer := time.NewTimer(binWait)
	defer timer.Stop()
	for answered < n {
		select {
		case f := <-c.replies:
			id, err := strconv.Unquote(string(f.ID))
			if err != nil || !strings.HasPrefix(id, "s") {
				continue
			}
			answered++
			if f.Type != "ack" {
				seq, _ := strconv.Atoi(id[1:])
				refused = append(refused, seq)
				if len(refused) == 1 {
					t.Logf("%s: publish %s: %s %s %s", c.name, id, f.Type, f.Code, f.Message)
				}
			}
		case <-timer.C:
			t.Fatalf("%s: %d of %d stream publishes answered within %v", c.name, answered, n, binWait)
		}
	}
	return refused
}

// ownDeliveries reads the publisher's own stream deliveries until all n
// arrived or binWait passes, and returns the missing seqs.
func (c *binClient) ownDeliveries(t *testing.T, n int) []int {
	t.Helper()
	seen := make([]bool, n)
	count := 0
	timer := time.NewTimer(binWait)
	defer timer.Stop()
	for count < n {
		select {
		case f := <-c.deliveries:
			if k, s := binPayload(t, f); k == "s" && s < n && !seen[s] {
				seen[s] = true
				count++
			}
		case <-timer.C:
			var missing []int
			for s, ok := range seen {
				if !ok {
					missing = append(missing, s)
				}
			}
			return missing
		}
	}
	return nil
}

// binRanges writes sorted seqs as ranges: "[3-7 9]".
func binRanges(seqs []int) string {
	var parts []string
	for i := 0; i < len(seqs); {
		j := i
		for j+1 < len(seqs) && seqs[j+1] == seqs[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, strconv.Itoa(seqs[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", seqs[i], seqs[j]))
		}
		i = j + 1
	}
	return "[" + strings.Join(parts, " ") + "]"
}
