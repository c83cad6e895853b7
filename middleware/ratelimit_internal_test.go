package middleware

import (
	"testing"
	"time"

	"github.com/firetower-go/firetower"
)

// These tests drive the token bucket and the limiter's bookkeeping directly, with a clock
// that moves only when told to.

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func TestBucket(t *testing.T) {
	g := Rate{PerSecond: 4, Burst: 3}.limit()
	if g.interval != 250*time.Millisecond || g.burst != 750*time.Millisecond {
		t.Fatalf("limit %+v", g)
	}
	var b bucket
	if !b.full(t0) {
		t.Fatal("a new bucket is not full")
	}
	for i := range 3 {
		if w := b.wait(g, t0); w != 0 {
			t.Fatalf("token %d: wait %v, want 0 (burst 3)", i, w)
		}
		b.take(g, t0)
	}
	if w := b.wait(g, t0); w != 250*time.Millisecond {
		t.Fatalf("empty bucket: wait %v, want 250ms", w)
	}
	if w := b.wait(g, t0.Add(249*time.Millisecond)); w != time.Millisecond {
		t.Fatalf("1ms early: wait %v, want 1ms", w)
	}
	// waiting takes nothing: still one token 250ms later
	now := t0.Add(250 * time.Millisecond)
	if w := b.wait(g, now); w != 0 {
		t.Fatalf("after 250ms: wait %v, want 0", w)
	}
	b.take(g, now)
	if w := b.wait(g, now); w != 250*time.Millisecond {
		t.Fatalf("after taking it: wait %v", w)
	}
	if b.full(now.Add(749 * time.Millisecond)) {
		t.Fatal("full 1ms too early")
	}
	// a long pause fills the bucket to its burst, no more
	now = now.Add(time.Hour)
	if !b.full(now) {
		t.Fatal("not full after an hour")
	}
	for i := range 3 {
		if w := b.wait(g, now); w != 0 {
			t.Fatalf("after an hour, token %d: wait %v", i, w)
		}
		b.take(g, now)
	}
	if w := b.wait(g, now); w == 0 {
		t.Fatal("more than the burst after a long pause")
	}
	// a clock going backwards neither adds tokens nor breaks the bucket
	if w := b.wait(g, now.Add(-time.Minute)); w <= 0 {
		t.Fatalf("clock went back a minute: wait %v, want > 0", w)
	}
}

func TestBucketSustainedRate(t *testing.T) {
	// 1,000 operations at exactly the rate all pass, and one more in between fails:
	// integer arithmetic, no drift.
	g := Rate{PerSecond: 3, Burst: 1}.limit()
	var b bucket
	now := t0
	for i := range 1000 {
		if w := b.wait(g, now); w != 0 {
			t.Fatalf("operation %d at the rate: wait %v", i, w)
		}
		b.take(g, now)
		if w := b.wait(g, now.Add(g.interval/2)); w == 0 {
			t.Fatalf("operation %d: a second one half an interval later passed", i)
		}
		now = now.Add(g.interval)
	}
}

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func TestLimiterBookkeeping(t *testing.T) {
	clk := &clock{now: t0}
	l, err := RateLimit(RateLimitConfig{
		ConnPublish: Rate{PerSecond: 1, Burst: 2},
		UserPublish: Rate{PerSecond: 1, Burst: 3},
		Now:         clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	if l.keep != 3*time.Second {
		t.Fatalf("keep %v, want 3s", l.keep)
	}
	c1, c2 := &firetower.Conn{}, &firetower.Conn{}
	c1.SetUserID("alice")
	c2.SetUserID("alice")
	must := func(c *firetower.Conn, ok bool) {
		t.Helper()
		if err := l.take(c, true); (err == nil) != ok {
			t.Fatalf("take: %v, want ok=%v", err, ok)
		}
	}
	must(c1, true)
	must(c1, true)
	must(c1, false) // c1's bucket
	must(c2, true)  // alice's third token: the refusal took none
	must(c2, false) // alice's bucket
	if got := l.users["alice"].refs; got != 2 {
		t.Fatalf("alice refs %d, want 2", got)
	}

	// a user id changed after the connect moves the connection to the new user
	c2.SetUserID("bob")
	must(c2, true)
	if l.users["alice"].refs != 1 || l.users["bob"].refs != 1 {
		t.Fatalf("refs alice %d bob %d, want 1 and 1", l.users["alice"].refs, l.users["bob"].refs)
	}

	// alice leaves with an empty bucket, comes back before it is full, leaves again
	l.Forget(c1)
	if _, ok := l.users["alice"]; !ok {
		t.Fatal("alice dropped with an empty bucket")
	}
	clk.now = clk.now.Add(time.Second)
	c3 := &firetower.Conn{}
	c3.SetUserID("alice")
	must(c3, true)
	clk.now = clk.now.Add(2 * time.Second) // the first idle entry is due, but alice is back
	if _, users := l.Len(); users != 2 {
		t.Fatalf("users %d, want 2 (alice is connected again)", users)
	}
	l.Forget(c3)
	clk.now = clk.now.Add(2 * time.Second)
	if _, users := l.Len(); users != 2 {
		t.Fatalf("users %d, want 2 (alice left 2s ago, keep is 3s)", users)
	}
	clk.now = clk.now.Add(time.Second)
	if _, users := l.Len(); users != 1 {
		t.Fatalf("users %d, want 1 (bob)", users)
	}
	l.Forget(c2)
	if conns, users := l.Len(); conns != 0 || users != 0 {
		t.Fatalf("Len %d, %d, want 0, 0 (bob's bucket was full)", conns, users)
	}
	if len(l.idle) != 0 || l.head != 0 {
		t.Fatalf("idle queue %d entries, head %d; want empty", len(l.idle), l.head)
	}
	l.Forget(c2) // twice: nothing happens
}

// The idle queue does not grow without bound when users come and go continuously.
func TestLimiterIdleQueueBounded(t *testing.T) {
	clk := &clock{now: t0}
	l, err := RateLimit(RateLimitConfig{UserPublish: Rate{PerSecond: 10, Burst: 10}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10000 {
		c := &firetower.Conn{}
		c.SetUserID(string(rune('a' + i%26)))
		if err := l.take(c, true); err != nil {
			clk.now = clk.now.Add(time.Second)
			continue
		}
		l.Forget(c)
		clk.now = clk.now.Add(10 * time.Millisecond)
	}
	if len(l.users) > 26 || cap(l.idle) > 4096 {
		t.Fatalf("%d users, idle queue cap %d", len(l.users), cap(l.idle))
	}
	clk.now = clk.now.Add(time.Second)
	if conns, users := l.Len(); conns != 0 || users != 0 {
		t.Fatalf("Len %d, %d; want 0, 0", conns, users)
	}
}
