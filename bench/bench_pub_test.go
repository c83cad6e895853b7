//go:build linux

package bench

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// The scenarios where clients publish (issue 10). Each server runs in this
// process and the clients in load-generator child processes, so the CPU time
// of this process is the server's alone (nothing else runs here meanwhile):
// cpu-ns/publish and cpu-ns/delivery are server CPU.
//
// Nothing is hidden: every run reports what it received. lost is the
// deliveries due minus those received (per run), error-frames the error
// answers received, closed-conns the connections the server closed. A bad
// frame (corrupt, duplicated, reordered or unexpected) fails the benchmark
// after its figures are logged.

// ingestWindow is the window of the Ingest scenario's careful client.
const ingestWindow = 64

// eachPubServer runs body as a sub-benchmark per server, on a fresh server
// per call of the sub-benchmark's function.
func eachPubServer(b *testing.B, body func(b *testing.B, kind string, srv server)) {
	eachPubServerOf(b, kinds(), body)
}

// eachPubServerOf is eachPubServer on the servers ks.
func eachPubServerOf(b *testing.B, ks []string, body func(b *testing.B, kind string, srv server)) {
	for _, kind := range ks {
		b.Run(kind, func(b *testing.B) {
			srv, err := newServer(kind)
			if err != nil {
				b.Fatalf("starting %s: %v", kind, err)
			}
			defer srv.Close()
			body(b, kind, srv)
		})
	}
}

// pubRuns runs one publishers' scenario b.N times, each time on fresh
// client connections (set up untimed), and returns the totals and the
// server's CPU time during the runs.
func pubRuns(b *testing.B, kind string, srv server, conns, topics int,
	run func(cl *clients) (pubResult, error)) (tot pubResult, cpu time.Duration) {
	var loadCPU time.Duration
	b.StopTimer()
	for range b.N {
		cl, err := startPublishers(srv, kind, conns, topics)
		if err != nil {
			b.Fatalf("%s: connecting %d clients: %v", kind, conns, err)
		}
		cpu0, l0 := selfCPU(), cl.cpu()
		b.StartTimer()
		r, err := run(cl)
		b.StopTimer()
		cpu += selfCPU() - cpu0
		loadCPU += cl.cpu() - l0
		cl.close()
		if err != nil {
			b.Fatalf("%s: %v", kind, err)
		}
		tot.add(r)
	}
	if os.Getenv("BENCH_VERBOSE") != "" || tot.lost() > 0 || tot.errs > 0 || tot.closed > 0 || tot.bad > 0 {
		lag := ""
		if tot.lag > 0 { // Chat's schedule
			lag = fmt.Sprintf("; publishes at most %v late", tot.lag.Round(time.Microsecond))
		}
		b.Logf("%s: sent %d, received %d of %d (lost %d, gaps %d), acks %d, error frames %d, closed %d, bad %d; CPU: server %v, load generator %v%s; %s",
			kind, tot.sent, tot.recv, tot.expected, tot.lost(), tot.gaps, tot.acks, tot.errs, tot.closed, tot.bad,
			cpu.Round(time.Millisecond), loadCPU.Round(time.Millisecond), lag, strings.Join(tot.notes, " | "))
	}
	return tot, cpu
}

// reportPub reports the figures every publishers' scenario has.
func reportPub(b *testing.B, tot pubResult) {
	n := float64(b.N)
	b.ReportMetric(float64(tot.lost())/n, "lost")
	b.ReportMetric(float64(tot.errs)/n, "error-frames")
	b.ReportMetric(float64(tot.closed)/n, "closed-conns")
	if tot.bad > 0 {
		b.Errorf("%d bad frames (corrupt, duplicated, reordered or unexpected): %s", tot.bad, strings.Join(tot.notes, " | "))
	}
}

// BenchmarkIngest: conns connections each publish pubs messages of 100
// bytes to a topic of their own, to which each is also subscribed (so one
// subscriber per topic, the publisher itself): with at most 64
// unacknowledged in flight (window=64; see ackOf for what acknowledges a
// publish on each server), and with everything pipelined (window=unbounded:
// written as fast as the socket takes it). A run lasts until every
// publisher has received all its messages, or until nothing moves for a
// few seconds.
//
//	publishes/s     deliveries received / time from the first publish to the last delivery
//	cpu-ns/publish  server CPU time / publishes written by the clients
//	lost            publishes due minus delivered; error-frames; closed-conns
func BenchmarkIngest(b *testing.B) {
	pubs := size(100000, 2000)
	stall := time.Duration(size(10, 2)) * time.Second
	for _, mode := range []struct {
		name   string
		window int
	}{{"64", ingestWindow}, {"unbounded", 0}} {
		for _, conns := range []int{1, 10} {
			b.Run(fmt.Sprintf("window=%s/conns=%d/pubs=%d", mode.name, conns, pubs), func(b *testing.B) {
				eachPubServer(b, func(b *testing.B, kind string, srv server) {
					tot, cpu := pubRuns(b, kind, srv, conns, conns, func(cl *clients) (pubResult, error) {
						return cl.ingest(pubs, mode.window, stall)
					})
					if tot.elapsed > 0 {
						b.ReportMetric(float64(tot.recv)/tot.elapsed.Seconds(), "publishes/s")
					}
					if tot.sent > 0 {
						b.ReportMetric(float64(cpu)/float64(tot.sent), "cpu-ns/publish")
					}
					reportPub(b, tot)
				})
			})
		}
	}
}

// chatConfig is one configuration of the Chat scenario.
type chatConfig struct {
	rooms, members int
	rate           float64 // publishes per second per member
	msgs           int     // publishes per member
}

// chatConfigs: 100x10, 1000x10 and 10x100 at 1/s, 1x1000 at 0.2/s, 10 s
// each; scaled down under BENCH_QUICK.
func chatConfigs() []chatConfig {
	if quick() {
		return []chatConfig{{10, 10, 1, 2}, {50, 10, 1, 2}, {2, 50, 1, 2}, {1, 100, 0.5, 1}}
	}
	return []chatConfig{{100, 10, 1, 10}, {1000, 10, 1, 10}, {10, 100, 1, 10}, {1, 1000, 0.2, 2}}
}

// BenchmarkChat: rooms x members connections; every member is subscribed to
// its room and publishes to it at a steady rate (the members' phases spread
// evenly), so every member receives the whole room, its own messages
// included. Besides the servers of every scenario it runs firetower-delay,
// firetower with WithWriteDelay(10ms), and centrifuge-delay, centrifuge with
// its WriteDelay of 10 ms (chatKinds). The clients run in one load-generator
// process up to 10,000 connections (1000x10 holds 10,000 descriptors there and 10,000 in this
// process, under the limit of ~19,990 each).
//
//	deliveries/s           deliveries received / time from the start to the last delivery
//	expected-deliveries/s  deliveries due / the schedule's length (the offered load)
//	p50-ns, p99-ns, max-ns publish (a timestamp in the payload) to receive, every delivery
//	cpu-ns/delivery        server CPU time / deliveries received
//	writes/delivery        socket writes / deliveries received (firetower, firetower-delay
//	                       and the floor, which count their writes; subscribe acks included)
//	lost                   deliveries due minus received; error-frames; closed-conns
func BenchmarkChat(b *testing.B) {
	stall := time.Duration(size(5, 2)) * time.Second
	for _, cfg := range chatConfigs() {
		b.Run(fmt.Sprintf("rooms=%dx%d/rate=%g", cfg.rooms, cfg.members, cfg.rate), func(b *testing.B) {
			period := time.Duration(float64(time.Second) / cfg.rate)
			conns := cfg.rooms * cfg.members
			eachPubServerOf(b, chatKinds(), func(b *testing.B, kind string, srv server) {
				wc, counts := srv.(writeCounter)
				var w0 uint64
				if counts {
					w0 = wc.Writes()
				}
				tot, cpu := pubRuns(b, kind, srv, conns, cfg.rooms, func(cl *clients) (pubResult, error) {
					return cl.chat(time.Now().Add(200*time.Millisecond), period, cfg.msgs, stall)
				})
				if counts && tot.recv > 0 {
					b.ReportMetric(float64(wc.Writes()-w0)/float64(tot.recv), "writes/delivery")
				}
				n := float64(b.N)
				if tot.elapsed > 0 {
					b.ReportMetric(float64(tot.recv)/tot.elapsed.Seconds(), "deliveries/s")
				}
				b.ReportMetric(float64(tot.expected)/n/(float64(cfg.msgs)*period.Seconds()), "expected-deliveries/s")
				if tot.recv > 0 {
					b.ReportMetric(float64(cpu)/float64(tot.recv), "cpu-ns/delivery")
				}
				b.ReportMetric(float64(tot.p50), "p50-ns")
				b.ReportMetric(float64(tot.p99), "p99-ns")
				b.ReportMetric(float64(tot.max), "max-ns")
				b.ReportMetric(0, "ns/op")
				reportPub(b, tot)
			})
		})
	}
}

// TestPublishers checks the publishers' load generator against every server
// at a small size: a careful client (window 16) and a small chat lose
// nothing and see nothing bad, and the counts add up.
func TestPublishers(t *testing.T) {
	for _, kind := range kinds() {
		t.Run(kind, func(t *testing.T) {
			srv, err := newServer(kind)
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			check := func(what string, r pubResult, err error) {
				t.Helper()
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if r.lost() != 0 || r.bad != 0 || r.errs != 0 || r.closed != 0 || r.gaps != 0 {
					t.Errorf("%s: %+v", what, r)
				}
			}
			cl, err := startPublishers(srv, kind, 3, 3)
			if err != nil {
				t.Fatal(err)
			}
			r, err := cl.ingest(300, 16, 10*time.Second)
			cl.close()
			check("ingest", r, err)
			if r.sent != 900 || r.expected != 900 {
				t.Errorf("ingest: sent %d, expected %d, want 900 each", r.sent, r.expected)
			}
			cl, err = startPublishers(srv, kind, 12, 3)
			if err != nil {
				t.Fatal(err)
			}
			r, err = cl.chat(time.Now().Add(50*time.Millisecond), 100*time.Millisecond, 2, 10*time.Second)
			cl.close()
			check("chat", r, err)
			if want := int64(12 * 4 * 2); r.expected != want || r.sent != 24 || r.latN != int(want) {
				t.Errorf("chat: expected %d, sent %d, %d latencies; want %d, 24, %d", r.expected, r.sent, r.latN, want, want)
			}
		})
	}
}
