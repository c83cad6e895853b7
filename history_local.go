package firetower

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The LocalManager's history: the streams of every Tower joined to it, in
// memory. See history.go for the design; in short, a topic's stream lives
// in one of historyStripes stripes, whose mutex is held while a publish of
// the topic is appended and delivered to every node, and while a
// subscription with recovery reads the stream and queues its replay, so
// the two never interleave.

// historyStripes is how many stripes the topics' streams are spread over.
const historyStripes = 64

type localHistory struct {
	stripes [historyStripes]historyStripe
	now     func() time.Time // nil: time.Now (tests set it)

	streams   atomic.Int64
	bytes     atomic.Int64
	lastSweep atomic.Int64 // unix nanoseconds of the last sweep
}

type historyStripe struct {
	mu      sync.Mutex
	streams map[string]*stream
}

// stream is one topic's history: a ring of its latest publications.
type stream struct {
	epoch string
	top   uint64 // offset of the latest publish (0: none yet)
	ring  []histEntry
	start int           // index of the oldest entry in ring
	n     int           // entries held
	last  time.Time     // of the latest publish (or creation)
	ttl   time.Duration // the TTL it was last used with
	bytes int64
}

type histEntry struct {
	offset uint64
	data   []byte
	at     time.Time
}

// histEntryOverhead is what an entry costs besides its data, in
// HistoryBytes.
const histEntryOverhead = 48

func (h *localHistory) clock() time.Time {
	if h.now != nil {
		return h.now()
	}
	return time.Now()
}

func stripeOf(topic string) int {
	// FNV-1a: the stripe depends on the topic alone.
	x := uint32(2166136261)
	for i := 0; i < len(topic); i++ {
		x ^= uint32(topic[i])
		x *= 16777619
	}
	return int(x % historyStripes)
}

func newEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// get returns topic's stream, creating it (with a new epoch) if need be;
// the stripe is locked. Expired entries are evicted.
func (h *localHistory) get(sp *historyStripe, topic string, opts HistoryOptions, now time.Time) *stream {
	s := sp.streams[topic]
	if s == nil {
		if sp.streams == nil {
			sp.streams = make(map[string]*stream)
		}
		s = &stream{epoch: newEpoch(), last: now}
		sp.streams[topic] = s
		h.streams.Add(1)
	}
	s.ttl = opts.TTL
	h.evict(s, opts, now)
	return s
}

// evict drops the entries past the size or older than the TTL.
func (h *localHistory) evict(s *stream, opts HistoryOptions, now time.Time) {
	for s.n > 0 && (s.n > opts.Size || now.Sub(s.ring[s.start].at) > opts.TTL) {
		e := &s.ring[s.start]
		b := int64(len(e.data) + histEntryOverhead)
		s.bytes -= b
		h.bytes.Add(-b)
		*e = histEntry{}
		s.start = (s.start + 1) % len(s.ring)
		s.n--
	}
}

func (h *localHistory) append(s *stream, data []byte, opts HistoryOptions, now time.Time) Position {
	if s.n == opts.Size && s.n > 0 {
		h.evict(s, HistoryOptions{Size: opts.Size - 1, TTL: opts.TTL}, now)
	}
	if s.n == len(s.ring) { // grow, oldest first
		size := min(max(2*len(s.ring), 8), max(opts.Size, 1))
		ring := make([]histEntry, size)
		for i := range s.n {
			ring[i] = s.ring[(s.start+i)%len(s.ring)]
		}
		s.ring, s.start = ring, 0
	}
	s.top++
	e := histEntry{offset: s.top, data: slices.Clone(data), at: now}
	if e.data == nil {
		e.data = []byte{}
	}
	s.ring[(s.start+s.n)%len(s.ring)] = e
	s.n++
	s.last = now
	b := int64(len(data) + histEntryOverhead)
	s.bytes += b
	h.bytes.Add(b)
	return Position{Offset: s.top, Epoch: s.epoch}
}

// read answers q from s (the stripe locked, s evicted).
func (s *stream) read(q HistoryQuery) HistoryResult {
	r := HistoryResult{Topic: q.Topic, Top: Position{Offset: s.top, Epoch: s.epoch}}
	// offset of the oldest entry held (s.n: entries held, 0 <= s.n <= len(s.ring))
	first := s.top - uint64(s.n) + 1 //nolint:gosec // G115: s.n >= 0
	from := s.top + 1                // first offset to return
	limit := max(q.Limit, 0)
	switch {
	case q.Since != nil:
		sp := *q.Since
		if sp.Epoch != s.epoch || sp.Offset > s.top || sp.Offset+1 < first {
			return r // the epoch changed, a bogus offset, or evicted: not recovered
		}
		r.Recovered = true
		from = sp.Offset + 1
		if limit == 0 {
			limit = s.n
		}
	case limit > 0:
		from = s.top - uint64(min(limit, s.n)) + 1 //nolint:gosec // G115: limit > 0 and s.n >= 0 here
	}
	if from > s.top || limit == 0 {
		return r
	}
	// index among the entries held: first <= from <= s.top, so k < s.n
	k := int(from - first) //nolint:gosec // G115: bounded by s.n, an int
	cnt := min(s.n-k, limit)
	r.Publications = make([]Publication, 0, cnt)
	for i := k; i < k+cnt; i++ {
		e := s.ring[(s.start+i)%len(s.ring)]
		r.Publications = append(r.Publications, Publication{Offset: e.offset, Data: e.data})
	}
	return r
}

func (l *localLink) history() *localHistory { return &l.m.hist }

// The LocalManager's links keep history; the Towers' nodes take offsets.
var (
	_ HistoryLink = (*localLink)(nil)
	_ HistoryNode = towerNode{}
)

func (l *localLink) Append(_ context.Context, topic string, data []byte, opts HistoryOptions, local func(Position)) (Position, error) {
	if err := opts.check(); err != nil {
		return Position{}, err
	}
	h := l.history()
	now := h.clock()
	h.maybeSweep(l.m, opts.TTL, now)
	sp := &h.stripes[stripeOf(topic)]
	sp.mu.Lock()
	s := h.get(sp, topic, opts, now)
	pos := h.append(s, data, opts, now)
	// Delivered to every node with the stripe held: a recovery of topic
	// sees this publish either in the stream or live, never both.
	var others []Node
	if l.m.joined.Load() > 1 {
		id := l.n.NodeID()
		l.m.mu.RLock()
		for nid, o := range l.m.nodes {
			if nid != id && o.count(topic) > 0 {
				others = append(others, o.n)
			}
		}
		l.m.mu.RUnlock()
	}
	local(pos)
	for _, n := range others {
		deliverAt(n, topic, data, pos)
	}
	sp.mu.Unlock()
	return pos, nil
}

func deliverAt(n Node, topic string, data []byte, pos Position) {
	if hn, ok := n.(HistoryNode); ok {
		hn.DeliverAt(topic, data, pos)
		return
	}
	n.Deliver(topic, data)
}

func (l *localLink) History(_ context.Context, q HistoryQuery) (HistoryResult, error) {
	if err := q.Options.check(); err != nil {
		return HistoryResult{}, err
	}
	h := l.history()
	now := h.clock()
	h.maybeSweep(l.m, q.Options.TTL, now)
	sp := &h.stripes[stripeOf(q.Topic)]
	sp.mu.Lock()
	r := h.get(sp, q.Topic, q.Options, now).read(q)
	sp.mu.Unlock()
	return r, nil
}

func (l *localLink) Recover(_ context.Context, qs []HistoryQuery, fn func([]HistoryResult)) error {
	for _, q := range qs {
		if err := q.Options.check(); err != nil {
			return err
		}
	}
	h := l.history()
	now := h.clock()
	if len(qs) > 0 { // streams made by reads alone are swept by reads too
		h.maybeSweep(l.m, qs[0].Options.TTL, now)
	}
	// Every stripe involved, locked in order (a request's topics may
	// share one).
	idx := make([]int, 0, len(qs))
	for _, q := range qs {
		idx = append(idx, stripeOf(q.Topic))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		h.stripes[i].mu.Lock()
	}
	rs := make([]HistoryResult, len(qs))
	for i, q := range qs {
		sp := &h.stripes[stripeOf(q.Topic)]
		rs[i] = h.get(sp, q.Topic, q.Options, now).read(q)
	}
	fn(rs)
	for _, i := range slices.Backward(idx) {
		h.stripes[i].mu.Unlock()
	}
	return nil
}

func (l *localLink) HistoryStats() HistoryStats {
	h := l.history()
	return HistoryStats{Streams: h.streams.Load(), Bytes: h.bytes.Load()}
}

// maybeSweep drops, at most once per ttl, the streams idle past their
// TTL that no node has subscribers for (a later publish starts a new
// epoch), and evicts expired entries everywhere. It is called with no
// stripe locked, before the caller's own stream is looked up.
func (h *localHistory) maybeSweep(m *LocalManager, ttl time.Duration, now time.Time) {
	last := h.lastSweep.Load()
	if now.UnixNano()-last < int64(ttl) || !h.lastSweep.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	for i := range h.stripes {
		sp := &h.stripes[i]
		sp.mu.Lock()
		for topic, s := range sp.streams {
			h.evict(s, HistoryOptions{Size: s.n, TTL: s.ttl}, now)
			if now.Sub(s.last) <= s.ttl || s.n > 0 || m.interested(topic) {
				continue
			}
			delete(sp.streams, topic)
			h.streams.Add(-1)
		}
		sp.mu.Unlock()
	}
}

// interested reports whether any node has subscribers for topic.
func (m *LocalManager) interested(topic string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, o := range m.nodes {
		if o.count(topic) > 0 {
			return true
		}
	}
	return false
}
