package firetower

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// TestDeliverLocalAllocs checks that a publish allocates nothing per
// subscriber: the envelope is encoded once into a pooled frame, which every
// subscriber's connection queues. What is left is gnet's, once per event
// loop turn, not per delivery: EventLoop.Execute allocates its task (2
// objects) when a publish wakes an idle loop.
func TestDeliverLocalAllocs(t *testing.T) {
	const subscribers = 20
	tw, err := New(WithAddr("127.0.0.1:0"), WithEventLoops(1), WithStatsInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tw.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tw.Shutdown(ctx) }()
	conns := make([]net.Conn, subscribers)
	for i := range conns {
		nc, _, _, err := ws.Dial(ctx, "ws://"+tw.Addr()+"/ws")
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		if err := wsutil.WriteClientText(nc, []byte(`{"type":"subscribe","topics":["/a"]}`)); err != nil {
			t.Fatal(err)
		}
		conns[i] = nc
	}
	for s := tw.index.get("/a"); s == nil || s.count < subscribers; s = tw.index.get("/a") {
		if ctx.Err() != nil {
			t.Fatal("the subscriptions never reached the index")
		}
		time.Sleep(time.Millisecond)
	}
	data := []byte(`{"n":1}`)
	frame := len(`{"type":"publish","topic":"/a","data":{"n":1}}`) + 2 // unmasked, short header
	buf := make([]byte, frame)
	// Each publish is read back by every subscriber before the next, as
	// subscribers that keep up do: its frame is then back in the pool.
	// (Publishing faster than the loop writes keeps frames in flight, and
	// those the pool cannot cover.)
	publish := func() {
		tw.deliverLocal("/a", data, data)
		for _, nc := range conns {
			if _, err := io.ReadFull(nc, buf); err != nil {
				t.Fatal(err)
			}
		}
	}
	for range 100 { // warm the pools and the loop's queue
		publish()
	}
	n := testing.AllocsPerRun(300, publish)
	t.Logf("allocations per publish to %d subscribers: %v", subscribers, n)
	if n > 2 && !raceEnabled {
		t.Errorf("a publish to %d subscribers: %v allocations, want at most 2 (gnet's loop task), none per subscriber", subscribers, n)
	}
}
