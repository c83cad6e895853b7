package firetower_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/firetower-go/firetower"
)

// Tests of history and recovery (history.go, PROTOCOL.md "Recovery"). Helpers are
// prefixed "ht".

// htMsg is a server message decoded generically, numbers as uint64 where they are
// unsigned integers.
type htMsg map[string]any

func htDecode(t testing.TB, c *ptConn, f ptFrame) htMsg {
	t.Helper()
	var m map[string]any
	if c.mp {
		if err := msgpack.Unmarshal(f.data, &m); err != nil {
			t.Fatalf("msgpack %q: %v", f.data, err)
		}
	} else if err := json.Unmarshal(f.data, &m); err != nil {
		t.Fatalf("json %q: %v", f.data, err)
	}
	return htMsg(m)
}

func (c *ptConn) htNext(t testing.TB) htMsg {
	t.Helper()
	return htDecode(t, c, c.nextFrame(t))
}

func htUint(t testing.TB, v any) uint64 {
	t.Helper()
	switch x := v.(type) {
	case float64:
		return uint64(x)
	case int8, int16, int32, int64:
		n, _ := strconv.ParseInt(fmt.Sprint(x), 10, 64)
		return uint64(n)
	case uint8, uint16, uint32, uint64:
		n, _ := strconv.ParseUint(fmt.Sprint(x), 10, 64)
		return n
	}
	t.Fatalf("not a number: %#v", v)
	return 0
}

type htPos struct {
	epoch     string
	offset    uint64
	recovered bool
}

// htAck reads the next message, requires a subscribe ack and returns its positions.
func (c *ptConn) htAck(t testing.TB) map[string]htPos {
	t.Helper()
	m := c.htNext(t)
	if m["type"] != "ack" {
		t.Fatalf("got %v, want an ack", m)
	}
	out := map[string]htPos{}
	ps, ok := m["positions"].(map[string]any)
	if !ok {
		t.Fatalf("ack without positions: %v", m)
	}
	for topic, v := range ps {
		p := v.(map[string]any)
		out[topic] = htPos{epoch: p["epoch"].(string), offset: htUint(t, p["offset"]), recovered: p["recovered"].(bool)}
	}
	return out
}

// htDelivery reads the next message, requires a delivery on topic and returns its
// offset and data (as JSON).
func (c *ptConn) htDelivery(t testing.TB, topic string) (uint64, string) {
	t.Helper()
	m := c.htNext(t)
	if m["type"] != "publish" || m["topic"] != topic {
		t.Fatalf("got %v, want a delivery on %s", m, topic)
	}
	off, ok := m["offset"]
	if !ok {
		t.Fatalf("delivery without offset: %v", m)
	}
	d, _ := json.Marshal(m["data"])
	return htUint(t, off), string(d)
}

func htSubscribe(t testing.TB, c *ptConn, topic string, extra map[string]any) map[string]htPos {
	t.Helper()
	req := map[string]any{"type": "subscribe", "topic": topic, "id": c.nextID()}
	for k, v := range extra {
		req[k] = v
	}
	c.send(t, req)
	return c.htAck(t)
}

func htSince(topic string, p htPos) map[string]any {
	return map[string]any{"since": map[string]any{topic: map[string]any{"offset": p.offset, "epoch": p.epoch}}}
}

func htPublish(t testing.TB, tw *firetower.Tower, topic string, i int) firetower.Position {
	t.Helper()
	pos, err := tw.PublishOffset(context.Background(), topic, []byte(strconv.Itoa(i)))
	if err != nil {
		t.Fatalf("PublishOffset: %v", err)
	}
	return pos
}

// htRecover is the acceptance scenario: a client disconnects, 100 messages are
// published, it reconnects with since and receives exactly those 100 in order, then
// live ones. sub and pub may be two Towers of one LocalManager.
func htRecover(t *testing.T, sub, pub *firetower.Tower, codec string) {
	const topic = "room/1"
	c := ptDial(t, sub, codec)
	pos := htSubscribe(t, c, topic, nil)[topic]
	if pos.recovered || pos.epoch == "" {
		t.Fatalf("first subscribe: %+v", pos)
	}
	p1 := htPublish(t, pub, topic, 1)
	if p1.Offset != pos.offset+1 || p1.Epoch != pos.epoch {
		t.Fatalf("publish at %+v after position %+v", p1, pos)
	}
	off, data := c.htDelivery(t, topic)
	if off != p1.Offset || data != "1" {
		t.Fatalf("delivery %d %s, want %d 1", off, data, p1.Offset)
	}
	c.close()
	for i := 2; i <= 101; i++ {
		htPublish(t, pub, topic, i)
	}
	c = ptDial(t, sub, codec)
	defer c.close()
	got := htSubscribe(t, c, topic, htSince(topic, htPos{epoch: pos.epoch, offset: off}))[topic]
	if !got.recovered || got.epoch != pos.epoch || got.offset != off+100 {
		t.Fatalf("recovery position %+v, want recovered at %d", got, off+100)
	}
	for i := 2; i <= 101; i++ {
		o, d := c.htDelivery(t, topic)
		if o != off+uint64(i-1) || d != strconv.Itoa(i) {
			t.Fatalf("replay %d: offset %d data %s", i, o, d)
		}
	}
	p := htPublish(t, pub, topic, 102)
	if o, d := c.htDelivery(t, topic); o != p.Offset || o != off+101 || d != "102" {
		t.Fatalf("live after replay: offset %d data %s, want %d", o, d, p.Offset)
	}
}

func TestHistoryRecoverAfterReconnect(t *testing.T) {
	for _, codec := range []string{"json", "msgpack"} {
		t.Run(codec, func(t *testing.T) {
			tw := ptServer(t, firetower.WithHistory(1000, time.Hour))
			htRecover(t, tw, tw, codec)
		})
	}
}

func TestHistoryRecoverAcrossTowers(t *testing.T) {
	for _, codec := range []string{"json", "msgpack"} {
		t.Run(codec, func(t *testing.T) {
			m := firetower.NewLocalManager()
			a := ptServer(t, firetower.WithManager(m), firetower.WithNodeID(1), firetower.WithHistory(1000, time.Hour))
			b := ptServer(t, firetower.WithManager(m), firetower.WithNodeID(2), firetower.WithHistory(1000, time.Hour))
			htRecover(t, a, b, codec)
		})
	}
}

func TestHistoryEpochChangeNotRecovered(t *testing.T) {
	const topic = "news"
	tw := ptServer(t, firetower.WithHistory(100, time.Hour))
	for i := 1; i <= 5; i++ {
		htPublish(t, tw, topic, i)
	}
	c := ptDial(t, tw, "json")
	defer c.close()
	pos := htSubscribe(t, c, topic, htSince(topic, htPos{epoch: "another", offset: 2}))[topic]
	if pos.recovered || pos.offset != 5 || pos.epoch == "another" {
		t.Fatalf("position %+v, want not recovered at 5", pos)
	}
	// nothing replayed: the next message is the live one
	htPublish(t, tw, topic, 6)
	if o, d := c.htDelivery(t, topic); o != 6 || d != "6" {
		t.Fatalf("got %d %s, want the live publish 6", o, d)
	}
	// an offset past the top is not recovered either
	c2 := ptDial(t, tw, "json")
	defer c2.close()
	if p := htSubscribe(t, c2, topic, htSince(topic, htPos{epoch: pos.epoch, offset: 99}))[topic]; p.recovered {
		t.Fatalf("recovered from an offset past the top: %+v", p)
	}
}

func TestHistoryLast(t *testing.T) {
	const topic = "chat/a"
	tw := ptServer(t, firetower.WithHistory(20, time.Hour))
	for i := 1; i <= 30; i++ {
		htPublish(t, tw, topic, i)
	}
	for _, codec := range []string{"json", "msgpack"} {
		c := ptDial(t, tw, codec)
		pos := htSubscribe(t, c, topic, map[string]any{"last": 5})[topic]
		if pos.recovered || pos.offset != 30 {
			t.Fatalf("%s: position %+v", codec, pos)
		}
		for i := 26; i <= 30; i++ {
			if o, d := c.htDelivery(t, topic); o != uint64(i) || d != strconv.Itoa(i) {
				t.Fatalf("%s: got %d %s, want %d", codec, o, d, i)
			}
		}
		c.close()
	}
	// last is capped at the stream size: 20 kept, the oldest evicted
	c := ptDial(t, tw, "json")
	defer c.close()
	htSubscribe(t, c, topic, map[string]any{"last": uint64(1) << 62})
	for i := 11; i <= 30; i++ {
		if o, _ := c.htDelivery(t, topic); o != uint64(i) {
			t.Fatalf("got offset %d, want %d", o, i)
		}
	}
	htPublish(t, tw, topic, 31)
	if o, _ := c.htDelivery(t, topic); o != 31 {
		t.Fatalf("live: got offset %d, want 31", o)
	}
}

func TestHistorySizeEviction(t *testing.T) {
	const topic = "sized"
	tw := ptServer(t, firetower.WithHistory(10, time.Hour))
	var epoch string
	for i := 1; i <= 30; i++ {
		epoch = htPublish(t, tw, topic, i).Epoch
	}
	r, err := tw.History(context.Background(), topic, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Publications) != 10 || r.Publications[0].Offset != 21 || r.Top.Offset != 30 {
		t.Fatalf("history %+v", r)
	}
	c := ptDial(t, tw, "json")
	defer c.close()
	// offset 20 is the last one evicted: from it, 21.. are all there
	if p := htSubscribe(t, c, topic, htSince(topic, htPos{epoch: epoch, offset: 20}))[topic]; !p.recovered {
		t.Fatalf("not recovered from 20: %+v", p)
	}
	for i := 21; i <= 30; i++ {
		if o, _ := c.htDelivery(t, topic); o != uint64(i) {
			t.Fatalf("got %d, want %d", o, i)
		}
	}
	c2 := ptDial(t, tw, "json")
	defer c2.close()
	if p := htSubscribe(t, c2, topic, htSince(topic, htPos{epoch: epoch, offset: 19}))[topic]; p.recovered {
		t.Fatalf("recovered from 19 although 20 was evicted: %+v", p)
	}
	htPublish(t, tw, topic, 31)
	if o, _ := c2.htDelivery(t, topic); o != 31 {
		t.Fatalf("after a failed recovery, got %d, want the live 31", o)
	}
}

func TestHistoryTTLEviction(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	advance := func(d time.Duration) { now.Add(int64(d)) }
	m := firetower.NewLocalManager()
	firetower.SetHistoryClock(m, func() time.Time { return time.Unix(0, now.Load()) })
	tw := ptServer(t, firetower.WithManager(m), firetower.WithHistory(100, time.Minute))
	ctx := context.Background()

	for i := 1; i <= 5; i++ {
		htPublish(t, tw, "ttl", i)
	}
	advance(30 * time.Second)
	p6 := htPublish(t, tw, "ttl", 6)
	advance(45 * time.Second) // 1..5 are 75s old, 6 is 45s old
	r, err := tw.History(ctx, "ttl", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Publications) != 1 || r.Publications[0].Offset != 6 || r.Top != p6 {
		t.Fatalf("after the TTL of 1..5: %+v", r)
	}
	if r, _ := tw.History(ctx, "ttl", &firetower.Position{Offset: 4, Epoch: p6.Epoch}, 0); r.Recovered {
		t.Fatalf("recovered from an evicted offset: %+v", r)
	}
	if r, _ := tw.History(ctx, "ttl", &firetower.Position{Offset: 5, Epoch: p6.Epoch}, 0); !r.Recovered || len(r.Publications) != 1 {
		t.Fatalf("not recovered from 5: %+v", r)
	}
	if s := tw.Stats(); s.HistoryStreams != 1 || s.HistoryBytes <= 0 {
		t.Fatalf("stats %d streams %d bytes", s.HistoryStreams, s.HistoryBytes)
	}

	// Idle past the TTL with no subscriber, the stream is dropped at the next sweep
	// (made by any publish): a later publish starts a new epoch.
	advance(2 * time.Minute)
	htPublish(t, tw, "other", 1)
	if s := tw.Stats(); s.HistoryStreams != 1 {
		t.Fatalf("streams after the sweep: %d, want 1", s.HistoryStreams)
	}
	p := htPublish(t, tw, "ttl", 7)
	if p.Epoch == p6.Epoch || p.Offset != 1 {
		t.Fatalf("after the stream was dropped: %+v (old %+v)", p, p6)
	}

	// A stream with a subscriber is kept, epoch and top, even idle.
	c := ptDial(t, tw, "json")
	defer c.close()
	pos := htSubscribe(t, c, "kept", nil)["kept"]
	advance(5 * time.Minute)
	htPublish(t, tw, "other", 2)
	if q := htPublish(t, tw, "kept", 1); q.Epoch != pos.epoch || q.Offset != 1 {
		t.Fatalf("a subscribed stream changed epoch: %+v, was %+v", q, pos)
	}

	// Streams made by reads alone (a subscribe, History) are swept by reads too.
	c.close()
	for i := range 5 {
		if _, err := tw.History(ctx, "read/"+strconv.Itoa(i), nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	ptWaitStats(t, tw, "the subscriber gone", func(s firetower.Stats) bool { return s.Subscriptions == 0 })
	advance(2 * time.Minute)
	if _, err := tw.History(ctx, "read/0", nil, 0); err != nil { // sweeps
		t.Fatal(err)
	}
	if s := tw.Stats(); s.HistoryStreams != 1 { // read/0, made again after the sweep
		t.Fatalf("streams after sweeping idle ones: %d, want 1", s.HistoryStreams)
	}
}

// The seam under concurrent publishing (clients reconnecting with since
// while a publisher never stops, on one Tower and across two) is
// managertest's SeamOneGateway and SeamTwoGateways, which
// TestLocalManagerHistoryConformance runs on the LocalManager.

func TestHistoryBadRequests(t *testing.T) {
	tw := ptServer(t, firetower.WithHistory(10, time.Hour))
	for _, codec := range []string{"json", "msgpack"} {
		c := ptDial(t, tw, codec)
		for _, extra := range []map[string]any{
			{"since": "x"},
			{"since": map[string]any{"a": 1}},
			{"since": map[string]any{"a": map[string]any{"offset": -1, "epoch": "e"}}},
			{"since": map[string]any{"a": map[string]any{"offset": 1.5, "epoch": "e"}}},
			{"since": map[string]any{"a": map[string]any{"offset": 1}}},
			{"since": map[string]any{"a": map[string]any{"offset": 1, "epoch": 3}}},
			{"last": -3},
			{"last": "5"},
			{"last": map[string]any{}},
		} {
			req := map[string]any{"type": "subscribe", "topic": "a", "id": 7}
			for k, v := range extra {
				req[k] = v
			}
			c.send(t, req)
			c.expectError(t, 7, firetower.CodeBadRequest)
		}
		// and the connection still works
		if p := htSubscribe(t, c, "a", map[string]any{"last": 3}); p["a"].epoch == "" {
			t.Fatalf("%s: %v", codec, p)
		}
		c.close()
	}
}

func TestHistoryOptionsAndManager(t *testing.T) {
	for _, o := range []firetower.Option{
		firetower.WithHistory(0, time.Minute),
		firetower.WithHistory(10, 0),
		firetower.WithHistory(10, time.Minute, ""),
	} {
		if _, err := firetower.New(o); !errors.Is(err, firetower.ErrBadOption) {
			t.Errorf("New: %v, want ErrBadOption", err)
		}
	}
	tw, err := firetower.New(firetower.WithAddr("127.0.0.1:0"), firetower.WithManager(htNoHistoryManager{firetower.NewLocalManager()}),
		firetower.WithHistory(10, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Start(context.Background()); err == nil {
		_ = tw.Shutdown(context.Background())
		t.Fatal("Start with a Manager that keeps no history succeeded")
	}
	// Without WithHistory such a Manager is fine, and topics carry no offset.
	tw = ptServer(t, firetower.WithManager(htNoHistoryManager{firetower.NewLocalManager()}))
	if p, err := tw.PublishOffset(context.Background(), "x", []byte("1")); err != nil || p != (firetower.Position{}) {
		t.Fatalf("PublishOffset without history: %+v %v", p, err)
	}
	if _, err := tw.History(context.Background(), "x", nil, 0); err == nil {
		t.Fatal("History without history: no error")
	}
}

// htNoHistoryManager joins through a Link that has only Link's methods.
type htNoHistoryManager struct{ m *firetower.LocalManager }

func (h htNoHistoryManager) Join(ctx context.Context, n firetower.Node) (firetower.Link, error) {
	l, err := h.m.Join(ctx, n)
	return struct{ firetower.Link }{l}, err
}

// TestHistoryPrefixes: only topics with a prefix keep history; the others are
// delivered as before, without offset, and their subscribe ack has no positions.
func TestHistoryPrefixes(t *testing.T) {
	tw := ptServer(t, firetower.WithHistory(10, time.Hour, "h/"))
	c := ptDial(t, tw, "json")
	defer c.close()
	c.send(t, map[string]any{"type": "subscribe", "topics": []string{"h/a", "plain"}, "id": 1})
	pos := c.htAck(t)
	if _, ok := pos["plain"]; ok || len(pos) != 1 {
		t.Fatalf("positions %v", pos)
	}
	if err := tw.Publish(context.Background(), "plain", []byte(`"x"`)); err != nil {
		t.Fatal(err)
	}
	if m := c.htNext(t); m["topic"] != "plain" || m["offset"] != nil {
		t.Fatalf("plain delivery %v", m)
	}
	c.send(t, map[string]any{"type": "subscribe", "topic": "plain2", "id": 2})
	if m := c.htNext(t); m["type"] != "ack" || m["positions"] != nil {
		t.Fatalf("ack %v", m)
	}
}

// TestHistoryAckWithoutID: a subscribe with since or last and no id is acked (id null)
// with its positions; one with neither gets no ack, as before.
func TestHistoryAckWithoutID(t *testing.T) {
	tw := ptServer(t, firetower.WithHistory(10, time.Hour))
	htPublish(t, tw, "a", 1)
	c := ptDial(t, tw, "json")
	defer c.close()
	c.send(t, map[string]any{"type": "subscribe", "topic": "b"})
	c.send(t, map[string]any{"type": "subscribe", "topic": "a", "last": 1})
	m := c.htNext(t)
	if m["type"] != "ack" || m["id"] != nil || m["positions"] == nil {
		t.Fatalf("got %v, want the ack of the second subscribe, id null", m)
	}
	if o, _ := c.htDelivery(t, "a"); o != 1 {
		t.Fatalf("replay offset %d", o)
	}
}

// TestHistoryLegacyDelivery: legacy deliveries stay raw data, with no offset, live and
// replayed alike.
func TestHistoryLegacyDelivery(t *testing.T) {
	tw := ptServer(t, firetower.WithHistory(10, time.Hour), firetower.WithLegacyDelivery(true))
	htPublish(t, tw, "a", 1)
	c := ptDial(t, tw, "json")
	defer c.close()
	c.send(t, map[string]any{"type": "subscribe", "topic": "a", "id": 1, "last": 5})
	if m := c.htNext(t); m["type"] != "ack" || m["positions"] == nil {
		t.Fatalf("ack %v", m)
	}
	if f := c.nextFrame(t); string(f.data) != "1" {
		t.Fatalf("replay %q, want the raw data", f.data)
	}
	htPublish(t, tw, "a", 2)
	if f := c.nextFrame(t); string(f.data) != "2" {
		t.Fatalf("live %q, want the raw data", f.data)
	}
}

// TestHistoryManyTopics: one subscribe recovers many topics at once (more than the
// manager's lock stripes, so some share one): the ack has every position, then come
// each topic's replays, in order.
func TestHistoryManyTopics(t *testing.T) {
	const n = 70
	tw := ptServer(t, firetower.WithHistory(10, time.Hour))
	topics := make([]string, n)
	epochs := map[string]string{}
	for i := range topics {
		topics[i] = "many/" + strconv.Itoa(i)
		htPublish(t, tw, topics[i], 1)
		epochs[topics[i]] = htPublish(t, tw, topics[i], 2).Epoch
	}
	for _, codec := range []string{"json", "msgpack"} {
		c := ptDial(t, tw, codec)
		since := map[string]any{}
		for i, tp := range topics {
			if i%2 == 0 { // the even ones resume after 1, the odd ones ask for the last 2
				since[tp] = map[string]any{"offset": 1, "epoch": epochs[tp]}
			}
		}
		c.send(t, map[string]any{"type": "subscribe", "topics": topics, "id": 1, "since": since, "last": 2})
		pos := c.htAck(t)
		if len(pos) != n {
			t.Fatalf("%s: %d positions, want %d", codec, len(pos), n)
		}
		got := map[string][]uint64{}
		for range n/2*1 + n/2*2 {
			m := c.htNext(t)
			tp, _ := m["topic"].(string)
			got[tp] = append(got[tp], htUint(t, m["offset"]))
		}
		for i, tp := range topics {
			want := []uint64{1, 2}
			if i%2 == 0 {
				want = []uint64{2}
				if !pos[tp].recovered {
					t.Errorf("%s: %s not recovered", codec, tp)
				}
			}
			if fmt.Sprint(got[tp]) != fmt.Sprint(want) || pos[tp].offset != 2 {
				t.Errorf("%s: %s replayed %v (position %+v), want %v", codec, tp, got[tp], pos[tp], want)
			}
		}
		c.close()
	}
}
