package metrics_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/metrics"
)

// TestMetricsCompression: a compressing subscriber's deliveries and a
// compressed publish show in the compression series.
func TestMetricsCompression(t *testing.T) {
	tw := mtTower(t, firetower.WithNodeID(3), firetower.WithCompression(1, 64))
	reg := prometheus.NewRegistry()
	if err := metrics.Register(reg, tw); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(metrics.Handler(reg))
	t.Cleanup(srv.Close)

	d := websocket.Dialer{EnableCompression: true}
	ws, _, err := d.Dial("ws://"+tw.Addr()+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.EnableWriteCompression(true)
	_ = ws.SetReadDeadline(time.Now().Add(mtTimeout))
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"subscribe","id":1,"topics":["/m"]}`)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ws.ReadMessage(); err != nil { // the ack
		t.Fatal(err)
	}
	data := `{"text":"` + strings.Repeat("compress me ", 100) + `"}`
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"publish","topic":"/m","data":`+data+`}`)); err != nil {
		t.Fatal(err)
	}
	if _, p, err := ws.ReadMessage(); err != nil || !strings.Contains(string(p), "compress me") {
		t.Fatalf("delivery %q, %v", p, err)
	}
	if err := tw.Publish(context.Background(), "/m", []byte(data)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ws.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(mtTimeout)
	for tw.Stats().Transport.Compression.Frames < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the compressed deliveries were never counted")
		}
		time.Sleep(2 * time.Millisecond)
	}
	fams := scrape(t, srv.URL)
	if v := value(t, fams, "3", "firetower_compression_connections"); v != 1 {
		t.Errorf("firetower_compression_connections = %v, want 1", v)
	}
	if v := value(t, fams, "3", "firetower_compression_messages_total"); v != 2 {
		t.Errorf("firetower_compression_messages_total = %v, want 2", v)
	}
	if v := value(t, fams, "3", "firetower_compression_frames_total"); v != 2 {
		t.Errorf("firetower_compression_frames_total = %v, want 2", v)
	}
	before := value(t, fams, "3", "firetower_compression_frame_bytes_total", "stage", "before")
	after := value(t, fams, "3", "firetower_compression_frame_bytes_total", "stage", "after")
	if before < 2*float64(len(data)) || after <= 0 || after*4 > before {
		t.Errorf("frame bytes before %v after %v: want the deliveries' size before, under a quarter after", before, after)
	}
	if v := value(t, fams, "3", "firetower_compression_inflated_messages_total"); v < 2 {
		t.Errorf("firetower_compression_inflated_messages_total = %v, want the subscribe and the publish", v)
	}
	zin := value(t, fams, "3", "firetower_compression_inflated_bytes_total", "stage", "before")
	zout := value(t, fams, "3", "firetower_compression_inflated_bytes_total", "stage", "after")
	if zin <= 0 || zout <= zin {
		t.Errorf("inflated bytes before %v after %v", zin, zout)
	}
}
