package firetower_test

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firetower-go/firetower"
)

// forgedCountManager is a Manager whose Link reports a forged cluster-wide
// count for every topic (as a rogue node or a compromised manager could,
// with a SUB of a huge count to the control topic), and routes nothing.
type forgedCountManager struct{ count int64 }

type forgedCountLink struct {
	count     int64
	published atomic.Int64
}

func (m forgedCountManager) Join(context.Context, firetower.Node) (firetower.Link, error) {
	return &forgedCountLink{count: m.count}, nil
}

func (l *forgedCountLink) SetInterest(string, int64)                    {}
func (l *forgedCountLink) Flush(context.Context) error                  { return nil }
func (l *forgedCountLink) Close() error                                 { return nil }
func (l *forgedCountLink) Count(context.Context, string) (int64, error) { return l.count, nil }
func (l *forgedCountLink) Publish(context.Context, string, []byte) error {
	l.published.Add(1)
	return nil
}

func totalAlloc() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

// TestForgedNodeCountCannotExhaustMemory: the cluster-wide operations size
// nothing by the node count the Manager reports. A count of 2^40 (or any
// absurd one) makes the operation wait for answers that never come, until
// its deadline, and fail with code unavailable; it allocates next to
// nothing. (Before: a channel of 2^40 answers, and the gateway died.)
func TestForgedNodeCountCannotExhaustMemory(t *testing.T) {
	for _, count := range []int64{1 << 40, 1<<63 - 1, 70000, -5} {
		tw, err := firetower.New(firetower.WithAddr("127.0.0.1:0"), firetower.WithManager(forgedCountManager{count: count}))
		if err != nil {
			t.Fatal(err)
		}
		if err := tw.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		before := totalAlloc()
		ops := map[string]func(ctx context.Context) error{
			"Presence": func(ctx context.Context) error { _, err := tw.Presence(ctx, "room", 10); return err },
			"ClusterTopics": func(ctx context.Context) error {
				_, err := tw.ClusterTopics(ctx, "", 10)
				return err
			},
			"DisconnectUser": func(ctx context.Context) error {
				_, err := tw.DisconnectUser(ctx, "u", 4000, "bye")
				return err
			},
			"Disconnect":  func(ctx context.Context) error { return tw.Disconnect(ctx, "no-such-conn", 4000, "bye") },
			"Unsubscribe": func(ctx context.Context) error { return tw.Unsubscribe(ctx, "no-such-conn", "room") },
		}
		for name, op := range ops {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			err := op(ctx)
			cancel()
			var fe *firetower.Error
			switch {
			case count < 0:
				// no other node: nothing to wait for
				if err != nil && !errors.Is(err, firetower.ErrNoConn) {
					t.Errorf("count %d: %s: %v", count, name, err)
				}
			case !errors.As(err, &fe) || fe.Code != firetower.CodeUnavailable:
				t.Errorf("count %d: %s returned %v, want an error of code unavailable (the answers of the counted nodes never came)", count, name, err)
			}
		}
		if grew := totalAlloc() - before; grew > 4<<20 {
			t.Errorf("count %d: the operations allocated %d bytes", count, grew)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := tw.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		cancel()
	}
}
