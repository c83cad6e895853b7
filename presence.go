package firetower

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gobwas/ws"

	"github.com/firetower-go/firetower/internal/protocol"
	"github.com/firetower-go/firetower/internal/topicpattern"
	"github.com/firetower-go/firetower/transport"
)

// Presence events (issue 15). For a topic the Tower tracks presence for
// (WithPresence), its subscribers receive
//
//	{"type":"join","topic":T,"conn":"<id>","user":"<user id or empty>"}
//	{"type":"leave","topic":T,"conn":"<id>","user":"<user id or empty>"}
//	{"type":"count","topic":T,"count":N}
//
// (msgpack maps with the same keys on msgpack connections), or, with
// WithLegacyDelivery, only the counts in the v0.4 shapes
// {"type":"onSubscribe","data":N} and {"type":"onUnsubscribe","data":N}.
//
// How it goes across a cluster: every node with local subscribers of T
// also has interest in the system topic presenceTopicPrefix+T (reported
// with T's own interest, under T's index shard lock, so the Managers need
// nothing new). A node that sees a local join or leave delivers the event
// to its own subscribers of T and publishes it there; the others deliver it
// to theirs. Counts are not summed from events (those are at most once):
// each node recounts T through Link.Count on its presence ticker
// (WithPresenceInterval) for a settle window after any event of T, and
// sends a count when the figure changed.

const (
	presenceTopicPrefix = SystemTopicPrefix + "presence/"
	// maxPresenceTopic is the longest topic presence covers: its presence
	// topic must itself be a valid topic for every Manager.
	maxPresenceTopic = protocol.MaxTopicLen - len(presenceTopicPrefix)
	// defaultPresenceInterval is how often counts are checked.
	defaultPresenceInterval = 250 * time.Millisecond
	// presenceSettle is how many ticks a topic is recounted after its
	// last event: long enough for a Manager whose counts lag (NATS reports
	// converge within about 50ms, or one ReportInterval when one is lost).
	presenceSettle = 8
	// maxPresenceID bounds a connection or user id in an event from
	// another node.
	maxPresenceID = 1024
)

// presenceConfig is WithPresence's configuration.
type presenceConfig struct {
	prefixes []string
	interval time.Duration
}

// WithPresence turns on presence events for topics starting with one of
// prefixes; with none, for every topic but the system ones. Topics longer
// than 236 bytes are never covered (their presence topic would not be a
// valid topic). Default: off. Every Tower of a cluster should be given the
// same WithPresence: a node without it neither sends nor relays events.
//
// A subscriber of a covered topic receives join and leave events for every
// connection that subscribes to or leaves the topic on any node (its own
// included), and a count event whenever the cluster-wide subscriber count
// (ConnectNum) changes. Counts are coalesced: one per presence interval
// (WithPresenceInterval) at most per topic, with the figure of that
// moment. How stale a count may be: it is read from the Manager at most one
// interval after a change is known to the node (a join or leave event
// arrived), so it lags the truth by one interval plus the Manager's own
// lag (none for the LocalManager and the manager node after the event;
// NATS: its report coalescing, 50ms by default), and converges within
// presenceSettle intervals even when an event was lost on the way. A
// subscriber also gets the count once right after it subscribed.
func WithPresence(prefixes ...string) Option {
	return func(c *config) error {
		for _, p := range prefixes {
			if p == "" {
				return fmt.Errorf("%w: an empty presence prefix (give none for every topic)", ErrBadOption)
			}
		}
		c.presence = &presenceConfig{prefixes: append([]string(nil), prefixes...), interval: defaultPresenceInterval}
		return nil
	}
}

// WithPresenceInterval sets how often presence counts are checked and sent
// (default 250ms): the coalescing period and the staleness bound of counts.
// It needs WithPresence, given before or after it.
func WithPresenceInterval(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: presence interval must be > 0", ErrBadOption)
		}
		c.presenceInterval = d
		return nil
	}
}

// presence is a started Tower's presence state.
type presence struct {
	presenceConfig
	// mu guards topics: the covered topics with local subscribers that
	// had an event within the last presenceSettle ticks. A leaf lock.
	mu     sync.Mutex
	topics map[string]*presTopic
}

// presTopic is one topic's count state.
type presTopic struct {
	last    int64   // last count sent to the subscribers (-1: none yet)
	quiet   int     // ticks since the last event
	joiners []*Conn // local subscribers that joined since the last tick
	dirty   bool    // an event since the last recount
	joined  bool    // ... and it was a join (legacy: onSubscribe)
}

func newPresence(cfg *presenceConfig, interval time.Duration) *presence {
	p := &presence{presenceConfig: *cfg, topics: make(map[string]*presTopic)}
	if interval > 0 {
		p.interval = interval
	}
	return p
}

// covers reports whether topic has presence events.
func (p *presence) covers(topic string) bool {
	if p == nil || IsSystemTopic(topic) || len(topic) > maxPresenceTopic {
		return false
	}
	if len(p.prefixes) == 0 {
		return true
	}
	for _, pre := range p.prefixes {
		if strings.HasPrefix(topic, pre) {
			return true
		}
	}
	return false
}

// presenceTopicOf returns the topic whose presence topic pt is.
func presenceTopicOf(pt string) (string, bool) {
	return strings.CutPrefix(pt, presenceTopicPrefix)
}

// presenceEvent is a join or leave as it travels between nodes.
type presenceEvent struct {
	Type  string `json:"type"`
	Topic string `json:"topic"`
	Conn  string `json:"conn"`
	User  string `json:"user"`
	Node  uint16 `json:"node"`
}

// reportInterest reports topic's local count n to the Manager, with its
// presence topic's when presence covers it. Called with topic's index
// shard lock held (see index.update).
func (t *Tower) reportInterest(topic string, n int64) {
	if t.pats != nil && topicpattern.IsPattern(topic) {
		t.pats.set(topic, n) // wildcard.go
	}
	t.link.SetInterest(topic, n)
	if t.pres.covers(topic) {
		t.link.SetInterest(presenceTopicPrefix+topic, n)
	}
}

// presenceChange handles local joins (join true) or leaves of c, once they
// are in effect cluster-wide as far as Link.Flush could tell: events to the
// local subscribers and to the other nodes, and a recount.
func (t *Tower) presenceChange(c *Conn, topics []string, join bool) {
	if t.pres == nil || c.system {
		return
	}
	kind := protocol.PresenceLeave
	if join {
		kind = protocol.PresenceJoin
	}
	for _, tp := range topics {
		if !t.pres.covers(tp) {
			continue
		}
		ev := presenceEvent{Type: kind, Topic: tp, Conn: c.ID(), User: c.UserID(), Node: t.cfg.nodeID}
		t.pres.mark(tp, c, join) // before the event: whoever sees it, the tick sees the mark
		t.presenceLocal(&ev)
		b, err := json.Marshal(&ev)
		if err != nil {
			continue
		}
		if err := t.link.Publish(t.ctx, presenceTopicPrefix+tp, b); err != nil {
			t.stats.remotePublishFailed.Add(1)
		}
	}
}

// mark notes an event of topic for the next tick; a joining c gets the
// count then even when it did not change.
func (p *presence) mark(topic string, c *Conn, join bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.topics[topic]
	if st == nil {
		st = &presTopic{last: -1}
		p.topics[topic] = st
	}
	st.dirty, st.quiet = true, 0
	if join {
		st.joined = true
		if c != nil {
			st.joiners = append(st.joiners, c)
		}
	}
}

// presenceLocal sends a join or leave event to this node's subscribers of
// its topic (none in legacy mode: v0.4 clients know only counts).
func (t *Tower) presenceLocal(ev *presenceEvent) {
	if t.cfg.legacy {
		return
	}
	subs := t.index.get(ev.Topic)
	if subs == nil || subs.count == 0 {
		return
	}
	var frames [2]*transport.Frame
	if subs.codecs[protocol.JSON] > 0 {
		frames[protocol.JSON] = t.srv.NewMessageFrame(ws.OpText, protocol.AppendPresenceJSON(nil, ev.Type, ev.Topic, ev.Conn, ev.User))
	}
	if subs.codecs[protocol.Msgpack] > 0 {
		frames[protocol.Msgpack] = t.srv.NewMessageFrame(ws.OpBinary, protocol.AppendPresenceMsgpack(nil, ev.Type, ev.Topic, ev.Conn, ev.User))
	}
	t.fanOut(subs, frames)
}

// presenceRemote handles an event from another node on presence topic pt
// (on the Manager's delivery path: it does not block). Everything in it is
// checked: it comes from the network.
func (t *Tower) presenceRemote(pt string, data []byte) {
	topic, _ := presenceTopicOf(pt)
	var ev presenceEvent
	if err := json.Unmarshal(data, &ev); err != nil || ev.Topic != topic ||
		(ev.Type != protocol.PresenceJoin && ev.Type != protocol.PresenceLeave) ||
		len(ev.Conn) > maxPresenceID || len(ev.User) > maxPresenceID ||
		protocol.ValidateTopic(topic) != nil || ev.Node == t.cfg.nodeID {
		t.stats.badControl.Add(1)
		return
	}
	if !t.pres.covers(topic) {
		return // this node does not track it (configured otherwise)
	}
	t.presenceLocal(&ev)
	t.pres.mark(topic, nil, ev.Type == protocol.PresenceJoin)
}

// presenceLoop recounts the topics with recent events every interval and
// sends the counts that changed. It ends with t.ctx.
func (t *Tower) presenceLoop() {
	defer t.bg.Done()
	tick := time.NewTicker(t.pres.interval)
	defer tick.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-tick.C:
		}
		t.presenceTick()
	}
}

// presenceTick is one turn of presenceLoop.
func (t *Tower) presenceTick() {
	p := t.pres
	type job struct {
		topic   string
		last    int64
		joined  bool
		joiners []*Conn
	}
	var jobs []job
	p.mu.Lock()
	for topic, st := range p.topics {
		if t.index.get(topic) == nil {
			delete(p.topics, topic) // no local subscriber left to tell
			continue
		}
		if st.dirty {
			st.dirty, st.quiet = false, 0
		} else if st.quiet++; st.quiet > presenceSettle {
			// Settled: forget it (memory only for topics that move). Its
			// next event starts afresh, so that count goes out even if it
			// happens to equal the last one sent.
			delete(p.topics, topic)
			continue
		}
		jobs = append(jobs, job{topic, st.last, st.joined, st.joiners})
		st.joined, st.joiners = false, nil
	}
	p.mu.Unlock()
	for _, j := range jobs {
		// A Count waits for the Manager's answer: give it time enough on a
		// busy machine; a Manager that is down fails at once.
		ctx, cancel := context.WithTimeout(t.ctx, max(p.interval, time.Second))
		n, err := t.link.Count(ctx, j.topic)
		cancel()
		if err != nil {
			p.mark(j.topic, nil, j.joined) // try again next tick
			p.mu.Lock()
			if st := p.topics[j.topic]; st != nil {
				st.joiners = append(st.joiners, j.joiners...)
			}
			p.mu.Unlock()
			continue
		}
		if n != j.last {
			t.presenceCount(j.topic, n, n > j.last)
		} else {
			for _, c := range j.joiners {
				t.presenceCountTo(c, j.topic, n)
			}
		}
		p.mu.Lock()
		if st := p.topics[j.topic]; st != nil {
			st.last = n
		}
		p.mu.Unlock()
	}
}

// countFrames builds the count frames for the codecs in use.
func (t *Tower) countFrame(codec protocol.Codec, topic string, n int64, up bool) *transport.Frame {
	if codec == protocol.Msgpack {
		return t.srv.NewMessageFrame(ws.OpBinary, protocol.AppendCountMsgpack(nil, topic, n))
	}
	if t.cfg.legacy {
		kind := protocol.LegacyOnUnsubscribe
		if up {
			kind = protocol.LegacyOnSubscribe
		}
		return t.srv.NewMessageFrame(ws.OpText, protocol.AppendLegacyCount(nil, kind, n))
	}
	return t.srv.NewMessageFrame(ws.OpText, protocol.AppendCountJSON(nil, topic, n))
}

// presenceCount sends count n to every local subscriber of topic; up says
// whether it grew (legacy: onSubscribe, else onUnsubscribe).
func (t *Tower) presenceCount(topic string, n int64, up bool) {
	subs := t.index.get(topic)
	if subs == nil || subs.count == 0 {
		return
	}
	var frames [2]*transport.Frame
	for codec := range frames {
		if subs.codecs[codec] > 0 {
			frames[codec] = t.countFrame(protocol.Codec(codec), topic, n, up)
		}
	}
	t.fanOut(subs, frames)
}

// presenceCountTo sends count n to c alone (a joiner whose subscribe left
// the count as it was).
func (t *Tower) presenceCountTo(c *Conn, topic string, n int64) {
	if c.gone.Load() || !c.subscribed(topic) {
		return
	}
	f := t.countFrame(c.codec, topic, n, true)
	c.tc.Send(f)
	f.Release()
	t.stats.deliveries.Add(1)
}

// PresenceStats is a topic's presence in the whole cluster.
type PresenceStats struct {
	Topic string `json:"topic"`
	// Connections subscribed to the topic.
	Connections int64 `json:"connections"`
	// Users is the number of distinct non-empty user ids among them
	// (connections without a user id are not counted here).
	Users int64 `json:"users"`
	// Partial is set when a node had more user ids than fit in one answer
	// (about 256 KiB of them): Users is then a lower bound.
	Partial bool `json:"partial,omitempty"`
}

// localPresenceStats is this node's subscriber count of topic and its
// distinct non-empty user ids.
func (t *Tower) localPresenceStats(topic string) (int64, []string) {
	subs := t.index.get(topic)
	if subs == nil {
		return 0, nil
	}
	seen := make(map[string]struct{})
	users := []string{}
	for _, byCodec := range subs.byLoop {
		for _, blocks := range byCodec {
			for _, b := range blocks {
				for _, tc := range b {
					c, ok := tc.Value.(*Conn)
					if !ok || c == nil {
						continue
					}
					if u := c.UserID(); u != "" {
						if _, dup := seen[u]; !dup {
							seen[u] = struct{}{}
							users = append(users, u)
						}
					}
				}
			}
		}
	}
	return subs.count, users
}

// PresenceStats counts the connections subscribed to topic in the whole
// cluster and their distinct users. It works whether or not presence
// events are on. When some nodes did not answer in time it returns what it
// has with an error (code unavailable). Any goroutine; it waits for the
// other nodes, up to ctx.
func (t *Tower) PresenceStats(ctx context.Context, topic string) (PresenceStats, error) {
	st := PresenceStats{Topic: topic}
	if t.state.Load() != 1 {
		return st, ErrClosed
	}
	if e := validTopics([]string{topic}); e != nil {
		return st, e
	}
	n, users := t.localPresenceStats(topic)
	st.Connections = n
	seen := make(map[string]struct{}, len(users))
	for _, u := range users {
		seen[u] = struct{}{}
	}
	answers, err := t.call(ctx, &ctlMsg{Op: "presence_stats", Topics: []string{topic}})
	for _, a := range answers {
		if a.Err != nil {
			if err == nil {
				err = a.Err
			}
			continue
		}
		st.Connections += int64(max(a.N, 0))
		st.Partial = st.Partial || a.Partial
		for _, u := range a.Users {
			seen[u] = struct{}{}
		}
	}
	st.Users = int64(len(seen))
	return st, err
}
