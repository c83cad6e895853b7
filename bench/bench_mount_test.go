//go:build linux

package bench

import (
	"fmt"
	"testing"
	"time"
)

// burstBody is BenchmarkBurst's op: a burst of 100 messages to every
// subscriber of one topic. It returns the rate it reported.
func burstBody(b *testing.B, r *rig, n int) float64 {
	for range b.N {
		for range burstSize {
			r.publish(b, 0)
		}
		r.wait(b, burstSize)
	}
	rate := float64(b.N*burstSize*n) / b.Elapsed().Seconds()
	b.ReportMetric(rate, "deliveries/s")
	return rate
}

// BenchmarkMount (issue 14): Burst through a Tower mounted in a net/http
// server (each upgrade hijacked into the event loops) against the Tower's
// own listener. Both servers run side by side with n subscribers each, and
// an op is one burst to each, in alternating order, so that the load of a
// shared machine falls on both alike; each is timed on its own. Reported:
// each one's deliveries/s and cpu-ns/delivery (this process's CPU: server
// and publisher), and x-native, the mounted rate over the native one
// (target >= 0.9). (10,000 subscribers each would need 20,000 descriptors
// in this process, the whole ulimit: 5,000.)
func BenchmarkMount(b *testing.B) {
	for _, n := range []int{size(1000, 100), size(5000, 300)} {
		b.Run(fmt.Sprintf("Burst/subs=%d", n), func(b *testing.B) {
			rigs := []*rig{newRig(b, "firetower", n, 1), newRig(b, "firetower-mounted", n, 1)}
			defer func() {
				for _, r := range rigs {
					r.close()
				}
			}()
			var wall, cpu [2]time.Duration
			b.ResetTimer()
			for i := range b.N {
				for k := range 2 {
					j := (i + k) % 2 // alternate which goes first
					r := rigs[j]
					t0, c0 := time.Now(), selfCPU()
					for range burstSize {
						r.publish(b, 0)
					}
					r.wait(b, burstSize)
					wall[j] += time.Since(t0)
					cpu[j] += selfCPU() - c0
				}
			}
			b.StopTimer()
			d := float64(b.N * burstSize * n)
			rate := func(j int) float64 { return d / wall[j].Seconds() }
			b.ReportMetric(rate(0), "native-deliveries/s")
			b.ReportMetric(rate(1), "mounted-deliveries/s")
			b.ReportMetric(float64(cpu[0])/d, "native-cpu-ns/delivery")
			b.ReportMetric(float64(cpu[1])/d, "mounted-cpu-ns/delivery")
			b.ReportMetric(rate(1)/rate(0), "x-native")
		})
	}
}

// BenchmarkTLS (issue 14): a Tower mounted in a net/http server with TLS
// (each connection relayed to the event loops by a goroutine pair) beside
// the gorilla hub served over TLS: Burst, and the memory per idle
// connection with the server in a process of its own. The subscribers are
// gorilla/websocket clients over crypto/tls (tlsload.go).
func BenchmarkTLS(b *testing.B) {
	tlsKinds := []string{"firetower-tls", "gorilla-tls"}
	n := size(1000, 100)
	b.Run(fmt.Sprintf("Burst/subs=%d", n), func(b *testing.B) {
		eachKind(b, tlsKinds, n, 1, func(b *testing.B, r *rig) { burstBody(b, r, n) })
	})
	idle := size(5000, 300)
	settle := time.Duration(size(2000, 300)) * time.Millisecond
	b.Run(fmt.Sprintf("IdleMemory/conns=%d", idle), func(b *testing.B) {
		for _, kind := range tlsKinds {
			b.Run(kind, func(b *testing.B) {
				sp, err := startServerProc(kind)
				if err != nil {
					b.Fatal(err)
				}
				defer sp.stop()
				time.Sleep(settle / 4) // let the server's start-up allocations settle before the baseline
				base, err := sp.rss()
				if err != nil {
					b.Fatal(err)
				}
				cl, err := startClients(sp.addr, sp.path, sp.flavour, idle, 1)
				if err != nil {
					b.Fatalf("%s: %v", kind, err)
				}
				defer cl.close()
				time.Sleep(settle) // idle: what the connections hold once nothing happens
				after, err := sp.rss()
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(after-base)/float64(idle), "bytes/conn")
				b.ReportMetric(float64(after)/(1<<20), "rss-MiB")
				b.ReportMetric(0, "ns/op")
			})
		}
	})
}
