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
// server (each upgrade hijacked into the event loops) beside the Tower's
// own listener, same load generator. The mounted run also reports its
// rate as a fraction of the native one just measured (x-native; the
// target is >= 0.9).
func BenchmarkMount(b *testing.B) {
	for _, n := range []int{size(1000, 100), size(10000, 500)} {
		b.Run(fmt.Sprintf("Burst/subs=%d", n), func(b *testing.B) {
			var native float64
			eachKind(b, []string{"firetower", "firetower-mounted"}, n, 1, func(b *testing.B, r *rig) {
				rate := burstBody(b, r, n)
				switch r.kind {
				case "firetower":
					native = rate
				case "firetower-mounted":
					if native > 0 {
						b.ReportMetric(rate/native, "x-native")
					}
				}
			})
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
