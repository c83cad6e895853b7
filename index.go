package firetower

import (
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/firetower-go/firetower/internal/protocol"
	"github.com/firetower-go/firetower/transport"
)

const numShards = 64

// blockSize is the number of subscribers in one block of a subscriber list.
const blockSize = 256

// connList is a copy-on-write list of subscribers in fixed-size blocks, so
// an update copies one block and the block table, not the whole list:
// subscribe and unsubscribe storms on one topic stay near linear.
//
// Readers (event loops delivering a publish) see a snapshot: the outer
// slice and each block only up to their lengths. A writer may append in
// place past those lengths (no reader sees those slots) but never writes a
// slot a snapshot can see: it copies the block instead.
type connList [][]*transport.Conn

func (l connList) add(c *transport.Conn) connList {
	if n := len(l); n > 0 && len(l[n-1]) < blockSize {
		next := append(connList(nil), l...)
		next[n-1] = append(l[n-1], c) // in place: cap is blockSize
		return next
	}
	b := make([]*transport.Conn, 1, blockSize)
	b[0] = c
	return append(append(make(connList, 0, len(l)+1), l...), b)
}

// remove returns the list without c, and whether c was in it.
func (l connList) remove(c *transport.Conn) (connList, bool) {
	for i, b := range l {
		for j, x := range b {
			if x != c {
				continue
			}
			next := make(connList, 0, len(l))
			next = append(next, l[:i]...)
			if len(b) > 1 {
				nb := make([]*transport.Conn, 0, blockSize)
				nb = append(append(nb, b[:j]...), b[j+1:]...)
				next = append(next, nb)
			}
			return append(next, l[i+1:]...), true
		}
	}
	return l, false
}

// subscribers is an immutable snapshot of a topic's local subscribers,
// grouped by event loop and codec, so a publish hands each loop its blocks
// per codec without locking or copying.
type subscribers struct {
	topic  string
	quoted []byte        // topic as a JSON string
	byLoop [][2]connList // [loop][codec]
	codecs [2]int        // subscribers per codec
	count  int64
}

type topicEntry struct {
	snap atomic.Pointer[subscribers]
}

type shard struct {
	mu sync.RWMutex
	m  map[string]*topicEntry
}

// index maps topics to their local subscribers. Writers (subscribe and
// unsubscribe) lock one shard; publishers take a shard read lock for the map
// lookup and then read the snapshot lock-free.
type index struct {
	seed   maphash.Seed
	shards [numShards]shard
	topics atomic.Int64
	subs   atomic.Int64
}

func newIndex() *index {
	ix := &index{seed: maphash.MakeSeed()}
	for i := range ix.shards {
		ix.shards[i].m = make(map[string]*topicEntry)
	}
	return ix
}

func (ix *index) shard(topic string) *shard {
	return &ix.shards[maphash.String(ix.seed, topic)%numShards]
}

// get returns the subscribers of topic, or nil.
func (ix *index) get(topic string) *subscribers {
	sh := ix.shard(topic)
	sh.mu.RLock()
	e := sh.m[topic]
	sh.mu.RUnlock()
	if e == nil {
		return nil
	}
	return e.snap.Load()
}

// update adds (add) or removes c as a subscriber of topic and calls report
// with the new local count while the shard is still locked, so reports for
// one topic are made in order.
func (ix *index) update(topic string, c *transport.Conn, codec protocol.Codec, add bool, report func(int64)) {
	sh := ix.shard(topic)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[topic]
	var old *subscribers
	if e != nil {
		old = e.snap.Load()
	} else if !add {
		return
	}
	loop := c.Loop()
	next := &subscribers{topic: topic}
	if old != nil {
		next.quoted = old.quoted
		next.codecs = old.codecs
		next.count = old.count
		next.byLoop = make([][2]connList, max(len(old.byLoop), loop+1))
		copy(next.byLoop, old.byLoop)
	} else {
		next.quoted = protocol.AppendJSONString(nil, topic)
		next.byLoop = make([][2]connList, loop+1)
	}
	cur := next.byLoop[loop][codec]
	if add {
		next.byLoop[loop][codec] = cur.add(c)
		next.codecs[codec]++
		next.count++
		ix.subs.Add(1)
	} else {
		l, ok := cur.remove(c)
		if !ok {
			return
		}
		next.byLoop[loop][codec] = l
		next.codecs[codec]--
		next.count--
		ix.subs.Add(-1)
	}
	switch {
	case e == nil:
		e = &topicEntry{}
		e.snap.Store(next)
		sh.m[topic] = e
		ix.topics.Add(1)
	case next.count == 0:
		delete(sh.m, topic)
		e.snap.Store(next)
		ix.topics.Add(-1)
	default:
		e.snap.Store(next)
	}
	report(next.count)
}

// counts returns every topic with its local subscriber count.
func (ix *index) counts() map[string]int64 {
	out := make(map[string]int64)
	for i := range ix.shards {
		sh := &ix.shards[i]
		sh.mu.RLock()
		for t, e := range sh.m {
			out[t] = e.snap.Load().count
		}
		sh.mu.RUnlock()
	}
	return out
}
