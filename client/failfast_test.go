package client_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/firetower-go/firetower/client"
)

// callNow runs f and fails the test unless it returns within a second,
// with no deadline of its own: a fail-fast call must not wait.
func callNow(t *testing.T, what string, f func(ctx context.Context) error) error {
	t.Helper()
	res := make(chan error, 1)
	go func() { res <- f(context.Background()) }()
	select {
	case err := <-res:
		return err
	case <-time.After(time.Second):
		t.Fatalf("%s while reconnecting waited, with WithFailFast(true)", what)
		return nil
	}
}

// By default a request made while the Client is reconnecting waits for the
// connection: it fails only when its context ends, and succeeds once the
// connection is back.
func TestRequestsWaitWhileReconnecting(t *testing.T) {
	tw1 := startTower(t, "127.0.0.1:0")
	addr := tw1.Addr()
	rec := newRecorder()
	c := dial(t, tw1, append(rec.options(),
		client.WithBackoff(5*time.Millisecond, 50*time.Millisecond),
		client.WithDialTimeout(time.Second))...)
	ctx := tctx(t)
	if err := c.Subscribe(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	stopTower(t, tw1)
	rec.waitState(t, client.StateReconnecting)

	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.Publish(short, "a", []byte(`1`)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish while reconnecting = %v, want the context's error", err)
	}

	waiting := make(chan error, 1)
	go func() { waiting <- c.Publish(ctx, "a", []byte(`2`)) }()
	tw2 := startTower(t, addr)
	_ = tw2
	select {
	case err := <-waiting:
		if err != nil {
			t.Fatalf("Publish made while reconnecting, once reconnected: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Publish made while reconnecting never returned")
	}
	if d := rec.next(t); d.topic != "a" || d.data != "2" {
		t.Fatalf("got %+v", d)
	}
	_ = c.Close()
	checkNoLeak(t)
}

// With WithFailFast(true) a request made while the Client is not connected
// fails at once with ErrNotConnected, changes nothing, and requests work
// again once the connection is back.
func TestFailFastWhileReconnecting(t *testing.T) {
	tw1 := startTower(t, "127.0.0.1:0")
	addr := tw1.Addr()
	rec := newRecorder()
	c := dial(t, tw1, append(rec.options(),
		client.WithFailFast(true),
		client.WithBackoff(5*time.Millisecond, 50*time.Millisecond),
		client.WithDialTimeout(time.Second))...)
	ctx := tctx(t)
	if err := c.Subscribe(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctx, "a", []byte(`0`)); err != nil {
		t.Fatalf("Publish while open: %v", err)
	}
	if d := rec.next(t); d.data != "0" {
		t.Fatalf("got %+v", d)
	}
	stopTower(t, tw1)
	rec.waitState(t, client.StateReconnecting)

	for what, f := range map[string]func(context.Context) error{
		"Publish":   func(ctx context.Context) error { return c.Publish(ctx, "a", []byte(`1`)) },
		"Subscribe": func(ctx context.Context) error { return c.Subscribe(ctx, "b") },
		"Ping":      func(ctx context.Context) error { return c.Ping(ctx) },
	} {
		if err := callNow(t, what, f); !errors.Is(err, client.ErrNotConnected) {
			t.Errorf("%s while reconnecting = %v, want ErrNotConnected", what, err)
		}
	}
	if got := c.Topics(); !slices.Equal(got, []string{"a"}) {
		t.Errorf("Topics after a failed Subscribe = %q, want [a]", got)
	}
	if err := callNow(t, "Unsubscribe", func(ctx context.Context) error { return c.Unsubscribe(ctx, "zzz") }); err != nil {
		t.Errorf("Unsubscribe while reconnecting = %v, want nil (as without fail-fast)", err)
	}

	startTower(t, addr)
	rec.waitState(t, client.StateOpen)
	if err := c.Publish(ctx, "a", []byte(`2`)); err != nil {
		t.Fatalf("Publish after the reconnect: %v", err)
	}
	if d := rec.next(t); d.topic != "a" || d.data != "2" {
		t.Fatalf("got %+v (the fail-fast publish must not have been sent later)", d)
	}

	_ = c.Close()
	if err := c.Publish(ctx, "a", nil); !errors.Is(err, client.ErrClosed) {
		t.Errorf("Publish after Close = %v, want ErrClosed (not ErrNotConnected)", err)
	}
	checkNoLeak(t)
}
