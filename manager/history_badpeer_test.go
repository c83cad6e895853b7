package manager_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/firetower-go/firetower/manager"
)

// Bad peers and bounds of the manager's history (history.go): every
// history message a gateway sends is checked, and ends the session with a
// GOAWAY when it breaks the rules; what the streams hold is bounded by the
// server's configuration, not by what gateways ask.

func TestBadPeerHistoryMessages(t *testing.T) {
	e := newBPEnv(t, manager.ServerConfig{})
	items := func(its ...manager.HistItem) []byte {
		b, err := manager.AppendHistItems(nil, its)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tooMany := make([]manager.HistItem, manager.MaxHistItems+1)
	for i := range tooMany {
		tooMany[i].Topic = "t"
	}
	// An array that claims 2^31 items in a few bytes.
	lying := []byte{0xdd, 0x7f, 0xff, 0xff, 0xff, 0x90}
	huge, _ := msgpack.Marshal(map[string]int{"not": 1})
	for _, c := range []struct {
		name string
		m    *manager.Msg
		want string
	}{
		{"APPEND without a size", &manager.Msg{Type: manager.MsgAppend, Topic: "h", Text: "1000"}, "history size 0"},
		{"APPEND with a negative size", &manager.Msg{Type: manager.MsgAppend, Topic: "h", Count: -5, Text: "1000"}, "history size -5"},
		{"APPEND with a TTL that is no number", &manager.Msg{Type: manager.MsgAppend, Topic: "h", Count: 10, Text: "1h"}, "history TTL"},
		{"APPEND with a TTL of 0", &manager.Msg{Type: manager.MsgAppend, Topic: "h", Count: 10, Text: "0"}, "history TTL"},
		{"APPEND with a TTL past time.Duration", &manager.Msg{Type: manager.MsgAppend, Topic: "h", Count: 10, Text: "9223372036854775807"}, "history TTL"},
		{"APPEND with a TTL of many digits", &manager.Msg{Type: manager.MsgAppend, Topic: "h", Count: 10, Text: strings.Repeat("9", 4000)}, "history TTL"},
		{"APPEND to an invalid topic", &manager.Msg{Type: manager.MsgAppend, Topic: "a b", Count: 10, Text: "1000"}, "invalid topic"},
		{"APPEND to a system topic", &manager.Msg{Type: manager.MsgAppend, Topic: "$firetower/x", Count: 10, Text: "1000"}, "system topics keep no history"},
		{"HISTORY of garbage", &manager.Msg{Type: manager.MsgHistory, Count: 10, Text: "1000", Data: []byte{0xc1}}, "bad history items"},
		{"HISTORY not an array", &manager.Msg{Type: manager.MsgHistory, Count: 10, Text: "1000", Data: huge}, "bad history items"},
		{"HISTORY that lies about its length", &manager.Msg{Type: manager.MsgHistory, Count: 10, Text: "1000", Data: lying}, "bad history items"},
		{"RECOVER of too many topics", &manager.Msg{Type: manager.MsgRecover, Count: 10, Text: "1000", Data: items(tooMany...)}, "history items (limit"},
		{"RECOVER of an invalid topic", &manager.Msg{Type: manager.MsgRecover, Count: 10, Text: "1000", Data: items(manager.HistItem{Topic: ""})}, "invalid topic"},
		{"RECOVER of a system topic", &manager.Msg{Type: manager.MsgRecover, Count: 10, Text: "1000", Data: items(manager.HistItem{Topic: "$firetower/s"})}, "system topics keep no history"},
		{"RECOVER without a TTL", &manager.Msg{Type: manager.MsgRecover, Count: 10, Data: items(manager.HistItem{Topic: "h"})}, "history TTL"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := dialRaw(t, e.srv.Addr())
			p.hello(81, "hist-boot")
			p.send(c.m)
			p.expectGoAway(c.want)
			waitFor(t, "node 81 to leave", func() bool { return e.srv.Stats().Nodes == 2 })
			e.checkServes(t)
		})
	}
}

// rawAppend appends data to topic as node p and returns the reply.
func (p *rawPeer) rawAppend(seq uint64, topic string, data []byte, size int64, ttl string) *manager.Msg {
	p.t.Helper()
	p.send(&manager.Msg{Type: manager.MsgAppend, Seq: seq, Topic: topic, Data: data, Count: size, Text: ttl})
	for {
		m, err := p.read()
		if err != nil {
			p.t.Fatalf("APPEND %d: %v", seq, err)
		}
		if m.Type == manager.MsgAppendReply && m.Seq == seq {
			return m
		}
	}
}

func TestHistoryBoundsAreTheManagers(t *testing.T) {
	s := bpServer(t, manager.ServerConfig{HistoryMaxSize: 5, HistoryMaxTTL: time.Hour, HistoryMaxBytes: 4 << 10})
	p := dialRaw(t, s.Addr())
	p.hello(5, "bounds")
	// A gateway asks for a million publications a topic: the manager
	// keeps its own maximum.
	var last *manager.Msg
	for i := range 20 {
		last = p.rawAppend(uint64(i+1), "capped", []byte("x"), 1_000_000, "3600000")
	}
	if last.Count != 20 || last.Text == "" {
		t.Fatalf("20th APPEND reply %+v, want offset 20 with an epoch", last)
	}
	q, err := manager.AppendHistItems(nil, []manager.HistItem{{Topic: "capped", Since: true, Offset: 0, Epoch: last.Text}, {Topic: "capped", Limit: 1_000_000}})
	if err != nil {
		t.Fatal(err)
	}
	p.send(&manager.Msg{Type: manager.MsgHistory, Seq: 99, Count: 1_000_000, Text: "3600000", Data: q})
	var r *manager.Msg
	for r == nil || r.Type != manager.MsgHistoryReply {
		if r, err = p.read(); err != nil {
			t.Fatal(err)
		}
	}
	res, err := manager.DecodeHistItems(r.Data)
	if err != nil || len(res) != 2 {
		t.Fatalf("reply %v %v", res, err)
	}
	if res[0].Recovered || len(res[0].Pubs) != 0 {
		t.Fatalf("recovered from offset 0 of a stream capped at 5: %+v", res[0])
	}
	if len(res[1].Pubs) != 5 || res[1].Pubs[0].Offset != 16 || res[1].Offset != 20 {
		t.Fatalf("the latest of a stream capped at 5: %+v", res[1])
	}
	// All streams together stay within HistoryMaxBytes (plus one entry per
	// stream): big publications on many topics evict the oldest.
	big := bytes.Repeat([]byte("y"), 1000)
	for i := range 40 {
		p.rawAppend(uint64(100+i), "big"+string(rune('a'+i%10)), big, 5, "3600000")
	}
	if st := s.Stats(); st.HistoryBytes > 4<<10+10*(1000+48) || st.HistoryStreams != 11 {
		t.Fatalf("history stats %+v: over the bound of 4 KiB (+1 entry per stream) or not 11 streams", st)
	}
}
