package natstest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/manager/natsmanager"
	"github.com/firetower-go/firetower/managertest"
)

// timeout bounds every wait.
const timeout = 10 * time.Second

// Report timings for the tests: short, so expiry is quick to observe.
const (
	reportInterval = 200 * time.Millisecond
	countTTL       = 600 * time.Millisecond
)

// startServer starts an embedded NATS server; routes, when given, join it
// to a cluster.
func startServer(t *testing.T, routes []*url.URL) *server.Server {
	t.Helper()
	opts := &server.Options{
		Host:   "127.0.0.1",
		Port:   -1,
		NoLog:  true,
		NoSigs: true,
		Cluster: server.ClusterOpts{
			Name: "firetower",
			Host: "127.0.0.1",
			Port: -1,
		},
		Routes: routes,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(timeout) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// startCluster starts n routed servers and waits until each knows all the
// others (NumRemotes, not NumRoutes: one remote may have several routes).
func startCluster(t *testing.T, n int) []*server.Server {
	t.Helper()
	first := startServer(t, nil)
	seed := server.RoutesFromStr("nats://" + first.ClusterAddr().String())
	out := []*server.Server{first}
	for range n - 1 {
		out = append(out, startServer(t, seed))
	}
	waitFor(t, "routes", func() bool {
		for _, s := range out {
			if s.NumRemotes() != n-1 {
				return false
			}
		}
		return true
	})
	return out
}

func waitFor(t testing.TB, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition that converges
	}
}

func newManager(t testing.TB, urls []string, opts ...nats.Option) *natsmanager.Manager {
	t.Helper()
	m, err := natsmanager.New(natsmanager.Config{
		URLs:           urls,
		ReportInterval: reportInterval,
		CountTTL:       countTTL,
		Options:        opts,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// gateway starts a Tower with node id id on m.
func gateway(t testing.TB, id uint16, m firetower.Manager) *firetower.Tower {
	t.Helper()
	tw, err := firetower.New(
		firetower.WithAddr("127.0.0.1:0"),
		firetower.WithNodeID(id),
		firetower.WithManager(m),
		firetower.WithPublishPolicy(firetower.PublishAny),
	)
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(t, tw) })
	return tw
}

func shutdown(t testing.TB, tw *firetower.Tower) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := tw.Shutdown(ctx); err != nil && err != firetower.ErrNotStarted {
		t.Errorf("shutdown: %v", err)
	}
}

// setup is how a scenario gets n gateways of one cluster.
type setup func(t *testing.T, n int) []*firetower.Tower

// single: every gateway on one NATS server.
func single(t *testing.T, n int) []*firetower.Tower {
	s := startServer(t, nil)
	out := make([]*firetower.Tower, n)
	for i := range out {
		out[i] = gateway(t, uint16(i+1), newManager(t, []string{s.ClientURL()}))
	}
	return out
}

// clustered: gateway i on server i%3 of a 3-node NATS cluster.
func clustered(t *testing.T, n int) []*firetower.Tower {
	ss := startCluster(t, 3)
	out := make([]*firetower.Tower, n)
	for i := range out {
		out[i] = gateway(t, uint16(i+1), newManager(t, []string{ss[i%3].ClientURL()}))
	}
	return out
}

func TestSingleServer(t *testing.T) { conformance(t, single) }
func TestCluster(t *testing.T)      { conformance(t, clustered) }

// conformance runs the scenarios every Manager must pass (the root
// module's internal managertest, re-told with the public API).
func conformance(t *testing.T, gws setup) {
	t.Run("CrossGatewayDelivery2", func(t *testing.T) { crossDelivery(t, gws, 2) })
	t.Run("CrossGatewayDelivery3", func(t *testing.T) { crossDelivery(t, gws, 3) })
	t.Run("CountsAndInterestRemoval", func(t *testing.T) { counts(t, gws) })
	t.Run("NoEchoToOrigin", func(t *testing.T) { noEcho(t, gws) })
	t.Run("OrderPerPublisher", func(t *testing.T) { order(t, gws) })
}

func crossDelivery(t *testing.T, gws setup, n int) {
	towers := gws(t, n)
	subs := make([]*client, n)
	for i, tw := range towers {
		subs[i] = dial(t, tw)
		subs[i].subscribe("room")
	}
	for _, tw := range towers {
		waitCount(t, tw, "room", int64(n))
	}
	for _, tw := range towers {
		probe(t, tw, "room", subs...)
	}
	for i := range towers {
		data := strconv.Itoa(i)
		subs[i].publish("room", data)
		for _, s := range subs {
			s.expectDelivery("room", data)
		}
	}
	if err := towers[0].Publish(context.Background(), "room", []byte(`"srv"`)); err != nil {
		t.Fatal(err)
	}
	for _, s := range subs {
		s.expectDelivery("room", `"srv"`)
	}
}

func counts(t *testing.T, gws setup) {
	towers := gws(t, 2)
	a1, a2, b := dial(t, towers[0]), dial(t, towers[0]), dial(t, towers[1])
	a1.subscribe("x")
	a2.subscribe("x")
	b.subscribe("x")
	waitCount(t, towers[0], "x", 3)
	waitCount(t, towers[1], "x", 3)
	b.unsubscribe("x")
	waitCount(t, towers[0], "x", 2)
	a2.close()
	waitCount(t, towers[1], "x", 1)
	probe(t, towers[1], "x", a1)
	p := dial(t, towers[1])
	p.publish("x", `"after"`)
	a1.expectDelivery("x", `"after"`)
	a1.close()
	waitCount(t, towers[0], "x", 0)
	waitCount(t, towers[1], "x", 0)
}

func noEcho(t *testing.T, gws setup) {
	towers := gws(t, 2)
	a, b := dial(t, towers[0]), dial(t, towers[1])
	a.subscribe("e")
	b.subscribe("e")
	waitCount(t, towers[0], "e", 2)
	probe(t, towers[0], "e", a, b)
	probe(t, towers[1], "e", a, b)
	for i := range 20 {
		a.publish("e", strconv.Itoa(i))
	}
	// a copy coming back through NATS would show up as a repeat
	for i := range 20 {
		a.expectDelivery("e", strconv.Itoa(i))
		b.expectDelivery("e", strconv.Itoa(i))
	}
	b.publish("e", `"end"`)
	a.expectDelivery("e", `"end"`)
	b.expectDelivery("e", `"end"`)
}

func order(t *testing.T, gws setup) {
	towers := gws(t, 2)
	pub, sub := dial(t, towers[0]), dial(t, towers[1])
	sub.subscribe("o")
	waitCount(t, towers[0], "o", 1)
	probe(t, towers[0], "o", sub)
	const n, window = 500, 50
	for i := 0; i < n; i += window {
		var ids []string
		for j := i; j < i+window; j++ {
			ids = append(ids, pub.request("publish", "o", strconv.Itoa(j)))
		}
		for _, id := range ids {
			pub.expectAck(id)
		}
	}
	for i := range n {
		sub.expectDelivery("o", strconv.Itoa(i))
	}
}

// TestFailover: gateways on different nodes of a 3-node cluster; the node
// of one gateway is shut down; it fails over to another node and delivery
// continues both ways.
func TestFailover(t *testing.T) {
	ss := startCluster(t, 3)
	// each gateway knows only its own server: the others come from the
	// cluster's advertised URLs.
	ma := newManager(t, []string{ss[0].ClientURL()})
	mb := newManager(t, []string{ss[1].ClientURL()})
	ga, gb := gateway(t, 1, ma), gateway(t, 2, mb)
	a, b := dial(t, ga), dial(t, gb)
	a.subscribe("f")
	b.subscribe("f")
	waitCount(t, ga, "f", 2)
	probe(t, ga, "f", a, b)
	probe(t, gb, "f", a, b)

	ss[1].Shutdown()
	ss[1].WaitForShutdown()
	waitFor(t, "gateway b to reconnect", func() bool { return mb.Stats().Reconnects > 0 && mb.Stats().Connected })
	// interest is resent on reconnect and crosses the routes asynchronously
	probe(t, ga, "f", a, b)
	probe(t, gb, "f", a, b)
	a.publish("f", `"a"`)
	a.expectDelivery("f", `"a"`)
	b.expectDelivery("f", `"a"`)
	b.publish("f", `"b"`)
	a.expectDelivery("f", `"b"`)
	b.expectDelivery("f", `"b"`)
	waitCount(t, ga, "f", 2)
	waitCount(t, gb, "f", 2)
}

// TestCountsExpire: the counts of a gateway that leaves disappear at once
// when it shuts down cleanly, and within its CountTTL when it goes silent.
func TestCountsExpire(t *testing.T) {
	ss := startCluster(t, 3)
	g1 := gateway(t, 1, newManager(t, []string{ss[0].ClientURL()}))
	g2 := gateway(t, 2, newManager(t, []string{ss[1].ClientURL()}))
	// g3 only ever talks to server 2: when that server goes, g3 falls
	// silent (it keeps trying to reconnect) instead of failing over.
	m3 := newManager(t, []string{ss[2].ClientURL()}, nats.IgnoreDiscoveredServers(), nats.DontRandomize())
	g3 := gateway(t, 3, m3)
	for _, g := range []*firetower.Tower{g1, g2, g3} {
		dial(t, g).subscribe("c")
	}
	waitCount(t, g1, "c", 3)

	// clean shutdown: a goodbye removes g2 at once
	start := time.Now()
	shutdown(t, g2)
	waitCount(t, g1, "c", 2)
	if d := time.Since(start); d > countTTL {
		t.Errorf("a clean shutdown took %v to leave the counts (TTL %v)", d, countTTL)
	}

	// silence: g3's last report expires
	start = time.Now()
	ss[2].Shutdown()
	ss[2].WaitForShutdown()
	waitCount(t, g1, "c", 1)
	// the last report left g3 before the shutdown began, and Count ignores
	// expired reports when it reads them: allow some scheduling slack.
	if d := time.Since(start); d > countTTL+300*time.Millisecond {
		t.Errorf("a silent gateway left the counts after %v, TTL %v", d, countTTL)
	}
	if _, err := g3.ConnectNum(context.Background(), "c"); err == nil {
		t.Error("ConnectNum on a disconnected gateway: no error")
	}
}

// TestFlushDisconnected: with NATS down, Flush (run by a subscribe) fails
// at once, so the subscribe is acked promptly, and Publish of a gateway
// that cannot buffer fails.
func TestFlushDisconnected(t *testing.T) {
	s := startServer(t, nil)
	m := newManager(t, []string{s.ClientURL()}, nats.ReconnectBufSize(-1))
	g := gateway(t, 1, m)
	c := dial(t, g)
	c.subscribe("d")
	s.Shutdown()
	s.WaitForShutdown()
	waitFor(t, "disconnect", func() bool { return !m.Stats().Connected })
	start := time.Now()
	c.subscribe("d2")
	if d := time.Since(start); d > time.Second {
		t.Errorf("subscribe with NATS down took %v", d)
	}
	id := c.request("publish", "d", `"x"`)
	if f := c.reply(id); f.Type != "error" || f.Code != firetower.CodeUnavailable {
		t.Errorf("publish with NATS down: %s %s, want error %s", f.Type, f.Code, firetower.CodeUnavailable)
	}
}

// TestSubjectsAreInterestBased: a backend publishing on a topic's subject
// with plain nats.go reaches the gateway, and the gateway holds a
// subscription only while it has subscribers.
func TestSubjectsAreInterestBased(t *testing.T) {
	s := startServer(t, nil)
	m := newManager(t, []string{s.ClientURL()})
	g := gateway(t, 1, m)
	topic := "a.b*c>d"
	base := s.NumSubscriptions()
	c := dial(t, g)
	c.subscribe(topic)
	if n := s.NumSubscriptions(); n != base+1 {
		t.Errorf("subscriptions after subscribe: %d, want %d", n, base+1)
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Publish(m.Subject(topic), []byte(`{"k":1}`)); err != nil {
		t.Fatal(err)
	}
	c.expectDelivery(topic, `{"k":1}`)
	c.unsubscribe(topic)
	waitFor(t, "unsubscription", func() bool { return s.NumSubscriptions() == base })
}

// TestNoGoroutineLeak: a gateway that joins, subscribes, reconnects and
// shuts down leaves no goroutine behind (nats.go's own ones included).
func TestNoGoroutineLeak(t *testing.T) {
	s := startServer(t, nil)
	time.Sleep(50 * time.Millisecond) // let the server settle
	base := runtime.NumGoroutine()
	m := newManager(t, []string{s.ClientURL()})
	g := gateway(t, 1, m)
	c := dial(t, g)
	c.subscribe("l")
	probe(t, g, "l", c)
	c.close()
	shutdown(t, g)
	var n int
	deadline := time.Now().Add(timeout)
	for n = runtime.NumGoroutine(); n > base && time.Now().Before(deadline); n = runtime.NumGoroutine() {
		time.Sleep(10 * time.Millisecond) // goroutines finishing their exit
	}
	if n > base {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
}

// probe publishes from tw until every client has received a probe:
// interest crosses NATS routes asynchronously, after Flush returns.
func probe(t *testing.T, tw *firetower.Tower, topic string, cs ...*client) {
	t.Helper()
	got := make([]bool, len(cs))
	deadline := time.Now().Add(timeout)
	for i := 0; ; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("probe on %s never arrived", topic)
		}
		if err := tw.Publish(context.Background(), topic, []byte(`"probe"`)); err != nil {
			t.Logf("probe: %v", err)
		}
		done := true
		for j, c := range cs {
			if !got[j] {
				got[j] = c.waitProbe(topic, 100*time.Millisecond)
				done = done && got[j]
			}
		}
		if done {
			return
		}
	}
}

func waitCount(t *testing.T, tw *firetower.Tower, topic string, want int64) {
	t.Helper()
	var n int64
	var err error
	waitFor(t, fmt.Sprintf("ConnectNum(%s) = %d", topic, want), func() bool {
		n, err = tw.ConnectNum(context.Background(), topic)
		return err == nil && n == want
	})
}

// client is a minimal JSON-protocol client.
type client struct {
	t    *testing.T
	ws   *websocket.Conn
	in   chan frame
	seq  int
	kept []frame // deliveries read while waiting for a reply
}

type frame struct {
	Type  string          `json:"type"`
	ID    json.RawMessage `json:"id"`
	Topic string          `json:"topic"`
	Data  json.RawMessage `json:"data"`
	Code  string          `json:"code"`
}

func (f frame) isProbe() bool { return f.Type == "publish" && string(f.Data) == `"probe"` }

func dial(t *testing.T, tw *firetower.Tower) *client {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+tw.Addr()+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, ws: ws, in: make(chan frame, 4096)}
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(c.in)
		for {
			_, p, err := ws.ReadMessage()
			if err != nil {
				return
			}
			var f frame
			if json.Unmarshal(p, &f) == nil {
				c.in <- f
			}
		}
	})
	t.Cleanup(func() { _ = ws.Close(); wg.Wait() })
	return c
}

func (c *client) close() { _ = c.ws.Close() }

func (c *client) request(typ, topic, data string) string {
	c.seq++
	id := strconv.Itoa(c.seq)
	msg := fmt.Sprintf(`{"type":%q,"topic":%q,"id":%q`, typ, topic, id)
	if data != "" {
		msg += `,"data":` + data
	}
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(msg+"}")); err != nil {
		c.t.Fatal(err)
	}
	return id
}

func (c *client) next(wait time.Duration) (frame, bool) {
	select {
	case f, ok := <-c.in:
		if !ok {
			c.t.Fatal("connection closed")
		}
		return f, true
	case <-time.After(wait):
		return frame{}, false
	}
}

// reply reads until the reply to request id; deliveries are kept.
func (c *client) reply(id string) frame {
	c.t.Helper()
	for {
		f, ok := c.next(timeout)
		if !ok {
			c.t.Fatalf("no reply to request %s", id)
		}
		if f.Type == "publish" {
			if !f.isProbe() {
				c.kept = append(c.kept, f)
			}
			continue
		}
		if string(f.ID) == strconv.Quote(id) {
			return f
		}
	}
}

func (c *client) expectAck(id string) {
	c.t.Helper()
	if f := c.reply(id); f.Type != "ack" {
		c.t.Fatalf("request %s: got %s %s", id, f.Type, f.Code)
	}
}

func (c *client) subscribe(topic string) {
	c.t.Helper()
	c.expectAck(c.request("subscribe", topic, ""))
}

func (c *client) unsubscribe(topic string) {
	c.t.Helper()
	c.expectAck(c.request("unsubscribe", topic, ""))
}

func (c *client) publish(topic, data string) {
	c.t.Helper()
	c.expectAck(c.request("publish", topic, data))
}

// waitProbe reads until a probe on topic, for at most wait; other
// deliveries are kept.
func (c *client) waitProbe(topic string, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for {
		f, ok := c.next(time.Until(deadline))
		if !ok {
			return false
		}
		if f.isProbe() && f.Topic == topic {
			return true
		}
		if f.Type == "publish" {
			c.kept = append(c.kept, f)
		}
	}
}

// expectDelivery reads until a delivery (probes skipped) and checks it.
func (c *client) expectDelivery(topic, data string) {
	c.t.Helper()
	for {
		var f frame
		if len(c.kept) > 0 {
			f, c.kept = c.kept[0], c.kept[1:]
		} else {
			var ok bool
			if f, ok = c.next(timeout); !ok {
				c.t.Fatalf("no delivery of %s %s", topic, data)
			}
		}
		if f.Type != "publish" || f.isProbe() {
			continue
		}
		if f.Topic != topic || string(f.Data) != data {
			c.t.Fatalf("delivery %s %s, want %s %s", f.Topic, f.Data, topic, data)
		}
		return
	}
}

// TestSharedConformanceSingleServer runs the suite every Manager runs
// (managertest) against NATS on one server. On a routed cluster, interest
// crosses routes asynchronously, so the cluster scenarios above probe first.
func TestSharedConformanceSingleServer(t *testing.T) {
	managertest.Run(t, managertest.Cluster{
		Name:  "nats",
		Exact: false,
		Managers: func(t *testing.T, n int) []firetower.Manager {
			url := startServer(t, nil).ClientURL()
			out := make([]firetower.Manager, n)
			for i := range out {
				out[i] = newManager(t, []string{url})
			}
			return out
		},
	})
}

// TestSharedClusterOpsRouted runs the suite's scenarios of the cluster-wide
// operations (disconnect, unsubscribe, the topic list, the stats topic)
// on a routed 3-node cluster, gateway i on server i%3: requests, answers
// and stats cross the routes. The suite waits for every node to answer and
// probes before deliveries, as the scenarios above do.
func TestSharedClusterOpsRouted(t *testing.T) {
	managertest.RunClusterOps(t, managertest.Cluster{
		Name:  "nats-routed",
		Exact: false,
		Managers: func(t *testing.T, n int) []firetower.Manager {
			ss := startCluster(t, 3)
			out := make([]firetower.Manager, n)
			for i := range out {
				out[i] = newManager(t, []string{ss[i%3].ClientURL()})
			}
			return out
		},
	})
}
