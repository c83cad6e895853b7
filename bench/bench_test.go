//go:build linux

package bench

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if code, ok := runChild(); ok {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// quick is the CI size: BENCH_QUICK=1 or -short.
func quick() bool { return os.Getenv("BENCH_QUICK") != "" || testing.Short() }

// size returns full, or quickN in quick mode.
func size(full, quickN int) int {
	if quick() {
		return quickN
	}
	return full
}

// kinds are the servers to run: all, or those named in BENCH_SERVERS
// (comma-separated).
func kinds() []string { return filterKinds(serverKinds) }

// filterKinds is all, or those of all named in BENCH_SERVERS.
func filterKinds(all []string) []string {
	v := os.Getenv("BENCH_SERVERS")
	if v == "" {
		return all
	}
	var out []string
	for k := range strings.SplitSeq(v, ",") {
		if slices.Contains(all, k) {
			out = append(out, k)
		}
	}
	return out
}

const (
	burstSize   = 100 // messages per burst
	latencyRate = 50  // publishes per second in the latency scenario
)

// rig is one server, in this process, with its subscribers connected from
// load-generator child processes.
type rig struct {
	kind    string
	srv     server
	cl      *clients
	conns   int
	names   []string
	seq     []uint64 // next sequence number per topic
	perConn int64    // deliveries each connection must have had so far
	z       bool     // the compression scenario's data (compress.go)
}

func newRig(b testing.TB, kind string, conns, topics int) *rig {
	b.Helper()
	srv, err := newServer(kind)
	if err != nil {
		b.Fatalf("starting %s: %v", kind, err)
	}
	return newRigOn(b, kind, srv, conns, topics)
}

// newRigOn is newRig on a server already started, which it closes if the
// subscribers cannot be set up.
func newRigOn(b testing.TB, kind string, srv server, conns, topics int) *rig {
	b.Helper()
	cl, err := startClients(srv.Addr(), srv.Path(), srv.Flavour(), conns, topics)
	if err != nil {
		_ = srv.Close()
		b.Fatalf("%s: connecting %d subscribers: %v", kind, conns, err)
	}
	r := &rig{kind: kind, srv: srv, cl: cl, conns: conns, seq: make([]uint64, topics)}
	for i := range topics {
		r.names = append(r.names, topicName(i))
	}
	// One round to every topic: proves the setup and warms the server.
	for ti := range topics {
		r.publish(b, ti)
	}
	r.wait(b, 1)
	return r
}

// data returns the data of the k-th next message on topic ti.
func (r *rig) data(ti int, k uint64) []byte {
	if r.z {
		return appendZData(make([]byte, 0, zDataSize), ti, r.seq[ti]+k, time.Now().UnixNano())
	}
	return appendData(make([]byte, 0, dataSize), ti, r.seq[ti]+k, time.Now().UnixNano())
}

// publish publishes the next message on topic ti (fresh data each time:
// a server may keep what it is given).
func (r *rig) publish(b testing.TB, ti int) {
	r.publishData(b, ti, r.data(ti, 0))
}

func (r *rig) publishData(b testing.TB, ti int, d []byte) {
	if err := r.srv.Publish(r.names[ti], d); err != nil {
		b.Fatalf("%s: publish: %v", r.kind, err)
	}
	r.seq[ti]++
}

// wait waits until every subscriber has its next rounds deliveries (a round
// is one publish to every topic), or fails the benchmark.
func (r *rig) wait(b testing.TB, rounds int64) {
	r.perConn += rounds
	if err := r.cl.expect(r.perConn); err != nil {
		b.Fatalf("%s: deliveries: %v", r.kind, err)
	}
}

// delivered is the number of deliveries made so far.
func (r *rig) delivered() int64 { return r.perConn * int64(r.conns) }

// writes is the server's socket write count, 0 if it does not count them.
func (r *rig) writes() uint64 {
	if w, ok := r.srv.(writeCounter); ok {
		return w.Writes()
	}
	return 0
}

func (r *rig) close() {
	r.cl.close()
	_ = r.srv.Close()
}

// eachServer runs body as a sub-benchmark per server, each with conns
// subscribers over topics topics, set up once (untimed) and reused for
// every b.N the testing package tries. It reports cpu-ns/delivery: the CPU
// time of this process (server and publisher; the load generator is
// elsewhere) per delivery, a figure that other work on a shared machine
// disturbs less than the wall-clock rate.
func eachServer(b *testing.B, conns, topics int, body func(b *testing.B, r *rig)) {
	eachKind(b, kinds(), conns, topics, body)
}

// eachKind is eachServer for the servers named.
func eachKind(b *testing.B, names []string, conns, topics int, body func(b *testing.B, r *rig)) {
	for _, kind := range names {
		var r *rig
		b.Run(kind, func(b *testing.B) {
			if r == nil {
				r = newRig(b, kind, conns, topics)
			}
			srv0 := selfCPU()
			cl0, w0, d0 := r.cl.cpu(), r.writes(), r.delivered()
			b.ResetTimer()
			body(b, r)
			b.StopTimer()
			srv1 := selfCPU()
			if d := r.delivered() - d0; d > 0 {
				b.ReportMetric(float64(srv1-srv0)/float64(d), "cpu-ns/delivery")
			}
			if os.Getenv("BENCH_VERBOSE") != "" {
				wpd := "?"
				if _, ok := r.srv.(writeCounter); ok {
					wpd = fmt.Sprintf("%.3f", float64(r.writes()-w0)/float64(r.delivered()-d0))
				}
				b.Logf("%s: %v wall, CPU: server+publisher %v, load generator %v; writes/delivery %s",
					kind, b.Elapsed().Round(time.Millisecond), srv1-srv0, r.cl.cpu()-cl0, wpd)
			}
		})
		if r != nil {
			r.close()
		}
	}
}

func reportRate(b *testing.B, deliveries int) {
	b.ReportMetric(float64(deliveries)/b.Elapsed().Seconds(), "deliveries/s")
}

// BenchmarkBurst: one topic, every connection subscribed; an op is a burst
// of 100 messages of 100 bytes published back to back, done when every
// subscriber has all 100.
func BenchmarkBurst(b *testing.B) {
	for _, n := range []int{size(1000, 100), size(10000, 500)} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			eachServer(b, n, 1, func(b *testing.B, r *rig) {
				for range b.N {
					for range burstSize {
						r.publish(b, 0)
					}
					r.wait(b, burstSize)
				}
				reportRate(b, b.N*burstSize*n)
			})
		})
	}
}

// BenchmarkBroadcast: one message at a time to every subscriber of one
// topic; an op is one publish, done when every subscriber has it (so no
// server can coalesce messages).
func BenchmarkBroadcast(b *testing.B) {
	n := size(10000, 500)
	b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
		eachServer(b, n, 1, func(b *testing.B, r *rig) {
			for range b.N {
				r.publish(b, 0)
				r.wait(b, 1)
			}
			reportRate(b, b.N*n)
		})
	})
}

// BenchmarkLatency: publishes at a steady 50/s to every subscriber of one
// topic for a few seconds; the subscribers' processes measure
// publish->receive latency of every delivery (publish time in the payload,
// same clock).
func BenchmarkLatency(b *testing.B) {
	n := size(10000, 500)
	dur := time.Duration(size(2, 1)) * time.Second
	msgs := int(dur / time.Second * latencyRate)
	b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
		eachServer(b, n, 1, func(b *testing.B, r *rig) {
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

// BenchmarkManyTopics: as many topics as connections, one subscriber each;
// an op is 10 rounds of one publish to every topic in turn, done when every
// subscriber has its 10.
func BenchmarkManyTopics(b *testing.B) {
	n := size(10000, 500)
	const rounds = 10
	b.Run(fmt.Sprintf("topics=%d", n), func(b *testing.B) {
		eachServer(b, n, n, func(b *testing.B, r *rig) {
			for range b.N {
				for range rounds {
					for ti := range n {
						r.publish(b, ti)
					}
				}
				r.wait(b, rounds)
			}
			reportRate(b, b.N*rounds*n)
		})
	})
}

// BenchmarkIdleMemory: the server in a process of its own; its RSS after
// conns idle connections subscribed to one topic, minus its RSS before
// them, per connection.
func BenchmarkIdleMemory(b *testing.B) {
	settle := time.Duration(size(2000, 300)) * time.Millisecond
	for _, n := range []int{size(10000, 500), size(19000, 1000)} {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) {
			for _, kind := range kinds() {
				b.Run(kind, func(b *testing.B) {
					sp, err := startServerProc(kind)
					if err != nil {
						b.Fatal(err)
					}
					defer sp.stop()
					time.Sleep(settle / 4)
					base, err := sp.rss()
					if err != nil {
						b.Fatal(err)
					}
					cl, err := startClients(sp.addr, sp.path, sp.flavour, n, 1)
					if err != nil {
						b.Fatalf("%s: %v", kind, err)
					}
					defer cl.close()
					time.Sleep(settle)
					after, err := sp.rss()
					if err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(float64(after-base)/float64(n), "bytes/conn")
					b.ReportMetric(float64(after)/(1<<20), "rss-MiB")
					if os.Getenv("FTBENCH_IDLEGC") != "" { // diagnostics: what is left after a collection
						gc, err := sp.rssAfterGC()
						if err != nil {
							b.Fatal(err)
						}
						b.ReportMetric(float64(gc-base)/float64(n), "gc-bytes/conn")
					}
					b.ReportMetric(0, "ns/op")
				})
			}
		})
	}
	subscriptionMemory(b) // subscriptions_test.go
}

// BenchmarkAllocs: heap allocations of the whole server process per
// delivery in steady state, bursts of 100 publishes to subs subscribers of
// one topic (the publisher's data is allocated before the count starts).
func BenchmarkAllocs(b *testing.B) {
	n := size(1000, 100)
	b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
		eachServer(b, n, 1, func(b *testing.B, r *rig) {
			for range 3 { // steady state: buffers and queues at their size
				for range burstSize {
					r.publish(b, 0)
				}
				r.wait(b, burstSize)
			}
			data := make([][]byte, b.N*burstSize)
			for i := range data {
				data[i] = r.data(0, uint64(i))
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			b.ResetTimer()
			for i := range b.N {
				for k := range burstSize {
					r.publishData(b, 0, data[i*burstSize+k])
				}
				r.wait(b, burstSize)
			}
			b.StopTimer()
			runtime.ReadMemStats(&after)
			mallocs := float64(after.Mallocs - before.Mallocs)
			bytes := float64(after.TotalAlloc - before.TotalAlloc)
			d := float64(b.N * burstSize * n)
			b.ReportMetric(mallocs/d, "allocs/delivery")
			b.ReportMetric(bytes/d, "B/delivery")
			b.ReportMetric(mallocs/float64(b.N*burstSize), "allocs/publish")
			reportRate(b, b.N*burstSize*n)
		})
	})
}
