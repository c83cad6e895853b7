package firetower

import (
	"sync"
	"sync/atomic"

	"github.com/gobwas/ws"

	"github.com/firetower-go/firetower/internal/protocol"
	"github.com/firetower-go/firetower/internal/topicpattern"
	"github.com/firetower-go/firetower/transport"
)

// Wildcard subscriptions (issue 15). With WithWildcards(true), a subscribe
// may name a pattern: topics are split on "/", a segment that is exactly
// "*" matches any one non-empty segment and a last segment "**" matches
// one or more. A pattern subscription is kept in the index like a topic
// (under the pattern itself: it has subscribers, a count, interest in the
// cluster) and, while it has local subscribers, in the Tower's pattern
// trie (patternIndex); a publish to a concrete topic is delivered to the
// topic's subscribers and to those of every pattern the trie matches, the
// same frame for all. A publish to a topic with a "*" or "**" segment is
// refused (invalid_topic).

// WithWildcards lets clients subscribe to topic patterns ("*" and "**"
// segments) when on. Default off: "*" is then an ordinary character and a
// topic "/md/*" is a topic like any other. Every Tower of a cluster should
// be given the same setting.
//
// Counting: a pattern subscription counts under the pattern, so
// ConnectNum("/md/*") is the number of "/md/*" subscriptions and
// ConnectNum("/md/AAPL") does not include them; presence (WithPresence)
// works the same way, per subscription string. A connection subscribed to
// a topic and to patterns that match it gets a publish once per
// subscription. Patterns go through the hooks and middleware as they are
// (c.Topics() holds "/md/*"); see middleware.TopicACL for how an access
// list decides on a pattern. A topic with history (WithHistory) delivers
// its publishes to its exact subscribers only.
func WithWildcards(on bool) Option {
	return func(c *config) error { c.wildcards = on; return nil }
}

// Wildcards reports whether the Tower accepts pattern subscriptions
// (WithWildcards). Any goroutine.
func (t *Tower) Wildcards() bool { return t.cfg.wildcards }

// patternIndex is the set of patterns with local subscribers.
type patternIndex struct {
	// n is the number of patterns: a publish looks at the trie only when
	// it is > 0, so exact topics cost nothing more while none exists.
	n atomic.Int64
	// mu guards trie. Taken under an index shard's mu (reportInterest),
	// and alone by publishes; nothing is taken under it.
	mu   sync.RWMutex
	trie topicpattern.Trie
}

// set records pattern's local count (from reportInterest, under the
// pattern's index shard lock).
func (p *patternIndex) set(pattern string, count int64) {
	p.mu.Lock()
	if count > 0 {
		p.trie.Add(pattern)
	} else {
		p.trie.Remove(pattern)
	}
	p.n.Store(int64(p.trie.Len()))
	p.mu.Unlock()
}

// match reports whether any local pattern matches topic.
func (p *patternIndex) match(topic string) bool {
	if p == nil || p.n.Load() == 0 {
		return false
	}
	found := false
	p.mu.RLock()
	p.trie.Match(topic, func(string) { found = true })
	p.mu.RUnlock()
	return found
}

// checkPatterns validates the patterns among topics when wildcards are on
// ("**" only last); nil otherwise.
func (t *Tower) checkPatterns(topics []string) *Error {
	if !t.cfg.wildcards {
		return nil
	}
	for _, tp := range topics {
		if err := topicpattern.Check(tp); err != nil {
			return &Error{Code: CodeInvalidTopic, Message: "pattern " + tp + ": " + err.Error()}
		}
	}
	return nil
}

// publishable refuses a publish to a pattern when wildcards are on.
func (t *Tower) publishable(topic string) *Error {
	if t.cfg.wildcards && topicpattern.IsPattern(topic) {
		return &Error{Code: CodeInvalidTopic, Message: "publish to a pattern (a \"*\" or \"**\" segment): " + topic}
	}
	return nil
}

// deliverPatterns delivers a publish on topic to the subscribers of the
// patterns that match it (after deliverLocal served the exact ones): one
// frame per codec, shared by all of them.
func (t *Tower) deliverPatterns(topic string, j, raw []byte) {
	var pbuf [8]string
	pats := pbuf[:0]
	t.pats.mu.RLock()
	pats = t.pats.trie.AppendMatches(pats, topic)
	t.pats.mu.RUnlock() // before the index's locks: reportInterest takes them the other way round
	var sbuf [8]*subscribers
	matched := sbuf[:0]
	for _, p := range pats {
		if s := t.index.get(p); s != nil && s.count > 0 {
			matched = append(matched, s)
		}
	}
	if len(matched) == 0 {
		return
	}
	var codecs [2]int32
	for _, s := range matched {
		codecs[0] += s.codecs[0]
		codecs[1] += s.codecs[1]
	}
	var frames [2]*transport.Frame
	if codecs[protocol.JSON] > 0 {
		if t.cfg.legacy {
			frames[protocol.JSON] = t.legacyFrame(raw)
		} else {
			frames[protocol.JSON] = t.srv.NewMessageFrame(ws.OpText, protocol.AppendDeliveryJSON(nil, topic, j))
		}
	}
	if codecs[protocol.Msgpack] > 0 {
		p, err := protocol.AppendDeliveryMsgpack(nil, topic, j)
		if err != nil {
			t.log.Error("firetower: cannot encode a delivery as msgpack", "topic", topic, "err", err)
		} else {
			frames[protocol.Msgpack] = t.srv.NewMessageFrame(ws.OpBinary, p)
		}
	}
	for _, s := range matched {
		t.broadcast(s, frames)
	}
	for _, f := range frames {
		if f != nil {
			f.Release()
		}
	}
}

// matchesPattern implements patternMatcher for the LocalManager.
func (n towerNode) matchesPattern(topic string) bool {
	return !IsSystemTopic(topic) && n.t.pats.match(topic)
}
