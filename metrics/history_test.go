package metrics_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/metrics"
)

func TestMetricsHistory(t *testing.T) {
	tw := mtTower(t, firetower.WithNodeID(3), firetower.WithHistory(10, time.Hour))
	reg := prometheus.NewRegistry()
	if err := metrics.Register(reg, tw); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(metrics.Handler(reg))
	t.Cleanup(srv.Close)
	if v := value(t, scrape(t, srv.URL), "3", "firetower_history_streams"); v != 0 {
		t.Fatalf("streams before any publish: %v", v)
	}
	for _, topic := range []string{"a", "b", "a"} {
		if err := tw.Publish(context.Background(), topic, []byte(`"0123456789"`)); err != nil {
			t.Fatal(err)
		}
	}
	fams := scrape(t, srv.URL)
	st := tw.Stats()
	if v := value(t, fams, "3", "firetower_history_streams"); v != 2 || st.HistoryStreams != 2 {
		t.Fatalf("streams %v (Stats %d), want 2", v, st.HistoryStreams)
	}
	if v := value(t, fams, "3", "firetower_history_bytes"); v != float64(st.HistoryBytes) || v < 3*12 {
		t.Fatalf("bytes %v (Stats %d), want at least the data", v, st.HistoryBytes)
	}
}
