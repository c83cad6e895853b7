package main

import (
	"errors"
	"flag"
	"time"

	"github.com/firetower-go/firetower"
)

// historyFlags are serve's --history-size N --history-ttl D: history and
// recovery for every non-system topic (firetower.WithHistory).
//
// Given neither flag, serve with the embedded manager keeps history for the
// demo's rooms only (demoHistory*), so that the chat page shows a room's
// latest messages on join and recovers what it missed across a reconnect;
// --history-size 0 --history-ttl 0 turns that off.
type historyFlags struct {
	fs   *flag.FlagSet
	size *int
	ttl  *time.Duration
}

// The history the demo's rooms keep when no --history-* flag is given: the
// page asks for the latest 50 on join.
const (
	demoHistoryPrefix = "/chat/"
	demoHistorySize   = 100
	demoHistoryTTL    = 10 * time.Minute
)

func addHistoryFlags(fs *flag.FlagSet) historyFlags {
	return historyFlags{
		fs:   fs,
		size: fs.Int("history-size", 0, "publications kept per topic for recovery (with --history-ttl; 0 with --history-ttl 0: off; neither given: the demo rooms /chat/ keep 100 for 10m)"),
		ttl:  fs.Duration("history-ttl", 0, "how long publications are kept for recovery, e.g. 5m (with --history-size)"),
	}
}

// given reports whether a --history-* flag is on the command line.
func (h historyFlags) given() bool {
	set := false
	h.fs.Visit(func(f *flag.Flag) {
		if f.Name == "history-size" || f.Name == "history-ttl" {
			set = true
		}
	})
	return set
}

// options returns the Tower options the flags ask for; clustered says
// whether --manager or --nats is given, whose Managers keep no history yet.
func (h historyFlags) options(clustered bool) ([]firetower.Option, error) {
	if *h.size == 0 && *h.ttl == 0 {
		if clustered || h.given() {
			return nil, nil
		}
		return []firetower.Option{firetower.WithHistory(demoHistorySize, demoHistoryTTL, demoHistoryPrefix)}, nil
	}
	switch {
	case *h.size <= 0:
		return nil, errors.New("--history-ttl needs --history-size N, N > 0")
	case *h.ttl <= 0:
		return nil, errors.New("--history-size needs --history-ttl D, D > 0 (e.g. 5m)")
	case clustered:
		return nil, errors.New("--history-size and --history-ttl work with the embedded manager only for now, not with --manager or --nats")
	}
	return []firetower.Option{firetower.WithHistory(*h.size, *h.ttl)}, nil
}
