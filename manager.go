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
type Manager interface {
	// Join attaches node n. From then on the Manager calls n.Deliver with
	// publishes from other nodes on topics n has interest in, until the
	// returned Link is closed.
	Join(ctx context.Context, n Node) (Link, error)
}

// Node is a Tower as its Manager sees it.
type Node interface {
	// NodeID is the node's id, unique in the cluster.
	NodeID() uint16
	// Deliver hands the node a publish from another node: data as given to
	// Link.Publish. It does not block and does not keep data.
	Deliver(topic string, data []byte)
	// Interest returns every topic with local subscribers and their count,
	// for a full resynchronisation after a (re)connect.
	Interest() map[string]int64
}

// Link is one node's attachment to its Manager.
type Link interface {
	// SetInterest reports the node's absolute local subscriber count for a
	// topic; 0 means the node has no more interest. It does not block.
	SetInterest(topic string, count int64)
	// Flush returns once every SetInterest made before the call is in effect
	// cluster-wide (routing and counts), or with an error when that cannot
	// be known now (no manager reachable). It is called before a subscribe
	// is acknowledged, so it must not wait long for a manager that is down.
	Flush(ctx context.Context) error
	// Publish sends a publish to every other node with interest in topic,
	// whose Deliver gets data byte for byte. An error means it could not be
	// taken (the client gets "unavailable"). It is called on event loops
	// (a client publish is handled there when no hook may block), so it
	// must hand the publish off and not wait for the network; it does not
	// keep data after it returns.
	Publish(ctx context.Context, topic string, data []byte) error
	// Count is the cluster-wide subscriber count of topic.
	Count(ctx context.Context, topic string) (int64, error)
	// Close detaches the node.
	Close() error
}

// LocalManager is the in-process Manager: every Tower that joins the same
// LocalManager forms a cluster inside one process. It is what a Tower uses
// when no Manager is configured.
type LocalManager struct {
	joined atomic.Int32 // nodes joined: a lone node publishes without locking
	mu     sync.RWMutex
	nodes  map[uint16]*localLink
	topics map[string]map[uint16]int64 // topic -> node -> count
}

// NewLocalManager returns an empty LocalManager.
func NewLocalManager() *LocalManager {
	return &LocalManager{nodes: make(map[uint16]*localLink), topics: make(map[string]map[uint16]int64)}
}

type localLink struct {
	m *LocalManager
	n Node
}

// Join implements Manager.
func (m *LocalManager) Join(_ context.Context, n Node) (Link, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := n.NodeID()
	if _, dup := m.nodes[id]; dup {
		return nil, fmt.Errorf("firetower: node id %d already joined this manager", id)
	}
	l := &localLink{m: m, n: n}
	m.nodes[id] = l
	m.joined.Add(1)
	for topic, cnt := range n.Interest() {
		m.setLocked(id, topic, cnt)
	}
	return l, nil
}

func (m *LocalManager) setLocked(id uint16, topic string, count int64) {
	per := m.topics[topic]
	if count <= 0 {
		if per != nil {
			delete(per, id)
			if len(per) == 0 {
				delete(m.topics, topic)
			}
		}
		return
	}
	if per == nil {
		per = make(map[uint16]int64, 1)
		m.topics[topic] = per
	}
	per[id] = count
}

func (l *localLink) SetInterest(topic string, count int64) {
	l.m.mu.Lock()
	l.m.setLocked(l.n.NodeID(), topic, count)
	l.m.mu.Unlock()
}

func (l *localLink) Flush(context.Context) error { return nil }

func (l *localLink) Publish(_ context.Context, topic string, data []byte) error {
	if l.m.joined.Load() <= 1 {
		return nil // no other node to route to (the default, one process)
	}
	id := l.n.NodeID()
	l.m.mu.RLock()
	per := l.m.topics[topic]
	if len(per) == 0 || (len(per) == 1 && per[id] > 0) {
		l.m.mu.RUnlock()
		return nil
	}
	var targets []Node
	for nid := range per {
		if nid != id {
			if o := l.m.nodes[nid]; o != nil {
				targets = append(targets, o.n)
			}
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
	for _, c := range l.m.topics[topic] {
		n += c
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
	for topic, per := range l.m.topics {
		if _, ok := per[id]; ok {
			l.m.setLocked(id, topic, 0)
		}
	}
	return nil
}
