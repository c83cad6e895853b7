package firetower

import (
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/firetower-go/firetower/internal/protocol"
	"github.com/firetower-go/firetower/transport"
)

const numShards = 64

const (
	// blockSize is the most subscribers in one block of a subscriber list.
	blockSize = 256
	// smallTopic is the most subscribers a topic has before the index keeps
	// their positions: an unsubscribe from a topic this small looks through
	// its list, one from a larger topic finds the position in a map.
	smallTopic = 32
)

// connList is a copy-on-write list of subscribers in blocks of at most
// blockSize, every block full but the last (dense), so that a publish hands
// an event loop a few large slices and an update copies at most two blocks
// and the block table, not the whole list.
//
// Readers (event loops delivering a publish) see a snapshot: the outer
// slice and each block only up to their lengths. A writer may append in
// place past those lengths, since no snapshot ever sees a slot beyond the
// length it has, but never writes a slot a snapshot can see: to change or
// shorten a block, it copies it. So the views of one block array only grow.
type connList [][]*transport.Conn

// subscribers is an immutable snapshot of a topic's local subscribers,
// grouped by event loop and codec, so a publish hands each loop its blocks
// per codec without locking or copying.
//
// A topic with one subscriber shares its byLoop with every other topic
// that subscriber is alone in (see solo): it costs this struct, its quoted
// name and its slot in the shard's topicTable.
type subscribers struct {
	quoted string       // topic as a JSON string
	byLoop [][]connList // [loop][codec]; empty lists may be nil
	codecs [2]int32     // subscribers per codec
	count  int64
}

// solo is the byLoop of a topic whose one subscriber is c: the same for
// every such topic of c, so it is made once per connection and shared.
type solo struct {
	byLoop [][]connList
	refs   int // snapshots now current that use it
}

type shard struct {
	// mu: writers (update) hold it while they call the report function,
	// which is Link.SetInterest, and while they take a soloShard's mu.
	// Lock order: shard mu, then soloShard mu, then what SetInterest
	// takes (see Link.SetInterest and LocalManager.mu). Readers (get,
	// each) hold it for reading only; the callbacks given to each
	// (counts, topTopics) take no lock.
	mu sync.RWMutex
	t  topicTable
	// pos holds, for each topic with more than smallTopic subscribers,
	// every subscriber's position in its list (writers only).
	pos map[string]map[*transport.Conn]int32
}

type soloShard struct {
	mu sync.Mutex // a leaf, taken under a shard's mu by update
	m  map[*transport.Conn]*solo
}

// index maps topics to their local subscribers. Writers (subscribe and
// unsubscribe) lock one shard; publishers take a shard read lock for the map
// lookup and then read the snapshot lock-free.
type index struct {
	seed   maphash.Seed
	shards [numShards]shard
	solos  [numShards]soloShard
	topics atomic.Int64
	subs   atomic.Int64
	// loop is a connection's event loop: (*transport.Conn).Loop, or a
	// test's stand-in.
	loop func(*transport.Conn) int
}

func newIndex() *index {
	ix := &index{seed: maphash.MakeSeed(), loop: (*transport.Conn).Loop}
	for i := range ix.shards {
		ix.shards[i].pos = make(map[string]map[*transport.Conn]int32)
		ix.solos[i].m = make(map[*transport.Conn]*solo)
	}
	return ix
}

// shard returns topic's shard and the topic's hash.
func (ix *index) shard(topic string) (*shard, uint64) {
	h := maphash.String(ix.seed, topic)
	return &ix.shards[h%numShards], h
}

// get returns the subscribers of topic, or nil.
func (ix *index) get(topic string) *subscribers {
	sh, h := ix.shard(topic)
	sh.mu.RLock()
	s := sh.t.get(h, topic)
	sh.mu.RUnlock()
	return s
}

// update adds (add) or removes c as a subscriber of topic and calls report
// with the new local count while the shard is still locked, so reports for
// one topic are made in order. Adding a subscriber twice or removing one
// that is not there is the caller's mistake; the latter changes nothing.
func (ix *index) update(topic string, c *transport.Conn, codec protocol.Codec, add bool, report func(int64)) {
	sh, h := ix.shard(topic)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	old := sh.t.get(h, topic)
	var next *subscribers
	if add {
		next = ix.add(sh, topic, old, c, codec)
		ix.subs.Add(1)
		if old == nil {
			ix.topics.Add(1)
		}
	} else {
		if old == nil {
			return
		}
		var ok bool
		if next, ok = ix.remove(sh, topic, old, c, codec); !ok {
			return
		}
		ix.subs.Add(-1)
	}
	if next == nil {
		sh.t.del(ix.seed, h, topic)
		ix.topics.Add(-1)
		report(0)
		return
	}
	sh.t.set(ix.seed, h, topic, next)
	report(next.count)
}

// add returns the snapshot of topic (old: its current one, or nil) with c
// added.
func (ix *index) add(sh *shard, topic string, old *subscribers, c *transport.Conn, codec protocol.Codec) *subscribers {
	if old == nil {
		var buf [128]byte
		return &subscribers{
			quoted: string(protocol.AppendJSONString(buf[:0], topic)),
			byLoop: ix.soloAcquire(c, codec),
			codecs: codecCount(codec, 1),
			count:  1,
		}
	}
	next := &subscribers{quoted: old.quoted, codecs: old.codecs, count: old.count + 1}
	next.codecs[codec]++
	if old.count == 1 {
		// Leave the shared solo list: build this topic's own lists.
		d, dcodec := onlyConn(old.byLoop)
		ix.soloRelease(d)
		next.byLoop = withList(nil, ix.loop(d), int(dcodec), appendConn(nil, d))
	} else {
		next.byLoop = old.byLoop
	}
	l, k := ix.loop(c), int(codec)
	cur := listAt(next.byLoop, l, k)
	next.byLoop = withList(next.byLoop, l, k, appendConn(cur, c))
	if pos := sh.pos[topic]; pos != nil {
		pos[c] = int32(listLen(cur)) //nolint:gosec // G115: a list of one topic's subscribers on one loop and codec, far below 2^31
	} else if next.count > smallTopic {
		sh.pos[topic] = positions(next.byLoop)
	}
	return next
}

// remove returns the snapshot of topic without c (nil when none is left),
// and false when c was not a subscriber.
func (ix *index) remove(sh *shard, topic string, old *subscribers, c *transport.Conn, codec protocol.Codec) (*subscribers, bool) {
	l, k := ix.loop(c), int(codec)
	cur := listAt(old.byLoop, l, k)
	if old.count == 1 {
		if len(cur) == 0 || cur[0][0] != c {
			return nil, false
		}
		ix.soloRelease(c)
		return nil, true
	}
	pos := sh.pos[topic]
	p := -1
	if pos != nil {
		if i, ok := pos[c]; ok {
			p = int(i)
		}
	} else {
		p = listIndex(cur, c)
	}
	if p < 0 {
		return nil, false
	}
	next := &subscribers{quoted: old.quoted, codecs: old.codecs, count: old.count - 1}
	next.codecs[codec]--
	if next.count == 1 {
		// One left: it joins its connection's shared solo list.
		d, dcodec := otherConn(old.byLoop, c)
		next.byLoop = ix.soloAcquire(d, dcodec)
		return next, true
	}
	rest, moved := removeAt(cur, p)
	next.byLoop = withList(old.byLoop, l, k, rest)
	if pos != nil {
		delete(pos, c)
		if moved != nil {
			pos[moved] = int32(p)
		}
		if next.count <= smallTopic {
			delete(sh.pos, topic)
		}
	}
	return next, true
}

func codecCount(codec protocol.Codec, n int32) (out [2]int32) {
	out[codec] = n
	return out
}

// soloAcquire returns the shared byLoop of the topics whose one subscriber
// is c, and counts one more topic using it.
func (ix *index) soloAcquire(c *transport.Conn, codec protocol.Codec) [][]connList {
	ss := &ix.solos[maphash.Comparable(ix.seed, c)%numShards]
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.m[c]
	if s == nil {
		s = &solo{byLoop: withList(nil, ix.loop(c), int(codec), connList{{c}})}
		ss.m[c] = s
	}
	s.refs++
	return s.byLoop
}

// soloRelease counts one topic fewer using c's shared byLoop, and forgets
// it when none does (snapshots that still hold it keep it alive).
func (ix *index) soloRelease(c *transport.Conn) {
	ss := &ix.solos[maphash.Comparable(ix.seed, c)%numShards]
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s := ss.m[c]; s != nil {
		if s.refs--; s.refs <= 0 {
			delete(ss.m, c)
		}
	}
}

// listAt returns list [l][k] of byLoop (nil if there is none).
func listAt(byLoop [][]connList, l, k int) connList {
	if l < len(byLoop) && k < len(byLoop[l]) {
		return byLoop[l][k]
	}
	return nil
}

// withList returns a copy of byLoop with list [l][k] set to list, sharing
// every other loop's lists.
func withList(byLoop [][]connList, l, k int, list connList) [][]connList {
	next := make([][]connList, max(len(byLoop), l+1))
	copy(next, byLoop)
	lists := make([]connList, max(len(next[l]), k+1))
	copy(lists, next[l])
	lists[k] = list
	next[l] = lists
	return next
}

func listLen(l connList) int {
	if len(l) == 0 {
		return 0
	}
	return (len(l)-1)*blockSize + len(l[len(l)-1])
}

// listIndex returns the position of c in l, or -1.
func listIndex(l connList, c *transport.Conn) int {
	for i, b := range l {
		for j, x := range b {
			if x == c {
				return i*blockSize + j
			}
		}
	}
	return -1
}

// appendConn returns l with c at its end. It writes in place only past
// the last block's length, which no snapshot sees.
func appendConn(l connList, c *transport.Conn) connList {
	n := len(l)
	next := make(connList, n, n+1)
	copy(next, l)
	if n > 0 && len(l[n-1]) < blockSize {
		b := l[n-1]
		if len(b) == cap(b) {
			nb := make([]*transport.Conn, len(b), min(2*len(b), blockSize))
			copy(nb, b)
			b = nb
		}
		next[n-1] = append(b, c)
		return next
	}
	size := 2 // the first block grows as needed; later ones fill up
	if n > 0 {
		size = blockSize
	}
	b := make([]*transport.Conn, 1, size)
	b[0] = c
	return append(next, b)
}

// removeAt returns l without the subscriber at position p: the last one
// takes its place (moved, nil when p was the last). Each block it changes
// is copied, so earlier snapshots are left as they were.
func removeAt(l connList, p int) (next connList, moved *transport.Conn) {
	last := listLen(l) - 1
	lb, ls := last/blockSize, last%blockSize
	pb, ps := p/blockSize, p%blockSize
	next = make(connList, len(l))
	copy(next, l)
	if p != last {
		moved = l[lb][ls]
		if pb != lb {
			nb := make([]*transport.Conn, len(l[pb]))
			copy(nb, l[pb])
			nb[ps] = moved
			next[pb] = nb
		}
	}
	if ls == 0 {
		next[lb] = nil
		return next[:lb], moved
	}
	// The shortened last block is a new array (with room for the next add):
	// the old one's slot ls stays as earlier snapshots see it.
	nb := make([]*transport.Conn, ls, len(l[lb]))
	copy(nb, l[lb][:ls])
	if p != last && pb == lb {
		nb[ps] = moved
	}
	next[lb] = nb
	return next, moved
}

// positions indexes every subscriber of byLoop by its position in its list.
func positions(byLoop [][]connList) map[*transport.Conn]int32 {
	pos := make(map[*transport.Conn]int32)
	for _, lists := range byLoop {
		for _, l := range lists {
			for i, b := range l {
				for j, c := range b {
					pos[c] = int32(i*blockSize + j)
				}
			}
		}
	}
	return pos
}

// onlyConn returns the one subscriber of a topic with one, and its codec.
func onlyConn(byLoop [][]connList) (*transport.Conn, protocol.Codec) {
	return otherConn(byLoop, nil)
}

// otherConn returns the first subscriber that is not c, and its codec.
func otherConn(byLoop [][]connList, c *transport.Conn) (*transport.Conn, protocol.Codec) {
	for _, lists := range byLoop {
		for k, l := range lists {
			for _, b := range l {
				for _, x := range b {
					if x != c {
						return x, protocol.Codec(k)
					}
				}
			}
		}
	}
	return nil, 0
}

// each calls fn for every topic with its local subscriber count, under
// the topic's shard read lock: fn must be quick and must not call into
// the index.
func (ix *index) each(fn func(topic string, count int64)) {
	for i := range ix.shards {
		sh := &ix.shards[i]
		sh.mu.RLock()
		sh.t.each(func(t string, s *subscribers) { fn(t, s.count) })
		sh.mu.RUnlock()
	}
}

// counts returns every topic with its local subscriber count.
func (ix *index) counts() map[string]int64 {
	out := make(map[string]int64, ix.topics.Load())
	ix.each(func(t string, n int64) { out[t] = n })
	return out
}

// counts implements localCounter: the index counts every topic but the
// system topics other than StatsTopic and the presence topics of covered
// topics, whose interest is the node's own (see systemInterest).
func (n towerNode) counts(topic string) bool {
	if pt, ok := presenceTopicOf(topic); ok {
		return n.t.pres.covers(pt) // presence.go: counted as its topic
	}
	return !IsSystemTopic(topic) || topic == StatsTopic
}

// localCount implements localCounter; a presence topic counts as the
// topic it is for.
func (n towerNode) localCount(topic string) int64 {
	if pt, ok := presenceTopicOf(topic); ok {
		topic = pt
	}
	if s := n.t.index.get(topic); s != nil {
		return s.count
	}
	return 0
}
