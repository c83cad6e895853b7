package firetower

import (
	"context"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"

	"github.com/firetower-go/firetower/internal/protocol"
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

// ErrNoConn is returned for a connection id that is not open on this node.
var ErrNoConn = &Error{Code: "not_found", Message: "no such connection on this node"}

// Conn returns the open connection with this id on this node, or nil.
func (t *Tower) Conn(id string) *Conn { return t.conns.get(id) }

// Disconnect closes the connection with this id on this node, with a close
// code (1000 or 3000-4999) and a reason.
func (t *Tower) Disconnect(id string, code int, reason string) error {
	c := t.conns.get(id)
	if c == nil {
		return ErrNoConn
	}
	return c.Close(code, reason)
}

// DisconnectUser closes every connection of a user on this node and
// returns how many it closed.
func (t *Tower) DisconnectUser(userID string, code int, reason string) (int, error) {
	if userID == "" {
		return 0, fmt.Errorf("%w: empty user id", ErrBadOption)
	}
	var list []*Conn
	t.conns.each(func(c *Conn) {
		if c.UserID() == userID {
			list = append(list, c)
		}
	})
	n := 0
	for _, c := range list {
		if err := c.Close(code, reason); err != nil {
			if n == 0 && err != ErrClosed {
				return 0, err
			}
			continue
		}
		n++
	}
	return n, nil
}

// Unsubscribe removes topics from the subscriptions of the connection with
// this id on this node, as if the client had asked (OnUnsubscribe runs, in
// order with the client's own requests). It returns once done, or with
// ctx's error.
func (t *Tower) Unsubscribe(ctx context.Context, id string, topics ...string) error {
	if e := validTopics(topics); e != nil {
		return e
	}
	c := t.conns.get(id)
	if c == nil {
		return ErrNoConn
	}
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
// counts (ConnectNum gives a topic's cluster-wide count).
func (t *Tower) Topics() map[string]int64 { return t.index.counts() }
