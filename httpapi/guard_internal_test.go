package httpapi

import (
	"fmt"
	"testing"
	"time"
)

// TestLimiterTableBounded: wrong keys from many addresses never grow the
// table past MaxClients, and odd remote addresses do not panic.
func TestLimiterTableBounded(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLimiter(2, time.Second, 8, func() time.Time { return now })
	for i := range 1000 {
		c := clientOf(fmt.Sprintf("10.0.%d.%d:1", i/256, i%256))
		l.take(c)
		l.take(c)
		if n := l.size(); n > 8 {
			t.Fatalf("after %d addresses the table holds %d, want <= 8", i+1, n)
		}
		if i%100 == 0 {
			now = now.Add(time.Second)
		}
	}
	// A client with a full bucket again is forgotten on success.
	l2 := newLimiter(2, time.Second, 8, func() time.Time { return now })
	if ok, _, _ := l2.take("a"); !ok {
		t.Fatal("first try refused")
	}
	l2.refund("a")
	if n := l2.size(); n != 0 {
		t.Errorf("a successful try left %d entries, want 0", n)
	}
	for _, a := range []string{"", "[", "x", "[::1]", "1.2.3.4", "[::ffff:1.2.3.4]:5", "[2001:db8::1%eth0]:5", "@"} {
		_ = clientOf(a)
	}
	if got := clientOf("[::ffff:1.2.3.4]:5"); got != "1.2.3.4" {
		t.Errorf("clientOf(4in6) = %q, want 1.2.3.4", got)
	}
	if got := clientOf("[2001:db8::1]:5"); got != "2001:db8::/64" {
		t.Errorf("clientOf(v6) = %q, want its /64", got)
	}
}
