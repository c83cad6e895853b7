package middleware_test

import (
	"strings"
	"testing"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/middleware"
)

func TestMaxTopics(t *testing.T) {
	subscribed := make(chan []string, 16)
	tw := newTower(t,
		firetower.Use(middleware.MaxTopics(3)),
		firetower.OnSubscribe(hook(func(c *firetower.Context) error {
			subscribed <- c.Topics()
			return nil
		})),
	)
	c := dial(t, tw, "")
	wantAck(t, c.sub(t, "a", "b"))
	recv(t, subscribed, "a, b")
	m := c.sub(t, "c", "d")
	wantError(t, m, firetower.CodeTooManyTopics)
	if !strings.Contains(m.Message, "3") {
		t.Fatalf("message %q does not give the limit", m.Message)
	}
	// none of a refused request's topics is subscribed
	if n, err := tw.ConnectNum(t.Context(), "c"); err != nil || n != 0 {
		t.Fatalf("ConnectNum(c) = %d, %v; want 0", n, err)
	}
	wantAck(t, c.sub(t, "a", "c", "c")) // a is already there, c named twice: one more
	recv(t, subscribed, "c")
	wantError(t, c.sub(t, "d"), firetower.CodeTooManyTopics)
	wantAck(t, c.sub(t, "b")) // already subscribed: no new topic
	wantAck(t, c.unsub(t, "a"))
	wantAck(t, c.sub(t, "d"))
	if got := recv(t, subscribed, "d"); len(got) != 1 || got[0] != "d" {
		t.Fatalf("subscribed %v, want [d]", got)
	}

	// the limit is per connection
	other := dial(t, tw, "")
	wantAck(t, other.sub(t, "x", "y", "z"))
}

// The topics the chain ends with count: a rewrite that adds topics is refused.
func TestMaxTopicsChecksRewrittenTopics(t *testing.T) {
	tw := newTower(t, firetower.OnBeforeSubscribe(middleware.MaxTopics(2), hook(func(c *firetower.Context) error {
		if c.Topics()[0] == "all" {
			c.SetTopics([]string{"1", "2", "3"})
		}
		return nil
	})))
	c := dial(t, tw, "")
	wantError(t, c.sub(t, "all"), firetower.CodeTooManyTopics)
	wantAck(t, c.sub(t, "1", "2"))
}

func TestMaxTopicsZero(t *testing.T) {
	tw := newTower(t, firetower.OnBeforeSubscribe(middleware.MaxTopics(0)))
	c := dial(t, tw, "")
	wantError(t, c.sub(t, "a"), firetower.CodeTooManyTopics)
}
