package firetower_test

// Helpers shared by the root package's external test files (package
// firetower_test), and the one switch between the quick and the full sizes of
// the long tests.

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/managertest"
)

// fullTestsEnv is the switch of the long tests' sizes. Unset (plain
// `go test ./...`, the README's command) the abuse counts, the soak's
// duration and the RFC 6455 suite's time-bound cases run at a quick size;
// FIRETOWER_FULL_TESTS=1 (what .ci/run sets for its -race step) runs them at
// the full size. The sizes change, never the assertions. See CONTRIBUTING.md.
const fullTestsEnv = "FIRETOWER_FULL_TESTS"

// fullTests reports whether the long tests run at their full size.
func fullTests() bool { return os.Getenv(fullTestsEnv) == "1" }

// startTower starts a tower on a free loopback port and shuts it down at the
// end of the test, waiting at most shutdown for it.
func startTower(t testing.TB, shutdown time.Duration, opts ...firetower.Option) *firetower.Tower {
	t.Helper()
	tw, err := firetower.New(append([]firetower.Option{firetower.WithAddr("127.0.0.1:0")}, opts...)...)
	if err != nil {
		t.Fatalf("firetower.New: %v", err)
	}
	if err := tw.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdown)
		defer cancel()
		if err := tw.Shutdown(ctx); err != nil && !errors.Is(err, firetower.ErrClosed) {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return tw
}

// waitFor polls cond until it holds or the deadline d passes; it reports
// whether it held. d is a deadline, never a synchronisation.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	tick := time.NewTicker(2 * time.Millisecond) // polling interval
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

// waitStats polls the tower's counters until cond holds, or fails the test
// once d has passed.
func waitStats(t testing.TB, tw interface{ Stats() firetower.Stats }, d time.Duration, what string, cond func(firetower.Stats) bool) {
	t.Helper()
	if !waitFor(d, func() bool { return cond(tw.Stats()) }) {
		t.Fatalf("timed out waiting for %s: stats %+v", what, tw.Stats())
	}
}

// firstErr keeps the first error a background reader or writer reports;
// embed it to give a type fail and failed.
type firstErr struct {
	mu  sync.Mutex
	err error
}

// fail records err unless an error was recorded before.
func (f *firstErr) fail(err error) {
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
}

// failed is the first error recorded, nil when none was.
func (f *firstErr) failed() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// localCluster is the conformance suite's cluster of in-process
// LocalManagers: every node shares one.
func localCluster() managertest.Cluster {
	return managertest.Cluster{
		Name:  "local",
		Exact: true,
		Managers: func(t *testing.T, n int) []firetower.Manager {
			m := firetower.NewLocalManager()
			out := make([]firetower.Manager, n)
			for i := range out {
				out[i] = m
			}
			return out
		},
	}
}
