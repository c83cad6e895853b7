package managertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/firetower-go/firetower"
)

// RunHistory runs the history and recovery scenarios (PROTOCOL.md,
// "Recovery") against a Manager that keeps history (its Links are
// firetower.HistoryLinks): recovery of 100 missed publishes on one gateway
// and across two, in JSON and msgpack; an epoch change; last N; size and
// TTL eviction; and the seam between replay and live delivery while a
// publisher never stops, on one gateway and across two.
func RunHistory(t *testing.T, c Cluster) {
	for _, codec := range []string{"json", "msgpack"} {
		t.Run("Recover100OneGateway/"+codec, func(t *testing.T) {
			tw := Gateways(t, c, 1, firetower.WithHistory(1000, time.Hour))
			histRecover100(t, tw[0], tw[0], codec)
		})
		t.Run("Recover100TwoGateways/"+codec, func(t *testing.T) {
			tw := Gateways(t, c, 2, firetower.WithHistory(1000, time.Hour))
			histRecover100(t, tw[0], tw[1], codec)
		})
		t.Run("Last/"+codec, func(t *testing.T) { histLast(t, c, codec) })
	}
	t.Run("EpochChange", func(t *testing.T) { histEpochChange(t, c) })
	t.Run("SizeEviction", func(t *testing.T) { histSizeEviction(t, c) })
	t.Run("TTLEviction", func(t *testing.T) { histTTLEviction(t, c) })
	t.Run("SeamOneGateway", func(t *testing.T) {
		tw := Gateways(t, c, 1, firetower.WithHistory(100000, time.Hour))
		HistorySeam(t, tw[0], tw[0])
	})
	t.Run("SeamTwoGateways", func(t *testing.T) {
		tw := Gateways(t, c, 2, firetower.WithHistory(100000, time.Hour))
		HistorySeam(t, tw[0], tw[1])
	})
}

// HistClient is a websocket client of the history scenarios, in JSON or
// msgpack. Its methods fail the test through its TB; off the test
// goroutine, give it one whose Fatal panics (see HistorySeam).
type HistClient struct {
	t     testing.TB
	ws    *websocket.Conn
	mp    bool
	in    chan []byte
	done  chan struct{}
	quit  chan struct{}
	seq   int
	close sync.Once
}

// HistPos is a topic's position in an ack.
type HistPos struct {
	Epoch     string
	Offset    uint64
	Recovered bool
}

// DialHist connects a client to tw with codec "json" or "msgpack".
func DialHist(t testing.TB, tw *firetower.Tower, codec string) *HistClient {
	t.Helper()
	proto := "firetower.v1.json"
	if codec == "msgpack" {
		proto = "firetower.v1.msgpack"
	}
	d := websocket.Dialer{HandshakeTimeout: Timeout, Subprotocols: []string{proto}}
	ws, _, err := d.Dial("ws://"+tw.Addr()+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &HistClient{t: t, ws: ws, mp: codec == "msgpack", in: make(chan []byte, 1024), done: make(chan struct{}), quit: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			_, p, err := ws.ReadMessage()
			if err != nil {
				close(c.in)
				return
			}
			select {
			case c.in <- p:
			case <-c.quit:
				close(c.in)
				return
			}
		}
	}()
	return c
}

// Close closes the connection and waits for its reader.
func (c *HistClient) Close() {
	c.close.Do(func() { close(c.quit); _ = c.ws.Close(); <-c.done })
}

func (c *HistClient) send(m map[string]any) {
	var p []byte
	var err error
	typ := websocket.TextMessage
	if c.mp {
		p, err = msgpack.Marshal(m)
		typ = websocket.BinaryMessage
	} else {
		p, err = json.Marshal(m)
	}
	if err == nil {
		err = c.ws.WriteMessage(typ, p)
	}
	if err != nil {
		c.t.Fatal(err)
	}
}

func (c *HistClient) next() map[string]any {
	select {
	case p, ok := <-c.in:
		if !ok {
			c.t.Fatal("connection closed")
		}
		var m map[string]any
		var err error
		if c.mp {
			err = msgpack.Unmarshal(p, &m)
		} else {
			err = json.Unmarshal(p, &m)
		}
		if err != nil {
			c.t.Fatalf("bad message %q: %v", p, err)
		}
		return m
	case <-time.After(Timeout):
		c.t.Fatal("no message")
	}
	return nil
}

// Subscribe subscribes to topic with extra fields (since, last) and
// returns the ack's positions.
func (c *HistClient) Subscribe(topic string, extra map[string]any) map[string]HistPos {
	c.seq++
	req := map[string]any{"type": "subscribe", "topic": topic, "id": c.seq}
	for k, v := range extra {
		req[k] = v
	}
	c.send(req)
	m := c.next()
	if m["type"] != "ack" {
		c.t.Fatalf("got %v, want an ack", m)
	}
	ps, ok := m["positions"].(map[string]any)
	if !ok {
		c.t.Fatalf("ack without positions: %v", m)
	}
	out := map[string]HistPos{}
	for tp, v := range ps {
		p, _ := v.(map[string]any)
		e, _ := p["epoch"].(string)
		r, _ := p["recovered"].(bool)
		out[tp] = HistPos{Epoch: e, Offset: histUint(c.t, p["offset"]), Recovered: r}
	}
	return out
}

// Delivery reads the next message, which must be a delivery on topic with
// an offset, and returns the offset and the data as a string.
func (c *HistClient) Delivery(topic string) (uint64, string) {
	m := c.next()
	if m["type"] != "publish" || m["topic"] != topic {
		c.t.Fatalf("got %v, want a delivery on %s", m, topic)
	}
	off, ok := m["offset"]
	if !ok {
		c.t.Fatalf("delivery without an offset: %v", m)
	}
	var d string
	switch x := m["data"].(type) {
	case string:
		d = x
	default:
		b, _ := json.Marshal(x)
		d = string(b)
	}
	return histUint(c.t, off), d
}

func histUint(t testing.TB, v any) uint64 {
	switch x := v.(type) {
	case float64:
		if x >= 0 {
			return uint64(x)
		}
	case int8, int16, int32, int64:
		n, _ := strconv.ParseInt(fmt.Sprint(x), 10, 64)
		if n >= 0 {
			return uint64(n)
		}
	case uint8, uint16, uint32, uint64:
		n, _ := strconv.ParseUint(fmt.Sprint(x), 10, 64)
		return n
	}
	t.Fatalf("not an offset: %#v", v)
	return 0
}

// Since is the since field of a subscribe to topic from p.
func Since(topic string, p HistPos) map[string]any {
	return map[string]any{"since": map[string]any{topic: map[string]any{"offset": p.Offset, "epoch": p.Epoch}}}
}

func histPublish(t testing.TB, tw *firetower.Tower, topic, data string) firetower.Position {
	t.Helper()
	p, err := tw.PublishOffset(context.Background(), topic, []byte(data))
	if err != nil {
		t.Fatalf("PublishOffset: %v", err)
	}
	return p
}

// histRecover100: a client on sub disconnects, 100 messages are published
// on pub (every other one without waiting for its offset, as a client's
// publish is), the client comes back with its position and gets exactly
// those 100 in order, then live ones.
func histRecover100(t *testing.T, sub, pub *firetower.Tower, codec string) {
	const topic = "room/100"
	c := DialHist(t, sub, codec)
	pos := c.Subscribe(topic, nil)[topic]
	if pos.Recovered || pos.Epoch == "" {
		t.Fatalf("first subscribe: %+v", pos)
	}
	p1 := histPublish(t, pub, topic, "m1")
	if p1.Epoch != pos.Epoch || p1.Offset != pos.Offset+1 {
		t.Fatalf("publish at %+v after %+v", p1, pos)
	}
	off, d := c.Delivery(topic)
	if off != p1.Offset || d != "m1" {
		t.Fatalf("delivery %d %q, want %d m1", off, d, p1.Offset)
	}
	c.Close()
	for i := 2; i <= 100; i++ {
		if err := pub.Publish(context.Background(), topic, []byte("m"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	last := histPublish(t, pub, topic, "m101") // after the others: they are all in the stream
	c = DialHist(t, sub, codec)
	defer c.Close()
	got := c.Subscribe(topic, Since(topic, HistPos{Epoch: pos.Epoch, Offset: off}))[topic]
	if !got.Recovered || got.Epoch != pos.Epoch || got.Offset != last.Offset || last.Offset != off+100 {
		t.Fatalf("recovery %+v, want recovered at %d (last publish %+v)", got, off+100, last)
	}
	for i := 2; i <= 101; i++ {
		o, d := c.Delivery(topic)
		if o != off+uint64(i-1) || d != "m"+strconv.Itoa(i) {
			t.Fatalf("replay %d: offset %d data %q, want %d", i, o, d, off+uint64(i-1))
		}
	}
	live := histPublish(t, pub, topic, "live")
	if o, d := c.Delivery(topic); o != live.Offset || o != off+101 || d != "live" {
		t.Fatalf("live after the replay: offset %d data %q, want %d", o, d, off+101)
	}
}

func histEpochChange(t *testing.T, c Cluster) {
	tw := Gateways(t, c, 2, firetower.WithHistory(100, time.Hour))
	const topic = "epoch"
	top := histPublish(t, tw[1], topic, "x")
	cl := DialHist(t, tw[0], "json")
	defer cl.Close()
	got := cl.Subscribe(topic, Since(topic, HistPos{Epoch: "not-" + top.Epoch, Offset: 0}))[topic]
	if got.Recovered || got.Epoch != top.Epoch || got.Offset != top.Offset {
		t.Fatalf("since another epoch: %+v, want not recovered at %+v", got, top)
	}
	// Nothing is replayed: the next message is the live one.
	live := histPublish(t, tw[1], topic, "y")
	if o, d := cl.Delivery(topic); o != live.Offset || d != "y" {
		t.Fatalf("after a changed epoch: %d %q, want the live %d", o, d, live.Offset)
	}
}

func histLast(t *testing.T, c Cluster, codec string) {
	tw := Gateways(t, c, 2, firetower.WithHistory(100, time.Hour))
	const topic = "last"
	var top firetower.Position
	for i := 1; i <= 30; i++ {
		top = histPublish(t, tw[1], topic, "m"+strconv.Itoa(i))
	}
	cl := DialHist(t, tw[0], codec)
	defer cl.Close()
	got := cl.Subscribe(topic, map[string]any{"last": 10})[topic]
	if got.Recovered || got.Offset != top.Offset || got.Epoch != top.Epoch {
		t.Fatalf("last 10: %+v, want top %+v", got, top)
	}
	for i := 21; i <= 30; i++ {
		o, d := cl.Delivery(topic)
		if o != top.Offset-uint64(30-i) || d != "m"+strconv.Itoa(i) {
			t.Fatalf("last %d: %d %q", i, o, d)
		}
	}
	live := histPublish(t, tw[1], topic, "live")
	if o, d := cl.Delivery(topic); o != live.Offset || d != "live" {
		t.Fatalf("live after last: %d %q", o, d)
	}
	r, err := tw[0].History(context.Background(), topic, nil, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Publications) != 5 || r.Publications[4].Offset != live.Offset || string(r.Publications[0].Data) != "m27" {
		t.Fatalf("History last 5: %+v", r)
	}
}

func histSizeEviction(t *testing.T, c Cluster) {
	const size = 10
	tw := Gateways(t, c, 2, firetower.WithHistory(size, time.Hour))
	const topic = "size"
	first := histPublish(t, tw[1], topic, "m1")
	var top firetower.Position
	for i := 2; i <= size+5; i++ {
		top = histPublish(t, tw[1], topic, "m"+strconv.Itoa(i))
	}
	r, err := tw[0].History(context.Background(), topic, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Publications) != size || r.Publications[0].Offset != top.Offset-size+1 || r.Top != top {
		t.Fatalf("after %d publishes of a stream of %d: %d kept from %d, top %+v", size+5, size, len(r.Publications), r.Publications[0].Offset, r.Top)
	}
	// Evicted: a position before the oldest kept cannot be recovered.
	cl := DialHist(t, tw[0], "msgpack")
	defer cl.Close()
	if got := cl.Subscribe(topic, Since(topic, HistPos{Epoch: first.Epoch, Offset: first.Offset}))[topic]; got.Recovered {
		t.Fatalf("recovered from an evicted position: %+v", got)
	}
	// The oldest kept position still is.
	r2, err := tw[0].History(context.Background(), topic, &firetower.Position{Offset: top.Offset - size, Epoch: top.Epoch}, 0)
	if err != nil || !r2.Recovered || len(r2.Publications) != size {
		t.Fatalf("since the last evicted offset: %+v %v", r2, err)
	}
}

func histTTLEviction(t *testing.T, c Cluster) {
	const ttl = 300 * time.Millisecond
	tw := Gateways(t, c, 2, firetower.WithHistory(100, ttl))
	const topic = "ttl"
	p := histPublish(t, tw[1], topic, "old")
	r, err := tw[0].History(context.Background(), topic, nil, 0)
	if err != nil || len(r.Publications) == 0 {
		t.Fatalf("just published: %+v %v", r, err)
	}
	// Poll until the publication is past its TTL and gone (JetStream
	// enforces a stream's MaxAge every few seconds: a longer bound).
	deadline := time.Now().Add(3 * Timeout)
	for {
		r, err = tw[0].History(context.Background(), topic, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Publications) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still kept %v after its TTL of %v", r.Publications, ttl)
		}
		time.Sleep(20 * time.Millisecond)
	}
	since, err := tw[0].History(context.Background(), topic, &firetower.Position{Offset: p.Offset - 1, Epoch: p.Epoch}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if since.Recovered && since.Top.Epoch == p.Epoch {
		t.Fatalf("recovered past the TTL: %+v", since)
	}
}

// HistorySeam publishes on pub without a pause while clients on tw (JSON
// and msgpack) reconnect with their position again and again; every client
// must get every offset once, in order.
func HistorySeam(t *testing.T, tw, pub *firetower.Tower) {
	const (
		topic      = "seam"
		clients    = 4
		reconnects = 15
	)
	histPublish(t, pub, topic, "0")
	var (
		top     atomic.Uint64
		pubErr  atomic.Pointer[error]
		stopped = make(chan struct{})
		stop    = make(chan struct{})
	)
	go func() {
		defer close(stopped)
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			p, err := pub.PublishOffset(context.Background(), topic, []byte(strconv.Itoa(i)))
			if err != nil {
				pubErr.Store(&err)
				return
			}
			top.Store(p.Offset)
			if i%4 == 0 {
				// Pacing, not synchronisation: the publisher does not
				// outrun the readers by far, so the test stays short.
				time.Sleep(50 * time.Microsecond)
			}
		}
	}()
	var cycles, all sync.WaitGroup
	errs := make(chan error, clients)
	for k := range clients {
		codec := []string{"json", "msgpack"}[k%2]
		cycles.Add(1)
		all.Add(1)
		go func() {
			defer all.Done()
			errs <- histSeamClient(t, tw, topic, codec, reconnects, 5+k*4, cycles.Done, stopped, &top)
		}()
	}
	cycles.Wait()
	close(stop)
	all.Wait()
	if e := pubErr.Load(); e != nil {
		t.Fatal(*e)
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// panicTB makes Fatal panic, for clients run off the test goroutine.
type panicTB struct{ testing.TB }

func (p panicTB) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (p panicTB) Fatal(args ...any)                 { panic(fmt.Sprint(args...)) }
func (p panicTB) Helper()                           {}

var errSeam = errors.New("seam")

func histSeamClient(t *testing.T, tw *firetower.Tower, topic, codec string, reconnects, every int,
	cycled func(), stopped chan struct{}, top *atomic.Uint64) (err error) {
	once := sync.OnceFunc(cycled)
	defer once()
	var last uint64
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s client: %v (last %d, top %d)", errSeam, codec, r, last, top.Load())
		}
	}()
	tb := panicTB{t}
	c := DialHist(tb, tw, codec)
	defer func() { c.Close() }()
	pos := c.Subscribe(topic, nil)[topic]
	last = pos.Offset
	read := func() error {
		o, d := c.Delivery(topic)
		if o != last+1 {
			return fmt.Errorf("%w: %s client: offset %d after %d", errSeam, codec, o, last)
		}
		if want := strconv.FormatUint(o-1, 10); d != want {
			return fmt.Errorf("%w: %s client: offset %d carries %q, want %q", errSeam, codec, o, d, want)
		}
		last = o
		return nil
	}
	for range reconnects {
		for range every {
			if err := read(); err != nil {
				return err
			}
		}
		c.Close()
		c = DialHist(tb, tw, codec)
		p := c.Subscribe(topic, Since(topic, HistPos{Epoch: pos.Epoch, Offset: last}))[topic]
		if !p.Recovered || p.Offset < last {
			return fmt.Errorf("%w: %s client: not recovered from %d: %+v", errSeam, codec, last, p)
		}
	}
	once()
	<-stopped
	for last < top.Load() {
		if err := read(); err != nil {
			return err
		}
	}
	return nil
}
