package natstest

import (
	"context"
	"net/url"
	"runtime"
	"testing"
	"time"

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
	a.Subscribe("f")
	b.Subscribe("f")
	waitCount(t, ga, "f", 2)
	probe(t, ga, "f", a, b)
	probe(t, gb, "f", a, b)

	ss[1].Shutdown()
	ss[1].WaitForShutdown()
	waitFor(t, "gateway b to reconnect", func() bool { return mb.Stats().Reconnects > 0 && mb.Stats().Connected })
	// interest is resent on reconnect and crosses the routes asynchronously
	probe(t, ga, "f", a, b)
	probe(t, gb, "f", a, b)
	a.Publish("f", `"a"`)
	a.ExpectDelivery("f", `"a"`)
	b.ExpectDelivery("f", `"a"`)
	b.Publish("f", `"b"`)
	a.ExpectDelivery("f", `"b"`)
	b.ExpectDelivery("f", `"b"`)
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
		dial(t, g).Subscribe("c")
	}
	waitCount(t, g1, "c", 3)

	// clean shutdown: a goodbye removes g2 at once
	start := time.Now()
	shutdown(t, g2)
	waitCount(t, g1, "c", 2)
	// (how long it took is logged, not asserted: a busy machine stretches it)
	t.Logf("a clean shutdown left the counts after %v (TTL %v)", time.Since(start), countTTL)

	// silence: g3's last report expires
	start = time.Now()
	ss[2].Shutdown()
	ss[2].WaitForShutdown()
	waitCount(t, g1, "c", 1)
	t.Logf("a silent gateway left the counts after %v, TTL %v", time.Since(start), countTTL)
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
	c.Subscribe("d")
	s.Shutdown()
	s.WaitForShutdown()
	waitFor(t, "disconnect", func() bool { return !m.Stats().Connected })
	start := time.Now()
	c.Subscribe("d2")
	t.Logf("subscribe with NATS down answered after %v", time.Since(start))
	id := c.Request("publish", "d", `"x"`)
	if f := c.Reply(id); f.Type != "error" || f.Code != firetower.CodeUnavailable {
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
	c.Subscribe(topic)
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
	c.ExpectDelivery(topic, `{"k":1}`)
	c.Unsubscribe(topic)
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
	c.Subscribe("l")
	probe(t, g, "l", c)
	c.Close()
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

// nats is the managertest Cluster value for probes and counts on NATS:
// interest crosses routes asynchronously, so counts are polled.
var natsCluster = managertest.Cluster{Name: "nats", Exact: false}

func dial(t *testing.T, tw *firetower.Tower) *managertest.Client { return managertest.Dial(t, tw) }

func probe(t *testing.T, tw *firetower.Tower, topic string, cs ...*managertest.Client) {
	t.Helper()
	managertest.Probe(t, natsCluster, tw, topic, cs...)
}

func waitCount(t *testing.T, tw *firetower.Tower, topic string, want int64) {
	t.Helper()
	managertest.WaitCount(t, tw, topic, want)
}

// TestSharedConformanceSingleServer runs the suite every Manager runs
// (managertest) against NATS on one server.
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

// TestSharedConformanceRouted runs the same suite on a routed 3-node
// cluster, gateway i on server i%3: deliveries, counts, requests, answers
// and stats cross the routes (the suite probes before it expects a
// delivery, and polls counts).
func TestSharedConformanceRouted(t *testing.T) {
	managertest.Run(t, managertest.Cluster{
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
