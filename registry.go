package firetower

import (
	"context"
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/firetower-go/firetower/internal/protocol"
	"github.com/firetower-go/firetower/internal/wsproto"
)

// registry finds this node's open connections by id, for the server-side
// operations (disconnect, unsubscribe) of the push APIs. It also holds the
// ids that connections still in OnConnect have set (Conn.SetID), so that no
// two connections of this node ever have one id; get and each see only
// open connections.
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
	if c := sh.m[id]; c != nil && c.open.Load() {
		return c
	}
	return nil
}

// each calls fn for every open connection (fn must not block).
func (r *registry) each(fn func(*Conn)) {
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.RLock()
		for _, c := range sh.m {
			if c.open.Load() {
				fn(c)
			}
		}
		sh.mu.RUnlock()
	}
}

// Errors of Conn.SetID.
var (
	ErrEmptyID = &Error{Code: "invalid_id", Message: "a connection id must not be empty"}
	ErrIDInUse = &Error{Code: "id_in_use", Message: "another connection on this node has this id"}
)

// setConnID is Conn.SetID: it gives c the id unless it is "" or another
// connection of this node has it, has set it in its own OnConnect, or may
// be given it by the node (ids of the form the node generates are its
// own). The id is held from then on, so the connection must reach
// Tower.disconnect, which every connection that reached OnConnect does.
func setConnID(c *Conn, id string) error {
	if id == "" {
		return ErrEmptyID
	}
	if id == c.id {
		return nil
	}
	if c.t == nil { // a Conn outside a Tower (tests)
		c.id = id
		return nil
	}
	if strings.HasPrefix(id, c.t.idPrefix()) {
		return fmt.Errorf("%w: %q has the form of the ids the node generates", ErrIDInUse, id)
	}
	r := c.t.conns
	sh := &r.shards[r.shard(id)]
	sh.mu.Lock()
	if o := sh.m[id]; o != nil && o != c {
		sh.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrIDInUse, id)
	}
	sh.m[id] = c
	sh.mu.Unlock()
	r.remove(c) // its former id, if it held one
	c.id = id
	return nil
}

// idPrefix is what every id the Tower generates starts with (see newID).
func (t *Tower) idPrefix() string {
	return strconv.FormatUint(uint64(t.cfg.nodeID), 10) + "-" + t.bootID + "-"
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
