//go:build race

package firetower

// raceEnabled: under the race detector sync.Pool drops a share of what is
// put back, so allocation counts that rely on a pool mean nothing.
const raceEnabled = true
