package manager

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/firetower-go/firetower"
)

// The gateway side of history (history.go has the design): the link is a
// firetower.HistoryPoster. Appends and queries go to the manager that
// publishes go to (the first healthy one); the offsets come back in
// DELIVER_ATs, to the publishing node as to every other.
//
// The seam of a recovery: Recover registers a hold for each topic before
// its RECOVER is sent. The peer's reader marks the holds when the reply
// arrives (deliveries read before it are of offsets up to the reply's top
// and go through as usual: the recovering connection is not subscribed
// yet); deliveries of those topics read after the reply wait in the hold
// while the Tower's callback subscribes the connection and queues the
// replay, and are then passed on, only those above the top. Recoveries of
// one topic on one gateway take turns (a striped lock), so a hold has one
// top.

var (
	_ firetower.HistoryPoster = (*link)(nil)
	_ firetower.HistoryLink   = (*link)(nil)
)

// holdMaxBytes bounds what one hold keeps; past it deliveries are dropped
// and counted (ClientStats.HoldDropped).
const holdMaxBytes = 8 << 20

type linkHistory struct {
	turns [histStripes]sync.Mutex // recoveries of one topic take turns

	mu    sync.Mutex
	holds map[string]*hold

	bytes, streams atomic.Int64 // the manager's, from its PONGs and replies
}

type hold struct {
	p       *peer
	seq     uint64
	replied bool
	buf     []heldDelivery
	bytes   int
}

type heldDelivery struct {
	data []byte
	pos  firetower.Position
}

// onDeliverAt is a DELIVER_AT read from p.
func (l *link) onDeliverAt(p *peer, m *Msg) {
	l.c.delivered.Add(1)
	pos := firetower.Position{Offset: m.Seq, Epoch: m.Text}
	h := &l.hist
	h.mu.Lock()
	if hd := h.holds[m.Topic]; hd != nil && hd.p == p && hd.replied {
		if hd.bytes+len(m.Data) > holdMaxBytes {
			l.c.holdDropped.Add(1)
		} else {
			hd.buf = append(hd.buf, heldDelivery{data: m.Data, pos: pos})
			hd.bytes += len(m.Data)
		}
		h.mu.Unlock()
		return
	}
	h.mu.Unlock()
	deliverAt(l.node, m.Topic, m.Data, pos)
}

// onHistoryReply marks the holds of a RECOVER whose reply p read.
func (l *link) onHistoryReply(p *peer, m *Msg) {
	h := &l.hist
	h.mu.Lock()
	for _, hd := range h.holds {
		if hd.p == p && hd.seq == m.Seq {
			hd.replied = true
		}
	}
	h.mu.Unlock()
}

func deliverAt(n firetower.Node, topic string, data []byte, pos firetower.Position) {
	if hn, ok := n.(firetower.HistoryNode); ok {
		hn.DeliverAt(topic, data, pos)
		return
	}
	n.Deliver(topic, data)
}

func histMsg(typ uint8, topic string, data []byte, opts firetower.HistoryOptions) *Msg {
	return &Msg{Type: typ, Topic: topic, Data: data, Count: int64(opts.Size), Text: formatTTL(opts.TTL)}
}

// Post implements firetower.HistoryPoster: an APPEND queued like a PUB.
func (l *link) Post(_ context.Context, topic string, data []byte, opts firetower.HistoryOptions) error {
	f, err := AppendFrame(nil, histMsg(MsgAppend, topic, data, opts))
	if err != nil {
		return err
	}
	if p := l.healthy(); p != nil && p.enqueue(f) {
		l.c.published.Add(1)
		return nil
	}
	l.c.publishFailed.Add(1)
	return ErrNoManager
}

// Append implements firetower.HistoryLink: an APPEND whose reply gives
// the position. It waits for the manager (up to ctx and RequestTimeout);
// local is not called, the manager delivers to this node as to the
// others.
func (l *link) Append(ctx context.Context, topic string, data []byte, opts firetower.HistoryOptions, _ func(firetower.Position)) (firetower.Position, error) {
	p := l.healthy()
	if p == nil {
		l.c.publishFailed.Add(1)
		return firetower.Position{}, ErrNoManager
	}
	r, err := l.request(ctx, p, histMsg(MsgAppend, topic, data, opts))
	if err != nil {
		l.c.publishFailed.Add(1)
		return firetower.Position{}, err
	}
	if r.Count < 0 {
		return firetower.Position{}, fmt.Errorf("manager %s: %s", p.addr, r.Text)
	}
	l.c.published.Add(1)
	return firetower.Position{Offset: uint64(r.Count), Epoch: r.Text}, nil
}

func toItems(qs []firetower.HistoryQuery) []HistItem {
	items := make([]HistItem, len(qs))
	for i, q := range qs {
		items[i] = HistItem{Topic: q.Topic, Limit: int64(q.Limit)}
		if q.Since != nil {
			items[i].Since, items[i].Offset, items[i].Epoch = true, q.Since.Offset, q.Since.Epoch
		}
	}
	return items
}

// results checks a HISTORY_REPLY against its queries.
func (l *link) results(p *peer, qs []firetower.HistoryQuery, r *Msg) ([]firetower.HistoryResult, error) {
	if r.Count < 0 {
		return nil, fmt.Errorf("manager %s: %s", p.addr, r.Text)
	}
	items, err := DecodeHistItems(r.Data)
	if err != nil {
		return nil, err
	}
	if len(items) != len(qs) {
		return nil, fmt.Errorf("manager %s: %d history results for %d queries", p.addr, len(items), len(qs))
	}
	out := make([]firetower.HistoryResult, len(items))
	for i, it := range items {
		if it.Topic != qs[i].Topic { //nolint:gosec // G602: len(items) == len(qs), checked above
			return nil, fmt.Errorf("manager %s: a history result for %q, not %q", p.addr, it.Topic, qs[i].Topic) //nolint:gosec // G602: len(items) == len(qs), checked above
		}
		res := firetower.HistoryResult{Topic: it.Topic, Top: firetower.Position{Offset: it.Offset, Epoch: it.Epoch}, Recovered: it.Recovered}
		if len(it.Pubs) > 0 {
			res.Publications = make([]firetower.Publication, len(it.Pubs))
			for j, hp := range it.Pubs {
				res.Publications[j] = firetower.Publication{Offset: hp.Offset, Data: hp.Data}
			}
		}
		out[i] = res
	}
	return out, nil
}

func queryOpts(qs []firetower.HistoryQuery) (firetower.HistoryOptions, error) {
	if len(qs) == 0 {
		return firetower.HistoryOptions{}, errors.New("manager: no history query")
	}
	if len(qs) > MaxHistItems {
		return firetower.HistoryOptions{}, fmt.Errorf("manager: %d history queries (limit %d)", len(qs), MaxHistItems)
	}
	o := qs[0].Options
	if o.Size <= 0 || o.TTL <= 0 {
		return o, fmt.Errorf("manager: history size %d and ttl %v must both be > 0", o.Size, o.TTL)
	}
	return o, nil
}

// History implements firetower.HistoryLink.
func (l *link) History(ctx context.Context, q firetower.HistoryQuery) (firetower.HistoryResult, error) {
	qs := []firetower.HistoryQuery{q}
	o, err := queryOpts(qs)
	if err != nil {
		return firetower.HistoryResult{}, err
	}
	p := l.healthy()
	if p == nil {
		return firetower.HistoryResult{}, ErrNoManager
	}
	data, err := AppendHistItems(nil, toItems(qs))
	if err != nil {
		return firetower.HistoryResult{}, err
	}
	r, err := l.request(ctx, p, histMsg(MsgHistory, "", data, o))
	if err != nil {
		return firetower.HistoryResult{}, err
	}
	rs, err := l.results(p, qs, r)
	if err != nil {
		return firetower.HistoryResult{}, err
	}
	return rs[0], nil
}

// Recover implements firetower.HistoryLink (see the seam above).
func (l *link) Recover(ctx context.Context, qs []firetower.HistoryQuery, fn func([]firetower.HistoryResult)) error {
	o, err := queryOpts(qs)
	if err != nil {
		return err
	}
	h := &l.hist
	idx := make([]int, 0, len(qs))
	topics := make([]string, 0, len(qs))
	for _, q := range qs {
		if !slices.Contains(topics, q.Topic) {
			topics = append(topics, q.Topic)
			idx = append(idx, histStripeOf(q.Topic))
		}
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		h.turns[i].Lock()
	}
	defer func() {
		for _, i := range slices.Backward(idx) {
			h.turns[i].Unlock()
		}
	}()
	p := l.healthy()
	if p == nil {
		return ErrNoManager
	}
	data, err := AppendHistItems(nil, toItems(qs))
	if err != nil {
		return err
	}
	m := histMsg(MsgRecover, "", data, o)
	m.Seq = l.seq.Add(1)
	h.mu.Lock()
	if h.holds == nil {
		h.holds = make(map[string]*hold)
	}
	for _, tp := range topics {
		h.holds[tp] = &hold{p: p, seq: m.Seq}
	}
	h.mu.Unlock()
	r, err := l.requestSeq(ctx, p, m)
	var rs []firetower.HistoryResult
	if err == nil {
		rs, err = l.results(p, qs, r)
	}
	if err != nil {
		l.release(topics, nil)
		l.recoverDone(p, topics)
		return err
	}
	fn(rs)
	l.release(topics, rs)
	l.recoverDone(p, topics)
	return nil
}

// release ends the holds of topics, passing on what they kept above the
// tops of rs (everything when rs is nil).
func (l *link) release(topics []string, rs []firetower.HistoryResult) {
	h := &l.hist
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, tp := range topics {
		hd := h.holds[tp]
		delete(h.holds, tp)
		if hd == nil {
			continue
		}
		var top *firetower.Position
		for i := range rs {
			if rs[i].Topic == tp {
				top = &rs[i].Top
			}
		}
		for _, d := range hd.buf {
			if top == nil || d.pos.Epoch != top.Epoch || d.pos.Offset > top.Offset {
				deliverAt(l.node, tp, d.data, d.pos)
			}
		}
	}
}

// recoverDone tells the manager to stop holding topics for this node.
func (l *link) recoverDone(p *peer, topics []string) {
	m := &Msg{Type: MsgRecoverDone, Topics: make([]TopicCount, len(topics))}
	for i, tp := range topics {
		m.Topics[i] = TopicCount{Topic: tp, Count: 1}
	}
	if f, err := AppendFrame(nil, m); err == nil {
		p.mu.Lock()
		up := p.up
		p.mu.Unlock()
		if up {
			p.enqueueControl(f)
		}
	}
}

// HistoryStats implements firetower.HistoryLink: the history memory of the
// manager this gateway talks to, as it last reported it.
func (l *link) HistoryStats() firetower.HistoryStats {
	return firetower.HistoryStats{Streams: l.hist.streams.Load(), Bytes: l.hist.bytes.Load()}
}

// onPong records the manager's history memory a PONG carries.
func (l *link) onPong(p *peer, m *Msg) {
	if p != l.healthy() {
		return
	}
	l.hist.bytes.Store(max(m.Count, 0))
	if n, err := strconv.ParseInt(m.Text, 10, 64); err == nil {
		l.hist.streams.Store(max(n, 0))
	}
}
