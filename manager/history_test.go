package manager_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/manager"
	"github.com/firetower-go/firetower/managertest"
)

// The history and recovery scenarios of the conformance suite on manager
// nodes: one, and two (the gateways keep both in sync and use the first).
func TestOneManagerHistoryConformance(t *testing.T) { managertest.RunHistory(t, nodeCluster(1, false)) }
func TestTwoManagersHistoryConformance(t *testing.T) {
	managertest.RunHistory(t, nodeCluster(2, false))
}

// TestHistoryStatsReachTheGateways: the manager's history memory shows in
// its own stats and, through the PONGs, in its gateways' Tower.Stats.
func TestHistoryStatsReachTheGateways(t *testing.T) {
	srv := bpServer(t, manager.ServerConfig{})
	c, err := manager.NewClient(manager.ClientConfig{Addrs: []string{srv.Addr()}, PingInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	tw, err := firetower.New(firetower.WithAddr("127.0.0.1:0"), firetower.WithNodeID(1), firetower.WithManager(c),
		firetower.WithHistory(100, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tw.Shutdown(context.Background()) })
	for i := range 10 {
		if _, err := tw.PublishOffset(context.Background(), "stats/"+strconv.Itoa(i%3), []byte(`"0123456789"`)); err != nil {
			t.Fatal(err)
		}
	}
	st := srv.Stats()
	if st.HistoryStreams != 3 || st.HistoryBytes < 10*12 {
		t.Fatalf("manager stats %+v, want 3 streams and at least 120 bytes", st)
	}
	waitFor(t, "the gateway to report the manager's history", func() bool {
		s := tw.Stats()
		return s.HistoryStreams == st.HistoryStreams && s.HistoryBytes == st.HistoryBytes
	})
}

// TestServerPublishKeepsHistory: a publish from outside the cluster (the
// manager's push API) on a history topic is appended to its stream and
// delivered with its offset; on another topic it is routed as before.
func TestServerPublishKeepsHistory(t *testing.T) {
	srv := bpServer(t, manager.ServerConfig{})
	c, err := manager.NewClient(manager.ClientConfig{Addrs: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	tw, err := firetower.New(firetower.WithAddr("127.0.0.1:0"), firetower.WithNodeID(1), firetower.WithManager(c),
		firetower.WithHistory(100, time.Hour, "h/"))
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tw.Shutdown(context.Background()) })
	cl := managertest.DialHist(t, tw, "json")
	defer cl.Close()
	pos := cl.Subscribe("h/ext", nil)["h/ext"]
	if n, err := srv.Publish("h/ext", []byte(`"from outside"`)); err != nil || n != 1 {
		t.Fatalf("Publish: %d %v", n, err)
	}
	if o, d := cl.Delivery("h/ext"); o != pos.Offset+1 || d != "from outside" {
		t.Fatalf("delivery %d %q, want offset %d", o, d, pos.Offset+1)
	}
	r, err := tw.History(context.Background(), "h/ext", &firetower.Position{Offset: pos.Offset, Epoch: pos.Epoch}, 0)
	if err != nil || !r.Recovered || len(r.Publications) != 1 || string(r.Publications[0].Data) != `"from outside"` {
		t.Fatalf("history after an outside publish: %+v %v", r, err)
	}
	if st := srv.Stats(); st.HistoryStreams != 1 {
		t.Fatalf("a topic without history got a stream: %+v", st)
	}
	plain := managertest.Dial(t, tw)
	plain.Subscribe("plain")
	if n, err := srv.Publish("plain", []byte(`1`)); err != nil || n != 1 {
		t.Fatalf("Publish plain: %d %v", n, err)
	}
	plain.ExpectDelivery("plain", `1`)
	if st := srv.Stats(); st.HistoryStreams != 1 {
		t.Fatalf("a topic without history got a stream: %+v", st)
	}
}
