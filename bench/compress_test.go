//go:build linux

package bench

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// zBurst is the messages per op of the compression scenario.
const zBurst = 20

// newZRig is newRig for the compression scenario: subscribers of one topic
// that offer permessage-deflate (but to firetower-plain, the reference
// without compression), 1 KiB JSON data.
func newZRig(b testing.TB, kind string, conns int) *rig {
	b.Helper()
	srv, err := newZServer(kind)
	if err != nil {
		b.Fatalf("starting %s: %v", kind, err)
	}
	env := []string{"FTBENCH_ZDATA=1"}
	if kind != "firetower-plain" {
		env = append(env, "FTBENCH_DEFLATE=1")
	}
	cl, err := startLoad("clients", srv.Addr(), srv.Path(), srv.Flavour(), conns, 1, env...)
	if err != nil {
		_ = srv.Close()
		b.Fatalf("%s: connecting %d subscribers: %v", kind, conns, err)
	}
	r := &rig{kind: kind, srv: srv, cl: cl, conns: conns, seq: make([]uint64, 1), names: []string{topicName(0)}, z: true}
	r.publish(b, 0)
	r.wait(b, 1)
	return r
}

// wireBytes is what the subscribers have read from their sockets so far.
func (c *clients) wireBytes() (int64, error) {
	lines, err := c.all("bytes", time.Minute)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, l := range lines {
		var n int64
		if _, err := fmt.Sscanf(l, "bytes %d", &n); err != nil {
			return 0, fmt.Errorf("bad bytes line %q: %w", l, err)
		}
		total += n
	}
	return total, nil
}

// BenchmarkCompression: permessage-deflate. One topic, every subscriber
// compressing (but for firetower-plain, firetower without compression, the
// reference for its CPU); an op is a burst of 20 JSON messages of 1 KiB
// with the redundancy of market data, done when every subscriber has them
// all, inflated and intact. Reported: deliveries/s, the server's and
// publisher's CPU per delivery, the bytes on the wire per delivery (as the
// subscribers read them), and the server process's allocations per
// delivery (the publisher's data, one per publish, included).
func BenchmarkCompression(b *testing.B) {
	for _, n := range []int{size(1000, 50), size(10000, 200)} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			for _, kind := range zKindsSelected() {
				var r *rig
				b.Run(kind, func(b *testing.B) {
					if r == nil {
						r = newZRig(b, kind, n)
					}
					wire0, err := r.cl.wireBytes()
					if err != nil {
						b.Fatal(err)
					}
					var m0, m1 runtime.MemStats
					runtime.ReadMemStats(&m0)
					cpu0, d0, w0 := selfCPU(), r.delivered(), r.writes()
					b.ResetTimer()
					for range b.N {
						for range zBurst {
							r.publish(b, 0)
						}
						r.wait(b, zBurst)
					}
					b.StopTimer()
					cpu1 := selfCPU()
					runtime.ReadMemStats(&m1)
					wire1, err := r.cl.wireBytes()
					if err != nil {
						b.Fatal(err)
					}
					d := float64(r.delivered() - d0)
					reportRate(b, b.N*zBurst*n)
					b.ReportMetric(float64(cpu1-cpu0)/d, "cpu-ns/delivery")
					b.ReportMetric(float64(wire1-wire0)/d, "wire-B/delivery")
					b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/d, "allocs/delivery")
					if _, ok := r.srv.(writeCounter); ok {
						b.ReportMetric(float64(r.writes()-w0)/d, "writes/delivery")
					}
				})
				if r != nil {
					r.close()
				}
			}
		})
	}
}

// TestCompressionScenarioData checks the scenario's data values: the exact
// size, valid JSON, and that a corrupted one is refused.
func TestCompressionScenarioData(t *testing.T) {
	env := deliveryEnvelope(flavourFiretower, topicName(3))
	for seq := range uint64(30) {
		d := appendZData(nil, 3, seq, 1234)
		if len(d) != zDataSize {
			t.Fatalf("seq %d: %d bytes, want %d", seq, len(d), zDataSize)
		}
		m := append(append(append([]byte(nil), env.prefix...), d...), env.suffix...)
		info, err := checkZMessage(m, &env, 3)
		if err != nil || info.seq != seq {
			t.Fatalf("seq %d: %+v %v", seq, info, err)
		}
		bad := append([]byte(nil), m...)
		bad[len(bad)-10] ^= 1
		if _, err := checkZMessage(bad, &env, 3); err == nil {
			t.Fatalf("seq %d: a corrupted message passed", seq)
		}
		if !strings.Contains(string(d), `"symbol":"EURUSD"`) {
			t.Fatal("no market data rows")
		}
	}
}
