package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
)

func TestAppendJSONString(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"", `""`},
		{"plain", `"plain"`},
		{`q"uote`, `"q\"uote"`},
		{`back\slash`, `"back\\slash"`},
		{"a\nb\rc\td", `"a\nb\rc\td"`},
		{"\x00\x01\x1f", `"\u0000\u0001\u001f"`},
		{"\x08\x0c", `"\u0008\u000c"`},
		{"\x7f", "\"\x7f\""},
		{"/</script>&", `"/</script>&"`},
		{"caf\u00e9", "\"caf\u00e9\""},
		{"\U0001F600", "\"\U0001F600\""},
		{"\u2028\u2029", "\"\u2028\u2029\""},
		{"\ufffd", "\"\ufffd\""},
		{"\xff", `"\ufffd"`},
		{"a\xffb", `"a\ufffdb"`},
		{"\xc3", `"\ufffd"`},
		{"\xc3(", `"\ufffd("`},
		{"\xed\xa0\x80", `"\ufffd\ufffd\ufffd"`},
		{"\xf0\x9f\x98", `"\ufffd\ufffd\ufffd"`},
	}
	for _, tt := range tests {
		got := AppendJSONString([]byte("pre"), tt.in)
		if !bytes.HasPrefix(got, []byte("pre")) {
			t.Fatalf("%q: prefix lost", tt.in)
		}
		got = got[3:]
		if string(got) != tt.want {
			t.Errorf("AppendJSONString(%q) = %s, want %s", tt.in, got, tt.want)
		}
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Errorf("AppendJSONString(%q) = %s: not JSON: %v", tt.in, got, err)
			continue
		}
		if !utf8.Valid(got) {
			t.Errorf("AppendJSONString(%q) is not valid UTF-8", tt.in)
		}
		want := tt.in
		if !utf8.ValidString(want) {
			want = string([]rune(want)) // each bad byte becomes U+FFFD
		}
		if back != want {
			t.Errorf("AppendJSONString(%q) reads back as %q, want %q", tt.in, back, want)
		}
	}
	// Every single byte and every rune boundary class.
	for c := 0; c < 256; c++ {
		s := string([]byte{'a', byte(c), 'b'})
		out := AppendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(out, &back); err != nil || back != string([]rune(s)) {
			t.Errorf("byte %#x: %s -> %q, %v", c, out, back, err)
		}
	}
}

func TestAppendDeliveryJSON(t *testing.T) {
	datas := []string{`null`, `"hi"`, `1.50e+2`, `{"b" : [1, 2.50, "\u00e9"], "a":{}}`, `[]`, `true`, "\"日本\""}
	topics := []string{"t", "news/sports", "caf\u00e9", `we"ird\`, "a\x01"}
	for _, topic := range topics {
		for _, data := range datas {
			out := AppendDeliveryJSON([]byte("x"), topic, []byte(data))
			if out[0] != 'x' {
				t.Fatal("prefix lost")
			}
			out = out[1:]
			var d struct {
				Type  string          `json:"type"`
				Topic string          `json:"topic"`
				Data  json.RawMessage `json:"data"`
			}
			if err := json.Unmarshal(out, &d); err != nil {
				t.Fatalf("%s: %v", out, err)
			}
			if d.Type != "publish" || d.Topic != topic || string(d.Data) != data {
				t.Errorf("%s: %+v", out, d)
			}
			if !bytes.HasPrefix(out, []byte(`{"type":"publish","topic":`)) {
				t.Errorf("envelope %s", out)
			}
			size := DeliveryJSONSize(topic, []byte(data))
			plain := string(AppendJSONString(nil, topic)) == `"`+topic+`"`
			if plain && size != len(out) {
				t.Errorf("DeliveryJSONSize(%q, %s) = %d, len %d", topic, data, size, len(out))
			}
			if size > len(out) {
				t.Errorf("DeliveryJSONSize(%q, %s) = %d > len %d", topic, data, size, len(out))
			}
		}
	}
}

func TestJSONValue(t *testing.T) {
	tests := []struct {
		in   string
		want any
	}{
		{`null`, nil},
		{`1`, int64(1)},
		{`-9223372036854775808`, int64(math.MinInt64)},
		{`9007199254740993`, int64(9007199254740993)},           // not exact as float64
		{`9223372036854775808`, uint64(9223372036854775808)},    // above int64: kept exact
		{`18446744073709551616`, float64(18446744073709551616)}, // above uint64: float
		{`1.5`, 1.5},
		{`1e2`, float64(100)},
		{`1e400`, "1e400"},
		{`-1e400`, "-1e400"},
		{`"s"`, "s"},
		{`[1,"a",[2.5]]`, []any{int64(1), "a", []any{2.5}}},
		{`{"a":{"b":[3]}}`, map[string]any{"a": map[string]any{"b": []any{int64(3)}}}},
	}
	for _, tt := range tests {
		got, err := JSONValue([]byte(tt.in))
		if err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("JSONValue(%s) = %#v, want %#v", tt.in, got, tt.want)
		}
	}
	for _, bad := range []string{``, `{`, `nope`, `[1,]`} {
		if _, err := JSONValue([]byte(bad)); err == nil {
			t.Errorf("JSONValue(%q): no error", bad)
		}
	}
}

func TestAppendDeliveryMsgpack(t *testing.T) {
	tests := []struct {
		topic string
		data  string
		want  any
	}{
		{"t", `null`, nil},
		{"t", `"hi"`, "hi"},
		{"t", `9007199254740993`, int64(9007199254740993)},
		{"t", `-1`, int64(-1)},
		{"t", `2.5`, 2.5},
		{"t", `{"k":[1,"a",true,null]}`, map[string]any{"k": []any{int64(1), "a", true, nil}}},
		{strings.Repeat("x", 40), `1`, int64(1)},
		{strings.Repeat("y", 300), `1`, int64(1)},
	}
	for _, tt := range tests {
		out, err := AppendDeliveryMsgpack([]byte{0xee}, tt.topic, []byte(tt.data))
		if err != nil {
			t.Fatalf("%s: %v", tt.data, err)
		}
		if out[0] != 0xee {
			t.Fatal("prefix lost")
		}
		var m map[string]any
		if err := msgpack.Unmarshal(out[1:], &m); err != nil {
			t.Fatalf("%s: %x: %v", tt.data, out[1:], err)
		}
		if len(m) != 3 || m["type"] != "publish" || m["topic"] != tt.topic {
			t.Errorf("%s: %#v", tt.data, m)
		}
		if !reflect.DeepEqual(normalizeInts(m["data"]), normalizeInts(tt.want)) {
			t.Errorf("data %s: %#v, want %#v", tt.data, m["data"], tt.want)
		}
	}
	if _, err := AppendDeliveryMsgpack(nil, "t", []byte(`{`)); err == nil {
		t.Errorf("invalid JSON data: no error")
	}
}

// normalizeInts maps every integer type to int64 (msgpack picks the
// narrowest encoding) so values can be compared.
func normalizeInts(v any) any {
	switch x := v.(type) {
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case uint8:
		return int64(x)
	case uint16:
		return int64(x)
	case uint32:
		return int64(x)
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x)
		}
		return x
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalizeInts(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalizeInts(e)
		}
		return out
	}
	return v
}

func jsonIDs() [][]byte {
	return [][]byte{nil, []byte(`"r1"`), []byte(`7`), []byte(`-1.5e3`), []byte(`"q\"\u00e9"`)}
}

func TestReplyJSON(t *testing.T) {
	r := Reply{Codec: JSON}
	for _, id := range jsonIDs() {
		wantID := any(nil)
		if id != nil {
			if err := json.Unmarshal(id, &wantID); err != nil {
				t.Fatal(err)
			}
		}
		for _, topics := range [][]string{nil, {}, {"a"}, {"a", "b\"c", "caf\u00e9"}} {
			for _, with := range []bool{false, true} {
				out := r.Ack([]byte("["), id, topics, with)
				if out[0] != '[' {
					t.Fatal("prefix lost")
				}
				m := decodeJSONObject(t, out[1:])
				if m["type"] != "ack" || !reflect.DeepEqual(m["id"], wantID) {
					t.Errorf("ack %s", out[1:])
				}
				_, has := m["id"]
				if !has {
					t.Errorf("ack without id: %s", out[1:])
				}
				got, has := m["topics"]
				if has != with {
					t.Errorf("ack withTopics=%v: %s", with, out[1:])
				}
				if with {
					want := make([]any, len(topics))
					for i, tp := range topics {
						want[i] = tp
					}
					if !reflect.DeepEqual(got, want) {
						t.Errorf("ack topics %#v, want %#v", got, want)
					}
				}
			}
		}
		for _, msg := range []string{"", "plain", "with \"quotes\" and \\ and\nnewline", "bad \xff byte"} {
			out := r.Error(nil, id, CodeInvalidTopic, msg)
			m := decodeJSONObject(t, out)
			if m["type"] != "error" || m["code"] != CodeInvalidTopic || m["message"] != string([]rune(msg)) {
				t.Errorf("error %s", out)
			}
			gotID, has := m["id"]
			if has != (id != nil) || !reflect.DeepEqual(gotID, wantID) {
				t.Errorf("error id: %s", out)
			}
		}
		out := r.Pong(nil, id)
		m := decodeJSONObject(t, out)
		gotID, has := m["id"]
		if m["type"] != "pong" || has != (id != nil) || !reflect.DeepEqual(gotID, wantID) || len(m) != 1+btoi(id != nil) {
			t.Errorf("pong %s", out)
		}
	}
	if got := string(r.Pong(nil, nil)); got != `{"type":"pong"}` {
		t.Errorf("pong = %s", got)
	}
	if got := string(r.Ack(nil, []byte(`1`), []string{"a"}, true)); got != `{"type":"ack","id":1,"topics":["a"]}` {
		t.Errorf("ack = %s", got)
	}
	if got := string(r.Error(nil, nil, CodeBadRequest, "x")); got != `{"type":"error","code":"bad_request","message":"x"}` {
		t.Errorf("error = %s", got)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func decodeJSONObject(t *testing.T, b []byte) map[string]any {
	t.Helper()
	if !json.Valid(b) || !utf8.Valid(b) {
		t.Fatalf("not valid JSON: %q", b)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return m
}

func msgpackIDs(t *testing.T) [][]byte {
	return [][]byte{nil, mpMarshal(t, "r1"), mpMarshal(t, 7), mpMarshal(t, uint64(math.MaxUint64)), mpMarshal(t, -1.5), mpMarshal(t, strings.Repeat("i", 40))}
}

func decodeMsgpackMap(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	dec := msgpack.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("%x: %v", b, err)
	}
	if _, err := dec.DecodeInterface(); err == nil {
		t.Fatalf("%x: bytes after the map", b)
	}
	return m
}

func TestReplyMsgpack(t *testing.T) {
	r := Reply{Codec: Msgpack}
	long := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprint("t", i)
		}
		return out
	}
	topicSets := [][]string{nil, {"a"}, long(15), long(16), long(70000), {strings.Repeat("x", 31), strings.Repeat("y", 32), strings.Repeat("z", 255), strings.Repeat("w", 256), strings.Repeat("v", 70000)}}
	for _, id := range msgpackIDs(t) {
		var wantID any
		if id != nil {
			if err := msgpack.Unmarshal(id, &wantID); err != nil {
				t.Fatal(err)
			}
		}
		for _, topics := range topicSets {
			for _, with := range []bool{false, true} {
				out := r.Ack([]byte{0xee}, id, topics, with)
				if out[0] != 0xee {
					t.Fatal("prefix lost")
				}
				m := decodeMsgpackMap(t, out[1:])
				if m["type"] != "ack" || !reflect.DeepEqual(m["id"], wantID) {
					t.Errorf("ack %#v", m)
				}
				got, has := m["topics"]
				if has != with {
					t.Errorf("ack withTopics=%v: %#v", with, m)
				}
				if with {
					gotTopics, _ := got.([]any)
					if len(gotTopics) != len(topics) {
						t.Fatalf("ack: %d topics, want %d", len(gotTopics), len(topics))
					}
					for i := range topics {
						if gotTopics[i] != topics[i] {
							t.Fatalf("ack topic %d = %v, want %q", i, gotTopics[i], topics[i])
						}
					}
				}
			}
		}
		for _, msg := range []string{"", "short", strings.Repeat("m", 31), strings.Repeat("m", 32), strings.Repeat("m", 256), strings.Repeat("m", 65535), strings.Repeat("m", 65536)} {
			out := r.Error(nil, id, CodeRateLimited, msg)
			m := decodeMsgpackMap(t, out)
			if m["type"] != "error" || m["code"] != CodeRateLimited || m["message"] != msg {
				t.Errorf("error %d-byte message: type %v code %v", len(msg), m["type"], m["code"])
			}
			gotID, has := m["id"]
			if has != (id != nil) || !reflect.DeepEqual(gotID, wantID) {
				t.Errorf("error id %#v (present %v), want %#v", gotID, has, wantID)
			}
		}
		m := decodeMsgpackMap(t, r.Pong(nil, id))
		gotID, has := m["id"]
		if m["type"] != "pong" || has != (id != nil) || !reflect.DeepEqual(gotID, wantID) {
			t.Errorf("pong %#v", m)
		}
	}
}

// An id decoded from a request goes back unchanged in the reply of the same
// codec.
func TestReplyEchoesDecodedID(t *testing.T) {
	for _, in := range []string{`{"type":"ping","id":"a\"b"}`, `{"type":"ping","id":12.50}`, `{"type":"ping","id":-0}`} {
		req, rerr := DecodeJSON([]byte(in))
		if rerr != nil {
			t.Fatal(rerr)
		}
		for _, out := range [][]byte{
			Reply{JSON}.Pong(nil, req.ID),
			Reply{JSON}.Ack(nil, req.ID, nil, false),
			Reply{JSON}.Error(nil, req.ID, CodeInternal, "x"),
		} {
			var m map[string]json.RawMessage
			if err := json.Unmarshal(out, &m); err != nil {
				t.Fatalf("%s: %v", out, err)
			}
			if !bytes.Equal(m["id"], req.ID) {
				t.Errorf("%s: id %s, want %s", out, m["id"], req.ID)
			}
		}
	}
	for _, id := range []any{"x", 300, -7, 2.25, float32(1.5), uint64(math.MaxUint64)} {
		in := mpMap(t, "type", "ping", "id", id)
		req, rerr := DecodeMsgpack(in)
		if rerr != nil {
			t.Fatal(rerr)
		}
		for _, out := range [][]byte{
			Reply{Msgpack}.Pong(nil, req.ID),
			Reply{Msgpack}.Ack(nil, req.ID, []string{"a"}, true),
			Reply{Msgpack}.Error(nil, req.ID, CodeInternal, "x"),
		} {
			var m map[string]msgpack.RawMessage
			if err := msgpack.Unmarshal(out, &m); err != nil {
				t.Fatalf("%x: %v", out, err)
			}
			if !bytes.Equal(m["id"], req.ID) {
				t.Errorf("%x: id %x, want %x", out, m["id"], req.ID)
			}
		}
	}
}
