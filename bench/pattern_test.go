//go:build linux

package bench

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/firetower-go/firetower"
)

// Wildcard subscriptions (issue 15): what a pattern costs a publish.

// newWildcardServer is the firetower server of the other benchmarks with
// WithWildcards(true), and room for many patterns on one connection.
func newWildcardServer(b testing.TB) *firetowerServer {
	b.Helper()
	t, err := firetower.New(
		firetower.WithAddr("127.0.0.1:0"),
		firetower.WithPublishPolicy(firetower.PublishAny),
		firetower.WithWildcards(true),
		firetower.WithMaxTopics(20000),
	)
	if err != nil {
		b.Fatal(err)
	}
	if err := t.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	return &firetowerServer{t: t}
}

// addPatterns subscribes one extra connection, from this process, to n
// patterns that match none of the benchmark's topics ("p<i>/*"), so the
// pattern index holds them; it returns the connection to close.
func addPatterns(b testing.TB, srv *firetowerServer, n int) *websocket.Conn {
	b.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+srv.Addr()+"/ws", nil)
	if err != nil {
		b.Fatal(err)
	}
	const batch = 500
	for i := 0; i < n; i += batch {
		topics := make([]string, 0, batch)
		for j := i; j < min(n, i+batch); j++ {
			topics = append(topics, "p"+strconv.Itoa(j)+"/*")
		}
		if err := ws.WriteJSON(map[string]any{"type": "subscribe", "topics": topics, "id": i}); err != nil {
			b.Fatal(err)
		}
		var ack struct{ Type string }
		_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
		if err := ws.ReadJSON(&ack); err != nil || ack.Type != "ack" {
			b.Fatalf("subscribing %d patterns: %v %v", len(topics), ack, err)
		}
	}
	return ws
}

// rigWith is newRigOn with the subscribers subscribing to sub (a pattern
// matching their topic) when it is not "".
func rigWith(b testing.TB, srv *firetowerServer, conns, topics int, sub string) *rig {
	b.Helper()
	if sub == "" {
		return newRigOn(b, "firetower", srv, conns, topics)
	}
	cl, err := startLoad("clients", srv.Addr(), srv.Path(), srv.Flavour(), conns, topics, "FTBENCH_SUBSCRIBE="+sub)
	if err != nil {
		_ = srv.Close()
		b.Fatalf("connecting %d pattern subscribers: %v", conns, err)
	}
	r := &rig{kind: "firetower", srv: srv, cl: cl, conns: conns, seq: make([]uint64, topics)}
	for i := range topics {
		r.names = append(r.names, topicName(i))
	}
	for ti := range topics {
		r.publish(b, ti)
	}
	r.wait(b, 1)
	return r
}

// BenchmarkBurstPattern: BenchmarkBurst on firetower with wildcards on and
// 1,000 other patterns in the index, the subscribers of the burst's topic
// subscribed either to the topic itself (exact) or to the pattern "*" that
// matches it (pattern). The target: pattern >= 0.8x exact.
func BenchmarkBurstPattern(b *testing.B) {
	n := size(1000, 100)
	others := size(1000, 100)
	for _, mode := range []struct{ name, sub string }{{"exact", ""}, {"pattern", "*"}} {
		b.Run(fmt.Sprintf("subs=%d/patterns=%d/%s", n, others, mode.name), func(b *testing.B) {
			srv := newWildcardServer(b)
			extra := addPatterns(b, srv, others)
			r := rigWith(b, srv, n, 1, mode.sub)
			defer func() { extra.Close(); r.close() }()
			b.ResetTimer()
			for range b.N {
				for range burstSize {
					r.publish(b, 0)
				}
				r.wait(b, burstSize)
			}
			reportRate(b, b.N*burstSize*n)
		})
	}
}

// BenchmarkManyTopicsPatterns: BenchmarkManyTopics (as many topics as
// connections, one exact subscriber each) on firetower with wildcards on,
// with no pattern and with 10,000 patterns in the index that match none of
// the topics: what the pattern index costs exact publishes.
func BenchmarkManyTopicsPatterns(b *testing.B) {
	n := size(10000, 500)
	const rounds = 10
	for _, pats := range []int{0, size(10000, 1000)} {
		b.Run(fmt.Sprintf("topics=%d/patterns=%d", n, pats), func(b *testing.B) {
			srv := newWildcardServer(b)
			var extra *websocket.Conn
			if pats > 0 {
				extra = addPatterns(b, srv, pats)
			}
			r := rigWith(b, srv, n, n, "")
			defer func() {
				if extra != nil {
					extra.Close()
				}
				r.close()
			}()
			b.ResetTimer()
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
	}
}
