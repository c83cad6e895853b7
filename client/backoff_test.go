package client

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	const min, max = 100 * time.Millisecond, 2 * time.Second
	for n := 1; n <= 40; n++ {
		base := min << (n - 1)
		if n > 6 || base > max {
			base = max
		}
		lo, hi := backoff(min, max, n, 0), backoff(min, max, n, 0.999999)
		if lo != base/2 {
			t.Errorf("attempt %d: lowest delay %v, want %v", n, lo, base/2)
		}
		if hi >= base || hi < base*99/100 {
			t.Errorf("attempt %d: highest delay %v, want just under %v", n, hi, base)
		}
	}
}
