package managertest

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/firetower-go/firetower"
)

// presenceInterval is the presence interval of the presence scenarios'
// Towers: short, so counts come quickly.
const presenceInterval = 20 * time.Millisecond

// RunPresence runs the presence scenarios alone (Run runs them too).
func RunPresence(t *testing.T, c Cluster) {
	t.Run("PresenceJoinLeaveCount", func(t *testing.T) { presenceJoinLeave(t, c) })
}

// waitFrame reads until a message for which ok is true and returns it;
// deliveries read meanwhile are dropped (the scenario publishes none but
// probes).
func (c *Client) waitFrame(what string, ok func(Frame) bool) Frame {
	c.t.Helper()
	deadline := time.Now().Add(Timeout)
	for {
		f, got := c.nextWithin(time.Until(deadline))
		if !got {
			c.t.Fatalf("no %s within %v", what, Timeout)
		}
		if ok(f) {
			return f
		}
	}
}

// waitCount reads until a count event of topic with n.
func (c *Client) waitCount(topic string, n int64) {
	c.t.Helper()
	c.waitFrame("count "+topic+"="+itoa(n), func(f Frame) bool {
		return f.Type == "count" && f.Topic == topic && f.Count == n
	})
}

// waitEvent reads until a join or leave event of topic for connection id,
// and checks its user.
func (c *Client) waitEvent(kind, topic, id, user string) {
	c.t.Helper()
	f := c.waitFrame(kind+" of "+id, func(f Frame) bool {
		return f.Type == kind && f.Topic == topic && f.Conn == id
	})
	if f.User != user {
		c.t.Fatalf("%s of %s: user %q, want %q", kind, id, f.User, user)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// presenceJoinLeave: with WithPresence on two gateways, a subscriber on
// node 1 sees the joins and leaves of connections on node 2 (unsubscribe
// and disconnect alike) with their user ids, and the cluster-wide count
// as it changes; the joiner on node 2 sees the count too.
func presenceJoinLeave(t *testing.T, c Cluster) {
	const topic = "/presence/room"
	h := newHookLog()
	towers := Gateways(t, c, 2, append(h.options(),
		firetower.WithPresence("/presence/"),
		firetower.WithPresenceInterval(presenceInterval))...)
	WaitCluster(t, towers) // polls: the scenario is about presence, not about Start

	a, idA := h.dial(t, towers[0], "a", "alice")
	a.Subscribe(topic)
	a.waitEvent("join", topic, idA, "alice")
	a.waitCount(topic, 1)

	b, idB := h.dial(t, towers[1], "b", "bob")
	b.Subscribe(topic)
	if c.Exact {
		a.waitEvent("join", topic, idB, "bob")
		a.waitCount(topic, 2)
	} else {
		// Interest in the topic (and its presence topic, reported with
		// it) crosses to node 1's Manager asynchronously, so this first
		// event may miss node 1; the probes wait until it has crossed.
		Probe(t, c, towers[1], topic, a)
		Probe(t, c, towers[0], topic, b)
	}
	b.waitCount(topic, 2)

	// A second joiner on node 2: its join reaches node 1 as an event.
	d, idD := h.dial(t, towers[1], "d", "")
	d.Subscribe(topic)
	a.waitEvent("join", topic, idD, "")
	a.waitCount(topic, 3)
	d.waitCount(topic, 3)

	b.Unsubscribe(topic)
	a.waitEvent("leave", topic, idB, "bob")
	a.waitCount(topic, 2)

	d.Close()
	a.waitEvent("leave", topic, idD, "")
	a.waitCount(topic, 1)

	// A topic presence does not cover has no events: between the ack of
	// the subscribe and that of a publish, a gets its own publish and
	// nothing else on that topic.
	sub := a.Request("subscribe", "/other", "")
	pub := a.Request("publish", "/other", `"x"`)
	a.expectAck(sub)
	for delivered := false; ; {
		f := a.Next()
		if string(f.ID) == strconv.Quote(pub) {
			if f.Type != "ack" || !delivered {
				t.Fatalf("publish on /other: %s %s, delivered %v", f.Type, f.Code, delivered)
			}
			break
		}
		if f.Topic == "/other" {
			if f.Type != "publish" {
				t.Fatalf("a %s event on /other, which presence does not cover", f.Type)
			}
			delivered = true
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	st, err := towers[1].PresenceStats(ctx, topic)
	if err != nil || st.Connections != 1 || st.Users != 1 {
		t.Fatalf("PresenceStats from node 2: %+v, %v; want 1 connection, 1 user", st, err)
	}
}
