package firetower

import (
	"context"
	"io"
	"net"
	"strings"
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
	testDeliverLocalAllocs(t, 2, "gnet's loop task")
}

// TestDeliverLocalAllocsWriteDelay is TestDeliverLocalAllocs with a write
// delay: holding frames allocates nothing per delivery either. Per publish
// (each read back before the next, so each waits for the timer) what is
// left is gnet's loop task twice: once for the publish, once for the
// timer's wake-up.
func TestDeliverLocalAllocsWriteDelay(t *testing.T) {
	testDeliverLocalAllocs(t, 4, "gnet's loop task for the publish and for the timer", WithWriteDelay(time.Millisecond))
}

func testDeliverLocalAllocs(t *testing.T, most float64, what string, opts ...Option) {
	const subscribers = 20
	tw, conns := allocSubscribers(t, subscribers, opts...)
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
	if n > most && !raceEnabled {
		t.Errorf("a publish to %d subscribers: %v allocations, want at most %v (%s), none per subscriber", subscribers, n, most, what)
	}
}

// TestDeliverLocalAllocsCompressed is TestDeliverLocalAllocs with half the
// subscribers on permessage-deflate: the publish is compressed once (with
// the loop's compressor into the pooled frame's second buffer), and neither
// the compression nor any delivery allocates.
func TestDeliverLocalAllocsCompressed(t *testing.T) {
	const subscribers = 20
	// half the subscribers offer permessage-deflate
	tw, conns := allocSubscribersDial(t, subscribers, func(ctx context.Context, i int, addr string) (net.Conn, error) {
		if i%2 == 0 {
			return dialDeflate(t, ctx, addr), nil
		}
		nc, _, _, err := ws.Dial(ctx, "ws://"+addr+"/ws")
		return nc, err
	}, WithCompression(1, 64))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // bounds the waits for the counters
	defer cancel()
	data := []byte(`{"rows":[` + strings.Repeat(`{"symbol":"EURUSD","bid":1.0812,"ask":1.0814},`, 8) + `{}]}`)
	var hdr [10]byte
	buf := make([]byte, 4096)
	var compressed, plain int
	readFrame := func(nc net.Conn) {
		if _, err := io.ReadFull(nc, hdr[:2]); err != nil {
			t.Fatal(err)
		}
		n := int(hdr[1] & 0x7f)
		if n == 126 {
			if _, err := io.ReadFull(nc, hdr[2:4]); err != nil {
				t.Fatal(err)
			}
			n = int(hdr[2])<<8 | int(hdr[3])
		}
		if n > len(buf) {
			t.Fatalf("frame of %d bytes", n)
		}
		if _, err := io.ReadFull(nc, buf[:n]); err != nil {
			t.Fatal(err)
		}
		if hdr[0]&0x40 != 0 {
			compressed++
		} else {
			plain++
		}
	}
	publish := func() {
		tw.deliverLocal("/a", data, data)
		for _, nc := range conns {
			readFrame(nc)
		}
	}
	start := tw.Stats().Transport.Compression.Messages
	for range 100 {
		publish()
	}
	if compressed != 100*subscribers/2 || plain != 100*subscribers/2 {
		t.Fatalf("%d compressed and %d plain deliveries, want %d of each", compressed, plain, 100*subscribers/2)
	}
	// The loop adds its counters after its writes: the client may read the
	// last frame before the loop counted its compression. Wait for all 100.
	for tw.Stats().Transport.Compression.Messages-start < 100 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	if got := tw.Stats().Transport.Compression.Messages - start; got != 100 {
		t.Fatalf("%d compressions for 100 publishes, want one each", got)
	}
	before := tw.Stats().Transport.Compression.Messages
	n := testing.AllocsPerRun(300, publish)
	// The loop adds its counters after its writes: the last publish's may
	// still be on their way.
	got := tw.Stats().Transport.Compression.Messages - before
	for got < 301 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
		got = tw.Stats().Transport.Compression.Messages - before
	}
	if got != 301 {
		t.Errorf("%d compressions for 301 publishes, want one each", got)
	}
	t.Logf("allocations per compressed publish to %d subscribers (%d compressing): %v", subscribers, subscribers/2, n)
	if n > 2 && !raceEnabled {
		t.Errorf("a compressed publish to %d subscribers: %v allocations, want at most 2 (gnet's loop task), none for compression or per subscriber", subscribers, n)
	}
}

// dialDeflate upgrades a TCP connection offering permessage-deflate and
// checks the server accepted it.
func dialDeflate(t *testing.T, ctx context.Context, addr string) net.Conn {
	t.Helper()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	req := "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
		"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		t.Fatal(err)
	}
	// read the response head byte by byte: nothing after it may be consumed
	var head []byte
	var b [1]byte
	for !strings.HasSuffix(string(head), "\r\n\r\n") {
		if _, err := nc.Read(b[:]); err != nil {
			t.Fatal(err)
		}
		head = append(head, b[0])
	}
	if !strings.HasPrefix(string(head), "HTTP/1.1 101") || !strings.Contains(string(head), "server_no_context_takeover") {
		t.Fatalf("response %q: want a 101 accepting permessage-deflate", head)
	}
	return nc
}

// TestDeliverLocalAllocsWriteDelayBursts: under WithWriteDelay, bursts of 10
// publishes of 1 KiB (10 KiB held per subscriber, more than a connection
// could keep for itself) reuse the loop's held buffers: no allocation per
// subscriber, only the loop tasks of the publishes and the timer's wake-up.
func TestDeliverLocalAllocsWriteDelayBursts(t *testing.T) {
	const subscribers, burst = 20, 10
	tw, conns := allocSubscribers(t, subscribers, WithWriteDelay(time.Millisecond))
	data := []byte(`"` + strings.Repeat("x", 1024) + `"`)
	frame := len(`{"type":"publish","topic":"/a","data":}`) + len(data) + 4 // unmasked, 16-bit length
	buf := make([]byte, frame*burst)
	publish := func() {
		for range burst {
			tw.deliverLocal("/a", data, data)
		}
		for _, nc := range conns {
			if _, err := io.ReadFull(nc, buf); err != nil {
				t.Fatal(err)
			}
		}
	}
	for range 50 { // warm the pools, the loop's queue and its held buffers
		publish()
	}
	n := testing.AllocsPerRun(100, publish)
	t.Logf("allocations per burst of %d publishes to %d subscribers: %v", burst, subscribers, n)
	if most := float64(2*burst + 4); n > most && !raceEnabled {
		t.Errorf("a burst of %d publishes to %d subscribers: %v allocations, want at most %v (the loop tasks and the timer), none per subscriber",
			burst, subscribers, n, most)
	}
}

// allocSubscribers starts a Tower on one event loop with opts and n
// subscribers of "/a" (plain websocket clients), and waits until the index
// has them all. The Tower and the connections end with the test.
func allocSubscribers(t *testing.T, n int, opts ...Option) (*Tower, []net.Conn) {
	t.Helper()
	return allocSubscribersDial(t, n, func(ctx context.Context, _ int, addr string) (net.Conn, error) {
		nc, _, _, err := ws.Dial(ctx, "ws://"+addr+"/ws")
		return nc, err
	}, opts...)
}

// allocSubscribersDial is allocSubscribers with subscriber i connected by
// dial.
func allocSubscribersDial(t *testing.T, n int, dial func(ctx context.Context, i int, addr string) (net.Conn, error), opts ...Option) (*Tower, []net.Conn) {
	t.Helper()
	tw, err := New(append([]Option{WithAddr("127.0.0.1:0"), WithEventLoops(1), WithStatsInterval(0)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tw.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		_ = tw.Shutdown(sctx)
	})
	conns := make([]net.Conn, n)
	for i := range conns {
		nc, err := dial(ctx, i, tw.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = nc.Close() })
		if err := wsutil.WriteClientText(nc, []byte(`{"type":"subscribe","topics":["/a"]}`)); err != nil {
			t.Fatal(err)
		}
		conns[i] = nc
	}
	for s := tw.index.get("/a"); s == nil || s.count < int64(n); s = tw.index.get("/a") {
		if ctx.Err() != nil {
			t.Fatal("the subscriptions never reached the index")
		}
		time.Sleep(time.Millisecond) // polling the index: there is no event to wait for
	}
	return tw, conns
}
