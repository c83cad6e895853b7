package firetower

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/firetower-go/firetower/internal/protocol"
	"github.com/firetower-go/firetower/internal/wsproto"
	"github.com/firetower-go/firetower/transport"
)

// History and recovery (PROTOCOL.md, "Recovery").
//
// A Tower configured WithHistory keeps, for each topic it covers, a stream
// of the latest publications: each publish gets the next offset (+1 per
// publish of the topic) within the stream's epoch, a string that changes
// whenever the stream was lost (a new stream gets a new random epoch).
// Streams are kept by the Manager, through its Link's HistoryLink methods,
// so that every node of a cluster sees one stream per topic: the
// LocalManager keeps them in memory, shared by every Tower joined to it.
//
// The seam between replay and live delivery. Live deliveries reach a
// connection through its event loop's queue (Server.Broadcast); a replay is
// queued on the same loop queue (Conn.Send), and a loop applies its queue
// in order. HistoryLink.Recover runs its callback while no publish of the
// topics is delivered to this node: the LocalManager holds the topic's
// stripe lock both while a publish is appended and delivered to every node
// and while Recover's callback runs. Inside the callback the Tower adds the
// connection to the topic's subscribers, queues the ack with the positions
// and then the replayed publications (offsets since+1 .. TOP). A publish
// appended before the callback is in the stream (offset <= TOP) and its
// delivery, made before, did not include the connection; a publish after
// it gets an offset > TOP and its delivery, which includes the connection,
// is queued on the loop after the replay. So the client sees every offset
// once, in order, without buffering or per-connection filtering: the frame
// of a live delivery stays shared by every subscriber.
//
// A Manager whose link cannot hold deliveries this way (a remote one)
// implements the same contract by holding back, for the duration of the
// callback, the deliveries of those topics to this node and then passing
// on only those with an offset above the TOP it returned.

// Position is a place in a topic's stream: the offset of a publish within
// an epoch.
type Position struct {
	Offset uint64
	Epoch  string
}

// Publication is one publish kept in a topic's stream. Data is the
// publish's bytes, as given to Publish; it must not be modified.
type Publication struct {
	Offset uint64
	Data   []byte
}

// HistoryOptions bounds a topic's stream: at most Size publications, none
// older than TTL. Both are > 0.
type HistoryOptions struct {
	Size int
	TTL  time.Duration
}

func (o HistoryOptions) check() error {
	if o.Size <= 0 || o.TTL <= 0 {
		return fmt.Errorf("%w: history size %d and ttl %v must both be > 0", ErrBadOption, o.Size, o.TTL)
	}
	return nil
}

// HistoryQuery asks for a part of a topic's stream. With Since, the
// publications after it (at most Limit when Limit > 0), and Recovered
// says whether they are all there. Without Since, the latest Limit
// publications (none when Limit is 0).
type HistoryQuery struct {
	Topic   string
	Since   *Position
	Limit   int
	Options HistoryOptions
}

// HistoryResult is a stream's answer: Publications oldest first, Top the
// position of the latest publish (offset 0: none yet in this epoch).
// Recovered is true when the query had a Since in the stream's epoch whose
// following publications are all still kept; false otherwise (no Since,
// another epoch, or evicted), and then nothing is returned for Since.
type HistoryResult struct {
	Topic        string
	Publications []Publication
	Top          Position
	Recovered    bool
}

// HistoryStats is the memory a Manager's history holds.
type HistoryStats struct {
	Streams int64 // topics with a stream
	Bytes   int64 // data and bookkeeping of the publications kept
}

// HistoryLink is what a Link implements to keep history (the LocalManager's
// does). A Tower configured WithHistory refuses to start with a Link that
// does not.
type HistoryLink interface {
	Link
	// Append keeps data in topic's stream (created with a new epoch if
	// need be, bounded by opts) at the next offset and delivers it: to
	// this node by calling local with its position (or, for a
	// HistoryPoster, by HistoryNode.DeliverAt like every other node), to
	// every other node with interest by HistoryNode.DeliverAt (Node.Deliver
	// for a Node without it). Deliveries of one topic reach each node in
	// offset order, and never during a Recover callback of that topic on
	// that node. It must not wait for the network (see Link.Publish),
	// unless the link is a HistoryPoster; it does not keep data.
	Append(ctx context.Context, topic string, data []byte, opts HistoryOptions, local func(Position)) (Position, error)
	// History answers q (creating the stream, empty, if need be).
	History(ctx context.Context, q HistoryQuery) (HistoryResult, error)
	// Recover answers every query and calls fn with the results, in the
	// order of qs, before it returns; while fn runs, no publish of those
	// topics is delivered to this node, and every publish not in the
	// results (offset above Top) is delivered to it after fn returns. fn is
	// not called when Recover returns an error.
	Recover(ctx context.Context, qs []HistoryQuery, fn func([]HistoryResult)) error
	// HistoryStats reports the history's memory.
	HistoryStats() HistoryStats
}

// HistoryPoster is a HistoryLink whose Append waits for the network (a
// remote Manager assigns the offsets): Post appends without waiting and
// without the position, and the Manager delivers the publish to every node
// with interest, this one included, through HistoryNode.DeliverAt. A
// Tower uses Post where nobody asks for the position (a client's publish,
// on its event loop) and Append where someone does (PublishOffset, the
// HTTP and gRPC APIs). Post must not wait for the network (see
// Link.Publish).
type HistoryPoster interface {
	HistoryLink
	Post(ctx context.Context, topic string, data []byte, opts HistoryOptions) error
}

// HistoryNode is a Node whose deliveries carry the publish's position in
// the topic's stream. A Manager that keeps history calls DeliverAt instead
// of Deliver for the publishes it appended.
type HistoryNode interface {
	Node
	DeliverAt(topic string, data []byte, pos Position)
}

// historyConfig is WithHistory's configuration.
type historyConfig struct {
	opts     HistoryOptions
	prefixes []string
}

// WithHistory keeps history for topics, so that clients may recover what
// they missed and ask for the latest publications (PROTOCOL.md,
// "Recovery"): at most size publications per topic, none older than ttl
// (a stream left idle past ttl with no subscribers anywhere is dropped; a
// later publish starts a new epoch). With prefixes, only topics starting
// with one of them keep history; without, every topic except the system
// ones. Both size and ttl must be > 0. Default: no history.
//
// The Manager keeps the streams (the LocalManager in memory, shared by the
// Towers joined to it); a Manager whose Link is not a HistoryLink makes
// Start fail. Every Tower of a cluster must be given the same WithHistory:
// a Tower without it publishes past the streams, and its subscribers get
// no offsets.
func WithHistory(size int, ttl time.Duration, prefixes ...string) Option {
	return func(c *config) error {
		o := HistoryOptions{Size: size, TTL: ttl}
		if err := o.check(); err != nil {
			return err
		}
		for _, p := range prefixes {
			if p == "" {
				return fmt.Errorf("%w: an empty history prefix (give none for every topic)", ErrBadOption)
			}
		}
		c.history = &historyConfig{opts: o, prefixes: append([]string(nil), prefixes...)}
		return nil
	}
}

// towerHistory is a started Tower's history.
type towerHistory struct {
	historyConfig
	link HistoryLink
}

// covers reports whether topic keeps history.
func (h *towerHistory) covers(topic string) bool {
	if IsSystemTopic(topic) {
		return false
	}
	if len(h.prefixes) == 0 {
		return true
	}
	for _, p := range h.prefixes {
		if strings.HasPrefix(topic, p) {
			return true
		}
	}
	return false
}

// errNoHistoryLink: WithHistory with a Manager that keeps no history.
var errNoHistoryLink = errors.New("firetower: WithHistory needs a Manager whose Link keeps history (HistoryLink); this one does not")

// startHistory sets up history at Start, once the Manager is joined.
func (t *Tower) startHistory(link Link) error {
	if t.cfg.history == nil {
		return nil
	}
	hl, ok := link.(HistoryLink)
	if !ok {
		return errNoHistoryLink
	}
	t.hist = &towerHistory{historyConfig: *t.cfg.history, link: hl}
	return nil
}

// historyTopic reports whether topic keeps history on this Tower.
func (t *Tower) historyTopic(topic string) bool {
	return t.hist != nil && t.hist.covers(topic)
}

// publishHistory appends a publish to its topic's stream; the Manager
// delivers it, here through deliverAt.
func (t *Tower) publishHistory(ctx context.Context, topic string, j, raw []byte) (Position, error) {
	return t.appendHistory(ctx, topic, j, raw, false)
}

// appendHistory is publishHistory; wantPos says whether the caller needs
// the position (a HistoryPoster's Post gives none, and waits for nothing).
func (t *Tower) appendHistory(ctx context.Context, topic string, j, raw []byte, wantPos bool) (Position, error) {
	if p, ok := t.hist.link.(HistoryPoster); ok && !wantPos {
		if err := p.Post(ctx, topic, raw, t.hist.opts); err != nil {
			t.stats.remotePublishFailed.Add(1)
			return Position{}, &Error{Code: CodeUnavailable, Message: "the cluster could not take the message: " + err.Error()}
		}
		return Position{}, nil
	}
	pos, err := t.hist.link.Append(ctx, topic, raw, t.hist.opts, func(p Position) {
		t.deliverAt(topic, j, raw, p.Offset)
	})
	if err != nil {
		t.stats.remotePublishFailed.Add(1)
		return Position{}, &Error{Code: CodeUnavailable, Message: "the cluster could not take the message: " + err.Error()}
	}
	return pos, nil
}

// PublishOffset is Publish that also returns the publish's position in
// its topic's stream; the zero Position for a topic without history.
func (t *Tower) PublishOffset(ctx context.Context, topic string, data []byte) (Position, error) {
	if t.state.Load() != 1 {
		return Position{}, ErrClosed
	}
	if !t.historyTopic(topic) {
		return Position{}, t.Publish(ctx, topic, data)
	}
	if err := protocol.ValidateTopic(topic); err != nil {
		return Position{}, &Error{Code: CodeInvalidTopic, Message: err.Error()}
	}
	return t.appendHistory(ctx, topic, jsonData(data), data, true)
}

// jsonData is data as delivered in JSON: as it is when valid JSON, as a
// JSON string otherwise.
func jsonData(data []byte) []byte {
	if json.Valid(data) {
		return data
	}
	return protocol.AppendJSONString(nil, string(data))
}

// History returns the publications kept for topic, oldest first: with
// since, those after it (Recovered says whether they all still are), else
// the latest; at most limit (limit <= 0: all kept). It fails with code
// "not_found" for a topic without history.
func (t *Tower) History(ctx context.Context, topic string, since *Position, limit int) (HistoryResult, error) {
	if t.state.Load() != 1 {
		return HistoryResult{}, ErrClosed
	}
	if err := protocol.ValidateTopic(topic); err != nil {
		return HistoryResult{}, &Error{Code: CodeInvalidTopic, Message: err.Error()}
	}
	if !t.historyTopic(topic) {
		return HistoryResult{}, &Error{Code: "not_found", Message: "topic keeps no history: " + topic}
	}
	if limit <= 0 || limit > t.hist.opts.Size {
		limit = t.hist.opts.Size
	}
	r, err := t.hist.link.History(ctx, HistoryQuery{Topic: topic, Since: since, Limit: limit, Options: t.hist.opts})
	if err != nil {
		return HistoryResult{}, &Error{Code: CodeUnavailable, Message: "the cluster could not read the history: " + err.Error()}
	}
	return r, nil
}

// historyStats is the Manager's history memory (zero without history).
func (t *Tower) historyStats() HistoryStats {
	if t.hist == nil {
		return HistoryStats{}
	}
	return t.hist.link.HistoryStats()
}

// DeliverAt implements HistoryNode.
func (n towerNode) DeliverAt(topic string, data []byte, pos Position) {
	if IsSystemTopic(topic) {
		n.Deliver(topic, data)
		return
	}
	if !n.t.historyTopic(topic) { // configured differently from the publisher's Tower
		n.Deliver(topic, data)
		return
	}
	n.t.stats.remoteDeliveries.Add(1)
	n.t.deliverAt(topic, jsonData(data), data, pos.Offset)
}

// deliverAt is deliverLocal for a publish with an offset: each codec's
// frame is built once and shared by every subscriber.
func (t *Tower) deliverAt(topic string, j, raw []byte, offset uint64) {
	subs := t.index.get(topic)
	if subs == nil || subs.count == 0 {
		return
	}
	t.stats.publishes.Add(1)
	var frames [2]*transport.Frame
	if subs.codecs[protocol.JSON] > 0 {
		frames[protocol.JSON] = t.jsonFrameAt(subs.quoted, j, raw, offset)
	}
	if subs.codecs[protocol.Msgpack] > 0 {
		frames[protocol.Msgpack] = t.msgpackFrameAt(topic, j, offset)
	}
	t.fanOut(subs, frames)
}

// jsonFrameAt frames a JSON delivery with its offset (raw data, without
// offset, in legacy mode).
func (t *Tower) jsonFrameAt(quoted string, j, raw []byte, offset uint64) *transport.Frame {
	if t.cfg.legacy {
		return t.legacyFrame(raw)
	}
	n := protocol.DeliveryJSONAtSize(quoted, j, offset)
	f := t.srv.NewFrame(wsproto.HeaderSize(n) + n)
	f.B = wsproto.AppendHeader(f.B, ws.OpText, n)
	f.B = protocol.AppendDeliveryJSONAt(f.B, quoted, j, offset)
	return f
}

func (t *Tower) legacyFrame(raw []byte) *transport.Frame {
	op := ws.OpText
	if !utf8.Valid(raw) {
		op = ws.OpBinary
	}
	return t.srv.NewMessageFrame(op, raw)
}

func (t *Tower) msgpackFrameAt(topic string, j []byte, offset uint64) *transport.Frame {
	p, err := protocol.AppendDeliveryMsgpackAt(nil, topic, j, offset)
	if err != nil {
		t.log.Error("firetower: cannot encode a delivery as msgpack", "topic", topic, "err", err)
		return nil
	}
	return t.srv.NewMessageFrame(ws.OpBinary, p)
}

// historyQueries are the recovery queries of a subscribe: one per topic
// with history (since for the topics it names, else last, capped at the
// stream size).
func (t *Tower) historyQueries(req *protocol.Request, topics []string) []HistoryQuery {
	var qs []HistoryQuery
	for _, tp := range topics {
		if !t.hist.covers(tp) || hasQuery(qs, tp) {
			continue
		}
		q := HistoryQuery{Topic: tp, Options: t.hist.opts}
		for _, s := range req.Since {
			if s.Topic == tp {
				q.Since = &Position{Offset: s.Offset, Epoch: s.Epoch}
			}
		}
		if q.Since == nil && req.HasLast {
			q.Limit = min(req.Last, t.hist.opts.Size)
		}
		qs = append(qs, q)
	}
	return qs
}

func hasQuery(qs []HistoryQuery, topic string) bool {
	for _, q := range qs {
		if q.Topic == topic {
			return true
		}
	}
	return false
}

// subscribeHistory ends a subscribe whose topics include history topics
// (qs): it adds the connection to the added topics' subscribers, sends the
// ack with the positions and replays, all inside Recover (see the seam
// above). It reports false when the Manager could not, after undoing the
// subscription (the client got an error).
func (t *Tower) subscribeHistory(c *Conn, req *protocol.Request, topics, added []string, qs []HistoryQuery) bool {
	err := t.hist.link.Recover(t.ctx, qs, func(rs []HistoryResult) {
		for _, tp := range added {
			t.index.update(tp, c.tc, c.codec, true, func(n int64) { t.reportInterest(tp, n) })
		}
		if len(added) > 0 {
			if err := t.link.Flush(t.ctx); err != nil {
				t.log.Debug("firetower: subscription not yet confirmed by the cluster", "err", err)
			}
		}
		pos := make([]protocol.TopicPosition, len(rs))
		for i, r := range rs {
			pos[i] = protocol.TopicPosition{Topic: r.Topic, Epoch: r.Top.Epoch, Offset: r.Top.Offset, Recovered: r.Recovered}
		}
		// Acked with an id as usual, and also without one when the client
		// asked to recover (so it learns the positions); a v0.4 client, which
		// sends neither, still gets no ack.
		if req.ID != nil || req.HasSince || req.HasLast {
			c.reply(func(r protocol.Reply, dst []byte) []byte { return r.AckPositions(dst, req.ID, topics, pos) })
		}
		for _, r := range rs {
			t.replay(c, r.Topic, r.Publications)
		}
	})
	if err == nil {
		return true
	}
	c.mu.Lock()
	kept := c.topics[:0]
	for _, tp := range c.topics {
		if !containsString(added, tp) {
			kept = append(kept, tp)
		}
	}
	clear(c.topics[len(kept):])
	c.topics = kept
	c.mu.Unlock()
	c.sendError(req.ID, &Error{Code: CodeUnavailable, Message: "the cluster could not read the history: " + err.Error()})
	return false
}

// replay queues pubs for c alone, in order, as deliveries.
func (t *Tower) replay(c *Conn, topic string, pubs []Publication) {
	if len(pubs) == 0 || c.gone.Load() {
		return
	}
	quoted := string(protocol.AppendJSONString(nil, topic))
	for _, p := range pubs {
		j := jsonData(p.Data)
		var f *transport.Frame
		if c.codec == protocol.Msgpack {
			f = t.msgpackFrameAt(topic, j, p.Offset)
		} else {
			f = t.jsonFrameAt(quoted, j, p.Data, p.Offset)
		}
		if f == nil {
			continue
		}
		c.tc.Send(f)
		f.Release()
		t.stats.deliveries.Add(1)
	}
}
