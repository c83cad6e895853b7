package firetower_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/firetower-go/firetower"
)

// ptUntil reads messages until one for which ok is true and returns it.
func (c *ptConn) until(t testing.TB, what string, ok func(ptMsg) bool) ptMsg {
	t.Helper()
	deadline := time.Now().Add(ptTimeout)
	for time.Now().Before(deadline) {
		if m := c.next(t); ok(m) {
			return m
		}
	}
	t.Fatalf("no %s within %v", what, ptTimeout)
	return ptMsg{}
}

func TestPresenceOptions(t *testing.T) {
	for name, opts := range map[string][]firetower.Option{
		"empty prefix":          {firetower.WithPresence("")},
		"zero interval":         {firetower.WithPresence(), firetower.WithPresenceInterval(0)},
		"interval, no presence": {firetower.WithPresenceInterval(time.Second)},
	} {
		if _, err := firetower.New(opts...); !errors.Is(err, firetower.ErrBadOption) && err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	if _, err := firetower.New(firetower.WithPresenceInterval(time.Second), firetower.WithPresence("/a/")); err != nil {
		t.Errorf("interval before WithPresence: %v", err)
	}
}

// TestPresenceEventsJSONAndMsgpack: a JSON and a msgpack subscriber see
// each other's joins and leaves with connection and user ids, and counts,
// in their own codec; a topic outside the prefixes gets none.
func TestPresenceEventsJSONAndMsgpack(t *testing.T) {
	tw := ptServer(t, firetower.WithPresence("/p/"), firetower.WithPresenceInterval(10*time.Millisecond),
		firetower.OnConnect(func(next firetower.Handler) firetower.Handler {
			return func(c *firetower.Context) error {
				c.Conn().SetUserID(c.Conn().Request().URL.Query().Get("user"))
				return next(c)
			}
		}))
	a := ptDialQuery(t, tw, "", "user=alice")
	a.sub(t, "/p/room")
	a.until(t, "own join", func(m ptMsg) bool { return m.Type == "join" && m.Topic == "/p/room" })
	a.until(t, "count 1", func(m ptMsg) bool { return m.Type == "count" && countOf(m) == 1 })

	b := ptDialQuery(t, tw, "msgpack", "user=bob")
	b.sub(t, "/p/room")
	j := fieldsOf(a.until(t, "bob's join", func(m ptMsg) bool { return m.Type == "join" }))
	if j["user"] != "bob" || j["topic"] != "/p/room" || j["conn"] == "" || len(j) != 4 {
		t.Fatalf("join event %v", j)
	}
	a.until(t, "count 2", func(m ptMsg) bool { return m.Type == "count" && countOf(m) == 2 })
	mj := b.until(t, "msgpack join", func(m ptMsg) bool { return m.Type == "join" })
	if f := fieldsOf(mj); mj.Frame != websocket.BinaryMessage || f["topic"] != "/p/room" || f["user"] != "bob" || f["conn"] != j["conn"] {
		t.Fatalf("msgpack join %v, want bob's (%v)", mj, j)
	}
	b.until(t, "msgpack count 2", func(m ptMsg) bool { return m.Type == "count" && countOf(m) == 2 })

	b.unsub(t, "/p/room")
	l := fieldsOf(a.until(t, "bob's leave", func(m ptMsg) bool { return m.Type == "leave" }))
	if l["user"] != "bob" || l["conn"] != j["conn"] {
		t.Fatalf("leave event %v, want bob's", l)
	}
	a.until(t, "count 1", func(m ptMsg) bool { return m.Type == "count" && countOf(m) == 1 })

	// Outside the prefixes: nothing but the ack.
	c := ptDial(t, tw, "")
	c.sub(t, "/q/room")
	c.expectQuiet(t)

	ctx, cancel := context.WithTimeout(context.Background(), ptTimeout)
	defer cancel()
	st, err := tw.PresenceStats(ctx, "/p/room")
	if err != nil || st.Connections != 1 || st.Users != 1 {
		t.Fatalf("PresenceStats %+v %v, want 1 connection of 1 user", st, err)
	}
}

// fieldsOf decodes a message (JSON or msgpack) into a map, numbers as
// float64.
func fieldsOf(m ptMsg) map[string]any {
	var v map[string]any
	if m.Frame == websocket.BinaryMessage {
		var raw map[string]any
		if msgpack.Unmarshal(m.Raw, &raw) != nil {
			return nil
		}
		v, _ = ptNorm(raw).(map[string]any)
		return v
	}
	_ = json.Unmarshal(m.Raw, &v)
	return v
}

// countOf is the "count" of a count event (-1 when it has none).
func countOf(m ptMsg) int64 {
	if n, ok := fieldsOf(m)["count"].(float64); ok {
		return int64(n)
	}
	return -1
}

// TestPresenceLegacyCounts: in legacy mode a v0.4 client (no ids, the
// topic field, raw deliveries) gets {"type":"onSubscribe","data":N} after a
// subscribe and {"type":"onUnsubscribe","data":N} after an unsubscribe,
// and no join or leave events.
func TestPresenceLegacyCounts(t *testing.T) {
	tw := ptServer(t, firetower.WithLegacyDelivery(true), firetower.WithPresence(), firetower.WithPresenceInterval(10*time.Millisecond))
	a := ptDial(t, tw, "")
	a.sendText(t, `{"type":"subscribe","topic":"room","data":""}`)
	if m := a.next(t); string(m.Raw) != `{"type":"onSubscribe","data":1}` {
		t.Fatalf("first message %s, want onSubscribe 1", m.Raw)
	}
	b := ptDial(t, tw, "")
	b.sendText(t, `{"type":"subscribe","topic":"room","data":""}`)
	for _, c := range []*ptConn{a, b} {
		if m := c.next(t); string(m.Raw) != `{"type":"onSubscribe","data":2}` {
			t.Fatalf("after the second subscribe: %s, want onSubscribe 2", m.Raw)
		}
	}
	b.sendText(t, `{"type":"unSubscribe","topic":"room","data":""}`)
	if m := a.next(t); string(m.Raw) != `{"type":"onUnsubscribe","data":1}` {
		t.Fatalf("after the unsubscribe: %s, want onUnsubscribe 1", m.Raw)
	}
	b.close()
	a.expectQuiet(t)
}

// TestPresenceCountsCoalesce: with a presence interval too long to tick
// by itself, three joins make one count per subscriber at the next tick;
// a leave and a join in the same interval leave the count as it was, so
// only the joiner is told it.
func TestPresenceCountsCoalesce(t *testing.T) {
	tw := ptServer(t, firetower.WithPresence(), firetower.WithPresenceInterval(time.Hour))
	var cs []*ptConn
	for range 3 {
		c := ptDial(t, tw, "")
		c.sub(t, "room")
		c.until(t, "own join", func(m ptMsg) bool { return m.Type == "join" })
		cs = append(cs, c)
	}
	firetower.PresenceTick(tw)
	counts := func(c *ptConn) (out []int64) {
		for _, m := range c.barrier(t) {
			if m.Type == "count" {
				out = append(out, countOf(m))
			}
		}
		return out
	}
	for i, c := range cs {
		if got := counts(c); len(got) != 1 || got[0] != 3 {
			t.Fatalf("subscriber %d got counts %v, want one count of 3", i, got)
		}
	}
	cs[2].unsub(t, "room")
	cs[0].until(t, "the leave", func(m ptMsg) bool { return m.Type == "leave" })
	d := ptDial(t, tw, "")
	d.sub(t, "room")
	d.until(t, "own join", func(m ptMsg) bool { return m.Type == "join" }) // the join is marked for the tick
	firetower.PresenceTick(tw)
	if got := counts(d); len(got) != 1 || got[0] != 3 {
		t.Fatalf("the joiner got counts %v, want one count of 3", got)
	}
	if got := counts(cs[0]); len(got) != 0 {
		t.Fatalf("a subscriber got counts %v for a count that did not change", got)
	}
}

// TestPresenceBadRemoteEvents: an event from another node that does not
// decode, names another topic, has an unknown type or oversized ids is
// counted in BadControl and reaches no one; a good one reaches the
// subscribers.
func TestPresenceBadRemoteEvents(t *testing.T) {
	tw := ptServer(t, firetower.WithPresence(), firetower.WithPresenceInterval(time.Hour))
	a := ptDial(t, tw, "")
	a.sub(t, "room")
	a.barrier(t)
	pt := firetower.SystemTopicPrefix + "presence/room"
	bad := []string{
		`junk`,
		`{"type":"join","topic":"other","conn":"x","user":"","node":2}`,
		`{"type":"publish","topic":"room","conn":"x","user":"","node":2}`,
		`{"type":"join","topic":"room","conn":"` + strings.Repeat("x", 2000) + `","user":"","node":2}`,
		`{"type":"join","topic":"room","conn":"x","user":"","node":1}`, // its own node
	}
	before := tw.Stats().BadControl
	for _, b := range bad {
		firetower.DeliverRemote(tw, pt, []byte(b))
	}
	if n := tw.Stats().BadControl - before; n != uint64(len(bad)) {
		t.Fatalf("BadControl grew by %d, want %d", n, len(bad))
	}
	a.expectQuiet(t)
	firetower.DeliverRemote(tw, pt, []byte(`{"type":"leave","topic":"room","conn":"2-x-1","user":"u","node":2}`))
	if m := a.next(t); string(m.Raw) != `{"type":"leave","topic":"room","conn":"2-x-1","user":"u"}` {
		t.Fatalf("remote leave delivered as %s", m.Raw)
	}
}
