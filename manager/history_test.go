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
