package manager

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/firetower-go/firetower"
)

// History on the manager node (firetower's HistoryLink, PROTOCOL.md
// "Recovery"). The manager keeps, for every history topic, a stream of its
// latest publications in memory and assigns the offsets: a gateway sends
// APPEND instead of PUB for a history topic, and the manager appends it and
// sends DELIVER_AT (with offset and epoch) to every node with interest,
// the publishing one included, which delivers to its own subscribers only
// then. A stream's epoch is random and made when the stream is: a manager
// that restarts, or another manager after a failover, has other epochs, so
// clients that recover from it are told recovered: false.
//
// The seam. A topic's stream lives in a stripe whose mutex is held while a
// publish is appended and its DELIVER_ATs queued, and while a RECOVER is
// read and its reply queued; a session's queue is written in order, so a
// gateway receives, on that session, the deliveries of offsets up to the
// reply's top before the reply and those after it behind. From the
// RECOVER, the manager also sends the topic's deliveries to the node while
// it has no interest yet (a hold), until the gateway's RECOVER_DONE; the
// gateway holds back the deliveries it receives after the reply until the
// Tower has queued the replay (client.go), so its clients see every offset
// once, in order.
//
// Bounds. The size and TTL a gateway asks for are capped by
// ServerConfig.HistoryMaxSize and HistoryMaxTTL; all streams together hold
// about ServerConfig.HistoryMaxBytes (past it an append evicts the oldest
// publications of its own stream first); a query names at most
// MaxHistItems topics and a reply stays within MaxFrame (the publications
// that do not fit are not sent, and a recovery that would need them is
// answered recovered: false).

const (
	defaultHistoryMaxSize  = 1 << 16
	defaultHistoryMaxTTL   = 24 * time.Hour
	defaultHistoryMaxBytes = 256 << 20
	histStripes            = 64
	histEntryOverhead      = 48 // bookkeeping per publication, in HistoryBytes
)

type histStore struct {
	stripes   [histStripes]histStripe
	bytes     atomic.Int64
	streams   atomic.Int64
	lastSweep atomic.Int64
	appends   atomic.Uint64
}

type histStripe struct {
	mu      sync.Mutex
	streams map[string]*hstream
	holds   map[string]map[uint16]int // topic -> node -> RECOVERs not yet done
}

type hstream struct {
	epoch string
	top   uint64
	ents  []hentry // oldest first
	last  time.Time
	ttl   time.Duration
	size  int // the bounds it was last used with
	bytes int64
}

type hentry struct {
	offset uint64
	data   []byte
	at     time.Time
}

func histStripeOf(topic string) int {
	x := uint32(2166136261)
	for i := 0; i < len(topic); i++ {
		x ^= uint32(topic[i])
		x *= 16777619
	}
	return int(x % histStripes)
}

func newStreamEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// histOpts are a stream's bounds as a gateway asked for them, capped.
type histOpts struct {
	size int
	ttl  time.Duration
}

func (s *Server) histOptions(m *Msg) (histOpts, error) {
	if m.Count <= 0 {
		return histOpts{}, fmt.Errorf("history size %d must be > 0", m.Count)
	}
	ttl, err := parseTTL(m.Text)
	if err != nil {
		return histOpts{}, err
	}
	return histOpts{size: int(min(m.Count, int64(s.cfg.HistoryMaxSize))), ttl: min(ttl, s.cfg.HistoryMaxTTL)}, nil
}

// get returns topic's stream, made with a new epoch if need be, evicted;
// the stripe is locked.
func (h *histStore) get(sp *histStripe, topic string, o histOpts, now time.Time) *hstream {
	st := sp.streams[topic]
	if st == nil {
		if sp.streams == nil {
			sp.streams = make(map[string]*hstream)
		}
		st = &hstream{epoch: newStreamEpoch(), last: now}
		sp.streams[topic] = st
		h.streams.Add(1)
	}
	st.ttl, st.size = o.ttl, o.size
	h.evict(st, o.size, o.ttl, now)
	return st
}

func (h *histStore) evict(st *hstream, size int, ttl time.Duration, now time.Time) {
	k := 0
	for k < len(st.ents) && (len(st.ents)-k > size || now.Sub(st.ents[k].at) > ttl) {
		b := int64(len(st.ents[k].data) + histEntryOverhead)
		st.bytes -= b
		h.bytes.Add(-b)
		st.ents[k] = hentry{}
		k++
	}
	if k > 0 {
		st.ents = slices.Delete(st.ents, 0, k)
	}
}

func (h *histStore) append(st *hstream, data []byte, o histOpts, maxBytes int64, now time.Time) firetower.Position {
	h.evict(st, o.size-1, o.ttl, now)
	// Over the manager's bound, this stream gives up its oldest first.
	b := int64(len(data) + histEntryOverhead)
	for len(st.ents) > 0 && h.bytes.Load()+b > maxBytes {
		h.evict(st, len(st.ents)-1, o.ttl, now)
	}
	st.top++
	if data == nil {
		data = []byte{}
	}
	st.ents = append(st.ents, hentry{offset: st.top, data: data, at: now})
	st.bytes += b
	h.bytes.Add(b)
	st.last = now
	h.appends.Add(1)
	return firetower.Position{Offset: st.top, Epoch: st.epoch}
}

// read answers a query from st (the stripe locked, st evicted), with at
// most budget bytes of publications; budget is decreased by what it takes.
func (st *hstream) read(topic string, q HistItem, budget *int) HistItem {
	r := HistItem{Topic: topic, Offset: st.top, Epoch: st.epoch}
	n := len(st.ents)
	first := st.top - uint64(n) + 1
	from := st.top + 1
	limit := max(q.Limit, 0)
	switch {
	case q.Since:
		if q.Epoch != st.epoch || q.Offset > st.top || q.Offset+1 < first {
			return r
		}
		r.Recovered = true
		from = q.Offset + 1
		if limit == 0 {
			limit = int64(n)
		}
	case limit > 0:
		from = st.top - uint64(min(limit, int64(n))) + 1
	}
	if from > st.top || limit == 0 {
		return r
	}
	k := int(from - first) //nolint:gosec // G115: first <= from <= top and top-first < the number of entries held, an int
	cnt := min(n-k, int(min(limit, int64(n))))
	// What does not fit the reply: a recovery cannot be complete, the
	// latest publications are kept for a "last N".
	need := 0
	for i := k; i < k+cnt; i++ {
		need += len(st.ents[i].data) + 16
	}
	if need > *budget {
		if q.Since {
			r.Recovered = false
			return r
		}
		for need > *budget && cnt > 0 {
			need -= len(st.ents[k].data) + 16
			k++
			cnt--
		}
	}
	*budget -= need
	r.Pubs = make([]HistPub, 0, cnt)
	for i := k; i < k+cnt; i++ {
		r.Pubs = append(r.Pubs, HistPub{Offset: st.ents[i].offset, Data: st.ents[i].data})
	}
	return r
}

// appendHistory handles an APPEND from node origin (nil: from outside the
// cluster): it appends data and queues the DELIVER_ATs, and the reply when
// seq is set, with the topic's stripe locked. It returns the position and
// how many gateways the delivery was queued for.
func (s *Server) appendHistory(origin *session, seq uint64, topic string, data []byte, o histOpts) (firetower.Position, int) {
	h := &s.hist
	now := time.Now()
	s.maybeSweepHistory(now)
	sp := &h.stripes[histStripeOf(topic)]
	sp.mu.Lock()
	defer sp.mu.Unlock()
	st := h.get(sp, topic, o, now)
	pos := h.append(st, data, o, s.cfg.HistoryMaxBytes, now)
	s.publishes.Add(1)
	m := &Msg{Type: MsgDeliverAt, Topic: topic, Data: data, Seq: pos.Offset, Text: pos.Epoch}
	if origin != nil {
		m.Node = origin.node
	}
	s.mu.RLock()
	var targets []*session
	for node := range s.topics[topic] {
		if ss := s.sessions[node]; ss != nil {
			targets = append(targets, ss)
		}
	}
	for node := range sp.holds[topic] {
		if _, ok := s.topics[topic][node]; !ok {
			if ss := s.sessions[node]; ss != nil {
				targets = append(targets, ss)
			}
		}
	}
	s.mu.RUnlock()
	queued := 0
	if len(targets) > 0 {
		if frame, err := AppendFrame(nil, m); err == nil {
			for _, ss := range targets {
				if ss.send(frame, false) {
					s.deliveries.Add(1)
					queued++
				} else {
					s.dropped.Add(1)
				}
			}
		}
	}
	if origin != nil && seq != 0 {
		origin.sendMsg(&Msg{Type: MsgAppendReply, Seq: seq, Count: int64(pos.Offset), Text: pos.Epoch}) //nolint:gosec // G115: offsets count appends, far below 1<<63
	}
	return pos, queued
}

// queryHistory answers a HISTORY or RECOVER of ss: with every stripe
// involved locked, it reads the streams, for a RECOVER records the holds,
// and queues the reply.
func (s *Server) queryHistory(ss *session, m *Msg, recover bool) bool {
	o, err := s.histOptions(m)
	if err != nil {
		return ss.protocolError(err.Error())
	}
	qs, err := DecodeHistItems(m.Data)
	if err != nil {
		return ss.protocolError(err.Error())
	}
	for _, q := range qs {
		if err := checkTopic("HISTORY", q.Topic); err != nil {
			return ss.protocolError(err.Error())
		}
		if firetower.IsSystemTopic(q.Topic) {
			return ss.protocolError("system topics keep no history: " + q.Topic)
		}
	}
	h := &s.hist
	now := time.Now()
	s.maybeSweepHistory(now)
	idx := make([]int, 0, len(qs))
	for _, q := range qs {
		idx = append(idx, histStripeOf(q.Topic))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		h.stripes[i].mu.Lock()
	}
	defer func() {
		for _, i := range slices.Backward(idx) {
			h.stripes[i].mu.Unlock()
		}
	}()
	budget := max(s.cfg.MaxFrame-64<<10, s.cfg.MaxFrame/2) // room for the topics and framing
	rs := make([]HistItem, 0, len(qs))
	for _, q := range qs {
		sp := &h.stripes[histStripeOf(q.Topic)]
		rs = append(rs, h.get(sp, q.Topic, o, now).read(q.Topic, q, &budget))
	}
	if recover {
		s.mu.RLock()
		held := s.nholds[ss.node]
		s.mu.RUnlock()
		if held+len(qs) > s.cfg.MaxTopicsPerNode {
			return ss.protocolError(fmt.Sprintf("%v: node %d holds %d recoveries", ErrTooManyTopics, ss.node, held))
		}
		for _, q := range qs {
			sp := &h.stripes[histStripeOf(q.Topic)]
			if sp.holds == nil {
				sp.holds = make(map[string]map[uint16]int)
			}
			per := sp.holds[q.Topic]
			if per == nil {
				per = make(map[uint16]int, 1)
				sp.holds[q.Topic] = per
			}
			per[ss.node]++
		}
		s.mu.Lock()
		s.nholds[ss.node] += len(qs)
		s.mu.Unlock()
	}
	data, err := AppendHistItems(nil, rs)
	if err != nil {
		ss.sendMsg(&Msg{Type: MsgHistoryReply, Seq: m.Seq, Count: -1, Text: err.Error()})
		return true
	}
	ss.sendMsg(&Msg{Type: MsgHistoryReply, Seq: m.Seq, Data: data})
	return true
}

// recoverDone ends the holds of a RECOVER of node.
func (s *Server) recoverDone(node uint16, topics []TopicCount) {
	n := 0
	for _, tc := range topics {
		sp := &s.hist.stripes[histStripeOf(tc.Topic)]
		sp.mu.Lock()
		if per := sp.holds[tc.Topic]; per != nil && per[node] > 0 {
			n++
			if per[node]--; per[node] == 0 {
				delete(per, node)
			}
			if len(per) == 0 {
				delete(sp.holds, tc.Topic)
			}
		}
		sp.mu.Unlock()
	}
	s.mu.Lock()
	if s.nholds[node] -= n; s.nholds[node] <= 0 {
		delete(s.nholds, node)
	}
	s.mu.Unlock()
}

// dropHolds forgets every hold of a node whose session ended.
func (s *Server) dropHolds(node uint16) {
	s.mu.Lock()
	had := s.nholds[node] > 0
	delete(s.nholds, node)
	s.mu.Unlock()
	if !had {
		return
	}
	for i := range s.hist.stripes {
		sp := &s.hist.stripes[i]
		sp.mu.Lock()
		for topic, per := range sp.holds {
			delete(per, node)
			if len(per) == 0 {
				delete(sp.holds, topic)
			}
		}
		sp.mu.Unlock()
	}
}

// maybeSweepHistory, at most once a second, evicts expired publications
// everywhere and drops the streams left empty and idle past their TTL
// that no node has interest in (a later publish starts a new epoch).
func (s *Server) maybeSweepHistory(now time.Time) {
	h := &s.hist
	last := h.lastSweep.Load()
	if now.UnixNano()-last < int64(time.Second) || !h.lastSweep.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	for i := range h.stripes {
		sp := &h.stripes[i]
		sp.mu.Lock()
		for topic, st := range sp.streams {
			h.evict(st, len(st.ents), st.ttl, now)
			if len(st.ents) > 0 || now.Sub(st.last) <= st.ttl || len(sp.holds[topic]) > 0 {
				continue
			}
			s.mu.RLock()
			interest := len(s.topics[topic]) > 0
			s.mu.RUnlock()
			if !interest {
				delete(sp.streams, topic)
				h.streams.Add(-1)
			}
		}
		sp.mu.Unlock()
	}
}

// streamOptions returns the bounds topic's stream was last used with, and
// whether topic has a stream (a gateway made it: a history topic).
func (s *Server) streamOptions(topic string) (histOpts, bool) {
	sp := &s.hist.stripes[histStripeOf(topic)]
	sp.mu.Lock()
	defer sp.mu.Unlock()
	st := sp.streams[topic]
	if st == nil {
		return histOpts{}, false
	}
	return histOpts{size: st.size, ttl: st.ttl}, true
}

// PublishAt appends data to topic's stream (bounded by size and ttl, capped
// by the server's bounds) and delivers it with its position to every
// gateway with interest: a publish from outside the cluster on a history
// topic. Its errors are those of Publish.
func (s *Server) PublishAt(topic string, data []byte, size int, ttl time.Duration) (firetower.Position, error) {
	if err := firetower.ValidateTopic(topic); err != nil {
		return firetower.Position{}, err
	}
	if firetower.IsSystemTopic(topic) {
		return firetower.Position{}, &firetower.Error{Code: firetower.CodeForbidden, Message: "topics starting with " + firetower.SystemTopicPrefix + " are reserved for the nodes of the cluster"}
	}
	if size <= 0 || ttl <= 0 {
		return firetower.Position{}, fmt.Errorf("manager: history size %d and ttl %v must be > 0", size, ttl)
	}
	o := histOpts{size: min(size, s.cfg.HistoryMaxSize), ttl: min(ttl, s.cfg.HistoryMaxTTL)}
	pos, _ := s.appendHistory(nil, 0, topic, append([]byte(nil), data...), o)
	return pos, nil
}
