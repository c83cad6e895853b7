package protocol

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"reflect"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
)

// Fuzz targets for the request decoders and the JSON string encoder. Seed
// corpora live in testdata/fuzz/<FuzzName>/; run one with, for example,
//
//	go test -run '^$' -fuzz '^FuzzDecodeMsgpack$' -fuzztime 5m -parallel 1 ./internal/protocol/
//
// FuzzDecodeMsgpack checks that decoding a request, again and again,
// allocates memory in proportion to the request, not to the lengths it
// declares, and never panics. The seeds regress_* and those the fuzzer found
// (hex names) in testdata/fuzz/FuzzDecodeMsgpack/ are the inputs that broke
// DecodeMsgpack before commit 85accf5: out-of-memory crashes, a panic on a
// repeated type key, a float32 type, data nested too deep for JSON.
//
// A request wrapped in an ext value (d4-d8, c7-c9) made the msgpack library
// read a map header from the ext payload, which mpcheck does not look into,
// and allocate a map of up to 1e6 entries for 10 bytes (seeds
// known_ext_wrapped_map32_header and 7a7d4ef2725aa626); DecodeMsgpack now
// refuses a request that is not a map before decoding.

// jsonFields is what encoding/json would assign to each field of a request:
// the raw value of the last key that matches the field name, ignoring case.
type jsonFields map[string]json.RawMessage

func refJSONFields(t *testing.T, p []byte) jsonFields {
	t.Helper()
	fields := jsonFields{}
	dec := json.NewDecoder(bytes.NewReader(p))
	tok, err := dec.Token()
	if err != nil {
		t.Fatalf("decoded input does not tokenize: %v", err)
	}
	if tok != json.Delim('{') {
		return fields // null: no fields
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("key: %v", err)
		}
		key := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			t.Fatalf("value of %q: %v", key, err)
		}
		for _, name := range []string{"type", "topic", "topics", "data", "id"} {
			if strings.EqualFold(key, name) {
				fields[name] = raw
			}
		}
	}
	return fields
}

func refUnion(topic string, topics []string) []string {
	var out []string
	seen := map[string]bool{}
	var all []string
	if topic != "" {
		all = strings.Split(topic, ",")
	}
	for _, t := range append(all, topics...) {
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}

// refTypeOf maps a decoded type value to the request type.
func refTypeOf(v any) int {
	var f float64
	switch x := v.(type) {
	case string:
		switch x {
		case "publish":
			return TypePublish
		case "subscribe":
			return TypeSubscribe
		case "unsubscribe", "unSubscribe":
			return TypeUnsubscribe
		case "ping":
			return TypePing
		}
		return TypeUnknown
	case float64:
		f = x
	case float32:
		f = float64(x)
	case int8:
		f = float64(x)
	case int16:
		f = float64(x)
	case int32:
		f = float64(x)
	case int64:
		f = float64(x)
	case uint8:
		f = float64(x)
	case uint16:
		f = float64(x)
	case uint32:
		f = float64(x)
	case uint64:
		f = float64(x)
	default:
		return TypeUnknown
	}
	switch f {
	case 1:
		return TypePublish
	case 2:
		return TypeSubscribe
	case 3:
		return TypeUnsubscribe
	}
	return TypeUnknown
}

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"type":"subscribe","topic":"a,b","data":""}`,
		`{"type":2,"topics":["a","b"],"id":1}`,
		`{"type":"unSubscribe","topic":"a","topics":["b","a"],"id":"x"}`,
		`{"type":1,"topic":"t","data":{"k" : [1, 2.50, "\u00e9", null]}}`,
		`{"type":"publish","topic":"t","data":"hi","id":-1.5e3}`,
		`{"type":"ping","id":{"no":1}}`,
		`{"type":"kick","topic":5}`,
		`{"TYPE":"ping","Data":1,"data":2}`,
		`null`,
		`[1,2]`,
		`{"type":1e999}`,
		`{"topics":[null,"a"]}`,
		`{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		r, rerr := DecodeJSON(p)
		if rerr != nil {
			if r != nil {
				t.Fatalf("request and error")
			}
			if rerr.Code != CodeBadRequest || rerr.Message == "" {
				t.Fatalf("error %+v", rerr)
			}
			if rerr.ID != nil && !json.Valid(rerr.ID) {
				t.Fatalf("error id %q is not JSON", rerr.ID)
			}
			if !json.Valid(Reply{JSON}.Error(nil, rerr.ID, rerr.Code, rerr.Message)) {
				t.Fatalf("error reply is not JSON")
			}
			return
		}
		if !json.Valid(p) {
			t.Fatalf("invalid JSON %q decoded to %+v", p, r)
		}
		if !json.Valid(r.Data) {
			t.Fatalf("Data %q is not valid JSON", r.Data)
		}
		if utf8.Valid(p) && !utf8.Valid(r.Data) {
			t.Fatalf("Data %q is not valid UTF-8", r.Data)
		}
		fields := refJSONFields(t, p)

		// data: byte for byte, "null" when absent.
		wantData := []byte("null")
		if raw, ok := fields["data"]; ok {
			wantData = raw
		}
		if !bytes.Equal(r.Data, wantData) {
			t.Fatalf("Data %q, the data field is %q", r.Data, wantData)
		}

		// id: byte for byte, a string or a number, nil when absent or null.
		raw, ok := fields["id"]
		if !ok || string(raw) == "null" {
			if r.ID != nil {
				t.Fatalf("ID %q without an id field", r.ID)
			}
		} else {
			if !bytes.Equal(r.ID, raw) {
				t.Fatalf("ID %q, the id field is %q", r.ID, raw)
			}
			var v any
			if err := json.Unmarshal(raw, &v); err == nil {
				switch v.(type) {
				case string, float64:
				default:
					t.Fatalf("id %q of type %T accepted", raw, v)
				}
			} else if c := raw[0]; c != '-' && (c < '0' || c > '9') {
				// Only numbers too large for a float64 fail to unmarshal.
				t.Fatalf("id %q accepted: %v", raw, err)
			}
		}

		// type
		var typ any
		if raw, ok := fields["type"]; ok {
			if err := json.Unmarshal(raw, &typ); err != nil {
				t.Fatalf("type %q decoded though it does not unmarshal: %v", raw, err)
			}
		}
		if want := refTypeOf(typ); r.Type != want {
			t.Fatalf("type %q gives %d, want %d", fields["type"], r.Type, want)
		}
		if s, ok := typ.(string); ok && r.RawType != s {
			t.Fatalf("RawType %q, want %q", r.RawType, s)
		}
		if typ == nil && r.RawType != "" {
			t.Fatalf("RawType %q without a type", r.RawType)
		}

		// topics: the union of topic (split at commas) and topics.
		var topic string
		var topics []string
		if raw, ok := fields["topic"]; ok && string(raw) != "null" {
			if err := json.Unmarshal(raw, &topic); err != nil {
				t.Fatalf("topic %q decoded though it is not a string", raw)
			}
		}
		if raw, ok := fields["topics"]; ok {
			if err := json.Unmarshal(raw, &topics); err != nil {
				t.Fatalf("topics %q decoded though not strings", raw)
			}
		}
		if want := refUnion(topic, topics); !reflect.DeepEqual(r.Topics, want) {
			t.Fatalf("Topics %q, want %q", r.Topics, want)
		}

		checkJSONReplies(t, r)
	})
}

func checkJSONReplies(t *testing.T, r *Request) {
	t.Helper()
	rep := Reply{JSON}
	for _, out := range [][]byte{
		rep.Ack(nil, r.ID, r.Topics, true),
		rep.Error(nil, r.ID, CodeForbidden, "refused "+r.RawType),
		rep.Pong(nil, r.ID),
	} {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("reply %q: %v", out, err)
		}
		if r.ID != nil && !bytes.Equal(m["id"], r.ID) {
			t.Fatalf("reply %q does not echo id %q", out, r.ID)
		}
	}
	var ack struct{ Topics []string }
	if err := json.Unmarshal(rep.Ack(nil, r.ID, r.Topics, true), &ack); err != nil {
		t.Fatal(err)
	}
	for i, tp := range r.Topics {
		if utf8.ValidString(tp) && ack.Topics[i] != tp {
			t.Fatalf("ack topic %q reads back as %q", tp, ack.Topics[i])
		}
	}
	for _, tp := range r.Topics {
		if ValidateTopic(tp) != nil {
			continue
		}
		out := AppendDeliveryJSON(nil, tp, r.Data)
		if !json.Valid(out) {
			t.Fatalf("delivery %q is not JSON", out)
		}
		if _, err := AppendDeliveryMsgpack(nil, tp, r.Data); err != nil {
			t.Fatalf("msgpack delivery of %q: %v", r.Data, err)
		}
	}
}

// mpScan walks the msgpack value at p[off:] and calls visit for every array
// or map header with its declared element count (map entries count twice)
// and the offset of its 32-bit count field (-1 for other forms), and for
// every str, bin and ext value with its declared length in bytes (countAt
// -1); off is where the elements or bytes start. It returns the offset after
// the value, or -1 if the value is truncated or malformed.
func mpScan(p []byte, off, depth int, visit func(count int, countAt int, off int)) int {
	if off >= len(p) || depth > 10000 {
		return -1
	}
	c := p[off]
	need := func(n int) bool { return off+n <= len(p) }
	u := func(at, n int) int {
		switch n {
		case 1:
			return int(p[at])
		case 2:
			return int(binary.BigEndian.Uint16(p[at:]))
		default:
			return int(binary.BigEndian.Uint32(p[at:]))
		}
	}
	skip := func(n int) int {
		if !need(n) {
			return -1
		}
		return off + n
	}
	// sized is a value of hdr header bytes followed by n bytes.
	sized := func(hdr, n int) int {
		visit(n, -1, off+hdr)
		return skip(hdr + n)
	}
	container := func(hdr, count, countAt int) int {
		visit(count, countAt, off+hdr)
		o := off + hdr
		for i := 0; i < count; i++ {
			if o = mpScan(p, o, depth+1, visit); o < 0 {
				return -1
			}
		}
		return o
	}
	switch {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		return off + 1
	case c >= 0x80 && c <= 0x8f:
		return container(1, 2*int(c&0x0f), -1)
	case c >= 0x90 && c <= 0x9f:
		return container(1, int(c&0x0f), -1)
	case c >= 0xa0 && c <= 0xbf:
		return sized(1, int(c&0x1f))
	}
	switch c {
	case 0xc4, 0xd9:
		if !need(2) {
			return -1
		}
		return sized(2, u(off+1, 1))
	case 0xc5, 0xda:
		if !need(3) {
			return -1
		}
		return sized(3, u(off+1, 2))
	case 0xc6, 0xdb:
		if !need(5) {
			return -1
		}
		return sized(5, u(off+1, 4))
	// ext: the type byte counts with the data, as the decoder reads them.
	case 0xc7:
		if !need(2) {
			return -1
		}
		return sized(2, 1+u(off+1, 1))
	case 0xc8:
		if !need(3) {
			return -1
		}
		return sized(3, 1+u(off+1, 2))
	case 0xc9:
		if !need(5) {
			return -1
		}
		return sized(5, 1+u(off+1, 4))
	case 0xca:
		return skip(5)
	case 0xcb:
		return skip(9)
	case 0xcc, 0xd0:
		return skip(2)
	case 0xcd, 0xd1:
		return skip(3)
	case 0xce, 0xd2:
		return skip(5)
	case 0xcf, 0xd3:
		return skip(9)
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
		return skip(2 + 1<<(c-0xd4))
	case 0xdc:
		if !need(3) {
			return -1
		}
		return container(3, u(off+1, 2), -1)
	case 0xdd:
		if !need(5) {
			return -1
		}
		return container(5, u(off+1, 4), off+1)
	case 0xde:
		if !need(3) {
			return -1
		}
		return container(3, 2*u(off+1, 2), -1)
	case 0xdf:
		if !need(5) {
			return -1
		}
		return container(5, 2*u(off+1, 4), off+1)
	}
	return -1 // 0xc1
}

// mpOverdeclared reports whether p declares a container with more elements
// than there are bytes left (each element takes at least one byte), or a
// str, bin or ext value longer than what is left, and
// returns a copy of p with such 32-bit counts above maxDeclared lowered to
// maxDeclared: the input stays just as invalid, but a decoder that trusts the
// count (as DecodeMsgpack did before 85accf5) cannot take the machine down
// while the fuzzer runs.
func mpOverdeclared(p []byte, maxDeclared int) (bool, []byte) {
	over, copied := false, false
	q := p
	mpScan(p, 0, 0, func(count, countAt, off int) {
		if count <= len(p)-off {
			return
		}
		over = true
		if countAt >= 0 && count > maxDeclared {
			if !copied {
				q, copied = append([]byte(nil), p...), true
			}
			n := maxDeclared
			if p[countAt-1] == 0xdf {
				n /= 2
			}
			binary.BigEndian.PutUint32(q[countAt:], uint32(n))
		}
	})
	return over, q
}

// decodeMsgpackNoPanic is DecodeMsgpack with a panic turned into a test
// failure (with its stack), so that one bad seed does not hide the others.
func decodeMsgpackNoPanic(t *testing.T, p []byte) (r *Request, rerr *RequestError) {
	t.Helper()
	defer func() {
		if e := recover(); e != nil {
			t.Fatalf("DecodeMsgpack(%x) panicked: %v\n%s", p, e, debug.Stack())
		}
	}()
	return DecodeMsgpack(p)
}

// allocLimit is what decoding a request of n bytes may allocate: the
// msgpack library's 1 MB read buffer and some slack, then a fixed multiple
// of the input.
func allocLimit(n int) uint64 { return 4<<20 + 256*uint64(n) }

// decodeRepeats is how many times each input is decoded: the msgpack library
// keeps decoders in a sync.Pool, so what one request leaves behind (a grown
// read buffer) is paid for by the next ones.
const decodeRepeats = 8

func FuzzDecodeMsgpack(f *testing.F) {
	mp := func(kv ...any) []byte {
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		_ = enc.EncodeMapLen(len(kv) / 2)
		for i := 0; i < len(kv); i += 2 {
			_ = enc.EncodeString(kv[i].(string))
			_ = enc.Encode(kv[i+1])
		}
		return buf.Bytes()
	}
	f.Add(mp("type", "subscribe", "topic", "a,b"))
	f.Add(mp("type", 2, "topics", []string{"a", "b"}, "id", 1))
	f.Add(mp("type", "unSubscribe", "topic", "a", "topics", []string{"b", "a"}, "id", "x"))
	f.Add(mp("type", "publish", "topic", "t", "data", map[string]any{"k": []any{1, 2.5, "\u00e9", nil, true}}))
	f.Add(mp("type", uint64(1), "topic", "t", "data", []byte{1, 2}, "id", -1.5))
	f.Add(mp("type", "ping", "id", []any{1}))
	f.Add(mp("type", "publish", "topic", "t", "data", math.Inf(1), "id", "x"))
	f.Add(mp("type", "publish", "topic", "t", "data", map[int]int{1: 2}))
	f.Add([]byte{0xc0})
	f.Add([]byte{0x91, 0xa4, 'p', 'i', 'n', 'g'})
	f.Add([]byte{})

	var sample = []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	allocated := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}

	f.Fuzz(func(t *testing.T, p []byte) {
		over, p := mpOverdeclared(p, 1<<20)
		repeats := decodeRepeats
		var r *Request
		var rerr *RequestError
		for i := 1; i <= repeats; i++ {
			before := allocated()
			r, rerr = decodeMsgpackNoPanic(t, p)
			if got := allocated() - before; got > allocLimit(len(p)) {
				t.Fatalf("decoding %d bytes (call %d of %d) allocated %d bytes (limit %d): %x", len(p), i, repeats, got, allocLimit(len(p)), p)
			}
		}
		if rerr != nil {
			if r != nil {
				t.Fatalf("request and error")
			}
			if rerr.Code != CodeBadRequest || rerr.Message == "" {
				t.Fatalf("error %+v", rerr)
			}
			if rerr.ID != nil {
				checkMsgpackID(t, rerr.ID)
			}
			return
		}
		if over {
			t.Fatalf("decoded %x though it declares more elements than it holds", p)
		}
		if !json.Valid(r.Data) || !utf8.Valid(r.Data) {
			var v any
			err := json.Unmarshal(r.Data, &v)
			t.Fatalf("Data is not valid JSON (%v): %.200q", err, r.Data)
		}
		if r.ID != nil {
			checkMsgpackID(t, r.ID)
		}

		// The fields as raw values: the last of repeated keys counts, and a
		// nil value is the same as no field.
		raw := mpFields(t, p)
		if id, ok := raw["id"]; ok && !bytes.Equal(r.ID, id) {
			t.Fatalf("ID %x, the id field is %x", r.ID, id)
		}
		if _, ok := raw["id"]; !ok && r.ID != nil {
			t.Fatalf("ID %x without an id field", r.ID)
		}
		var typ any
		if rt, ok := raw["type"]; ok {
			if err := msgpack.Unmarshal(rt, &typ); err != nil {
				t.Fatalf("type %x: %v", rt, err)
			}
		}
		if want := refTypeOf(typ); r.Type != want {
			t.Fatalf("type %#v (%x) gives %d (%q), want %d", typ, raw["type"], r.Type, r.RawType, want)
		}
		var topic string
		var topics []string
		if rt, ok := raw["topic"]; ok {
			if err := msgpack.Unmarshal(rt, &topic); err != nil {
				t.Fatalf("decoded, but topic %x is not a string: %v", rt, err)
			}
		}
		if rt, ok := raw["topics"]; ok {
			if err := msgpack.Unmarshal(rt, &topics); err != nil {
				t.Fatalf("decoded, but topics %x are not strings: %v", rt, err)
			}
		}
		if want := refUnion(topic, topics); !reflect.DeepEqual(r.Topics, want) {
			t.Fatalf("Topics %q, want %q", r.Topics, want)
		}
		if rd, ok := raw["data"]; !ok {
			if string(r.Data) != "null" {
				t.Fatalf("Data %q without a data field", r.Data)
			}
		} else {
			var v any
			if err := msgpack.Unmarshal(rd, &v); err != nil {
				t.Fatalf("data %x: %v", rd, err)
			}
			d := json.NewDecoder(bytes.NewReader(r.Data))
			d.UseNumber()
			var j any
			if err := d.Decode(&j); err != nil {
				t.Fatalf("Data %q: %v", r.Data, err)
			}
			if msg := sameValue(v, j); msg != "" {
				t.Fatalf("data %#v became %s: %s", v, r.Data, msg)
			}
		}

		checkMsgpackReplies(t, r)
		checkJSONReplies(t, &Request{Type: r.Type, Topics: r.Topics, Data: r.Data, RawType: r.RawType})
	})
}

// mpFields reads the top-level map of a decoded request: the raw value of
// each key, the last one of repeated keys, nil values left out.
func mpFields(t *testing.T, p []byte) map[string][]byte {
	t.Helper()
	dec := msgpack.NewDecoder(bytes.NewReader(p))
	n, err := dec.DecodeMapLen()
	if err != nil {
		t.Fatalf("decoded, but not a map: %v", err)
	}
	fields := map[string][]byte{}
	for range n {
		k, err := dec.DecodeString()
		if err != nil {
			t.Fatalf("decoded, but a key does not decode: %v", err)
		}
		v, err := dec.DecodeRaw()
		if err != nil {
			t.Fatalf("decoded, but the value of %q does not decode: %v", k, err)
		}
		if len(v) == 0 || (len(v) == 1 && v[0] == 0xc0) {
			delete(fields, k)
			continue
		}
		fields[k] = v
	}
	return fields
}

// checkMsgpackID checks that id is one msgpack string or number.
func checkMsgpackID(t *testing.T, id []byte) {
	t.Helper()
	var v any
	dec := msgpack.NewDecoder(bytes.NewReader(id))
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("id %x: %v", id, err)
	}
	if _, err := dec.DecodeInterface(); err == nil {
		t.Fatalf("id %x holds more than one value", id)
	}
	switch v.(type) {
	case string, int8, int16, int32, int64, uint8, uint16, uint32, uint64, float32, float64:
	default:
		t.Fatalf("id %x is a %T", id, v)
	}
}

func checkMsgpackReplies(t *testing.T, r *Request) {
	t.Helper()
	rep := Reply{Msgpack}
	for _, out := range [][]byte{
		rep.Ack(nil, r.ID, r.Topics, true),
		rep.Error(nil, r.ID, CodeForbidden, "refused "+r.RawType),
		rep.Pong(nil, r.ID),
	} {
		var m map[string]msgpack.RawMessage
		dec := msgpack.NewDecoder(bytes.NewReader(out))
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("reply %x: %v", out, err)
		}
		if _, err := dec.DecodeInterface(); err == nil {
			t.Fatalf("reply %x: bytes after the map", out)
		}
		if r.ID != nil && !bytes.Equal(m["id"], r.ID) {
			t.Fatalf("reply %x does not echo id %x", out, r.ID)
		}
	}
	var ack struct {
		Topics []string `msgpack:"topics"`
	}
	if err := msgpack.Unmarshal(rep.Ack(nil, r.ID, r.Topics, true), &ack); err != nil {
		t.Fatal(err)
	}
	if len(r.Topics) > 0 && !reflect.DeepEqual(ack.Topics, r.Topics) {
		t.Fatalf("ack topics %q, want %q", ack.Topics, r.Topics)
	}
}

// sameValue compares a decoded msgpack value with the JSON it was converted
// to (decoded with UseNumber); it returns "" when they agree.
func sameValue(m, j any) string {
	switch x := m.(type) {
	case nil:
		if j != nil {
			return "nil became " + strconv.Quote(jsonKind(j))
		}
	case bool:
		if b, ok := j.(bool); !ok || b != x {
			return "bool changed"
		}
	case string:
		if s, ok := j.(string); !ok || s != string([]rune(x)) {
			return "string changed"
		}
	case []byte:
		if _, ok := j.(string); !ok {
			return "bin is not a string"
		}
	case int8, int16, int32, int64, uint8, uint16, uint32, uint64:
		n, ok := j.(json.Number)
		if !ok {
			return "integer became " + jsonKind(j)
		}
		var want string
		switch v := reflect.ValueOf(x); v.Kind() {
		case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			want = strconv.FormatUint(v.Uint(), 10)
		default:
			want = strconv.FormatInt(v.Int(), 10)
		}
		if string(n) != want {
			return "integer " + want + " became " + string(n)
		}
	case float32:
		n, ok := j.(json.Number)
		if !ok {
			return "float32 became " + jsonKind(j)
		}
		if f, err := strconv.ParseFloat(string(n), 32); err != nil || float32(f) != x {
			return "float32 changed"
		}
	case float64:
		n, ok := j.(json.Number)
		if !ok {
			return "float64 became " + jsonKind(j)
		}
		if f, err := strconv.ParseFloat(string(n), 64); err != nil || f != x {
			return "float64 changed"
		}
	case []any:
		a, ok := j.([]any)
		if !ok || len(a) != len(x) {
			return "array changed"
		}
		for i := range x {
			if msg := sameValue(x[i], a[i]); msg != "" {
				return msg
			}
		}
	case map[string]any:
		o, ok := j.(map[string]any)
		if !ok {
			return "map became " + jsonKind(j)
		}
		// Keys that are not valid UTF-8 are coerced and may collide.
		coerced := map[string]int{}
		for k := range x {
			coerced[string([]rune(k))]++
		}
		if len(o) != len(coerced) {
			return "map size changed"
		}
		for k, e := range x {
			ck := string([]rune(k))
			if coerced[ck] > 1 {
				continue
			}
			if msg := sameValue(e, o[ck]); msg != "" {
				return msg
			}
		}
	default:
		// Extension values (time.Time) become whatever their JSON form is.
	}
	return ""
}

func jsonKind(j any) string {
	switch j.(type) {
	case nil:
		return "null"
	case bool:
		return "bool"
	case json.Number:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	}
	return "object"
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", `q"\`, "\x00\x1f\x7f\n\r\t\b\f", "caf\u00e9 \U0001F600", "\u2028\u2029<>&", "\xff\xfe", "\xed\xa0\x80", "\xf0\x9f\x98", "\ufffd"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := AppendJSONString([]byte("[1,"), s)
		if string(out[:3]) != "[1," {
			t.Fatalf("prefix lost")
		}
		lit := out[3:]
		if !json.Valid(lit) || !utf8.Valid(lit) {
			t.Fatalf("AppendJSONString(%q) = %q: not valid JSON", s, lit)
		}
		if !json.Valid(append(out, ']')) {
			t.Fatalf("not valid inside an array: %q", out)
		}
		for _, c := range lit {
			if c < 0x20 {
				t.Fatalf("raw control byte %#x in %q", c, lit)
			}
		}
		var back string
		if err := json.Unmarshal(lit, &back); err != nil {
			t.Fatalf("%q: %v", lit, err)
		}
		want := s
		if !utf8.ValidString(s) {
			want = string([]rune(s)) // one U+FFFD per bad byte
		}
		if back != want {
			t.Fatalf("AppendJSONString(%q) reads back as %q, want %q", s, back, want)
		}
		if utf8.ValidString(s) {
			std, _ := json.Marshal(s)
			var back2 string
			if err := json.Unmarshal(std, &back2); err != nil || back2 != back {
				t.Fatalf("disagrees with encoding/json: %q vs %q", lit, std)
			}
		}
		// Nothing is escaped that need not be, beyond control characters.
		if !strings.ContainsAny(s, "\"\\") && utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 }) {
			if string(lit) != `"`+s+`"` {
				t.Fatalf("AppendJSONString(%q) = %q, want it verbatim", s, lit)
			}
		}
	})
}
