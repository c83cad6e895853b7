package managertest

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/firetower-go/firetower"
)

// The cluster-wide server operations (Disconnect, DisconnectUser,
// Unsubscribe, ClusterTopics) and the stats topic travel between the
// Towers as publishes through the Manager, so every Manager must carry
// them.

// ControlTopic is the system topic every Tower keeps interest in for the
// cluster-wide operations: its cluster-wide count is the number of nodes.
const ControlTopic = firetower.SystemTopicPrefix + "control"

// statsInterval is the stats interval of the stats scenario's Towers.
const statsInterval = 50 * time.Millisecond

// RunClusterOps runs the scenarios of the cluster-wide operations alone
// (Run runs them too), on 2 and 3 gateways.
func RunClusterOps(t *testing.T, c Cluster) {
	for _, n := range []int{2, 3} {
		t.Run("DisconnectUser"+strconv.Itoa(n), func(t *testing.T) { disconnectUser(t, c, n) })
		t.Run("DisconnectConn"+strconv.Itoa(n), func(t *testing.T) { disconnectConn(t, c, n) })
		t.Run("UnsubscribeRemote"+strconv.Itoa(n), func(t *testing.T) { unsubscribeRemote(t, c, n) })
		t.Run("ClusterTopics"+strconv.Itoa(n), func(t *testing.T) { clusterTopics(t, c, n) })
		t.Run("StatsTopic"+strconv.Itoa(n), func(t *testing.T) { statsTopic(t, c, n) })
	}
}

// WaitCluster waits until every Tower counts all the others as nodes (the
// count of ControlTopic) and a cluster-wide operation made on it gets an
// answer from every other node. With a Manager whose interest and counts
// converge asynchronously, that is when the operations reach every node.
func WaitCluster(t testing.TB, towers []*firetower.Tower) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for _, tw := range towers {
		var n int64
		var err error
		for {
			n, err = tw.ConnectNum(context.Background(), ControlTopic)
			if err == nil && n == int64(len(towers)) {
				ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				_, err = tw.ClusterTopics(ctx, "", 1)
				cancel()
				if err == nil {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d: %d nodes counted (want %d), last error %v", tw.NodeID(), n, len(towers), err)
			}
			time.Sleep(10 * time.Millisecond) // polling a converging cluster
		}
	}
}

// ready returns once the cluster-wide operations reach every node: at
// once for an exact Manager (the Towers joined it in Start), after
// WaitCluster otherwise.
func ready(t *testing.T, c Cluster, towers []*firetower.Tower) {
	t.Helper()
	if !c.Exact {
		WaitCluster(t, towers)
		return
	}
	for _, tw := range towers {
		n, err := tw.ConnectNum(context.Background(), ControlTopic)
		if err != nil || n != int64(len(towers)) {
			t.Fatalf("node %d counts %d nodes (err %v), want exactly %d right after Start", tw.NodeID(), n, err, len(towers))
		}
	}
}

// Probe publishes from tw on topic until every client has received a
// probe (ExpectDelivery skips them): with a Manager whose interest crosses
// to the other nodes asynchronously, a delivery from tw is then certain.
// It does nothing for an exact Manager.
func Probe(t testing.TB, c Cluster, tw *firetower.Tower, topic string, cs ...*Client) {
	t.Helper()
	if c.Exact {
		return
	}
	got := make([]bool, len(cs))
	deadline := time.Now().Add(Timeout)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("a probe on %s from node %d never reached every client", topic, tw.NodeID())
		}
		if err := tw.Publish(context.Background(), topic, []byte(probeData)); err != nil {
			t.Logf("probe: %v", err)
		}
		done := true
		for i, cl := range cs {
			if !got[i] {
				got[i] = cl.waitProbe(topic, 100*time.Millisecond)
				done = done && got[i]
			}
		}
		if done {
			return
		}
	}
}

// waitProbe reads until a probe on topic, for at most d; other deliveries
// are kept.
func (c *Client) waitProbe(topic string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		f, ok := c.nextWithin(time.Until(deadline))
		if !ok {
			return false
		}
		if f.isProbe() && f.Topic == topic {
			return true
		}
		if f.Type == "publish" && !f.isProbe() {
			c.kept = append(c.kept, f)
		}
	}
}

// hookLog records, through hooks on every Tower of a cluster, the id of
// each connection (by the "name" query parameter of its upgrade) and every
// OnUnsubscribe. An OnConnect hook also sets the user id from the "user"
// parameter.
type hookLog struct {
	mu     sync.Mutex
	ids    map[string]string // name -> connection id
	unsubs []unsubCall
}

type unsubCall struct {
	node   uint16
	conn   string
	topics []string
}

func newHookLog() *hookLog { return &hookLog{ids: map[string]string{}} }

func (h *hookLog) options() []firetower.Option {
	return []firetower.Option{
		firetower.OnConnect(func(next firetower.Handler) firetower.Handler {
			return func(c *firetower.Context) error {
				q := c.Conn().Request().URL.Query()
				c.Conn().SetUserID(q.Get("user"))
				if name := q.Get("name"); name != "" {
					h.mu.Lock()
					h.ids[name] = c.Conn().ID()
					h.mu.Unlock()
				}
				return next(c)
			}
		}),
		firetower.OnUnsubscribe(func(next firetower.Handler) firetower.Handler {
			return func(c *firetower.Context) error {
				h.mu.Lock()
				h.unsubs = append(h.unsubs, unsubCall{c.Tower().NodeID(), c.Conn().ID(), slices.Clone(c.Topics())})
				h.mu.Unlock()
				return next(c)
			}
		}),
	}
}

// dial connects a named client of user (none when "") to tw and returns it
// with its connection id (recorded by OnConnect, which runs before the
// upgrade completes).
func (h *hookLog) dial(t *testing.T, tw *firetower.Tower, name, user string) (*Client, string) {
	t.Helper()
	q := url.Values{"name": {name}}
	if user != "" {
		q.Set("user", user)
	}
	c := DialQuery(t, tw, q)
	h.mu.Lock()
	id := h.ids[name]
	h.mu.Unlock()
	if id == "" {
		t.Fatalf("no connection id recorded for %s", name)
	}
	return c, id
}

func (h *hookLog) unsubscribes() []unsubCall {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.unsubs)
}

func opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), Timeout)
}

// disconnectUser: DisconnectUser on node 1 closes every connection of the
// user on every node, with the code and reason, and returns how many;
// another user's connections stay.
func disconnectUser(t *testing.T, c Cluster, n int) {
	h := newHookLog()
	towers := Gateways(t, c, n, h.options()...)
	var victims []*Client
	var others []*Client
	for i, tw := range towers {
		k := 2 // two connections of the user on each other node
		if i == 0 {
			k = 1 // and one on the node that asks
		}
		for j := range k {
			cl, _ := h.dial(t, tw, fmt.Sprintf("u-%d-%d", i, j), "alice")
			victims = append(victims, cl)
		}
		cl, _ := h.dial(t, tw, fmt.Sprintf("o-%d", i), "bob")
		others = append(others, cl)
	}
	ready(t, c, towers)
	ctx, cancel := opCtx()
	defer cancel()
	got, err := towers[0].DisconnectUser(ctx, "alice", 4001, "kicked")
	if err != nil {
		t.Fatalf("DisconnectUser: %v", err)
	}
	if want := 1 + 2*(n-1); got != want {
		t.Fatalf("DisconnectUser closed %d connections, want %d", got, want)
	}
	for _, v := range victims {
		v.ExpectClose(4001, "kicked")
	}
	// the other user's connections still work, and a second call finds
	// nobody
	for i, o := range others {
		o.Subscribe("still-" + strconv.Itoa(i))
	}
	got, err = towers[n-1].DisconnectUser(ctx, "alice", 4001, "again")
	if err != nil || got != 0 {
		t.Fatalf("DisconnectUser of a user with no connection left: %d, %v; want 0, nil", got, err)
	}
	if _, err := towers[0].DisconnectUser(ctx, "bob", 1005, ""); !errors.Is(err, firetower.ErrBadOption) {
		t.Fatalf("DisconnectUser with close code 1005: %v, want ErrBadOption", err)
	}
}

// disconnectConn: Disconnect on node 1 of a connection on another node
// closes it with the code and reason; an unknown id gives ErrNoConn once
// every node has said it does not have it.
func disconnectConn(t *testing.T, c Cluster, n int) {
	h := newHookLog()
	towers := Gateways(t, c, n, h.options()...)
	last := towers[n-1]
	victim, id := h.dial(t, last, "victim", "")
	bystander, _ := h.dial(t, last, "bystander", "")
	victim.Subscribe("d")
	bystander.Subscribe("d")
	checkCount(t, c, last, "d", 2)
	ready(t, c, towers)
	ctx, cancel := opCtx()
	defer cancel()
	if err := towers[0].Disconnect(ctx, id, 4002, "bye"); err != nil {
		t.Fatalf("Disconnect of a connection on node %d: %v", last.NodeID(), err)
	}
	victim.ExpectClose(4002, "bye")
	WaitCount(t, towers[0], "d", 1) // the disconnect is processed asynchronously
	bystander.Subscribe("d2")

	if err := towers[0].Disconnect(ctx, id, 1000, ""); !errors.Is(err, firetower.ErrNoConn) {
		t.Fatalf("Disconnect of a closed connection: %v, want ErrNoConn", err)
	}
	if err := towers[0].Disconnect(ctx, "no-such-conn", 1000, ""); !errors.Is(err, firetower.ErrNoConn) {
		t.Fatalf("Disconnect of an unknown id: %v, want ErrNoConn", err)
	}
	if err := towers[0].Disconnect(ctx, "no-such-conn", 1005, ""); !errors.Is(err, firetower.ErrBadOption) {
		t.Fatalf("Disconnect with close code 1005: %v, want ErrBadOption", err)
	}
}

// unsubscribeRemote: Unsubscribe on node 1 of a connection on another node
// removes the subscription there before it returns (OnUnsubscribe ran on
// that node, the count dropped, a later publish does not reach it) and
// leaves the connection's other subscriptions.
func unsubscribeRemote(t *testing.T, c Cluster, n int) {
	h := newHookLog()
	towers := Gateways(t, c, n, h.options()...)
	a, last := towers[0], towers[n-1]
	b, id := h.dial(t, last, "b", "")
	b.Subscribe("u1")
	b.Subscribe("u2")
	checkCount(t, c, a, "u1", 1)
	ready(t, c, towers)
	ctx, cancel := opCtx()
	defer cancel()
	if err := a.Unsubscribe(ctx, id, "u1"); err != nil {
		t.Fatalf("Unsubscribe of a connection on node %d: %v", last.NodeID(), err)
	}
	// done on the connection's node before Unsubscribe returned
	var calls []unsubCall
	for _, u := range h.unsubscribes() {
		if u.conn == id {
			calls = append(calls, u)
		}
	}
	if len(calls) != 1 || calls[0].node != last.NodeID() || !slices.Equal(calls[0].topics, []string{"u1"}) {
		t.Fatalf("OnUnsubscribe calls for the connection: %+v, want one on node %d for [u1]", calls, last.NodeID())
	}
	if conn := last.Conn(id); conn == nil || !slices.Equal(conn.Topics(), []string{"u2"}) {
		t.Fatalf("the connection's topics on node %d: %v, want [u2]", last.NodeID(), topicsOf(conn))
	}
	checkCount(t, c, a, "u1", 0)
	checkCount(t, c, a, "u2", 1)
	// a publish on u1 no longer reaches b; one on u2, made after it from
	// the same node, does (b would see u1 first)
	Probe(t, c, a, "u2", b)
	if err := a.Publish(ctx, "u1", []byte(`"gone"`)); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish(ctx, "u2", []byte(`"kept"`)); err != nil {
		t.Fatal(err)
	}
	b.ExpectDelivery("u2", `"kept"`)
	// the client's own requests go on in order with it
	b.Unsubscribe("u2")
	checkCount(t, c, a, "u2", 0)

	if err := a.Unsubscribe(ctx, "no-such-conn", "u2"); !errors.Is(err, firetower.ErrNoConn) {
		t.Fatalf("Unsubscribe of an unknown id: %v, want ErrNoConn", err)
	}
}

func topicsOf(c *firetower.Conn) []string {
	if c == nil {
		return nil
	}
	return c.Topics()
}

// clusterTopics: ClusterTopics on node 1 lists the topics subscribed on the
// other nodes only, with counts summed over the nodes, and no system topic
// (a system connection on node 2 subscribes to StatsTopic).
func clusterTopics(t *testing.T, c Cluster, n int) {
	towers := Gateways(t, c, n)
	want := []firetower.TopicCount{}
	all := int64(0)
	for i, tw := range towers[1:] {
		own := fmt.Sprintf("ct/node%d", i+2)
		for range i + 1 { // i+1 subscribers on node i+2
			Dial(t, tw).Subscribe(own)
		}
		for range n { // more than any node's own topic: the top of every node
			Dial(t, tw).Subscribe("ct/all")
			all++
		}
		want = append(want, firetower.TopicCount{Topic: own, Count: int64(i + 1)})
	}
	want = append(want, firetower.TopicCount{Topic: "ct/all", Count: all})
	slices.SortFunc(want, func(a, b firetower.TopicCount) int {
		if a.Count != b.Count {
			return cmp.Compare(b.Count, a.Count)
		}
		return cmp.Compare(a.Topic, b.Topic)
	})
	sys := DialQuery(t, towers[1], url.Values{firetower.SystemTokenParam: {towers[1].SystemToken(time.Minute)}})
	sys.Subscribe(firetower.StatsTopic)
	ready(t, c, towers)

	ctx, cancel := opCtx()
	defer cancel()
	got, err := towers[0].ClusterTopics(ctx, "", 0)
	if err != nil {
		t.Fatalf("ClusterTopics: %v", err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ClusterTopics on node 1 = %v, want %v", got, want)
	}
	// a query (case-insensitive), and top (each node contributes its own
	// top matches: ct/all is the top of every node)
	got, err = towers[0].ClusterTopics(ctx, "CT/NODE2", 0)
	if err != nil || !slices.Equal(got, []firetower.TopicCount{{Topic: "ct/node2", Count: 1}}) {
		t.Fatalf("ClusterTopics(CT/NODE2) = %v, %v; want [{ct/node2 1}]", got, err)
	}
	got, err = towers[0].ClusterTopics(ctx, "", 1)
	if err != nil || !slices.Equal(got, want[:1]) {
		t.Fatalf("ClusterTopics top 1 = %v, %v; want %v", got, err, want[:1])
	}
	// no system topic, from any node's point of view
	for _, tw := range towers {
		got, err := tw.ClusterTopics(ctx, firetower.SystemTopicPrefix, 0)
		if err != nil || len(got) != 0 {
			t.Fatalf("ClusterTopics(%s) on node %d = %v, %v; want none", firetower.SystemTopicPrefix, tw.NodeID(), got, err)
		}
	}
}

// statsTopic: a system connection on node 1 (token from node 1) that
// subscribes to StatsTopic receives the NodeStats of every node; the other
// nodes do not take node 1's token, and an ordinary client may not
// subscribe.
func statsTopic(t *testing.T, c Cluster, n int) {
	towers := Gateways(t, c, n, firetower.WithStatsInterval(statsInterval))
	last := towers[n-1]
	Dial(t, last).Subscribe("st/last")
	ready(t, c, towers)

	tok := url.Values{firetower.SystemTokenParam: {towers[0].SystemToken(time.Minute)}}
	// node 1's token is not a system token elsewhere, nor a plain client
	foreign := DialQuery(t, last, tok)
	foreign.expectError(foreign.Request("subscribe", firetower.StatsTopic, ""), firetower.CodeForbidden)
	plain := Dial(t, towers[0])
	plain.expectError(plain.Request("subscribe", firetower.StatsTopic, ""), firetower.CodeForbidden)

	sys := DialQuery(t, towers[0], tok)
	sys.Subscribe(firetower.StatsTopic)
	sys.expectError(sys.Request("publish", "st/last", `"x"`), firetower.CodeForbidden)
	seen := map[uint16]bool{}
	deadline := time.Now().Add(Timeout)
	for len(seen) < n {
		f, ok := sys.nextWithin(time.Until(deadline))
		if !ok {
			t.Fatalf("NodeStats received from nodes %v, want all %d", seen, n)
		}
		if f.Type != "publish" {
			continue
		}
		if f.Topic != firetower.StatsTopic {
			t.Fatalf("system connection got a delivery on %s", f.Topic)
		}
		var ns firetower.NodeStats
		if err := json.Unmarshal(f.Data, &ns); err != nil {
			t.Fatalf("NodeStats %s: %v", f.Data, err)
		}
		if ns.Node < 1 || int(ns.Node) > n {
			t.Fatalf("NodeStats from node %d, not in the cluster", ns.Node)
		}
		if ns.Interval != statsInterval.Seconds() {
			t.Fatalf("NodeStats of node %d: interval %v, want %v", ns.Node, ns.Interval, statsInterval.Seconds())
		}
		for _, tc := range ns.Topics {
			if firetower.IsSystemTopic(tc.Topic) {
				t.Fatalf("NodeStats of node %d lists system topic %s", ns.Node, tc.Topic)
			}
		}
		if ns.Node == last.NodeID() && !slices.Contains(ns.Topics, firetower.TopicCount{Topic: "st/last", Count: 1}) {
			t.Fatalf("NodeStats of node %d: topics %v, want st/last with 1", ns.Node, ns.Topics)
		}
		seen[ns.Node] = true
	}
}
