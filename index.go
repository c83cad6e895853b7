package firetower

import (
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/firetower-go/firetower/internal/protocol"
	"github.com/firetower-go/firetower/transport"
)

const numShards = 64

// subscribers is an immutable snapshot of a topic's local subscribers,
// grouped by event loop and codec, so a publish hands each loop one slice
// per codec without locking or copying.
type subscribers struct {
	topic  string
	quoted []byte                 // topic as a JSON string
	byLoop [][2][]*transport.Conn // [loop][codec]
	codecs [2]int                 // subscribers per codec
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
		next.byLoop = make([][2][]*transport.Conn, max(len(old.byLoop), loop+1))
		copy(next.byLoop, old.byLoop)
	} else {
		next.quoted = protocol.AppendJSONString(nil, topic)
		next.byLoop = make([][2][]*transport.Conn, loop+1)
	}
	cur := next.byLoop[loop][codec]
	if add {
		// Appending in place is safe: every published snapshot has a
		// length <= len(cur), so no reader ever sees the slot written here.
		// (Removals copy, below, since they change slots readers see.) This
		// keeps a subscribe storm on one topic linear.
		next.byLoop[loop][codec] = append(cur, c)
		next.codecs[codec]++
		next.count++
		ix.subs.Add(1)
	} else {
		i := -1
		for j, x := range cur {
			if x == c {
				i = j
				break
			}
		}
		if i < 0 {
			return
		}
		l := make([]*transport.Conn, 0, len(cur)-1)
		l = append(append(l, cur[:i]...), cur[i+1:]...)
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
