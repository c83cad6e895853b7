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
