package main

import (
	"errors"
	"flag"
	"time"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/manager"
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

// options returns the Tower options the flags ask for. Every Manager keeps
// history: the embedded one, topic-manager nodes (--manager) and NATS
// JetStream (--nats). clustered says whether --manager or --nats is given:
// the demo rooms' default history is only for the embedded Manager.
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
	}
	return []firetower.Option{firetower.WithHistory(*h.size, *h.ttl)}, nil
}

// managerHistoryFlags are manager's bounds on the history streams it keeps
// for the gateways (manager.ServerConfig): --history-max-size N
// --history-max-ttl D --history-max-bytes B.
type managerHistoryFlags struct {
	maxSize  *int
	maxTTL   *time.Duration
	maxBytes *int64
}

func addManagerHistoryFlags(fs *flag.FlagSet) managerHistoryFlags {
	return managerHistoryFlags{
		maxSize:  fs.Int("history-max-size", 65536, "most publications kept per history topic, whatever a gateway's --history-size"),
		maxTTL:   fs.Duration("history-max-ttl", 24*time.Hour, "longest a publication is kept, whatever a gateway's --history-ttl"),
		maxBytes: fs.Int64("history-max-bytes", 256<<20, "memory all history streams may hold together; past it a publish evicts its topic's oldest"),
	}
}

func (h managerHistoryFlags) apply(cfg *manager.ServerConfig) error {
	if *h.maxSize <= 0 || *h.maxTTL <= 0 || *h.maxBytes <= 0 {
		return errors.New("--history-max-size, --history-max-ttl and --history-max-bytes must be > 0")
	}
	cfg.HistoryMaxSize, cfg.HistoryMaxTTL, cfg.HistoryMaxBytes = *h.maxSize, *h.maxTTL, *h.maxBytes
	return nil
}
