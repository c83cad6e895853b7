package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/firetower-go/firetower"
)

// addWriteDelayFlag adds `serve --write-delay`.
func addWriteDelayFlag(fs *flag.FlagSet) *time.Duration {
	return fs.Duration("write-delay", 0, "hold each client's outgoing messages up to this long so that those sent meanwhile leave in one write: less CPU for more latency (e.g. 10ms for busy chat rooms; 0: write at once)")
}

// writeDelayOptions are the Tower options for --write-delay.
func writeDelayOptions(d time.Duration) ([]firetower.Option, error) {
	switch {
	case d < 0:
		return nil, fmt.Errorf("--write-delay must not be negative, got %v", d)
	case d == 0:
		return nil, nil
	}
	return []firetower.Option{firetower.WithWriteDelay(d)}, nil
}
