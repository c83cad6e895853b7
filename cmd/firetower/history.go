package main

import (
	"errors"
	"flag"
	"time"

	"github.com/firetower-go/firetower"
)

// historyFlags are serve's --history-size N --history-ttl D: history and
// recovery for every non-system topic (firetower.WithHistory).
type historyFlags struct {
	size *int
	ttl  *time.Duration
}

func addHistoryFlags(fs *flag.FlagSet) historyFlags {
	return historyFlags{
		size: fs.Int("history-size", 0, "publications kept per topic for recovery (with --history-ttl; off when 0)"),
		ttl:  fs.Duration("history-ttl", 0, "how long publications are kept for recovery, e.g. 5m (with --history-size)"),
	}
}

// options returns the Tower options the flags ask for. Every Manager keeps
// history: the embedded one, topic-manager nodes (--manager) and NATS
// JetStream (--nats).
func (h historyFlags) options() ([]firetower.Option, error) {
	if *h.size == 0 && *h.ttl == 0 {
		return nil, nil
	}
	switch {
	case *h.size <= 0:
		return nil, errors.New("--history-ttl needs --history-size N, N > 0")
	case *h.ttl <= 0:
		return nil, errors.New("--history-size needs --history-ttl D, D > 0 (e.g. 5m)")
	}
	return []firetower.Option{firetower.WithHistory(*h.size, *h.ttl)}, nil
}
