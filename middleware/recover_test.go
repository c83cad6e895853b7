package middleware_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/middleware"
)

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// panicky panics in OnRead for topic "boom" and in OnBeforeSubscribe for "boom-sub".
var panicky = hook(func(c *firetower.Context) error {
	switch c.Hook() {
	case firetower.HookRead:
		if c.Message().Topic == "boom" {
			panic("kaboom")
		}
	case firetower.HookBeforeSubscribe:
		if c.Topics()[0] == "boom-sub" {
			var m map[string]int
			m["nil map"]++ //nolint:staticcheck // SA5000: the runtime panic is what this hook is for
		}
	}
	return nil
})

// Hooks panicking on several connections at once, on several workers (run with -race):
// every panicking request gets an internal error, the Logger outside Recover sees an
// ordinary error, the panicking clients stay connected, and another client is served
// throughout.
func TestRecoverInTower(t *testing.T) {
	var logs syncBuffer
	tw := newTower(t,
		firetower.WithPublishPolicy(firetower.PublishAny),
		firetower.WithWorkers(4),
		firetower.Use(middleware.Logger(slog.New(slog.NewTextHandler(&logs, nil))), middleware.Recover),
		firetower.OnRead(panicky),
		firetower.OnBeforeSubscribe(panicky),
	)
	good := dial(t, tw, "")
	wantAck(t, good.sub(t, "news"))

	const bad, each = 4, 25
	var clients []*client
	for range bad {
		clients = append(clients, dial(t, tw, ""))
	}
	// the panicking requests are all in flight while the good client works
	for _, c := range clients {
		for i := range each {
			c.send(t, map[string]any{"type": "publish", "topic": "boom", "data": i, "id": fmt.Sprintf("b%d", i)})
		}
	}
	for i := range each {
		wantAck(t, good.pub(t, "news", i))
		good.expectDelivery(t, "news", fmt.Sprint(i))
	}
	for _, c := range clients {
		for i := range each {
			m := c.answer(t, fmt.Sprintf("b%d", i))
			wantError(t, m, firetower.CodeInternal)
		}
	}

	// a runtime panic in another hook, then the same clients go on as usual
	for _, c := range clients {
		wantError(t, c.sub(t, "boom-sub"), firetower.CodeInternal)
		wantAck(t, c.sub(t, "news"))
	}
	wantAck(t, good.pub(t, "news", "after"))
	good.expectDelivery(t, "news", `"after"`)
	for _, c := range clients {
		c.expectDelivery(t, "news", `"after"`)
	}

	// a new client is served too
	late := dial(t, tw, "")
	wantAck(t, late.sub(t, "news"))

	if n := tw.Stats().HookPanics; n != 0 {
		t.Fatalf("the Tower counted %d hook panics: Recover should have caught them all", n)
	}
	out := logs.String()
	if got := strings.Count(out, "kaboom"); got != bad*each {
		t.Fatalf("the Logger outside Recover logged %d panics of OnRead, want %d:\n%s", got, bad*each, out)
	}
	if !strings.Contains(out, "nil map") {
		t.Fatalf("the Logger did not log the runtime panic:\n%s", out)
	}
}
