package firetower_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/firetower-go/firetower"
)

// dialSubscribed connects to tw, subscribes to topic without waiting for
// the ack (which may be held), and waits until the subscription is in the
// tower's counters.
func dialSubscribed(t *testing.T, tw *firetower.Tower, topic string) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, _, _, err := ws.Dial(ctx, "ws://"+tw.Addr()+"/ws")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	if err := wsutil.WriteClientText(nc, []byte(`{"type":"subscribe","topics":["`+topic+`"],"id":"s"}`)); err != nil {
		t.Fatal(err)
	}
	waitStats(t, tw, 10*time.Second, "the subscription", func(s firetower.Stats) bool { return s.Subscriptions == 1 })
	return nc
}

// readMessages reads the subscribe ack (if from is 0), then the
// publications of topic whose data is from, from+1, ... to-1, in that order.
func readMessages(t *testing.T, nc net.Conn, topic string, from, to int) {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second)) // a guard, not a measurement
	var m struct {
		Type  string          `json:"type"`
		Topic string          `json:"topic"`
		Data  json.RawMessage `json:"data"`
	}
	if from == 0 {
		from = -1
	}
	for i := from; i < to; i++ {
		b, err := wsutil.ReadServerText(nc)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("message %d: %v: %s", i, err, b)
		}
		switch {
		case i < 0 && m.Type != "ack":
			t.Fatalf("first message %s, want the subscribe ack", b)
		case i >= 0 && (m.Type != "publish" || m.Topic != topic || string(m.Data) != fmt.Sprint(i)):
			t.Fatalf("message %d: %s, want the publication of %d on %s", i, b, i, topic)
		}
	}
}

// TestWriteDelayHoldsUntilShutdown: under a write delay far longer than the
// test, what a subscriber is sent waits: nothing is written until the tower
// shuts down, and then the subscribe ack and every publication leave in
// order, in one write, followed by the close frame.
func TestWriteDelayHoldsUntilShutdown(t *testing.T) {
	const n = 50
	tw := startTower(t, 10*time.Second, firetower.WithWriteDelay(time.Hour), firetower.WithStatsInterval(0))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc := dialSubscribed(t, tw, "room")
	for i := range n {
		if err := tw.Publish(ctx, "room", fmt.Append(nil, i)); err != nil {
			t.Fatal(err)
		}
		waitStats(t, tw, 10*time.Second, "the delivery", func(s firetower.Stats) bool { return s.Deliveries == uint64(i+1) })
	}
	if w := tw.Stats().Transport.Writes; w != 0 {
		t.Fatalf("%d writes while everything is held; want none", w)
	}
	if err := tw.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	readMessages(t, nc, "room", 0, n)
	_, err := wsutil.ReadServerText(nc)
	var ce wsutil.ClosedError
	if !errors.As(err, &ce) || ce.Code != ws.StatusGoingAway {
		t.Fatalf("after the messages: %v, want a close frame with 1001", err)
	}
	if w := tw.Stats().Transport.Writes; w < 1 || w > 2 {
		t.Errorf("%d writes for %d messages; want 1 or 2", w, n+1)
	}
}

// TestWriteDelayShort: under a short write delay, publications sent one
// after another all arrive, in order, batch after batch (each batch waits
// for the timer). Only their arrival is checked.
func TestWriteDelayShort(t *testing.T) {
	const n = 300
	tw := startTower(t, 10*time.Second, firetower.WithWriteDelay(5*time.Millisecond), firetower.WithStatsInterval(0))
	const batch = 30
	nc := dialSubscribed(t, tw, "room")
	for from := 0; from < n; from += batch {
		for i := from; i < from+batch; i++ {
			if err := tw.Publish(context.Background(), "room", fmt.Append(nil, i)); err != nil {
				t.Fatal(err)
			}
		}
		readMessages(t, nc, "room", from, from+batch)
	}
	t.Logf("%d messages in %d writes", n+1, tw.Stats().Transport.Writes)
}

// TestWriteDelayNegative: New refuses a negative write delay.
func TestWriteDelayNegative(t *testing.T) {
	if _, err := firetower.New(firetower.WithWriteDelay(-time.Millisecond)); !errors.Is(err, firetower.ErrBadOption) {
		t.Fatalf("negative write delay: %v, want ErrBadOption", err)
	}
	if _, err := firetower.New(firetower.WithWriteDelay(0)); err != nil {
		t.Fatalf("write delay 0: %v", err)
	}
}
