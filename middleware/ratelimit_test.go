package middleware_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/middleware"
)

func newLimiter(t testing.TB, cfg middleware.RateLimitConfig) *middleware.RateLimiter {
	t.Helper()
	rl, err := middleware.RateLimit(cfg)
	if err != nil {
		t.Fatalf("RateLimit: %v", err)
	}
	return rl
}

func TestRateLimitConfigErrors(t *testing.T) {
	cases := map[string]middleware.RateLimitConfig{
		"nothing set":     {},
		"negative rate":   {ConnPublish: middleware.Rate{PerSecond: -1, Burst: 1}},
		"NaN rate":        {ConnPublish: middleware.Rate{PerSecond: math.NaN(), Burst: 1}},
		"infinite rate":   {UserPublish: middleware.Rate{PerSecond: math.Inf(1), Burst: 1}},
		"no burst":        {ConnSubscribe: middleware.Rate{PerSecond: 1}},
		"burst, no rate":  {UserSubscribe: middleware.Rate{Burst: 3}},
		"one bad of many": {ConnPublish: middleware.Rate{PerSecond: 1, Burst: 1}, UserPublish: middleware.Rate{PerSecond: 1, Burst: -1}},
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			rl, err := middleware.RateLimit(cfg)
			if err == nil || rl != nil {
				t.Fatalf("RateLimit(%+v) = %v, %v; want an error", cfg, rl, err)
			}
			if !errors.Is(err, firetower.ErrBadOption) {
				t.Fatalf("error %v does not wrap ErrBadOption", err)
			}
		})
	}
}

// A connection's publishes pass up to the burst, then get rate_limited until the clock
// gives the bucket a token; another connection has its own bucket, and subscribing is not
// limited by the publish rate.
func TestRateLimitPublishPerConnection(t *testing.T) {
	clock := newFakeClock()
	rl := newLimiter(t, middleware.RateLimitConfig{
		ConnPublish: middleware.Rate{PerSecond: 1, Burst: 2},
		Now:         clock.Now,
	})
	tw := newTower(t, firetower.WithPublishPolicy(firetower.PublishAny), firetower.Use(rl.Middleware))
	a := dial(t, tw, "")
	b := dial(t, tw, "")

	wantAck(t, a.pub(t, "t", 1))
	wantAck(t, a.pub(t, "t", 2))
	m := a.pub(t, "t", 3)
	wantError(t, m, firetower.CodeRateLimited)
	if !strings.Contains(m.Message, "publish") || !strings.Contains(m.Message, "retry in 1s") {
		t.Fatalf("message %q does not say what was limited and when to retry", m.Message)
	}
	wantAck(t, b.pub(t, "t", 1)) // b has a bucket of its own
	for range 3 {
		wantAck(t, a.sub(t, "s")) // subscribing is not limited
	}

	clock.Advance(500 * time.Millisecond)
	m = a.pub(t, "t", 4)
	wantError(t, m, firetower.CodeRateLimited)
	if !strings.Contains(m.Message, "retry in 500ms") {
		t.Fatalf("message %q: want retry in 500ms", m.Message)
	}
	clock.Advance(500 * time.Millisecond)
	wantAck(t, a.pub(t, "t", 5))
	wantError(t, a.pub(t, "t", 6), firetower.CodeRateLimited)

	// a refused publish reaches no one
	s := dial(t, tw, "")
	wantAck(t, s.sub(t, "t"))
	wantError(t, a.pub(t, "t", "refused"), firetower.CodeRateLimited)
	wantAck(t, b.pub(t, "t", "passed"))
	s.expectDelivery(t, "t", `"passed"`)
}

// A publish to several topics takes one token per topic.
func TestRateLimitPublishCountsTopics(t *testing.T) {
	clock := newFakeClock()
	rl := newLimiter(t, middleware.RateLimitConfig{
		ConnPublish: middleware.Rate{PerSecond: 1, Burst: 3},
		Now:         clock.Now,
	})
	tw := newTower(t, firetower.WithPublishPolicy(firetower.PublishAny), firetower.OnRead(rl.Middleware))
	a := dial(t, tw, "")
	wantAck(t, a.request(t, "publish", 1, "x", "y"))
	wantAck(t, a.pub(t, "z", 1))
	wantError(t, a.pub(t, "z", 2), firetower.CodeRateLimited)
}

func TestRateLimitSubscribePerConnection(t *testing.T) {
	clock := newFakeClock()
	rl := newLimiter(t, middleware.RateLimitConfig{
		ConnSubscribe: middleware.Rate{PerSecond: 0.5, Burst: 1},
		Now:           clock.Now,
	})
	subscribed := make(chan string, 16)
	tw := newTower(t,
		firetower.OnBeforeSubscribe(rl.Middleware),
		firetower.OnSubscribe(hook(func(c *firetower.Context) error {
			subscribed <- strings.Join(c.Topics(), ",")
			return nil
		})),
	)
	a := dial(t, tw, "")
	wantAck(t, a.sub(t, "a", "b")) // one request, one token
	if got := recv(t, subscribed, "the subscription"); got != "a,b" {
		t.Fatalf("subscribed %q", got)
	}
	m := a.sub(t, "c")
	wantError(t, m, firetower.CodeRateLimited)
	if !strings.Contains(m.Message, "subscribe") || !strings.Contains(m.Message, "retry in 2s") {
		t.Fatalf("message %q", m.Message)
	}
	for range 5 {
		wantAck(t, a.pub(t, "a", 1)) // publishing is not limited
	}
	clock.Advance(2 * time.Second)
	wantAck(t, a.sub(t, "c"))
	if got := recv(t, subscribed, "the subscription"); got != "c" {
		t.Fatalf("subscribed %q, want c (the refused request subscribed nothing)", got)
	}
	if n, err := tw.ConnectNum(t.Context(), "c"); err != nil || n != 1 {
		t.Fatalf("ConnectNum(c) = %d, %v; want 1", n, err)
	}
}

// userFromQuery is OnConnect middleware setting the user id from ?user= (none without).
var userFromQuery = hook(func(c *firetower.Context) error {
	c.Conn().SetUserID(c.Conn().Request().URL.Query().Get("user"))
	return nil
})

// The per-user bucket is shared by all the connections of a user; connections without a
// user id have only their own bucket. A refusal by one bucket takes no token from the
// other.
func TestRateLimitPerUser(t *testing.T) {
	clock := newFakeClock()
	rl := newLimiter(t, middleware.RateLimitConfig{
		ConnPublish: middleware.Rate{PerSecond: 1, Burst: 2},
		UserPublish: middleware.Rate{PerSecond: 1, Burst: 3},
		Now:         clock.Now,
	})
	tw := newTower(t,
		firetower.WithPublishPolicy(firetower.PublishAny),
		firetower.OnConnect(userFromQuery),
		firetower.Use(rl.Middleware),
	)
	alice1 := dial(t, tw, "user=alice")
	alice2 := dial(t, tw, "user=alice")
	bob := dial(t, tw, "user=bob")
	anon1 := dial(t, tw, "")
	anon2 := dial(t, tw, "")

	wantAck(t, alice1.pub(t, "t", 1))
	wantAck(t, alice1.pub(t, "t", 2))
	m := alice1.pub(t, "t", 3)
	wantError(t, m, firetower.CodeRateLimited) // alice1's connection bucket is empty
	if !strings.Contains(m.Message, "connection") {
		t.Fatalf("message %q: want the connection named as limited", m.Message)
	}
	wantAck(t, alice2.pub(t, "t", 1)) // the refusal above took no token from alice
	m = alice2.pub(t, "t", 2)
	wantError(t, m, firetower.CodeRateLimited) // alice's user bucket is empty
	if !strings.Contains(m.Message, "user") {
		t.Fatalf("message %q: want the user named as limited", m.Message)
	}
	for _, c := range []*client{bob, anon1, anon2} {
		wantAck(t, c.pub(t, "t", 1))
		wantAck(t, c.pub(t, "t", 2))
		wantError(t, c.pub(t, "t", 3), firetower.CodeRateLimited) // their own connection buckets
	}
	if conns, users := rl.Len(); conns != 5 || users != 2 {
		t.Fatalf("Len = %d conns, %d users; want 5, 2", conns, users)
	}

	clock.Advance(time.Second)
	wantAck(t, alice2.pub(t, "t", 3))
	wantError(t, alice1.pub(t, "t", 4), firetower.CodeRateLimited) // the user bucket again
}

// The limiter forgets a connection at its disconnect and a user once its last connection
// is gone and its buckets are full again; a user who reconnects sooner is still limited.
func TestRateLimitStateIsRemoved(t *testing.T) {
	clock := newFakeClock()
	rl := newLimiter(t, middleware.RateLimitConfig{
		ConnPublish:   middleware.Rate{PerSecond: 10, Burst: 10},
		UserPublish:   middleware.Rate{PerSecond: 1, Burst: 2},
		UserSubscribe: middleware.Rate{PerSecond: 1, Burst: 4},
		Now:           clock.Now,
	})
	gone := make(chan string, 64)
	tw := newTower(t,
		firetower.WithPublishPolicy(firetower.PublishAny),
		firetower.OnConnect(userFromQuery),
		firetower.Use(rl.Middleware),
		firetower.OnDisconnect(signal(gone)), // inside rl: runs after it forgot the connection
	)
	disconnect := func(c *client, user string) {
		t.Helper()
		c.close()
		if got := recv(t, gone, "the disconnect of "+user); got != user {
			t.Fatalf("disconnect of %q, want %q", got, user)
		}
	}

	// connections that never publish or subscribe leave nothing
	quiet := dial(t, tw, "user=quiet")
	disconnect(quiet, "quiet")
	if conns, users := rl.Len(); conns != 0 || users != 0 {
		t.Fatalf("Len = %d, %d after a quiet connection; want 0, 0", conns, users)
	}

	// many anonymous connections come and go
	var anons []*client
	for range 20 {
		c := dial(t, tw, "")
		wantAck(t, c.pub(t, "t", 1))
		anons = append(anons, c)
	}
	if conns, _ := rl.Len(); conns != 20 {
		t.Fatalf("Len = %d conns, want 20", conns)
	}
	for _, c := range anons {
		disconnect(c, "")
	}
	if conns, users := rl.Len(); conns != 0 || users != 0 {
		t.Fatalf("Len = %d, %d after anonymous connections left; want 0, 0", conns, users)
	}

	// alice spends her user bucket, leaves and comes back: still limited
	a1 := dial(t, tw, "user=alice")
	wantAck(t, a1.pub(t, "t", 1))
	wantAck(t, a1.pub(t, "t", 2))
	disconnect(a1, "alice")
	if conns, users := rl.Len(); conns != 0 || users != 1 {
		t.Fatalf("Len = %d, %d after alice left with an empty bucket; want 0, 1", conns, users)
	}
	a2 := dial(t, tw, "user=alice")
	wantError(t, a2.pub(t, "t", 3), firetower.CodeRateLimited)
	clock.Advance(time.Second)
	wantAck(t, a2.pub(t, "t", 4))
	wantAck(t, a2.sub(t, "s"))
	disconnect(a2, "alice")

	// her buckets are full again 2s after she left; an idle user's state is dropped once
	// the longest window (Burst/PerSecond: 4s, of the subscribe limit) has passed
	clock.Advance(time.Second)
	if conns, users := rl.Len(); conns != 0 || users != 1 {
		t.Fatalf("Len = %d, %d 1s after alice left; want 0, 1", conns, users)
	}
	clock.Advance(3 * time.Second)
	if conns, users := rl.Len(); conns != 0 || users != 0 {
		t.Fatalf("Len = %d, %d once alice's buckets are full; want 0, 0", conns, users)
	}

	// a user whose buckets are full when the last connection goes is dropped at once
	b := dial(t, tw, "user=bob")
	wantAck(t, b.pub(t, "t", 1))
	clock.Advance(time.Second)
	disconnect(b, "bob")
	if conns, users := rl.Len(); conns != 0 || users != 0 {
		t.Fatalf("Len = %d, %d after bob left with a full bucket; want 0, 0", conns, users)
	}
}

// Registered on the hooks one by one, with OnDisconnect, the limiter also forgets.
func TestRateLimitRegisteredPerHook(t *testing.T) {
	rl := newLimiter(t, middleware.RateLimitConfig{ConnSubscribe: middleware.Rate{PerSecond: 1, Burst: 1}, Now: newFakeClock().Now})
	gone := make(chan string, 1)
	tw := newTower(t,
		firetower.OnBeforeSubscribe(rl.Middleware),
		firetower.OnRead(rl.Middleware),
		firetower.OnDisconnect(rl.Middleware, signal(gone)),
	)
	c := dial(t, tw, "")
	wantAck(t, c.sub(t, "a"))
	wantError(t, c.sub(t, "b"), firetower.CodeRateLimited)
	if conns, _ := rl.Len(); conns != 1 {
		t.Fatalf("Len = %d conns, want 1", conns)
	}
	c.close()
	recv(t, gone, "the disconnect")
	if conns, users := rl.Len(); conns != 0 || users != 0 {
		t.Fatalf("Len = %d, %d after the disconnect; want 0, 0", conns, users)
	}
}
