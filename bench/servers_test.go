//go:build linux

package bench

import (
	"runtime"
	"testing"
	"time"
)

// TestServers checks every server and the load generator end to end at a
// small size: subscribers on several topics get every message intact and in
// order, and closing the server leaves no goroutine behind (a leftover would
// steal CPU from the benchmarks of the servers after it).
func TestServers(t *testing.T) {
	for _, kind := range kinds() {
		t.Run(kind, func(t *testing.T) {
			before := runtime.NumGoroutine()
			const conns, topics = 40, 4
			r := newRig(t, kind, conns, topics)
			for range 20 {
				for ti := range topics {
					r.publish(t, ti)
				}
			}
			r.wait(t, 20)
			r.close()
			deadline := time.Now().Add(10 * time.Second)
			for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			if n := runtime.NumGoroutine(); n > before {
				buf := make([]byte, 1<<16)
				t.Fatalf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
			}
		})
	}
}
