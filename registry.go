package firetower

import (
	"context"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"

	"github.com/firetower-go/firetower/internal/protocol"
	"github.com/firetower-go/firetower/internal/wsproto"
)

// registry finds this node's open connections by id, for the server-side
// operations (disconnect, unsubscribe) of the push APIs.
type registry struct {
	seed   maphash.Seed
	shards [numShards]struct {
		mu sync.RWMutex
		m  map[string]*Conn
	}
}

func newRegistry() *registry {
	r := &registry{seed: maphash.MakeSeed()}
	for i := range r.shards {
		r.shards[i].m = make(map[string]*Conn)
	}
	return r
}

func (r *registry) shard(id string) int { return int(maphash.String(r.seed, id) % numShards) }

func (r *registry) add(c *Conn) {
	sh := &r.shards[r.shard(c.id)]
	sh.mu.Lock()
	sh.m[c.id] = c
	sh.mu.Unlock()
}

func (r *registry) remove(c *Conn) {
	sh := &r.shards[r.shard(c.id)]
	sh.mu.Lock()
	if sh.m[c.id] == c {
		delete(sh.m, c.id)
	}
	sh.mu.Unlock()
}

func (r *registry) get(id string) *Conn {
	sh := &r.shards[r.shard(id)]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.m[id]
}

// each calls fn for every connection (fn must not block).
func (r *registry) each(fn func(*Conn)) {
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.RLock()
		for _, c := range sh.m {
			fn(c)
		}
		sh.mu.RUnlock()
	}
}

// ErrNoConn is returned for a connection id that is open on no node.
var ErrNoConn = &Error{Code: "not_found", Message: "no such connection"}

// Conn returns the open connection with this id on this node, or nil.
func (t *Tower) Conn(id string) *Conn { return t.conns.get(id) }

func checkCloseCode(code int) error {
	if !wsproto.ValidCloseCode(code) || code == 1005 {
		return fmt.Errorf("%w: invalid close code %d", ErrBadOption, code)
	}
	return nil
}

// disconnectUserLocal closes every connection of a user on this node and
// returns how many it closed.
func (t *Tower) disconnectUserLocal(userID string, code int, reason string) (int, error) {
	if userID == "" {
		return 0, fmt.Errorf("%w: empty user id", ErrBadOption)
	}
	if err := checkCloseCode(code); err != nil {
		return 0, err
	}
	var list []*Conn
	t.conns.each(func(c *Conn) {
		if c.UserID() == userID {
			list = append(list, c)
		}
	})
	n := 0
	for _, c := range list {
		if c.Close(code, reason) == nil {
			n++
		}
	}
	return n, nil
}

// unsubscribeLocal runs an unsubscribe for c in order with its requests
// and waits for it.
func (t *Tower) unsubscribeLocal(ctx context.Context, c *Conn, topics []string) error {
	done := make(chan struct{})
	c.post(item{kind: itemFunc, fn: func() {
		defer close(done)
		t.unsubscribe(c, &protocol.Request{Topics: slices.Clone(topics)})
	}})
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Topics returns the topics with subscribers on this node and their local
// counts (ConnectNum gives a topic's cluster-wide count, ClusterTopics the
// cluster's list).
func (t *Tower) Topics() map[string]int64 { return t.index.counts() }
