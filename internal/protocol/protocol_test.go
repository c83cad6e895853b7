package protocol

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestDecodeJSON(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		typ     int
		rawType string
		topics  []string
		data    string
		id      string // "" for none
	}{
		{"subscribe one topic", `{"type":"subscribe","topic":"a"}`, TypeSubscribe, "subscribe", []string{"a"}, "null", ""},
		{"subscribe legacy comma list", `{"type":"subscribe","topic":"a,b,c"}`, TypeSubscribe, "subscribe", []string{"a", "b", "c"}, "null", ""},
		{"legacy v0.4 subscribe", `{"type":"subscribe","topic":"a,b","data":""}`, TypeSubscribe, "subscribe", []string{"a", "b"}, `""`, ""},
		{"subscribe topics array", `{"type":"subscribe","topics":["x","y"]}`, TypeSubscribe, "subscribe", []string{"x", "y"}, "null", ""},
		{"numeric subscribe", `{"type":2,"topic":"a"}`, TypeSubscribe, "2", []string{"a"}, "null", ""},
		{"numeric subscribe 2.0", `{"type":2.0,"topic":"a"}`, TypeSubscribe, "2", []string{"a"}, "null", ""},
		{"numeric subscribe 2e0", `{"type":2e0,"topic":"a"}`, TypeSubscribe, "2", []string{"a"}, "null", ""},
		{"unsubscribe", `{"type":"unsubscribe","topics":["a"]}`, TypeUnsubscribe, "unsubscribe", []string{"a"}, "null", ""},
		{"legacy unSubscribe", `{"type":"unSubscribe","topic":"a"}`, TypeUnsubscribe, "unSubscribe", []string{"a"}, "null", ""},
		{"numeric unsubscribe", `{"type":3,"topic":"a"}`, TypeUnsubscribe, "3", []string{"a"}, "null", ""},
		{"publish", `{"type":"publish","topic":"t","data":{"x":1}}`, TypePublish, "publish", []string{"t"}, `{"x":1}`, ""},
		{"numeric publish", `{"type":1,"topic":"t","data":"hi"}`, TypePublish, "1", []string{"t"}, `"hi"`, ""},
		{"ping", `{"type":"ping"}`, TypePing, "ping", nil, "null", ""},
		{"ping with id", `{"type":"ping","id":7}`, TypePing, "ping", nil, "null", "7"},
		{"string id", `{"type":"subscribe","topic":"a","id":"req-1"}`, TypeSubscribe, "subscribe", []string{"a"}, "null", `"req-1"`},
		{"number id kept as written", `{"type":"subscribe","topic":"a","id": -1.50e3 }`, TypeSubscribe, "subscribe", []string{"a"}, "null", `-1.50e3`},
		{"escaped string id kept as written", `{"id":"a\u0062\"c","type":"ping"}`, TypePing, "ping", nil, "null", `"a\u0062\"c"`},
		{"null id is no id", `{"type":"ping","id":null}`, TypePing, "ping", nil, "null", ""},
		{"unknown string type", `{"type":"kick","topic":"a"}`, TypeUnknown, "kick", []string{"a"}, "null", ""},
		{"case matters in type", `{"type":"Subscribe"}`, TypeUnknown, "Subscribe", nil, "null", ""},
		{"ping has no number", `{"type":4}`, TypeUnknown, "4", nil, "null", ""},
		{"type 0", `{"type":0}`, TypeUnknown, "0", nil, "null", ""},
		{"fractional type", `{"type":2.5}`, TypeUnknown, "2.5", nil, "null", ""},
		{"string number type", `{"type":"2"}`, TypeUnknown, "2", nil, "null", ""},
		{"bool type", `{"type":true}`, TypeUnknown, "true", nil, "null", ""},
		{"missing type", `{"topic":"a"}`, TypeUnknown, "", []string{"a"}, "null", ""},
		{"null type", `{"type":null}`, TypeUnknown, "", nil, "null", ""},
		{"empty object", `{}`, TypeUnknown, "", nil, "null", ""},
		{"union of topic and topics", `{"type":"subscribe","topic":"a,b","topics":["b","c","a","d"]}`, TypeSubscribe, "subscribe", []string{"a", "b", "c", "d"}, "null", ""},
		{"duplicates removed keeping first", `{"type":"subscribe","topic":"b,a,b","topics":["a","b"]}`, TypeSubscribe, "subscribe", []string{"b", "a"}, "null", ""},
		{"empty topic string", `{"type":"subscribe","topic":""}`, TypeSubscribe, "subscribe", nil, "null", ""},
		{"null topic", `{"type":"subscribe","topic":null,"topics":["a"]}`, TypeSubscribe, "subscribe", []string{"a"}, "null", ""},
		// Empty pieces are kept so that the server answers invalid_topic.
		{"empty piece in comma list", `{"type":"subscribe","topic":"a,,b"}`, TypeSubscribe, "subscribe", []string{"a", "", "b"}, "null", ""},
		{"escaped topic", `{"type":"subscribe","topic":"caf\u00e9"}`, TypeSubscribe, "subscribe", []string{"caf\u00e9"}, "null", ""},
		{"unknown fields ignored", `{"type":"ping","extra":[1,2,{"a":null}]}`, TypePing, "ping", nil, "null", ""},
		{"data null", `{"type":"publish","topic":"t","data":null}`, TypePublish, "publish", []string{"t"}, "null", ""},
		{"data number kept as written", `{"type":"publish","topic":"t","data":1.500e+02}`, TypePublish, "publish", []string{"t"}, `1.500e+02`, ""},
		{"data big int kept", `{"type":"publish","topic":"t","data":123456789012345678901234567890}`, TypePublish, "publish", []string{"t"}, `123456789012345678901234567890`, ""},
		{"data bool", `{"type":"publish","topic":"t","data":false}`, TypePublish, "publish", []string{"t"}, `false`, ""},
		{"data array", `{"type":"publish","topic":"t","data":[1, "two" ,{}]}`, TypePublish, "publish", []string{"t"}, `[1, "two" ,{}]`, ""},
		{
			"data carried byte for byte",
			"{\"type\":\"publish\",\"topic\":\"t\",\"data\" : {\"b\" : [1, 2.50, \"\\u00e9\\n\", null],\n\t\"a\":{}} , \"id\":1}",
			TypePublish, "publish", []string{"t"}, "{\"b\" : [1, 2.50, \"\\u00e9\\n\", null],\n\t\"a\":{}}", "1",
		},
		{"raw UTF-8 in data", `{"type":"publish","topic":"t","data":"日本語 😀"}`, TypePublish, "publish", []string{"t"}, `"日本語 😀"`, ""},
		{"surrounding white space", " \n{\"type\":\"ping\"}\t\r\n", TypePing, "ping", nil, "null", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, rerr := DecodeJSON([]byte(tt.in))
			if rerr != nil {
				t.Fatalf("error %v", rerr)
			}
			if r.Type != tt.typ || r.RawType != tt.rawType {
				t.Errorf("type %d %q, want %d %q", r.Type, r.RawType, tt.typ, tt.rawType)
			}
			if !reflect.DeepEqual(r.Topics, tt.topics) {
				t.Errorf("topics %q, want %q", r.Topics, tt.topics)
			}
			if string(r.Data) != tt.data {
				t.Errorf("data %q, want %q", r.Data, tt.data)
			}
			if tt.id == "" && r.ID != nil {
				t.Errorf("id %q, want none", r.ID)
			}
			if tt.id != "" && string(r.ID) != tt.id {
				t.Errorf("id %q, want %q", r.ID, tt.id)
			}
		})
	}
}

func TestDecodeJSONErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		id   string // the id the error keeps, "" for none
	}{
		{"empty", ``, ""},
		{"truncated", `{"type":"ping"`, ""},
		{"not JSON", `hello`, ""},
		{"array", `[{"type":"ping"}]`, ""},
		{"string", `"ping"`, ""},
		{"number", `2`, ""},
		{"two objects", `{"type":"ping"}{"type":"ping"}`, ""},
		{"trailing comma", `{"type":"ping",}`, ""},
		{"single quotes", `{'type':'ping'}`, ""},
		{"bad escape", `{"type":"\x"}`, ""},
		{"NaN data", `{"type":"publish","topic":"t","data":NaN}`, ""},
		{"topics not an array", `{"type":"subscribe","topics":"a"}`, ""},
		{"topics with a number", `{"type":"subscribe","topics":["a",1]}`, ""},
		{"object id", `{"type":"ping","id":{"a":1}}`, ""},
		{"array id", `{"type":"ping","id":[1]}`, ""},
		{"true id", `{"type":"ping","id":true}`, ""},
		{"false id", `{"type":"ping","id":false}`, ""},
		{"number topic keeps id", `{"type":"subscribe","topic":5,"id":"x"}`, `"x"`},
		{"array topic keeps id", `{"type":"subscribe","topic":["a"],"id":3}`, `3`},
		{"type out of float range keeps id", `{"type":1e400,"id":9}`, `9`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, rerr := DecodeJSON([]byte(tt.in))
			if rerr == nil {
				t.Fatalf("decoded %+v, want an error", r)
			}
			if r != nil {
				t.Errorf("error also returned a request")
			}
			if rerr.Code != CodeBadRequest {
				t.Errorf("code %q, want %q", rerr.Code, CodeBadRequest)
			}
			if rerr.Message == "" || rerr.Error() != rerr.Code+": "+rerr.Message {
				t.Errorf("Error() = %q", rerr.Error())
			}
			if string(rerr.ID) != tt.id {
				t.Errorf("id %q, want %q", rerr.ID, tt.id)
			}
		})
	}
}

func mpMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mpMap encodes an ordered msgpack map with string keys.
func mpMap(t *testing.T, kv ...any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	if err := enc.EncodeMapLen(len(kv) / 2); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(kv); i += 2 {
		if err := enc.EncodeString(kv[i].(string)); err != nil {
			t.Fatal(err)
		}
		if raw, ok := kv[i+1].(msgpack.RawMessage); ok {
			buf.Write(raw)
			continue
		}
		if err := enc.Encode(kv[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestDecodeMsgpack(t *testing.T) {
	tests := []struct {
		name    string
		in      []any
		typ     int
		rawType string
		topics  []string
		data    string
		id      any // the decoded id, nil for none
	}{
		{"subscribe", []any{"type", "subscribe", "topic", "a"}, TypeSubscribe, "subscribe", []string{"a"}, "null", nil},
		{"legacy comma list", []any{"type", "subscribe", "topic", "a,b"}, TypeSubscribe, "subscribe", []string{"a", "b"}, "null", nil},
		{"unsubscribe", []any{"type", "unsubscribe", "topics", []string{"a"}}, TypeUnsubscribe, "unsubscribe", []string{"a"}, "null", nil},
		{"unSubscribe", []any{"type", "unSubscribe", "topics", []string{"a"}}, TypeUnsubscribe, "unSubscribe", []string{"a"}, "null", nil},
		{"ping", []any{"type", "ping"}, TypePing, "ping", nil, "null", nil},
		{"fixint type", []any{"type", 2, "topic", "a"}, TypeSubscribe, "2", []string{"a"}, "null", nil},
		{"int8 type", []any{"type", int8(3)}, TypeUnsubscribe, "3", nil, "null", nil},
		{"uint8 type", []any{"type", uint8(1)}, TypePublish, "1", nil, "null", nil},
		{"int16 type", []any{"type", int16(2)}, TypeSubscribe, "2", nil, "null", nil},
		{"uint16 type", []any{"type", uint16(2)}, TypeSubscribe, "2", nil, "null", nil},
		{"int32 type", []any{"type", int32(2)}, TypeSubscribe, "2", nil, "null", nil},
		{"uint32 type", []any{"type", uint32(3)}, TypeUnsubscribe, "3", nil, "null", nil},
		{"int64 type", []any{"type", int64(1)}, TypePublish, "1", nil, "null", nil},
		{"uint64 type", []any{"type", uint64(2)}, TypeSubscribe, "2", nil, "null", nil},
		{"float64 type", []any{"type", float64(2)}, TypeSubscribe, "2", nil, "null", nil},
		{"negative type", []any{"type", -2}, TypeUnknown, "-2", nil, "null", nil},
		{"big type", []any{"type", uint64(math.MaxUint64)}, TypeUnknown, "18446744073709551615", nil, "null", nil},
		{"bool type", []any{"type", true}, TypeUnknown, "true", nil, "null", nil},
		{"unknown type", []any{"type", "kick"}, TypeUnknown, "kick", nil, "null", nil},
		{"nil type", []any{"type", nil}, TypeUnknown, "", nil, "null", nil},
		{"union", []any{"type", "subscribe", "topic", "a,b", "topics", []string{"c", "a"}}, TypeSubscribe, "subscribe", []string{"a", "b", "c"}, "null", nil},
		{"string id", []any{"type", "ping", "id", "r1"}, TypePing, "ping", nil, "null", "r1"},
		{"int id", []any{"type", "ping", "id", 42}, TypePing, "ping", nil, "null", int8(42)},
		{"uint64 id", []any{"type", "ping", "id", uint64(math.MaxUint64)}, TypePing, "ping", nil, "null", uint64(math.MaxUint64)},
		{"float id", []any{"type", "ping", "id", 1.5}, TypePing, "ping", nil, "null", 1.5},
		{"float32 id", []any{"type", "ping", "id", float32(0.5)}, TypePing, "ping", nil, "null", float32(0.5)},
		{"nil id", []any{"type", "ping", "id", nil}, TypePing, "ping", nil, "null", nil},
		{"publish map data", []any{"type", "publish", "topic", "t", "data", map[string]any{"x": 1}}, TypePublish, "publish", []string{"t"}, `{"x":1}`, nil},
		{"publish string data", []any{"type", "publish", "topic", "t", "data", "hi"}, TypePublish, "publish", []string{"t"}, `"hi"`, nil},
		{"publish nil data", []any{"type", "publish", "topic", "t", "data", nil}, TypePublish, "publish", []string{"t"}, `null`, nil},
		{"publish array data", []any{"type", "publish", "topic", "t", "data", []any{1, "a", true, nil, 2.5}}, TypePublish, "publish", []string{"t"}, `[1,"a",true,null,2.5]`, nil},
		{"publish uint64 data", []any{"type", "publish", "topic", "t", "data", uint64(math.MaxUint64)}, TypePublish, "publish", []string{"t"}, `18446744073709551615`, nil},
		{"publish int64 data", []any{"type", "publish", "topic", "t", "data", int64(math.MinInt64)}, TypePublish, "publish", []string{"t"}, `-9223372036854775808`, nil},
		{"publish nested", []any{"type", "publish", "topic", "t", "data", map[string]any{"a": []any{map[string]any{"b": "c"}}}}, TypePublish, "publish", []string{"t"}, `{"a":[{"b":"c"}]}`, nil},
		{"publish bin data as base64 string", []any{"type", "publish", "topic", "t", "data", []byte{1, 2, 3}}, TypePublish, "publish", []string{"t"}, `"AQID"`, nil},
		{"unknown fields skipped", []any{"type", "ping", "extra", map[string]any{"a": []any{1}}}, TypePing, "ping", nil, "null", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := mpMap(t, tt.in...)
			r, rerr := DecodeMsgpack(in)
			if rerr != nil {
				t.Fatalf("error %v", rerr)
			}
			if r.Type != tt.typ || r.RawType != tt.rawType {
				t.Errorf("type %d %q, want %d %q", r.Type, r.RawType, tt.typ, tt.rawType)
			}
			if !reflect.DeepEqual(r.Topics, tt.topics) {
				t.Errorf("topics %q, want %q", r.Topics, tt.topics)
			}
			if string(r.Data) != tt.data {
				t.Errorf("data %s, want %s", r.Data, tt.data)
			}
			if tt.id == nil {
				if r.ID != nil {
					t.Errorf("id %x, want none", r.ID)
				}
				return
			}
			var id any
			if err := msgpack.Unmarshal(r.ID, &id); err != nil {
				t.Fatalf("id %x: %v", r.ID, err)
			}
			if !reflect.DeepEqual(id, tt.id) {
				t.Errorf("id %#v, want %#v", id, tt.id)
			}
		})
	}
}

func TestDecodeMsgpackErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		id   bool // the error keeps the id
	}{
		{"empty", nil, false},
		{"truncated map", []byte{0x82, 0xa4, 't', 'y', 'p', 'e'}, false},
		{"string, not a map", mpMarshal(t, "ping"), false},
		{"topic not a string", mpMap(t, "type", "subscribe", "topic", 5), false},
		{"topics not strings", mpMap(t, "type", "subscribe", "topics", []any{1}), false},
		{"bool id", mpMap(t, "type", "ping", "id", true), false},
		{"array id", mpMap(t, "type", "ping", "id", []any{1}), false},
		{"map id", mpMap(t, "type", "ping", "id", map[string]any{"a": 1}), false},
		{"bin id", mpMap(t, "type", "ping", "id", []byte("x")), false},
		{"NaN data keeps id", mpMap(t, "type", "publish", "topic", "t", "id", "x", "data", math.NaN()), true},
		{"Inf data keeps id", mpMap(t, "type", "publish", "topic", "t", "id", "x", "data", math.Inf(1)), true},
		{"NaN inside data keeps id", mpMap(t, "type", "publish", "topic", "t", "id", "x", "data", []any{1, math.Inf(-1)}), true},
		{"unknown ext data", mpMap(t, "type", "publish", "topic", "t", "id", "x", "data", msgpack.RawMessage{0xd4, 0x42, 0x00}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, rerr := DecodeMsgpack(tt.in)
			if rerr == nil {
				t.Fatalf("decoded %+v (data %s), want an error", r, r.Data)
			}
			if rerr.Code != CodeBadRequest {
				t.Errorf("code %q", rerr.Code)
			}
			if tt.id && !bytes.Equal(rerr.ID, mpMarshal(t, "x")) {
				t.Errorf("id %x, want %x", rerr.ID, mpMarshal(t, "x"))
			}
			if !tt.id && rerr.ID != nil {
				t.Errorf("id %x, want none", rerr.ID)
			}
		})
	}
}

// Maps whose keys are not strings are not JSON; they are refused rather than
// carried with made-up keys (PROTOCOL.md section 2, "Data"), at any depth,
// and the error keeps the request's id.
func TestDecodeMsgpackNonStringKeys(t *testing.T) {
	for name, data := range map[string]any{
		"int key":            map[int]string{1: "a"},
		"bool key in array":  []any{map[any]any{true: 1}},
		"nil key":            map[any]any{nil: 1},
		"int key deep down":  map[string]any{"a": map[string]any{"b": map[int]int{2: 3}}},
		"float key":          map[float64]int{1.5: 1},
		"string and int key": map[any]any{"1": "a", 1: "b"},
	} {
		r, rerr := DecodeMsgpack(mpMap(t, "type", "publish", "topic", "t", "id", "x", "data", data))
		if rerr == nil {
			t.Errorf("%s: carried as %s, want bad_request", name, r.Data)
			continue
		}
		if rerr.Code != CodeBadRequest || rerr.Message != "data: map keys must be strings" || !bytes.Equal(rerr.ID, mpMarshal(t, "x")) {
			t.Errorf("%s: %+v", name, rerr)
		}
	}
	// A bin key is text from an older encoder: kept.
	r, rerr := DecodeMsgpack(mpMap(t, "type", "publish", "topic", "t", "data", msgpack.RawMessage{0x81, 0xc4, 0x01, 'k', 0x01}))
	if rerr != nil {
		t.Errorf("bin key: %v", rerr)
	} else if string(r.Data) != `{"k":1}` {
		t.Errorf("bin key: data %s", r.Data)
	}
}

// The same request in both codecs decodes to the same thing.
func TestCodecsAgree(t *testing.T) {
	reqs := []string{
		`{"type":"subscribe","topic":"a,b","topics":["c"],"id":"q"}`,
		`{"type":"unSubscribe","topics":["a"],"id":5}`,
		`{"type":1,"topic":"t","data":{"k":[1,2,{"z":null}],"s":"x"}}`,
		`{"type":"ping","id":-3}`,
		`{"type":"kick"}`,
	}
	for _, in := range reqs {
		var v map[string]any
		d := json.NewDecoder(strings.NewReader(in))
		d.UseNumber()
		if err := d.Decode(&v); err != nil {
			t.Fatal(err)
		}
		conv, err := JSONValue([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		mp := mpMarshal(t, conv)
		rj, errj := DecodeJSON([]byte(in))
		rm, errm := DecodeMsgpack(mp)
		if errj != nil || errm != nil {
			t.Fatalf("%s: %v %v", in, errj, errm)
		}
		if rj.Type != rm.Type || rj.RawType != rm.RawType || !reflect.DeepEqual(rj.Topics, rm.Topics) {
			t.Errorf("%s: json %+v, msgpack %+v", in, rj, rm)
		}
		if !jsonEqual(t, rj.Data, rm.Data) {
			t.Errorf("%s: data %s vs %s", in, rj.Data, rm.Data)
		}
		if (rj.ID == nil) != (rm.ID == nil) {
			t.Errorf("%s: id %s vs %x", in, rj.ID, rm.ID)
		}
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}

func TestValidateTopic(t *testing.T) {
	tests := []struct {
		topic string
		ok    bool
	}{
		{"", false},
		{"a", true},
		{"news/sports:live-1_2.x", true},
		{"caf\u00e9", true},
		{"日本語", true},
		{"\U0001F600", true},
		{"\ufffd", true}, // a real U+FFFD is printable UTF-8
		{"~!@#$%^&*()[]{}<>?/|\\\"'`=+", true},
		{strings.Repeat("a", 256), true},
		{strings.Repeat("a", 257), false},
		{strings.Repeat("a", 254) + "\u00e9", true},  // 256 bytes
		{strings.Repeat("a", 255) + "\u00e9", false}, // 257 bytes
		{strings.Repeat("\u20ac", 85) + "a", true},   // 256 bytes in 86 runes
		{strings.Repeat("\u20ac", 86), false},        // 258 bytes
		{"a,b", false},
		{",", false},
		{"a b", false},
		{" a", false},
		{"a ", false},
		{"a\tb", false},
		{"a\nb", false},
		{"a\rb", false},
		{"a\vb", false},
		{"a\fb", false},
		{"a\u00a0b", false}, // no-break space
		{"a\u2028b", false}, // line separator
		{"a\u3000b", false}, // ideographic space
		{"a\u0085b", false}, // next line
		{"\x00", false},
		{"a\x00", false},
		{"a\x1fb", false},
		{"a\x7fb", false},   // DEL
		{"a\u200bb", false}, // zero width space (Cf)
		{"a\u00adb", false}, // soft hyphen (Cf)
		{"a\ufeffb", false}, // BOM
		{"\xff", false},
		{"a\xc3", false},        // truncated rune
		{"\xed\xa0\x80", false}, // surrogate
		{"\xc0\xaf", false},     // overlong
		{"a\xe2\x82", false},    // truncated 3-byte rune at the end
		{"\U0010FFFF", false},   // noncharacter, unassigned: not printable
		{"a\U000E0001b", false}, // language tag (Cf)
		{"\u0301", true},        // a lone combining mark is graphic (Mn)
		{"e\u0301", true},       // combining sequence
		{"\U0001F1EB\U0001F1F7", true},
	}
	for _, tt := range tests {
		err := ValidateTopic(tt.topic)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateTopic(%q) = %v, want ok=%v", tt.topic, err, tt.ok)
		}
		if err != nil && err.Error() == "" {
			t.Errorf("ValidateTopic(%q): empty error text", tt.topic)
		}
	}
}

func TestSplitTopicsAreValidated(t *testing.T) {
	// A comma list is split before validation: each piece is checked on its
	// own, and an empty piece is invalid.
	r, rerr := DecodeJSON([]byte(`{"type":"subscribe","topic":"ok,,bad topic"}`))
	if rerr != nil {
		t.Fatal(rerr)
	}
	var bad int
	for _, tp := range r.Topics {
		if ValidateTopic(tp) != nil {
			bad++
		}
	}
	if bad != 2 {
		t.Fatalf("topics %q: %d invalid, want 2", r.Topics, bad)
	}
}

// manyTopicsRequest is a subscribe request of about size bytes naming as
// many distinct short topics as fit.
func manyTopicsRequest(commaForm bool, size int) []byte {
	var b strings.Builder
	if commaForm {
		b.WriteString(`{"type":"subscribe","topic":"`)
	} else {
		b.WriteString(`{"type":"subscribe","topics":[`)
	}
	for i := 0; b.Len() < size-16; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		if commaForm {
			b.WriteString(strconv.FormatInt(int64(i), 36))
		} else {
			b.WriteString(`"` + strconv.FormatInt(int64(i), 36) + `"`)
		}
	}
	if commaForm {
		b.WriteString(`"}`)
	} else {
		b.WriteString(`]}`)
	}
	return []byte(b.String())
}

// Decoding a message must cost time in proportion to its size. A client may
// send a 64 KiB request naming 11-16k topics, and the too_many_topics check
// only comes after decoding; removing duplicates pairwise makes that
// quadratic: 1-3 s of CPU per message on a 2-core machine. This test uses
// 256 KiB (about 55k topics) so that the difference is beyond any noise: a
// linear decoder needs ~30 ms (a few hundred with -race on a loaded
// machine), the pairwise one many seconds. It fails as soon as the limit
// passes rather than waiting for the decoder.
// TestDecodeManyTopics checks a request naming tens of thousands of
// topics decodes with every distinct topic once, in order. (Its cost is
// BenchmarkDecodeManyTopics: duplicate removal used to be quadratic.)
func TestDecodeManyTopics(t *testing.T) {
	for _, comma := range []bool{false, true} {
		in := manyTopicsRequest(comma, 256<<10)
		r, rerr := DecodeJSON(in)
		if rerr != nil {
			t.Fatalf("comma form %v: %v", comma, rerr)
		}
		if len(r.Topics) < 40000 {
			t.Fatalf("comma form %v: %d topics decoded", comma, len(r.Topics))
		}
		seen := make(map[string]bool, len(r.Topics))
		for _, tp := range r.Topics {
			if seen[tp] {
				t.Fatalf("comma form %v: topic %q twice", comma, tp)
			}
			seen[tp] = true
		}
	}
}

func BenchmarkDecodeManyTopics(b *testing.B) {
	in := manyTopicsRequest(false, 256<<10)
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, rerr := DecodeJSON(in); rerr != nil {
			b.Fatal(rerr)
		}
	}
}
