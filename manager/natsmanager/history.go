package natsmanager

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/firetower-go/firetower"
)

// History on NATS JetStream (firetower's HistoryLink, PROTOCOL.md
// "Recovery").
//
// Each history topic has a JetStream stream of its own (a topic's offsets
// must grow by one per publish of that topic, and a stream's sequence
// numbers do): named StreamName(topic), capturing the subject
// <SubjectPrefix>h.<base64url(topic)>, bounded by the Tower's size
// (MaxMsgs) and TTL (MaxAge), its storage Config.HistoryStorage. The
// stream's sequence numbers are the offsets, and its epoch is made from
// its creation time, so a stream deleted and made again has another. A
// publish to a history topic goes to the stream subject (a JetStream
// publish with an acknowledgement when the position is wanted, a core
// publish otherwise); the stream republishes every message it stores, in
// order and with its sequence number (Nats-Sequence), on
// <SubjectPrefix>hr.<base64url(topic)>, which is the subject gateways
// subscribe to for a history topic: every gateway, the publishing one too,
// gets the publish with its offset from there.
//
// The seam of a recovery. A gateway remembers, per history topic it is
// subscribed to, the latest offset delivered to its subscribers (a
// received offset at or below it is a duplicate and dropped). Recover
// holds the topic's deliveries (they wait in the hold) and takes as the
// seam TOP that latest offset, or, when the gateway was not subscribed
// yet, the stream's last sequence read after the subscription is in place
// (what arrives at or below it is then dropped); the replay is read from
// the stream up to TOP, the Tower's callback queues it, and the held
// deliveries, all above TOP, go on after it. Recoveries of one topic on
// one gateway take turns.

// defaultHistoryTimeout bounds the JetStream requests of a recovery.
const defaultHistoryTimeout = 5 * time.Second

// holdMaxMsgs bounds the deliveries one hold keeps; past it they are
// dropped and counted (Stats.Dropped).
const holdMaxMsgs = 1 << 16

type natsHistory struct {
	js    jetstream.JetStream
	turns [64]sync.Mutex

	smu     sync.Mutex
	streams map[string]*topicStream // topic -> its stream, as last seen

	hmu   sync.Mutex
	holds map[string]*natsHold
	seen  map[string]uint64 // topic -> latest offset delivered (subscribed topics)
	hist  map[string]bool   // topics known to keep history (their subscription is on hr.)
	subd  map[string]bool   // history topics subscribed to now

	dups, held uint64 // guarded by hmu
}

type topicStream struct {
	s     jetstream.Stream
	epoch string
	bytes uint64
}

type natsHold struct {
	buf []heldMsg
}

type heldMsg struct {
	data []byte
	seq  uint64
}

// StreamName is the JetStream stream that keeps topic's history.
func (m *Manager) StreamName(topic string) string {
	return streamName(m.cfg.SubjectPrefix, topic)
}

func streamName(prefix, topic string) string {
	h := sha256.Sum256([]byte(topic))
	return strings.ReplaceAll(strings.TrimSuffix(prefix, "."), ".", "_") + "_h_" + hex.EncodeToString(h[:20])
}

// HistorySubject is the subject of topic's stream: for a topic with
// history, another NATS client (a backend) publishes here, not on
// Subject(topic), for the publish to be kept and delivered with its offset
// (the stream must exist: a gateway makes it at its first use of the
// topic).
func (m *Manager) HistorySubject(topic string) string {
	return histSubject(m.cfg.SubjectPrefix, topic)
}

func histSubject(prefix, topic string) string {
	return prefix + "h." + base64.RawURLEncoding.EncodeToString([]byte(topic))
}

func republishSubject(prefix, topic string) string {
	return prefix + "hr." + base64.RawURLEncoding.EncodeToString([]byte(topic))
}

func republishTopic(prefix, subject string) (string, bool) {
	tok, ok := strings.CutPrefix(subject, prefix+"hr.")
	if !ok {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) == 0 {
		return "", false
	}
	return string(b), true
}

func epochOf(info *jetstream.StreamInfo) string {
	return strconv.FormatInt(info.Created.UnixNano(), 36)
}

// stream returns topic's stream, made or updated to opts the first time
// this gateway uses it.
func (l *link) stream(ctx context.Context, topic string, opts firetower.HistoryOptions) (*topicStream, error) {
	h := &l.h
	h.smu.Lock()
	ts := h.streams[topic]
	h.smu.Unlock()
	if ts != nil {
		return ts, nil
	}
	if err := checkOpts(opts); err != nil {
		return nil, err
	}
	prefix := l.m.cfg.SubjectPrefix
	ctx, cancel := context.WithTimeout(ctx, l.m.cfg.HistoryTimeout)
	defer cancel()
	s, err := h.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:      streamName(prefix, topic),
		Subjects:  []string{histSubject(prefix, topic)},
		Storage:   l.m.cfg.HistoryStorage,
		Retention: jetstream.LimitsPolicy,
		Discard:   jetstream.DiscardOld,
		MaxMsgs:   int64(opts.Size),
		MaxAge:    opts.TTL,
		Replicas:  l.m.cfg.HistoryReplicas,
		RePublish: &jetstream.RePublish{Source: histSubject(prefix, topic), Destination: republishSubject(prefix, topic)},
	})
	if err != nil {
		return nil, fmt.Errorf("natsmanager: the history stream of %q: %w", topic, err)
	}
	info := s.CachedInfo()
	ts = &topicStream{s: s, epoch: epochOf(info), bytes: info.State.Bytes}
	h.smu.Lock()
	if old := h.streams[topic]; old != nil {
		ts = old
	} else {
		h.streams[topic] = ts
	}
	h.smu.Unlock()
	return ts, nil
}

// forget drops what is known of topic's stream (it was deleted or made
// again): the next use looks it up.
func (l *link) forget(topic string) {
	l.h.smu.Lock()
	delete(l.h.streams, topic)
	l.h.smu.Unlock()
}

var (
	_ firetower.HistoryPoster = (*link)(nil)
	_ firetower.HistoryLink   = (*link)(nil)
)

// Post implements firetower.HistoryPoster: a core publish on the stream's
// subject. The first publish of a topic on this gateway waits for the
// stream to be made or looked up.
func (l *link) Post(ctx context.Context, topic string, data []byte, opts firetower.HistoryOptions) error {
	if _, err := l.stream(ctx, topic, opts); err != nil {
		l.publishFailed.Add(1)
		return err
	}
	if err := l.nc.Publish(histSubject(l.m.cfg.SubjectPrefix, topic), data); err != nil {
		l.publishFailed.Add(1)
		return fmt.Errorf("natsmanager: publish: %w", err)
	}
	l.published.Add(1)
	return nil
}

// Append implements firetower.HistoryLink: a JetStream publish, whose
// acknowledgement gives the offset. local is not called: the publish comes
// back from the stream's republish subject like every other.
func (l *link) Append(ctx context.Context, topic string, data []byte, opts firetower.HistoryOptions, _ func(firetower.Position)) (firetower.Position, error) {
	for attempt := 0; ; attempt++ {
		ts, err := l.stream(ctx, topic, opts)
		if err != nil {
			l.publishFailed.Add(1)
			return firetower.Position{}, err
		}
		actx, cancel := context.WithTimeout(ctx, l.m.cfg.HistoryTimeout)
		ack, err := l.h.js.Publish(actx, histSubject(l.m.cfg.SubjectPrefix, topic), data)
		cancel()
		if errors.Is(err, jetstream.ErrNoStreamResponse) && attempt == 0 {
			l.forget(topic) // deleted behind our back: make it again
			continue
		}
		if err != nil {
			l.publishFailed.Add(1)
			return firetower.Position{}, fmt.Errorf("natsmanager: history publish: %w", err)
		}
		l.published.Add(1)
		if ack.Sequence == 1 {
			// The first of a stream: perhaps one made again since we
			// looked (a new epoch).
			l.forget(topic)
			if ts2, err := l.stream(ctx, topic, opts); err == nil {
				ts = ts2
			}
		}
		return firetower.Position{Offset: ack.Sequence, Epoch: ts.epoch}, nil
	}
}

func checkOpts(o firetower.HistoryOptions) error {
	if o.Size <= 0 || o.TTL <= 0 {
		return fmt.Errorf("natsmanager: history size %d and ttl %v must both be > 0", o.Size, o.TTL)
	}
	return nil
}

// read answers q from topic's stream: the stream's state is looked up, and
// the publications up to the top fetched. The top is the stream's last
// sequence, or at, when given (and not past the last).
func (l *link) read(ctx context.Context, ts *topicStream, q firetower.HistoryQuery, at *uint64) (firetower.HistoryResult, error) {
	ctx, cancel := context.WithTimeout(ctx, l.m.cfg.HistoryTimeout)
	defer cancel()
	info, err := ts.s.Info(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			l.forget(q.Topic) // deleted behind our back: made again at the next use
		}
		return firetower.HistoryResult{}, fmt.Errorf("natsmanager: the history of %q: %w", q.Topic, err)
	}
	if e := epochOf(info); e != ts.epoch {
		ts.epoch = e
	}
	l.h.smu.Lock()
	ts.bytes = info.State.Bytes
	l.h.smu.Unlock()
	top := info.State.LastSeq
	if at != nil && *at < top {
		top = *at
	}
	r := firetower.HistoryResult{Topic: q.Topic, Top: firetower.Position{Offset: top, Epoch: ts.epoch}}
	first := info.State.FirstSeq
	if info.State.Msgs == 0 {
		first = info.State.LastSeq + 1
	}
	from := top + 1
	limit := max(q.Limit, 0)
	switch {
	case q.Since != nil:
		s := *q.Since
		if s.Epoch != ts.epoch || s.Offset > top || s.Offset+1 < first {
			return r, nil
		}
		r.Recovered = true
		from = s.Offset + 1
		if limit == 0 {
			limit = q.Options.Size
		}
	case limit > 0:
		from = max(top-uint64(min(limit, q.Options.Size))+1, first, 1) //nolint:gosec // G115: limit > 0 in this case and Size > 0 (checked when the options are set)
		if top < uint64(limit) {
			from = max(first, 1)
		}
	}
	if from > top || limit == 0 {
		return r, nil
	}
	want := int(min(top-from+1, uint64(limit))) //nolint:gosec // G115: at most limit, an int
	c, err := ts.s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   from,
	})
	if err != nil {
		return firetower.HistoryResult{}, fmt.Errorf("natsmanager: reading the history of %q: %w", q.Topic, err)
	}
	batch, err := c.Fetch(want, jetstream.FetchMaxWait(l.m.cfg.HistoryTimeout))
	if err != nil {
		return firetower.HistoryResult{}, fmt.Errorf("natsmanager: reading the history of %q: %w", q.Topic, err)
	}
	pubs := make([]firetower.Publication, 0, min(want, 1024))
	next := from
	for msg := range batch.Messages() {
		md, err := msg.Metadata()
		if err != nil {
			continue
		}
		seq := md.Sequence.Stream
		if seq > top {
			continue
		}
		if seq != next && q.Since != nil {
			// A publication gone between the state and the read (evicted):
			// the recovery cannot be complete.
			r.Recovered = false
			pubs = pubs[:0]
			for range batch.Messages() {
			}
			break
		}
		next = seq + 1
		d := msg.Data()
		if d == nil {
			d = []byte{}
		}
		pubs = append(pubs, firetower.Publication{Offset: seq, Data: d})
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
		return firetower.HistoryResult{}, fmt.Errorf("natsmanager: reading the history of %q: %w", q.Topic, err)
	}
	if q.Since != nil && r.Recovered && next != top+1 {
		r.Recovered = false
		pubs = nil
	}
	if len(pubs) > 0 {
		r.Publications = pubs
	}
	return r, nil
}

// History implements firetower.HistoryLink.
func (l *link) History(ctx context.Context, q firetower.HistoryQuery) (firetower.HistoryResult, error) {
	for attempt := 0; ; attempt++ {
		ts, err := l.stream(ctx, q.Topic, q.Options)
		if err != nil {
			return firetower.HistoryResult{}, err
		}
		r, err := l.read(ctx, ts, q, nil)
		if errors.Is(err, jetstream.ErrStreamNotFound) && attempt == 0 {
			continue // made again, empty, with a new epoch
		}
		return r, err
	}
}

// Recover implements firetower.HistoryLink (see the seam above).
func (l *link) Recover(ctx context.Context, qs []firetower.HistoryQuery, fn func([]firetower.HistoryResult)) error {
	h := &l.h
	var topics []string
	var idx []int
	for _, q := range qs {
		if err := checkOpts(q.Options); err != nil {
			return err
		}
		if !slices.Contains(topics, q.Topic) {
			topics = append(topics, q.Topic)
			idx = append(idx, turnOf(q.Topic))
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
	streams := make(map[string]*topicStream, len(topics))
	for _, q := range qs {
		if streams[q.Topic] != nil {
			continue
		}
		ts, err := l.stream(ctx, q.Topic, q.Options)
		if err != nil {
			return err
		}
		streams[q.Topic] = ts
	}
	// Hold the topics, and take the seam where the gateway already is.
	base := make(map[string]uint64, len(topics))
	h.hmu.Lock()
	for _, tp := range topics {
		h.hist[tp] = true
		h.holds[tp] = &natsHold{}
		if s, ok := h.seen[tp]; ok {
			base[tp] = s
		}
	}
	h.hmu.Unlock()
	// Subscribed (while the holds last, even with no subscriber yet).
	l.mu.Lock()
	for _, tp := range topics {
		l.recovering[tp]++
		l.dirtySubs[tp] = struct{}{}
	}
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		for _, tp := range topics {
			if l.recovering[tp]--; l.recovering[tp] <= 0 {
				delete(l.recovering, tp)
			}
			l.dirtySubs[tp] = struct{}{}
		}
		l.mu.Unlock()
		l.poke()
	}()
	err := l.Flush(ctx)
	rs := make([]firetower.HistoryResult, len(qs))
	if err == nil {
		for i, q := range qs {
			var at *uint64
			top, known := base[q.Topic]
			if known {
				at = &top
			}
			rs[i], err = l.read(ctx, streams[q.Topic], q, at)
			if err != nil {
				break
			}
			if !known { // what arrives up to the stream's last is in the replay
				base[q.Topic] = rs[i].Top.Offset
			}
		}
	}
	h.hmu.Lock()
	for _, tp := range topics {
		if err == nil {
			if _, ok := h.seen[tp]; !ok || h.seen[tp] < base[tp] {
				h.seen[tp] = base[tp]
			}
		}
	}
	h.hmu.Unlock()
	if err == nil {
		fn(rs)
	}
	l.release(topics, base)
	return err
}

func turnOf(topic string) int {
	x := uint32(2166136261)
	for i := 0; i < len(topic); i++ {
		x ^= uint32(topic[i])
		x *= 16777619
	}
	return int(x % 64)
}

// release ends the holds of topics, passing on what they kept above base.
func (l *link) release(topics []string, base map[string]uint64) {
	h := &l.h
	h.hmu.Lock()
	defer h.hmu.Unlock()
	for _, tp := range topics {
		hd := h.holds[tp]
		delete(h.holds, tp)
		if hd == nil {
			continue
		}
		epoch := l.epochOf(tp)
		for _, m := range hd.buf {
			if m.seq > base[tp] {
				l.delivered.Add(1)
				deliverAt(l.node, tp, m.data, firetower.Position{Offset: m.seq, Epoch: epoch})
			} else {
				h.dups++
			}
		}
	}
}

func (l *link) epochOf(topic string) string {
	l.h.smu.Lock()
	defer l.h.smu.Unlock()
	if ts := l.h.streams[topic]; ts != nil {
		return ts.epoch
	}
	return ""
}

func deliverAt(n firetower.Node, topic string, data []byte, pos firetower.Position) {
	if hn, ok := n.(firetower.HistoryNode); ok {
		hn.DeliverAt(topic, data, pos)
		return
	}
	n.Deliver(topic, data)
}

// deliverHistory is a message from a republish subject, on the delivery
// goroutine: a duplicate is dropped, a held topic's message waits, others
// are delivered.
func (l *link) deliverHistory(topic string, msg *nats.Msg) {
	seq, err := strconv.ParseUint(msg.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil || seq == 0 {
		return
	}
	h := &l.h
	h.hmu.Lock()
	if !h.subd[topic] {
		// Still in flight from a subscription that ended: nobody here
		// wants it, and it must not count as delivered.
		h.hmu.Unlock()
		return
	}
	last, ok := h.seen[topic]
	if seq == 1 && msg.Header.Get(jetstream.LastSequenceHeader) == "0" && last >= 1 {
		ok = false // the stream was made again: a new epoch
		l.forget(topic)
	}
	if ok && seq <= last {
		h.dups++
		h.hmu.Unlock()
		return
	}
	h.seen[topic] = seq
	if hd := h.holds[topic]; hd != nil {
		if len(hd.buf) >= holdMaxMsgs {
			h.held++
		} else {
			hd.buf = append(hd.buf, heldMsg{data: msg.Data, seq: seq})
		}
		h.hmu.Unlock()
		return
	}
	h.hmu.Unlock()
	l.delivered.Add(1)
	deliverAt(l.node, topic, msg.Data, firetower.Position{Offset: seq, Epoch: l.epochOf(topic)})
}

// subscribed marks a history topic subscribed (before its subscription is
// made), unsubscribed forgets it and its latest offset once its
// subscription ended (applyMu held for both).
func (l *link) subscribed(topic string) {
	l.h.hmu.Lock()
	l.h.subd[topic] = true
	l.h.hmu.Unlock()
}

func (l *link) unsubscribed(topic string) {
	l.h.hmu.Lock()
	delete(l.h.seen, topic)
	delete(l.h.subd, topic)
	l.h.hmu.Unlock()
}

// isHistory reports whether topic's subscription is on its republish
// subject.
func (l *link) isHistory(topic string) bool {
	l.h.hmu.Lock()
	defer l.h.hmu.Unlock()
	return l.h.hist[topic]
}

// HistoryStats implements firetower.HistoryLink: the streams this gateway
// uses and their bytes as last looked up.
func (l *link) HistoryStats() firetower.HistoryStats {
	l.h.smu.Lock()
	defer l.h.smu.Unlock()
	var b int64
	for _, ts := range l.h.streams {
		b += int64(ts.bytes) //nolint:gosec // G115: bytes held in memory, far below 1<<63
	}
	return firetower.HistoryStats{Streams: int64(len(l.h.streams)), Bytes: b}
}
