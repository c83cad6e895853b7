//go:build linux

package bench

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// Benchmarks of history and recovery (issue 12).

// BenchmarkBurstHistory is BenchmarkBurst on firetower with history off and
// on (every topic, 1,000 publications kept): what keeping the stream costs
// the fan-out. Compare cpu-ns/delivery of off and on.
func BenchmarkBurstHistory(b *testing.B) {
	n := size(10000, 200)
	for _, variant := range []string{"off", "on"} {
		var r *rig
		b.Run(fmt.Sprintf("subs=%d/history=%s", n, variant), func(b *testing.B) {
			if r == nil {
				var srv server
				var err error
				if variant == "on" {
					srv, err = newStormFiretower()
				} else {
					srv, err = newFiretowerServer()
				}
				if err != nil {
					b.Fatal(err)
				}
				r = newRigOn(b, "firetower", srv, n, 1)
			}
			srv0, d0 := selfCPU(), r.delivered()
			b.ResetTimer()
			for range b.N {
				for range burstSize {
					r.publish(b, 0)
				}
				r.wait(b, burstSize)
			}
			b.StopTimer()
			if d := r.delivered() - d0; d > 0 {
				b.ReportMetric(float64(selfCPU()-srv0)/float64(d), "cpu-ns/delivery")
			}
			reportRate(b, b.N*burstSize*n)
		})
		if r != nil {
			r.close()
		}
	}
}

// stormServers are the servers of the reconnect storm.
func stormServers() []string {
	var out []string
	for _, k := range kinds() {
		if k == "firetower" || k == "centrifuge" {
			out = append(out, k)
		}
	}
	return out
}

// BenchmarkReconnectStorm: clients over topics (100 clients per topic) know
// their position; they all drop, each topic gets 100 publications, and they
// all reconnect at once (FTBENCH_DIALERS, default 200, dials in flight per
// child process), each resubscribing from its position and recovering
// exactly those 100. Reported: the time from the storm's start until a
// client has recovered (p50, p99 and max: ms-to-recovered-*), and the
// server's CPU time for the whole storm (server-cpu-ms; the clients run in
// child processes). One op is one storm.
func BenchmarkReconnectStorm(b *testing.B) {
	clients := size(10000, 200)
	topics := max(1, clients/100)
	const missed = 100
	dialers := 200
	if v := os.Getenv("FTBENCH_DIALERS"); v != "" {
		fmt.Sscan(v, &dialers)
	}
	for _, kind := range stormServers() {
		b.Run(fmt.Sprintf("clients=%d/%s", clients, kind), func(b *testing.B) {
			var srv server
			var err error
			if kind == "centrifuge" {
				srv, err = newStormCentrifuge()
			} else {
				srv, err = newStormFiretower()
			}
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			st, err := startStorm(srv.Addr(), srv.Path(), flavourOf(kind), clients, topics, dialers)
			if err != nil {
				b.Fatal(err)
			}
			defer st.stop()
			timeout := 2*time.Minute + time.Duration(clients)*10*time.Millisecond
			var cpu time.Duration
			var worst stormResult
			b.ResetTimer()
			for n := range b.N {
				b.StopTimer()
				if _, err := st.all(func(i int) string { return "connect " + stormSource(n, i, 0) }, timeout); err != nil {
					b.Fatalf("%s: connecting: %v", kind, err)
				}
				if _, err := st.all(func(int) string { return "drop" }, timeout); err != nil {
					b.Fatalf("%s: dropping: %v", kind, err)
				}
				for range missed {
					for ti := range topics {
						d := appendData(make([]byte, 0, dataSize), ti, 0, time.Now().UnixNano())
						if err := srv.Publish(topicName(ti), d); err != nil {
							b.Fatalf("%s: publish: %v", kind, err)
						}
					}
				}
				b.StartTimer()
				c0 := selfCPU()
				lines, err := st.all(func(i int) string { return fmt.Sprintf("recover %s %d", stormSource(n, i, 1), missed) }, timeout)
				cpu += selfCPU() - c0
				if err != nil {
					b.Fatalf("%s: storm: %v", kind, err)
				}
				r, err := parseStorm(lines)
				if err != nil {
					b.Fatal(err)
				}
				if r.fails > 0 || r.n != clients {
					b.Fatalf("%s: %d of %d clients recovered, %d failed; first: %s", kind, r.n, clients, r.fails, r.firstErr)
				}
				worst.p50, worst.p99, worst.most = max(worst.p50, r.p50), max(worst.p99, r.p99), max(worst.most, r.most)
			}
			b.StopTimer()
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			b.ReportMetric(ms(worst.p50), "ms-to-recovered-p50")
			b.ReportMetric(ms(worst.p99), "ms-to-recovered-p99")
			b.ReportMetric(ms(worst.most), "ms-to-recovered-max")
			b.ReportMetric(ms(cpu)/float64(b.N), "server-cpu-ms")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*clients), "server-cpu-us/client")
		})
	}
}
