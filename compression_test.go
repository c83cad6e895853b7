package firetower_test

// permessage-deflate (issue 13): negotiation, third-party clients (gorilla,
// coder/websocket), raw frames (fragmentation, control frames, RSV1 without
// negotiation, zip bombs), mixed subscribers, and a table of protocol cases
// over a compressed connection.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	coder "github.com/coder/websocket"
	"github.com/gorilla/websocket"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/firetower-go/firetower"
)

const (
	czText   = 0x1
	czBinary = 0x2
	czCont   = 0x0
	czClose  = 0x8
	czPing   = 0x9
	czPong   = 0xa
)

// czServer starts a Tower on a free loopback port, shut down at the end of
// the test.
func czServer(t testing.TB, opts ...firetower.Option) *firetower.Tower {
	t.Helper()
	tw, err := firetower.New(append([]firetower.Option{firetower.WithAddr("127.0.0.1:0"), firetower.WithStatsInterval(0)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), czWait)
		defer cancel()
		_ = tw.Shutdown(ctx)
	})
	return tw
}

// czPayload is a JSON value of about n bytes with the redundancy of real
// market data: repeated keys, similar numbers.
func czPayload(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"rows":[`)
	for i := 0; b.Len() < n-40; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"symbol":"EURUSD","bid":1.08%03d,"ask":1.08%03d,"seq":%d}`, i*7%1000, i*7%1000+2, i)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// czRaw is a raw client on a compressed connection: frames read from it
// are inflated (czInflating).
type czRaw struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

func czRawDial(t testing.TB, tw *firetower.Tower, extensions string) *czRaw {
	t.Helper()
	nc, br := czDial(t, tw.Addr(), "/ws", extensions, nil)
	return &czRaw{t: t, nc: nc, br: br}
}

func (c *czRaw) send(b []byte) {
	c.t.Helper()
	_ = c.nc.SetWriteDeadline(time.Now().Add(czWait))
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// next reads the next server frame that is not a ping.
func (c *czRaw) next() czServerFrame {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(czWait))
	for {
		f, err := czReadServerFrame(c.br)
		if err != nil {
			c.t.Fatalf("reading a server frame: %v", err)
		}
		if f.op != czPing {
			return f
		}
	}
}

// nextJSON reads the next message as a JSON object.
func (c *czRaw) nextJSON() map[string]any {
	c.t.Helper()
	f := c.next()
	if f.op != czText || f.rsv != 0 {
		c.t.Fatalf("got a frame op=%#x rsv=%03b %q, want a text message", f.op, f.rsv, czShort(f.payload))
	}
	var m map[string]any
	if err := json.Unmarshal(f.payload, &m); err != nil {
		c.t.Fatalf("server message %q is not JSON: %v", czShort(f.payload), err)
	}
	return m
}

// expectClose reads until a close frame and checks its code.
func (c *czRaw) expectClose(code int) {
	c.t.Helper()
	for {
		f := c.next()
		if f.op != czClose {
			continue
		}
		if len(f.payload) < 2 {
			c.t.Fatalf("close frame without a code, want %d", code)
		}
		if got := int(binary.BigEndian.Uint16(f.payload)); got != code {
			c.t.Fatalf("close code %d (%q), want %d", got, f.payload[2:], code)
		}
		return
	}
}

func czShort(b []byte) string {
	if len(b) > 120 {
		return fmt.Sprintf("%s...(%d bytes)", b[:120], len(b))
	}
	return string(b)
}

// czWaitStats polls the Tower's stats until cond holds (a deadline, not a
// synchronisation).
func czWaitStats(t testing.TB, tw *firetower.Tower, what string, cond func(firetower.Stats) bool) firetower.Stats {
	t.Helper()
	deadline := time.Now().Add(czWait)
	for {
		s := tw.Stats()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; stats: %+v", what, s.Transport.Compression)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func czSubscribers(t testing.TB, tw *firetower.Tower, topic string, n int64) {
	t.Helper()
	deadline := time.Now().Add(czWait)
	for {
		got, err := tw.ConnectNum(context.Background(), topic)
		if err == nil && got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d subscribers (err %v), want %d", topic, got, err, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestCompressionNegotiation(t *testing.T) {
	on := czServer(t, firetower.WithCompression(0, 0))
	off := czServer(t)
	cases := []struct {
		name   string
		tw     *firetower.Tower
		offer  string
		accept bool
	}{
		{"no offer", on, "-", false},
		{"plain offer", on, "permessage-deflate", true},
		{"browser offer", on, "permessage-deflate; client_max_window_bits", true},
		{"gorilla offer", on, "permessage-deflate; server_no_context_takeover; client_no_context_takeover", true},
		{"client window with value", on, "permessage-deflate; client_max_window_bits=10", true},
		{"server window 15", on, "permessage-deflate; server_max_window_bits=15", true},
		{"server window 10 declined", on, "permessage-deflate; server_max_window_bits=10", false},
		{"second offer taken", on, "permessage-deflate; server_max_window_bits=9, permessage-deflate", true},
		{"unknown parameter", on, "permessage-deflate; foo=1", false},
		{"repeated parameter", on, "permessage-deflate; client_no_context_takeover; client_no_context_takeover", false},
		{"bad window", on, "permessage-deflate; client_max_window_bits=16", false},
		{"other extension", on, "x-webkit-deflate-frame", false},
		{"server without compression", off, "permessage-deflate; client_max_window_bits", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nc, resp, _, err := czUpgrade(tc.tw.Addr(), "/ws", tc.offer, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("status %s, want 101", resp.Status)
			}
			ext := resp.Header.Values("Sec-WebSocket-Extensions")
			if !tc.accept {
				if len(ext) != 0 {
					t.Fatalf("Sec-WebSocket-Extensions = %q, want none", ext)
				}
				return
			}
			if len(ext) != 1 || !czHasParam(ext[0], "permessage-deflate") || !czHasParam(ext[0], "server_no_context_takeover") {
				t.Fatalf("Sec-WebSocket-Extensions = %q, want permessage-deflate with server_no_context_takeover", ext)
			}
		})
	}
}

func TestCompressionOptionValidation(t *testing.T) {
	for _, c := range []struct{ level, min int }{{-1, 0}, {10, 0}, {1, -1}} {
		if _, err := firetower.New(firetower.WithCompression(c.level, c.min)); !errors.Is(err, firetower.ErrBadOption) {
			t.Errorf("WithCompression(%d, %d): %v, want ErrBadOption", c.level, c.min, err)
		}
	}
}

// czGorilla dials with gorilla/websocket, compression on (compress set) or
// off.
func czGorilla(t testing.TB, tw *firetower.Tower, compress bool, protos ...string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: czWait, EnableCompression: compress, Subprotocols: protos}
	ws, resp, err := d.Dial("ws://"+tw.Addr()+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	ext := resp.Header.Get("Sec-WebSocket-Extensions")
	if compress != (ext != "") {
		t.Fatalf("gorilla (compression %v) got Sec-WebSocket-Extensions %q", compress, ext)
	}
	if compress {
		ws.EnableWriteCompression(true)
	}
	return ws
}

func czGorillaRead(t testing.TB, ws *websocket.Conn) (int, []byte) {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(czWait))
	mt, p, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return mt, p
}

func czGorillaSend(t testing.TB, ws *websocket.Conn, v string) {
	t.Helper()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(v)); err != nil {
		t.Fatal(err)
	}
}

// TestCompressionGorilla: gorilla/websocket with EnableCompression
// subscribes, publishes compressed messages (its writes are compressed) and
// receives compressed deliveries intact.
func TestCompressionGorilla(t *testing.T) {
	tw := czServer(t, firetower.WithCompression(1, 64))
	ws := czGorilla(t, tw, true)
	czGorillaSend(t, ws, `{"type":"subscribe","id":1,"topics":["/g"]}`)
	if _, p := czGorillaRead(t, ws); !bytes.Contains(p, []byte(`"ack"`)) {
		t.Fatalf("subscribe answered %q", p)
	}
	for i := range 5 {
		data := czPayload(1000 + i*300)
		czGorillaSend(t, ws, `{"type":"publish","topic":"/g","data":`+string(data)+`}`)
		_, p := czGorillaRead(t, ws)
		want := `{"type":"publish","topic":"/g","data":` + string(data) + `}`
		if string(p) != want {
			t.Fatalf("delivery %d: got %q, want %q", i, czShort(p), czShort([]byte(want)))
		}
	}
	s := czWaitStats(t, tw, "five compressed deliveries and five inflated publishes", func(s firetower.Stats) bool {
		return s.Transport.Compression.Frames >= 5 && s.Transport.Compression.Inflated >= 5
	})
	c := s.Transport.Compression
	if c.Conns != 1 || c.FrameBytesOut*2 > c.FrameBytesIn || c.InflatedBytesOut <= c.InflatedBytesIn {
		t.Fatalf("compression stats %+v: want 1 connection, deliveries compressed to under half, inflated messages larger than sent", c)
	}
}

// TestCompressionCoder: github.com/coder/websocket, offering context
// takeover (it then follows the server's client_no_context_takeover) and
// not, sending whole and fragmented compressed messages.
func TestCompressionCoder(t *testing.T) {
	for _, mode := range []struct {
		name string
		m    coder.CompressionMode
	}{{"context takeover offered", coder.CompressionContextTakeover}, {"no context takeover", coder.CompressionNoContextTakeover}} {
		t.Run(mode.name, func(t *testing.T) {
			tw := czServer(t, firetower.WithCompression(6, 64))
			ctx, cancel := context.WithTimeout(context.Background(), czWait)
			defer cancel()
			ws, resp, err := coder.Dial(ctx, "ws://"+tw.Addr()+"/ws", &coder.DialOptions{CompressionMode: mode.m, CompressionThreshold: 64})
			if err != nil {
				t.Fatal(err)
			}
			defer ws.CloseNow()
			if ext := resp.Header.Get("Sec-WebSocket-Extensions"); !czHasParam(ext, "server_no_context_takeover") {
				t.Fatalf("Sec-WebSocket-Extensions = %q", ext)
			}
			ws.SetReadLimit(1 << 20)
			if err := ws.Write(ctx, coder.MessageText, []byte(`{"type":"subscribe","id":1,"topics":["/c"]}`)); err != nil {
				t.Fatal(err)
			}
			if _, p, err := ws.Read(ctx); err != nil || !bytes.Contains(p, []byte(`"ack"`)) {
				t.Fatalf("subscribe answered %q, %v", p, err)
			}
			for i := range 6 {
				data := czPayload(900 + 200*i)
				msg := []byte(`{"type":"publish","topic":"/c","data":` + string(data) + `}`)
				if i%2 == 0 {
					err = ws.Write(ctx, coder.MessageText, msg)
				} else {
					// a fragmented compressed message: three writes, three frames
					w, werr := ws.Writer(ctx, coder.MessageText)
					if werr != nil {
						t.Fatal(werr)
					}
					third := len(msg) / 3
					for _, part := range [][]byte{msg[:third], msg[third : 2*third], msg[2*third:]} {
						if _, werr = w.Write(part); werr != nil {
							t.Fatal(werr)
						}
					}
					err = w.Close()
				}
				if err != nil {
					t.Fatal(err)
				}
				_, p, err := ws.Read(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(p, msg) {
					t.Fatalf("message %d: got %q, want %q", i, czShort(p), czShort(msg))
				}
			}
			czWaitStats(t, tw, "six compressed deliveries, six inflated messages", func(s firetower.Stats) bool {
				return s.Transport.Compression.Frames >= 6 && s.Transport.Compression.Inflated >= 6
			})
			ws.Close(coder.StatusNormalClosure, "")
		})
	}
}

// TestCompressionFragmentedRaw: a compressed message in three frames (RSV1
// on the first only) is inflated whole; control frames between its
// fragments are answered.
func TestCompressionFragmentedRaw(t *testing.T) {
	tw := czServer(t, firetower.WithCompression(0, 0))
	c := czRawDial(t, tw, "")
	c.send(czFrame(czText, []byte(`{"type":"subscribe","id":"s","topics":["/f"]}`)))
	if m := c.nextJSON(); m["type"] != "ack" {
		t.Fatalf("got %v, want an ack", m)
	}
	data := czPayload(2000)
	msg := []byte(`{"type":"publish","topic":"/f","data":` + string(data) + `}`)
	frames := czFragments(czText, msg, 3)
	// by hand: a ping between the first and the second fragment
	z := czDeflate(msg)
	third := len(z) / 3
	var wire []byte
	wire = czAppendFrame(wire, false, 4, czText, z[:third], true)
	wire = czAppendFrame(wire, true, 0, czPing, []byte("between"), true)
	wire = czAppendFrame(wire, false, 0, czCont, z[third:2*third], true)
	wire = czAppendFrame(wire, true, 0, czCont, z[2*third:], true)
	c.send(wire)
	if f := c.next(); f.op != czPong || string(f.payload) != "between" {
		t.Fatalf("got op %#x %q, want the pong", f.op, f.payload)
	}
	m := c.next()
	if string(m.payload) != string(msg) {
		t.Fatalf("delivery %q, want %q", czShort(m.payload), czShort(msg))
	}
	c.send(frames)
	if m := c.next(); string(m.payload) != string(msg) {
		t.Fatalf("delivery %q, want %q", czShort(m.payload), czShort(msg))
	}
}

// TestCompressionProtocolErrors: what a compressed connection refuses.
func TestCompressionProtocolErrors(t *testing.T) {
	tw := czServer(t, firetower.WithCompression(0, 0), firetower.WithMaxMessageSize(64<<10))
	plain := czServer(t)
	bomb := czDeflate(bytes.Repeat([]byte{'a'}, 32<<20)) // 32 MiB of 'a', about 32 KiB compressed
	if len(bomb) > 64<<10 {
		t.Fatalf("the bomb is %d bytes compressed: not under the limit", len(bomb))
	}
	cases := []struct {
		name string
		tw   *firetower.Tower
		wire []byte
		code int
	}{
		{"compressed ping", tw, czAppendFrame(nil, true, 4, czPing, czDeflate([]byte("p")), true), 1002},
		{"compressed pong", tw, czAppendFrame(nil, true, 4, czPong, czDeflate([]byte("p")), true), 1002},
		{"compressed close", tw, czAppendFrame(nil, true, 4, czClose, czDeflate([]byte{3, 232}), true), 1002},
		{"RSV1 on a continuation", tw, append(czAppendFrame(nil, false, 4, czText, czDeflate([]byte("{}"))[:1], true),
			czAppendFrame(nil, true, 4, czCont, czDeflate([]byte("{}"))[1:], true)...), 1002},
		{"RSV2", tw, czAppendFrame(nil, true, 2, czText, []byte("{}"), true), 1002},
		{"RSV3 with RSV1", tw, czAppendFrame(nil, true, 5, czText, czDeflate([]byte("{}")), true), 1002},
		{"zip bomb", tw, czFrame(czText, bytes.Repeat([]byte{'a'}, 32<<20)), 1009},
		{"zip bomb in fragments", tw, czFragments(czBinary, bytes.Repeat([]byte{0}, 32<<20), 4), 1009},
		{"malformed deflate data", tw, czAppendFrame(nil, true, 4, czText, []byte{0xff, 0xff, 0xff, 0xff, 0x13, 0x37}, true), 1007},
		{"compressed text not UTF-8", tw, czFrame(czText, []byte("{\"a\":\"\xff\xfe\"}")), 1007},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := czRawDial(t, tc.tw, "")
			c.send(tc.wire)
			c.expectClose(tc.code)
		})
	}
	t.Run("RSV1 without negotiation", func(t *testing.T) {
		nc, resp, br, err := czUpgrade(plain.Addr(), "/ws", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Extensions") != "" {
			t.Fatalf("%s %q: want 101 without extensions", resp.Status, resp.Header.Get("Sec-WebSocket-Extensions"))
		}
		c := &czRaw{t: t, nc: nc, br: br}
		c.send(czFrame(czText, []byte(`{"type":"ping"}`)))
		c.expectClose(1002)
	})
	// The bombs were refused before they were inflated: nothing that large
	// was ever produced.
	if s := tw.Stats().Transport.Compression; s.InflatedBytesOut > 64<<10 {
		t.Fatalf("inflated %d bytes in all, more than one message limit", s.InflatedBytesOut)
	}
}

// TestCompressionMixedSubscribers: compressed and plain subscribers of one
// topic, in JSON and msgpack, receive the same data; the publish is
// compressed once per codec, and each compressing subscriber gets the same
// compressed frame.
func TestCompressionMixedSubscribers(t *testing.T) {
	tw := czServer(t, firetower.WithCompression(0, 0))
	const each = 3
	var jz, jp, mz, mp []*websocket.Conn
	for range each {
		jz = append(jz, czGorilla(t, tw, true))
		jp = append(jp, czGorilla(t, tw, false))
		mz = append(mz, czGorilla(t, tw, true, "firetower.v1.msgpack"))
		mp = append(mp, czGorilla(t, tw, false, "firetower.v1.msgpack"))
	}
	sub := func(ws *websocket.Conn, mpk bool) {
		req := map[string]any{"type": "subscribe", "id": "s", "topics": []string{"/mix"}}
		var err error
		if mpk {
			b, _ := msgpack.Marshal(req)
			err = ws.WriteMessage(websocket.BinaryMessage, b)
		} else {
			err = ws.WriteJSON(req)
		}
		if err != nil {
			t.Fatal(err)
		}
		czGorillaRead(t, ws) // the ack
	}
	for i := range each {
		sub(jz[i], false)
		sub(jp[i], false)
		sub(mz[i], true)
		sub(mp[i], true)
	}
	czSubscribers(t, tw, "/mix", 4*each)
	before := tw.Stats().Transport.Compression
	data := czPayload(1024)
	if err := tw.Publish(context.Background(), "/mix", data); err != nil {
		t.Fatal(err)
	}
	wantJSON := `{"type":"publish","topic":"/mix","data":` + string(data) + `}`
	var firstMsgpack []byte
	for _, group := range [][]*websocket.Conn{jz, jp} {
		for _, ws := range group {
			if _, p := czGorillaRead(t, ws); string(p) != wantJSON {
				t.Fatalf("JSON delivery %q, want %q", czShort(p), czShort([]byte(wantJSON)))
			}
		}
	}
	for _, group := range [][]*websocket.Conn{mz, mp} {
		for _, ws := range group {
			mt, p := czGorillaRead(t, ws)
			if mt != websocket.BinaryMessage {
				t.Fatalf("msgpack delivery in message type %d", mt)
			}
			if firstMsgpack == nil {
				firstMsgpack = p
				var m map[string]any
				if err := msgpack.Unmarshal(p, &m); err != nil || m["topic"] != "/mix" {
					t.Fatalf("msgpack delivery %v, %v", m, err)
				}
			} else if !bytes.Equal(p, firstMsgpack) {
				t.Fatal("msgpack subscribers received different bytes")
			}
		}
	}
	after := czWaitStats(t, tw, "the compressed deliveries counted", func(s firetower.Stats) bool {
		return s.Transport.Compression.Frames-before.Frames >= 2*each
	}).Transport.Compression
	if n := after.Messages - before.Messages; n != 2 {
		t.Errorf("one publish to JSON and msgpack subscribers was compressed %d times, want 2 (once per codec)", n)
	}
	if n := after.Frames - before.Frames; n != 2*each {
		t.Errorf("%d compressed frames queued, want %d (one per compressing subscriber)", n, 2*each)
	}
	if after.Conns != 2*each {
		t.Errorf("Conns = %d, want %d", after.Conns, 2*each)
	}
}

// TestCompressionMinSize: messages under minSize go out plain on a
// compressed connection; with minSize 1 acks and errors are compressed too.
func TestCompressionMinSize(t *testing.T) {
	rawFrame := func(t *testing.T, tw *firetower.Tower, req string) czServerFrame {
		nc, resp, br, err := czUpgrade(tw.Addr(), "/ws", "", nil)
		if err != nil || resp.StatusCode != 101 {
			t.Fatalf("upgrade: %v %v", resp, err)
		}
		defer nc.Close()
		_, _ = nc.Write(czAppendFrame(nil, true, 0, czText, []byte(req), true))
		_ = nc.SetReadDeadline(time.Now().Add(czWait))
		f, err := czReadServerFrame(br)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	// a long id makes the ack larger than the level's break-even
	id := strings.Repeat("abcd", 40)
	ack := `{"type":"ping","id":"` + id + `"}`
	t.Run("under minSize", func(t *testing.T) {
		tw := czServer(t, firetower.WithCompression(1, 4096))
		if f := rawFrame(t, tw, ack); f.rsv != 0 || !bytes.Contains(f.payload, []byte(id)) {
			t.Fatalf("pong rsv=%03b %q: want plain", f.rsv, czShort(f.payload))
		}
	})
	t.Run("acks compressed", func(t *testing.T) {
		tw := czServer(t, firetower.WithCompression(1, 1))
		f := rawFrame(t, tw, ack)
		if f.rsv != 4 {
			t.Fatalf("pong rsv=%03b: want RSV1 (compressed)", f.rsv)
		}
		p, err := czInflate(f.payload)
		if err != nil || !bytes.Contains(p, []byte(`"pong"`)) || !bytes.Contains(p, []byte(id)) {
			t.Fatalf("inflated pong %q, %v", p, err)
		}
	})
	t.Run("errors compressed", func(t *testing.T) {
		tw := czServer(t, firetower.WithCompression(1, 1))
		f := rawFrame(t, tw, `{"type":"nope","id":"`+id+`"}`)
		p, err := czInflate(f.payload)
		if f.rsv != 4 || err != nil || !bytes.Contains(p, []byte(`"unknown_type"`)) {
			t.Fatalf("error frame rsv=%03b %q %v: want a compressed unknown_type error", f.rsv, p, err)
		}
	})
}

// TestCompressionProtocolCases runs a representative set of protocol and
// RFC 6455 cases over a connection that negotiated compression, the client
// sending compressed and plain messages.
func TestCompressionProtocolCases(t *testing.T) {
	tw := czServer(t, firetower.WithCompression(1, 16), firetower.WithMaxMessageSize(8<<10))
	type step struct {
		wire  []byte
		check func(t *testing.T, c *czRaw)
	}
	text := func(compressed bool, s string) []byte {
		if compressed {
			return czFrame(czText, []byte(s))
		}
		return czAppendFrame(nil, true, 0, czText, []byte(s), true)
	}
	wantJSON := func(fields map[string]any) func(t *testing.T, c *czRaw) {
		return func(t *testing.T, c *czRaw) {
			t.Helper()
			m := c.nextJSON()
			for k, v := range fields {
				if fmt.Sprint(m[k]) != fmt.Sprint(v) {
					t.Fatalf("got %v, want %s=%v", m, k, v)
				}
			}
		}
	}
	big := strings.Repeat("x", 9<<10)
	for _, compressed := range []bool{true, false} {
		cases := []struct {
			name  string
			steps []step
		}{
			{"subscribe ack", []step{{text(compressed, `{"type":"subscribe","id":"a","topics":["/p"]}`), wantJSON(map[string]any{"type": "ack", "id": "a"})}}},
			{"publish to self", []step{
				{text(compressed, `{"type":"subscribe","id":"a","topics":["/p"]}`), wantJSON(map[string]any{"type": "ack"})},
				{text(compressed, `{"type":"publish","topic":"/p","data":{"k":"`+strings.Repeat("v", 300)+`"}}`), wantJSON(map[string]any{"type": "publish", "topic": "/p"})},
			}},
			{"unsubscribe ack", []step{
				{text(compressed, `{"type":"subscribe","id":"a","topics":["/p"]}`), wantJSON(map[string]any{"type": "ack"})},
				{text(compressed, `{"type":"unsubscribe","id":"u","topics":["/p"]}`), wantJSON(map[string]any{"type": "ack", "id": "u"})},
			}},
			{"application ping", []step{{text(compressed, `{"type":"ping","id":7}`), wantJSON(map[string]any{"type": "pong", "id": 7})}}},
			{"bad request", []step{{text(compressed, `{not json`), wantJSON(map[string]any{"type": "error", "code": "bad_request"})}}},
			{"unknown type", []step{{text(compressed, `{"type":"x","id":"e"}`), wantJSON(map[string]any{"type": "error", "code": "unknown_type", "id": "e"})}}},
			{"invalid topic", []step{{text(compressed, `{"type":"subscribe","id":"t","topics":["a b"]}`), wantJSON(map[string]any{"type": "error", "code": "invalid_topic"})}}},
			{"websocket ping", []step{{czAppendFrame(nil, true, 0, czPing, []byte("hi"), true), func(t *testing.T, c *czRaw) {
				if f := c.next(); f.op != czPong || string(f.payload) != "hi" {
					t.Fatalf("got op %#x %q, want pong hi", f.op, f.payload)
				}
			}}}},
			{"plain fragments", []step{{append(czAppendFrame(nil, false, 0, czText, []byte(`{"type":"ping",`), true),
				czAppendFrame(nil, true, 0, czCont, []byte(`"id":"fr"}`), true)...), wantJSON(map[string]any{"type": "pong", "id": "fr"})}}},
			{"close handshake", []step{{czAppendFrame(nil, true, 0, czClose, []byte{0x03, 0xe8}, true), func(t *testing.T, c *czRaw) { c.expectClose(1000) }}}},
			{"over the size limit", []step{{text(compressed, `{"type":"ping","id":"`+big+`"}`), func(t *testing.T, c *czRaw) { c.expectClose(1009) }}}},
			{"invalid UTF-8", []step{{text(compressed, "{\"type\":\"ping\",\"id\":\"\xc3\x28\"}"), func(t *testing.T, c *czRaw) { c.expectClose(1007) }}}},
		}
		for _, tc := range cases {
			t.Run(fmt.Sprintf("compressed=%v/%s", compressed, tc.name), func(t *testing.T) {
				c := czRawDial(t, tw, "")
				for _, s := range tc.steps {
					c.send(s.wire)
					s.check(t, c)
				}
			})
		}
	}
	if s := tw.Stats().Transport.Compression; s.Inflated == 0 || s.Frames == 0 {
		t.Fatalf("compression stats %+v: the cases ran without compression", s)
	}
}

// TestCompressionPlainClientUnchanged: a client that does not offer
// compression sees no RSV bit on a compressing server.
func TestCompressionPlainClientUnchanged(t *testing.T) {
	tw := czServer(t, firetower.WithCompression(1, 1))
	nc, resp, br, err := czUpgrade(tw.Addr(), "/ws", "-", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if resp.Header.Get("Sec-WebSocket-Extensions") != "" {
		t.Fatal("extensions answered without an offer")
	}
	_, _ = nc.Write(czAppendFrame(nil, true, 0, czText, []byte(`{"type":"subscribe","id":"a","topics":["/q"]}`), true))
	czSubscribers(t, tw, "/q", 1)
	if err := tw.Publish(context.Background(), "/q", czPayload(2000)); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(czWait))
	for range 2 {
		f, err := czReadServerFrame(br)
		if err != nil {
			t.Fatal(err)
		}
		if f.rsv != 0 {
			t.Fatalf("frame with RSV bits %03b to a client that did not negotiate", f.rsv)
		}
	}
}

// TestCompressionLegacyDelivery: legacy frames (raw data, WithLegacyDelivery)
// are compressed once too.
func TestCompressionLegacyDelivery(t *testing.T) {
	tw := czServer(t, firetower.WithCompression(1, 64), firetower.WithLegacyDelivery(true))
	z := czGorilla(t, tw, true)
	p := czGorilla(t, tw, false)
	for _, ws := range []*websocket.Conn{z, p} {
		czGorillaSend(t, ws, `{"type":"subscribe","topic":"/l"}`)
	}
	czSubscribers(t, tw, "/l", 2)
	before := tw.Stats().Transport.Compression.Messages
	data := czPayload(1500)
	if err := tw.Publish(context.Background(), "/l", data); err != nil {
		t.Fatal(err)
	}
	for _, ws := range []*websocket.Conn{z, p} {
		for {
			_, got := czGorillaRead(t, ws)
			if bytes.Contains(got, []byte(`"onSubscribe"`)) {
				continue // the legacy subscribe count
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("legacy delivery %q, want the raw data %q", czShort(got), czShort(data))
			}
			break
		}
	}
	// the loop adds its counters after its writes: wait for them
	after := czWaitStats(t, tw, "the compression counted", func(s firetower.Stats) bool {
		return s.Transport.Compression.Frames >= 1
	})
	if n := after.Transport.Compression.Messages - before; n != 1 {
		t.Fatalf("the legacy publish was compressed %d times, want once", n)
	}
}
