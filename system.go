package firetower

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// System topics. Every topic that starts with SystemTopicPrefix belongs to
// the Towers themselves: no client and no Tower.Publish may publish to one,
// and a client may subscribe to StatsTopic only on a system connection (one
// that presented a token from Tower.SystemToken). The Towers of a cluster
// use the others to reach each other through the Manager.
const (
	SystemTopicPrefix = "$firetower/"
	// StatsTopic carries every node's NodeStats, once per stats interval
	// (WithStatsInterval), while anyone in the cluster subscribes to it.
	StatsTopic = SystemTopicPrefix + "stats"
	// SystemTokenParam is the query parameter of the upgrade request that
	// carries a system token: ws://host:9999/ws?system_token=...
	SystemTokenParam = "system_token"

	controlTopic    = SystemTopicPrefix + "control"
	nodeTopicPrefix = SystemTopicPrefix + "node/"
)

// IsSystemTopic reports whether topic is reserved for the Towers.
func IsSystemTopic(topic string) bool { return strings.HasPrefix(topic, SystemTopicPrefix) }

var errReserved = &Error{Code: CodeForbidden, Message: "topics starting with " + SystemTopicPrefix + " are reserved for the server"}

// SystemToken returns a token that makes a websocket connection a system
// connection when given as the query parameter SystemTokenParam of its
// upgrade request, until ttl has passed (the connection then stays). Only
// the Tower that issued it accepts it (each Tower has its own random key,
// made in New). A system connection is the dashboard's: the Tower runs no
// hook for it, it may subscribe to StatsTopic and to no other topic, and it
// may not publish. It still counts as a connection. Any goroutine.
func (t *Tower) SystemToken(ttl time.Duration) string {
	exp := strconv.FormatInt(time.Now().Add(ttl).Unix(), 36)
	return exp + "." + t.tokenMAC(exp)
}

func (t *Tower) tokenMAC(exp string) string {
	m := hmac.New(sha256.New, t.tokenKey[:])
	m.Write([]byte("firetower system token\x00"))
	m.Write([]byte(exp))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// validSystemToken checks a token from SystemToken.
func (t *Tower) validSystemToken(tok string) bool {
	exp, mac, ok := strings.Cut(tok, ".")
	if !ok || len(exp) > 16 {
		return false
	}
	sec, err := strconv.ParseInt(exp, 36, 64)
	if err != nil || time.Now().Unix() > sec {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(mac), []byte(t.tokenMAC(exp))) == 1
}

func newTokenKey() (k [32]byte) {
	_, _ = rand.Read(k[:]) // crypto/rand.Read never fails (Go 1.24+)
	return k
}

// systemRequest reports whether an upgrade request carries a valid system
// token.
func (t *Tower) systemRequest(r *http.Request) bool {
	if r == nil || r.URL == nil || !strings.Contains(r.URL.RawQuery, SystemTokenParam) {
		return false
	}
	tok := r.URL.Query().Get(SystemTokenParam)
	return tok != "" && t.validSystemToken(tok)
}

// NodeStats is what a node publishes on StatsTopic.
type NodeStats struct {
	Node uint16    `json:"node"`
	Time time.Time `json:"time"`
	// Interval is the stats interval: a node not heard from for a few of
	// them is gone.
	Interval float64 `json:"interval"`
	Stats    Stats   `json:"stats"`
	// Drops is every message dropped so far, by reason (the reasons of
	// the Prometheus metric firetower_dropped_messages_total).
	Drops map[string]uint64 `json:"drops"`
	// Latency is the publish->write latency in milliseconds (bucket upper
	// bounds, powers of two); nil before the first write.
	Latency *Latency `json:"latency"`
	// Topics are this node's topics with the most local subscribers (at
	// most WithStatsTopics of them), most first.
	Topics []TopicCount `json:"topics"`
}

// Latency holds latency percentiles in milliseconds.
type Latency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// TopicCount is a topic and a number of subscribers.
type TopicCount struct {
	Topic string `json:"topic"`
	Count int64  `json:"count"`
}

// NodeStats returns this node's stats as published on StatsTopic. Any
// goroutine.
func (t *Tower) NodeStats() NodeStats {
	st := t.Stats()
	ns := NodeStats{
		Node:     t.cfg.nodeID,
		Time:     time.Now(),
		Interval: t.cfg.statsInterval.Seconds(),
		Stats:    st,
		Drops: map[string]uint64{
			"read_timeout":       st.ReadDropped,
			"slow_consumer":      st.SlowDropped,
			"connection_closing": st.Transport.Discarded,
		},
		Topics: t.localTopics("", t.cfg.statsTopics),
	}
	h := st.Transport.WriteLatency
	if h.Quantile(1) > 0 {
		ms := func(q float64) float64 { return float64(h.Quantile(q).Microseconds()) / 1000 }
		ns.Latency = &Latency{P50: ms(0.5), P90: ms(0.9), P99: ms(0.99), Max: ms(1)}
	}
	return ns
}

// statsLoop publishes NodeStats on StatsTopic every interval while the
// cluster has subscribers to it. It ends with t.ctx.
func (t *Tower) statsLoop() {
	defer t.bg.Done()
	tick := time.NewTicker(t.cfg.statsInterval)
	defer tick.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(t.ctx, t.cfg.statsInterval)
		n, err := t.link.Count(ctx, StatsTopic)
		if err == nil && n > 0 {
			b, err := json.Marshal(t.NodeStats())
			if err == nil {
				_ = t.publish(ctx, StatsTopic, b, b) // a failure is counted in RemotePublishFailed
			}
		}
		cancel()
	}
}

// localTopics returns this node's topics containing q (case-insensitive),
// most local subscribers first, at most top of them (all when top <= 0).
// System topics are left out.
func (t *Tower) localTopics(q string, top int) []TopicCount {
	return topTopics(t.index, q, top)
}

// topTopics is localTopics on ix. With top > 0 it keeps the best top rows
// seen so far in a heap whose root is the worst of them, so each stats
// interval costs O(n log top) time and O(top) memory, not a sort of every
// topic; with top <= 0 (a full listing, on request) it sorts them all.
func topTopics(ix *index, q string, top int) []TopicCount {
	lq := strings.ToLower(q)
	match := func(name string) bool {
		return !IsSystemTopic(name) && (lq == "" || strings.Contains(strings.ToLower(name), lq))
	}
	if top <= 0 {
		rows := []TopicCount{}
		ix.each(func(name string, n int64) {
			if match(name) {
				rows = append(rows, TopicCount{Topic: name, Count: n})
			}
		})
		sortTopicCounts(rows)
		return rows
	}
	h := topHeap(make([]TopicCount, 0, min(top, 1024)))
	ix.each(func(name string, n int64) {
		if !match(name) {
			return
		}
		r := TopicCount{Topic: name, Count: n}
		switch {
		case len(h) < top:
			h.push(r)
		case topicBefore(r, h[0]):
			h[0] = r
			h.down(0)
		}
	})
	rows := []TopicCount(h)
	sortTopicCounts(rows)
	return rows
}

// topicBefore reports whether a comes before b in the listing order: more
// subscribers first, then by name.
func topicBefore(a, b TopicCount) bool {
	if a.Count != b.Count {
		return a.Count > b.Count
	}
	return a.Topic < b.Topic
}

// topHeap is a binary heap of rows whose root is the row that comes last
// in the listing order (the first to give way to a better one).
type topHeap []TopicCount

// above reports whether row i belongs above row j: it comes later.
func (h topHeap) above(i, j int) bool { return topicBefore(h[j], h[i]) }

func (h *topHeap) push(r TopicCount) {
	*h = append(*h, r)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if !s.above(i, p) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h topHeap) down(i int) {
	for {
		c := 2*i + 1
		if c >= len(h) {
			return
		}
		if c+1 < len(h) && h.above(c+1, c) {
			c++
		}
		if !h.above(c, i) {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}

func sortTopicCounts(rows []TopicCount) {
	slices.SortFunc(rows, func(a, b TopicCount) int {
		if a.Count != b.Count {
			if a.Count > b.Count {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Topic, b.Topic)
	})
}
