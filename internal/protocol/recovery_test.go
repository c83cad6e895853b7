package protocol

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestDecodeRecoveryJSON(t *testing.T) {
	r, rerr := DecodeJSON([]byte(`{"type":"subscribe","topic":"a","since":{"a":{"offset":18446744073709551615,"epoch":"E"}},"last":5}`))
	if rerr != nil {
		t.Fatal(rerr)
	}
	want := []Since{{Topic: "a", Offset: 1<<64 - 1, Epoch: "E"}}
	if !r.HasSince || !reflect.DeepEqual(r.Since, want) || !r.HasLast || r.Last != 5 {
		t.Fatalf("%+v", r)
	}
	r, rerr = DecodeJSON([]byte(`{"type":"subscribe","topic":"a","last":99999999999999999999}`))
	if rerr == nil {
		t.Fatalf("a last beyond uint64 decoded: %+v", r)
	}
	r, _ = DecodeJSON([]byte(`{"type":"subscribe","topic":"a","last":4294967296,"since":null}`))
	if r.Last != MaxLast || r.HasSince {
		t.Fatalf("last not capped at MaxLast: %+v", r)
	}
	for _, bad := range []string{
		`{"type":"subscribe","since":[]}`,
		`{"type":"subscribe","since":{"a":null}}`,
		`{"type":"subscribe","since":{"a":{"epoch":"E"}}}`,
		`{"type":"subscribe","since":{"a":{"offset":1}}}`,
		`{"type":"subscribe","since":{"a":{"offset":-1,"epoch":"E"}}}`,
		`{"type":"subscribe","since":{"a":{"offset":1e3,"epoch":"E"}}}`,
		`{"type":"subscribe","since":{"a":{"offset":"1","epoch":"E"}}}`,
		`{"type":"subscribe","since":{"a":{"offset":1,"epoch":null}}}`,
		`{"type":"subscribe","last":-1}`,
		`{"type":"subscribe","last":1.5}`,
		`{"type":"subscribe","last":"1"}`,
	} {
		if _, rerr := DecodeJSON([]byte(bad)); rerr == nil || rerr.Code != CodeBadRequest {
			t.Errorf("%s: %v, want bad_request", bad, rerr)
		}
		checkFastMatchesSlow(t, []byte(bad))
	}
	// other requests ignore the fields, whatever their shape
	for _, p := range []string{`{"type":"publish","topic":"a","since":[],"last":-1}`, `{"type":"ping","last":"x"}`} {
		if r, rerr := DecodeJSON([]byte(p)); rerr != nil || r.HasSince || r.HasLast {
			t.Errorf("%s: %+v %v", p, r, rerr)
		}
		checkFastMatchesSlow(t, []byte(p))
	}
	// the fast path leaves requests with recovery fields to encoding/json
	for _, p := range []string{
		`{"type":"subscribe","topic":"a","last":3}`,
		`{"type":"subscribe","topic":"a","since":{"a":{"offset":1,"epoch":"E"}}}`,
	} {
		if _, ok := decodeJSONFast([]byte(p)); ok {
			t.Errorf("%s took the fast path", p)
		}
		checkFastMatchesSlow(t, []byte(p))
	}
}

func TestDecodeRecoveryMsgpack(t *testing.T) {
	enc := func(v any) []byte {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	r, rerr := DecodeMsgpack(enc(map[string]any{"type": "subscribe", "topics": []string{"a", "b"},
		"since": map[string]any{"a": map[string]any{"offset": uint64(1) << 63, "epoch": "E"}, "b": map[string]any{"offset": int8(3), "epoch": ""}},
		"last":  uint16(7)}))
	if rerr != nil {
		t.Fatal(rerr)
	}
	slices.SortFunc(r.Since, func(a, b Since) int { return strings.Compare(a.Topic, b.Topic) })
	want := []Since{{Topic: "a", Offset: 1 << 63, Epoch: "E"}, {Topic: "b", Offset: 3}}
	if !reflect.DeepEqual(r.Since, want) || r.Last != 7 || !r.HasLast {
		t.Fatalf("%+v", r)
	}
	for _, bad := range []map[string]any{
		{"since": "x"},
		{"since": map[string]any{"a": 1}},
		{"since": map[string]any{"a": map[string]any{"offset": -1, "epoch": "E"}}},
		{"since": map[string]any{"a": map[string]any{"offset": 1.0, "epoch": "E"}}},
		{"since": map[string]any{"a": map[string]any{"offset": 1}}},
		{"since": map[string]any{"a": map[string]any{"epoch": "E"}}},
		{"last": -2},
		{"last": "2"},
		{"last": []int{1}},
		{"last": 1, "since": 2},
	} {
		bad["type"] = "subscribe"
		if _, rerr := DecodeMsgpack(enc(bad)); rerr == nil || rerr.Code != CodeBadRequest {
			t.Errorf("%v: %v, want bad_request", bad, rerr)
		}
		bad["type"] = "publish"
		if r, rerr := DecodeMsgpack(enc(bad)); rerr != nil || r.HasSince || r.HasLast {
			t.Errorf("publish %v: %+v %v, want the fields ignored", bad, r, rerr)
		}
	}
}

func TestRecoveryEncoders(t *testing.T) {
	quoted := string(AppendJSONString(nil, `a"b`))
	for _, off := range []uint64{0, 9, 10, 99, 100, 1<<64 - 1} {
		b := AppendDeliveryJSONAt(nil, quoted, []byte(`{"x":1}`), off)
		if len(b) != DeliveryJSONAtSize(quoted, []byte(`{"x":1}`), off) {
			t.Fatalf("size of %s", b)
		}
		var m struct {
			Type, Topic string
			Data        map[string]int
			Offset      uint64
		}
		if err := json.Unmarshal(b, &m); err != nil || m.Offset != off || m.Topic != `a"b` || m.Data["x"] != 1 || m.Type != "publish" {
			t.Fatalf("%s: %+v %v", b, m, err)
		}
		mp, err := AppendDeliveryMsgpackAt(nil, "t", []byte(`[1,"x"]`), off)
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		if err := msgpack.Unmarshal(mp, &v); err != nil || len(v) != 4 || v["topic"] != "t" {
			t.Fatalf("%v %v", v, err)
		}
		var got uint64
		if err := msgpack.Unmarshal(mustField(t, mp, "offset"), &got); err != nil || got != off {
			t.Fatalf("msgpack offset %d, want %d (%v)", got, off, err)
		}
	}
	pos := []TopicPosition{{Topic: "a", Epoch: "E", Offset: 3, Recovered: true}, {Topic: "b", Epoch: "F"}}
	j := Reply{Codec: JSON}.AckPositions(nil, []byte(`1`), []string{"a", "b"}, pos)
	want := `{"type":"ack","id":1,"topics":["a","b"],"positions":{"a":{"epoch":"E","offset":3,"recovered":true},"b":{"epoch":"F","offset":0,"recovered":false}}}`
	if string(j) != want {
		t.Fatalf("got  %s\nwant %s", j, want)
	}
	mp := Reply{Codec: Msgpack}.AckPositions(nil, nil, []string{"a", "b"}, pos)
	var v map[string]any
	if err := msgpack.Unmarshal(mp, &v); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v)
	if want := `{"id":null,"positions":{"a":{"epoch":"E","offset":3,"recovered":true},"b":{"epoch":"F","offset":0,"recovered":false}},"topics":["a","b"],"type":"ack"}`; string(b) != want {
		t.Fatalf("msgpack ack as JSON: %s", b)
	}
}

func mustField(t *testing.T, p []byte, key string) []byte {
	t.Helper()
	var m map[string]msgpack.RawMessage
	if err := msgpack.Unmarshal(p, &m); err != nil {
		t.Fatal(err)
	}
	return m[key]
}
