package firetower

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// Manager connects Towers into a cluster: it routes publishes between the
// nodes that have subscribers for a topic and knows cluster-wide counts.
//
// A Tower joins its Manager at Start and leaves at Shutdown. Implementations:
// LocalManager (in-process; the default), the topic-manager node client in
// package manager, and NATS.
//
// Concurrency: a Manager may be shared by several Towers (LocalManager is),
// so Join may be called from several goroutines at once.
type Manager interface {
	// Join attaches node n. From then on the Manager calls n.Deliver with
	// publishes from other nodes on topics n has interest in, until the
	// returned Link is closed. The Tower calls it from Start.
	Join(ctx context.Context, n Node) (Link, error)
}

// Node is a Tower as its Manager sees it. Its methods may be called from
// any goroutine, concurrently.
type Node interface {
	// NodeID is the node's id, unique in the cluster. It never changes.
	NodeID() uint16
	// Deliver hands the node a publish from another node: data as given to
	// Link.Publish. It does not block and does not keep data. It queues the
	// publish for the node's local subscribers on their event loops before
	// it returns, so publishes delivered one after another on a topic reach
	// them in that order. The Manager calls it with none of its locks held
	// that the node's Link methods take: a delivery may publish in turn
	// (the answers of cluster operations do).
	Deliver(topic string, data []byte)
	// Interest returns every topic with local subscribers and their count,
	// for a full resynchronisation after a (re)connect. It takes the
	// node's topic index locks one shard at a time (see Link.SetInterest
	// for what that asks of the Manager).
	Interest() map[string]int64
}

// Link is one node's attachment to its Manager.
//
// Concurrency: the Tower calls a Link's methods from many goroutines at
// once: its event loops (Publish), its workers (SetInterest, Flush,
// Publish), its stats loop (Count, Publish), the Manager's own delivery
// goroutines (Publish, answering cluster operations) and whatever goroutine
// calls the Tower's API. Close comes once, from Shutdown (or a Start that
// failed), after the workers have stopped; what races it (a Tower method
// called during Shutdown, an event loop still running when Shutdown's ctx
// ran out) may still call Publish or Count after it, which must then fail
// or do nothing.
type Link interface {
	// SetInterest reports the node's absolute local subscriber count for a
	// topic; 0 means the node has no more interest. It does not block.
	//
	// The Tower calls it with the topic's index shard lock held, so the
	// counts of one topic are reported in the order they were made. Lock
	// order: index shard lock, then whatever SetInterest takes. So a
	// Manager must not call Node.Interest (which takes the shard locks)
	// while holding a lock that SetInterest takes for the same node (see
	// LocalManager for the one exception it relies on).
	SetInterest(topic string, count int64)
	// Flush returns once every SetInterest made before the call is in effect
	// cluster-wide (routing and counts), or with an error when that cannot
	// be known now (no manager reachable). It is called on a worker before a
	// subscribe is acknowledged, so it must not wait long for a manager
	// that is down.
	Flush(ctx context.Context) error
	// Publish sends a publish to every other node with interest in topic,
	// whose Deliver gets data byte for byte. An error means it could not be
	// taken (the client gets "unavailable"). It is called on event loops
	// (a client publish is handled there when no hook may block), so it
	// must hand the publish off and not wait for the network; it does not
	// keep data after it returns.
	//
	// Delivery is at most once: a publish may be lost (no manager
	// reachable, a connection dropped with publishes in flight, a full
	// buffer), which the implementation counts, but it is never delivered
	// twice. Order is per publisher and per topic: the publishes a node
	// makes on one topic one after another (each call returning before the
	// next begins) reach every other node's Deliver in that order, with
	// gaps where some were lost. Publishes made concurrently, or by
	// different nodes, have no order between them.
	Publish(ctx context.Context, topic string, data []byte) error
	// Count is the cluster-wide subscriber count of topic. It may wait for
	// the network, up to ctx.
	Count(ctx context.Context, topic string) (int64, error)
	// Close detaches the node.
	Close() error
}

// LocalManager is the in-process Manager: every Tower that joins the same
// LocalManager forms a cluster inside one process. It is what a Tower uses
// when no Manager is configured.
//
// Its methods and its Links' may be called from any goroutine. A Link's
// Publish calls the other nodes' Deliver on the caller's goroutine, one
// node after another, with no lock held: the guarantee of Link.Publish
// holds because delivery is synchronous.
type LocalManager struct {
	joined atomic.Int32 // nodes joined: a lone node publishes without locking
	// mu guards nodes and every link's interest. Lock order: mu, then the
	// index shard locks of a Tower (Join calls Node.Interest with mu held;
	// Count and Publish call localCounter.localCount with its read lock).
	// The Tower's own order, shard lock then SetInterest, would close a
	// cycle, but SetInterest never takes mu for a topic the node's index
	// counts (localCounter.counts), and those are the only topics a Tower
	// reports with a shard lock held. Another Node implementation must
	// not call SetInterest while holding a lock its Interest takes.
	mu    sync.RWMutex
	nodes map[uint16]*localLink
	hist  localHistory // history_local.go
}

// NewLocalManager returns an empty LocalManager.
func NewLocalManager() *LocalManager {
	return &LocalManager{nodes: make(map[uint16]*localLink)}
}

// localLink is one node's attachment; its interest (topic -> count, only
// counts > 0) is guarded by the manager's mu. One flat map per node: a
// topic costs one map entry, not a map of its own. For a Tower's own node
// (a localCounter) it holds only the topics the Tower's index does not
// count: the counts of the others are read from the index itself, so the
// manager of one process keeps no second copy of every topic.
type localLink struct {
	m        *LocalManager
	n        Node
	counter  localCounter // nil for other Node implementations
	interest map[string]int64
}

// localCounter is implemented by a Tower's Node: its local counts, read
// from its topic index, for the LocalManager in the same process.
type localCounter interface {
	// counts reports whether localCount covers topic; it only looks at the
	// name (SetInterest calls it with the topic's index shard locked).
	counts(topic string) bool
	// localCount is the node's local subscriber count of topic.
	localCount(topic string) int64
}

// patternMatcher is implemented by a Tower's Node: whether one of its
// wildcard subscriptions (WithWildcards) matches a topic, so the
// LocalManager routes publishes by pattern too.
type patternMatcher interface {
	matchesPattern(topic string) bool
}

// matchesPattern reports whether one of the node's patterns matches
// topic; the manager's mu is held.
func (l *localLink) matchesPattern(topic string) bool {
	pm, ok := l.n.(patternMatcher)
	return ok && pm.matchesPattern(topic)
}

// count is the node's interest in topic; the manager's mu is held.
func (l *localLink) count(topic string) int64 {
	if l.counter != nil && l.counter.counts(topic) {
		return l.counter.localCount(topic)
	}
	return l.interest[topic]
}

// Join implements Manager.
func (m *LocalManager) Join(_ context.Context, n Node) (Link, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := n.NodeID()
	if _, dup := m.nodes[id]; dup {
		return nil, fmt.Errorf("firetower: node id %d already joined this manager", id)
	}
	l := &localLink{m: m, n: n, interest: make(map[string]int64)}
	l.counter, _ = n.(localCounter)
	m.nodes[id] = l
	m.joined.Add(1)
	for topic, cnt := range n.Interest() {
		l.setLocked(topic, cnt)
	}
	return l, nil
}

func (l *localLink) setLocked(topic string, count int64) {
	if l.counter != nil && l.counter.counts(topic) {
		return // read from the node when asked
	}
	if count <= 0 {
		delete(l.interest, topic)
		return
	}
	l.interest[topic] = count
}

func (l *localLink) SetInterest(topic string, count int64) {
	if l.counter != nil && l.counter.counts(topic) {
		return // read from the node when asked
	}
	l.m.mu.Lock()
	if l.m.nodes[l.n.NodeID()] == l { // not after Close
		l.setLocked(topic, count)
	}
	l.m.mu.Unlock()
}

func (l *localLink) Flush(context.Context) error { return nil }

func (l *localLink) Publish(_ context.Context, topic string, data []byte) error {
	if l.m.joined.Load() <= 1 {
		return nil // no other node to route to (the default, one process)
	}
	id := l.n.NodeID()
	var targets []Node
	l.m.mu.RLock()
	for nid, o := range l.m.nodes {
		if nid != id && (o.count(topic) > 0 || o.matchesPattern(topic)) {
			targets = append(targets, o.n)
		}
	}
	l.m.mu.RUnlock()
	for _, n := range targets {
		n.Deliver(topic, data)
	}
	return nil
}

func (l *localLink) Count(_ context.Context, topic string) (int64, error) {
	l.m.mu.RLock()
	defer l.m.mu.RUnlock()
	var n int64
	for _, o := range l.m.nodes {
		n += o.count(topic)
	}
	return n, nil
}

func (l *localLink) Close() error {
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	id := l.n.NodeID()
	if l.m.nodes[id] != l {
		return nil
	}
	delete(l.m.nodes, id)
	l.m.joined.Add(-1)
	clear(l.interest)
	return nil
}
