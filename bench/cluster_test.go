//go:build linux

package bench

import (
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"
)

// eachCluster runs body as a sub-benchmark per deployment (clusterKinds),
// as eachServer does per server: conns subscribers on one topic, connected
// to gateway B (to the only node for "single"), set up once and reused for
// every b.N. cpu-ns/delivery is the CPU time of this process per delivery:
// for "manager" and "nats" that is both gateways and the manager node or
// the NATS server, the whole cluster but the load generator.
func eachCluster(b *testing.B, conns int, body func(b *testing.B, r *rig)) {
	for _, kind := range clusterKinds {
		var r *rig
		b.Run(kind, func(b *testing.B) {
			if r == nil {
				srv, err := newClusterServer(kind)
				if err != nil {
					b.Fatalf("starting %s: %v", kind, err)
				}
				r = newRigOn(b, kind, srv, conns, 1)
			}
			cpu0, cl0, d0 := selfCPU(), r.cl.cpu(), r.delivered()
			b.ResetTimer()
			body(b, r)
			b.StopTimer()
			cpu1 := selfCPU()
			if d := r.delivered() - d0; d > 0 {
				b.ReportMetric(float64(cpu1-cpu0)/float64(d), "cpu-ns/delivery")
			}
			if os.Getenv("BENCH_VERBOSE") != "" {
				b.Logf("%s: %v wall, CPU: cluster+publisher %v, load generator %v",
					kind, b.Elapsed().Round(time.Millisecond), cpu1-cpu0, r.cl.cpu()-cl0)
			}
		})
		if r != nil {
			r.close()
		}
	}
}

// BenchmarkCluster: what crossing nodes costs. The subscribers are on one
// gateway and every publish is made on another, so each delivery goes
// gateway -> topic-manager node -> gateway ("manager") or gateway -> NATS
// -> gateway ("nats"); "single" is one firetower node, the baseline.
//
//   - Burst: 1,000 subscribers on one topic; an op is a burst of 100
//     messages of 100 bytes, done when every subscriber has all 100
//     (as BenchmarkBurst); deliveries/s.
//   - Latency: a steady 50 publishes/s for 3 s to the same 1,000
//     subscribers (as BenchmarkLatency); p50 and p99 publish->receive
//     latency of every delivery.
func BenchmarkCluster(b *testing.B) {
	n := size(1000, 100)
	b.Run(fmt.Sprintf("Burst/subs=%d", n), func(b *testing.B) {
		eachCluster(b, n, func(b *testing.B, r *rig) {
			for range b.N {
				for range burstSize {
					r.publish(b, 0)
				}
				r.wait(b, burstSize)
			}
			reportRate(b, b.N*burstSize*n)
		})
	})
	dur := time.Duration(size(3, 1)) * time.Second
	msgs := int(dur / time.Second * latencyRate)
	b.Run(fmt.Sprintf("Latency/subs=%d", n), func(b *testing.B) {
		eachCluster(b, n, func(b *testing.B, r *rig) {
			if err := r.cl.recordLatency(true); err != nil {
				b.Fatal(err)
			}
			for range b.N {
				tick := time.NewTicker(time.Second / latencyRate)
				for range msgs {
					<-tick.C
					r.publish(b, 0)
				}
				tick.Stop()
				r.wait(b, int64(msgs))
			}
			b.StopTimer()
			cnt, p50, p99, mx, err := r.cl.latency()
			if err != nil {
				b.Fatal(err)
			}
			if err := r.cl.recordLatency(false); err != nil {
				b.Fatal(err)
			}
			if want := b.N * msgs * n; cnt != want {
				b.Fatalf("%d latency samples, want %d", cnt, want)
			}
			b.ReportMetric(float64(p50), "p50-ns")
			b.ReportMetric(float64(p99), "p99-ns")
			b.ReportMetric(float64(mx), "max-ns")
			b.ReportMetric(0, "ns/op")
		})
	})
}

// TestCluster checks each deployment end to end at a small size, as
// TestServers does: every message published on gateway A reaches every
// subscriber on gateway B intact and in order, on several topics, and
// closing the cluster (gateways, manager node, NATS server) leaves no
// goroutine behind.
func TestCluster(t *testing.T) {
	for _, kind := range clusterKinds {
		t.Run(kind, func(t *testing.T) {
			before := runtime.NumGoroutine()
			const conns, topics = 40, 4
			srv, err := newClusterServer(kind)
			if err != nil {
				t.Fatalf("starting %s: %v", kind, err)
			}
			r := newRigOn(t, kind, srv, conns, topics)
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
