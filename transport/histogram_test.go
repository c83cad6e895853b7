package transport

import (
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	var h LatencyHistogram
	if h.Quantile(1) != 0 {
		t.Fatal("empty histogram: want 0")
	}
	h[3] = 90 // below 8µs
	h[10] = 9 // below 1024µs
	h[12] = 1 // below 4096µs
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{
		{0, 8 * time.Microsecond},
		{0.5, 8 * time.Microsecond},
		{0.9, 1024 * time.Microsecond},
		{0.99, 4096 * time.Microsecond},
		{1, 4096 * time.Microsecond}, // the largest value's bucket, not the last bucket
		{2, 4096 * time.Microsecond},
	} {
		if got := h.Quantile(tc.q); got != tc.want {
			t.Errorf("Quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
}
