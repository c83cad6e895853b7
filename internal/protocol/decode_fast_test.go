package protocol

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// fastSeeds are requests of every shape the fast path takes, and of many
// it must leave to encoding/json, for FuzzDecodeJSONFastMatchesSlow.
func fastSeeds() []string {
	deep := func(n int) string {
		return `{"type":"publish","topic":"t","data":` + strings.Repeat(`[`, n) + strings.Repeat(`]`, n) + `}`
	}
	deepObj := func(n int) string {
		return `{"data":` + strings.Repeat(`{"a":`, n) + `1` + strings.Repeat(`}`, n) + `}`
	}
	s := []string{
		// the usual requests
		`{"type":"publish","topic":"t12","data":"T000012S0000000001N1700000000000000000abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefgh","id":17}`,
		`{"type":"publish","topic":"chat/room-1","data":{"user":"alice","text":"hello","n":[1,2.5,-3e2],"ok":true,"no":false,"z":null},"id":"r-42"}`,
		`{"type":"subscribe","topics":["news","chat/room-1","prices.eur"],"id":3}`,
		`{"type":"subscribe","topic":"news","id":"s1"}`,
		`{"type":"unsubscribe","topic":"a,b","id":-1}`,
		`{"type":"unSubscribe","topics":["x"],"id":"req-1"}`,
		`{"type":"ping","id":99}`,
		`{"type":"ping"}`,
		`{"type":"kick","topic":"a"}`,
		`{"type":"Subscribe"}`,
		`{}`,
		" \t\r\n{ \"type\" : \"ping\" ,\n\"id\"\t:\r1 } \n",
		`{"id":1,"data":2,"topics":["c"],"topic":"b","type":"subscribe"}`,
		// nulls
		`{"type":null,"topic":null,"topics":null,"data":null,"id":null}`,
		`{"type":"publish","topic":"t","data":null}`,
		`{"type":"ping","id":null}`,
		// topics
		`{"type":"subscribe","topics":[]}`,
		`{"type":"subscribe","topics":[ ],"topic":""}`,
		`{"type":"subscribe","topic":"","topics":[""]}`,
		`{"type":"subscribe","topics":[ "a" , "b","a" ],"topic":"b,c,,d"}`,
		`{"type":"subscribe","topic":",,"}`,
		`{"type":"subscribe","topics":["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q","a","r"]}`,
		`{"type":"subscribe","topic":"a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,a,r","topics":["r","s"]}`,
		`{"type":"subscribe","topic":"café,日本語","topics":["😀"]}`,
		`{"type":"subscribe","topic":"caf\u00e9"}`,
		"{\"type\":\"subscribe\",\"topic\":\"\xff\"}",
		"{\"type\":\"subscribe\",\"topics\":[\"a\",\"\xed\xa0\x80\"]}",
		"{\"type\":\"subscribe\",\"topic\":\"a\x01\"}",
		`{"type":"subscribe","topics":[null]}`,
		`{"type":"subscribe","topics":["a",1]}`,
		`{"type":"subscribe","topics":"a"}`,
		`{"type":"subscribe","topics":["a",]}`,
		`{"type":"subscribe","topics":["a" "b"]}`,
		`{"type":"subscribe","topic":5,"id":"x"}`,
		`{"type":"subscribe","topic":["a"],"id":3}`,
		// types
		`{"type":1,"topic":"t","data":"hi"}`,
		`{"type":2.0,"topic":"a"}`,
		`{"type":2e0}`,
		`{"type":30e-1}`,
		`{"type":-0}`,
		`{"type":0.1}`,
		`{"type":123456789}`,
		`{"type":1e21}`,
		`{"type":1e400,"id":9}`,
		`{"type":1e-400}`,
		`{"type":01}`,
		`{"type":1.}`,
		`{"type":-}`,
		`{"type":true}`,
		`{"type":["ping"]}`,
		`{"type":"caf\u00e9"}`,
		`{"type":"café"}`,
		"{\"type\":\"\xff\"}",
		`{"type":""}`,
		// ids
		`{"type":"ping","id":"a\u0062\"c\\\/\b\f\n\r\t"}`,
		"{\"type\":\"ping\",\"id\":\"\xff\xfe\"}",
		`{"type":"ping","id":-0.5E+10}`,
		`{"type":"ping","id":1e999}`,
		`{"type":"ping","id":""}`,
		`{"type":"ping","id":01}`,
		`{"type":"ping","id":1e}`,
		`{"type":"ping","id":{}}`,
		`{"type":"ping","id":[1]}`,
		`{"type":"ping","id":true}`,
		`{"type":"ping","id":false}`,
		`{"type":"ping","id":"\u12G4"}`,
		`{"type":"ping","id":"\x"}`,
		// data
		`{"type":"publish","topic":"t","data":{"a":[1,{"b":[]},{}],"c":"\u12aB","d":-0.0e-0}}`,
		`{"type":"publish","topic":"t","data":[ ]}`,
		`{"type":"publish","topic":"t","data":{ }}`,
		`{"type":"publish","topic":"t","data" : [ 1 , "two" , { "x" : null } ] }`,
		`{"type":"publish","topic":"t","data":[1,]}`,
		`{"type":"publish","topic":"t","data":{"a"}}`,
		`{"type":"publish","topic":"t","data":{"a":1,}}`,
		`{"type":"publish","topic":"t","data":{1:1}}`,
		`{"type":"publish","topic":"t","data":[1}`,
		`{"type":"publish","topic":"t","data":{"a":1]}`,
		`{"type":"publish","topic":"t","data":tru}`,
		`{"type":"publish","topic":"t","data":nul}`,
		`{"type":"publish","topic":"t","data":truex}`,
		`{"type":"publish","topic":"t","data":NaN}`,
		`{"type":"publish","topic":"t","data":"a\"b\\c\u0000"}`,
		"{\"type\":\"publish\",\"topic\":\"t\",\"data\":\"a\x01b\"}",
		"{\"type\":\"publish\",\"topic\":\"t\",\"data\":\"\x7f\xff\xc3\"}",
		`{"type":"publish","topic":"t","data":"` + strings.Repeat("x", 200) + `"}`,
		`{"type":"publish","topic":"t","data":"` + strings.Repeat(`ab\ncd\"`, 30) + `"}`,
		`{"type":"publish","topic":"t","data":123456789012345678901234567890e400}`,
		deep(maxFastDepth), deep(maxFastDepth + 1), deepObj(maxFastDepth), deepObj(maxFastDepth + 1),
		// keys and structure
		`{"Type":"ping"}`,
		`{"typ\u0065":"ping"}`,
		`{"type":"ping","type":"publish"}`,
		`{"data":1,"DATA":2}`,
		`{"extra":1,"type":"ping"}`,
		`{"topicsx":1}`,
		`{"":1}`,
		`{"type":"ping"}x`,
		`{"type":"ping"}}`,
		`{"type":"ping",}`,
		`{"type":"ping" "id":1}`,
		`{"type" "ping"}`,
		`{,}`,
		`{`,
		`{"type":"ping"`,
		`{"type":"pi`,
		`[{"type":"ping"}]`,
		`null`,
		`"ping"`,
		``,
		"\ufeff{}",
	}
	// Strings ending at every offset around the 8-byte steps.
	for n := range 18 {
		s = append(s, `{"type":"publish","topic":"`+strings.Repeat("t", n)+`","data":"`+strings.Repeat("é", n/2)+`\n"}`)
	}
	return s
}

// corpusSeeds reads the inputs of a fuzz target's seed corpus directory.
func corpusSeeds(t testing.TB, dir string) [][]byte {
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) != 2 || lines[0] != "go test fuzz v1" {
			t.Fatalf("%s: not a one-value corpus file", name)
		}
		lit, ok := strings.CutPrefix(lines[1], "[]byte(")
		lit, ok2 := strings.CutSuffix(lit, ")")
		v, err := strconv.Unquote(lit)
		if !ok || !ok2 || err != nil {
			t.Fatalf("%s: not a []byte value", name)
		}
		out = append(out, []byte(v))
	}
	return out
}

// sameDecoding fails unless two decodings of in are identical.
func sameDecoding(t *testing.T, in []byte, r1 *Request, e1 *RequestError, r2 *Request, e2 *RequestError) {
	t.Helper()
	if (r1 == nil) != (r2 == nil) || (e1 == nil) != (e2 == nil) {
		t.Fatalf("%q: %+v, %+v vs %+v, %+v", in, r1, e1, r2, e2)
	}
	if e1 != nil {
		if e1.Code != e2.Code || e1.Message != e2.Message || !sameBytes(e1.ID, e2.ID) {
			t.Fatalf("%q: error %q %q %q vs %q %q %q", in, e1.Code, e1.Message, e1.ID, e2.Code, e2.Message, e2.ID)
		}
	}
	if r1 == nil {
		return
	}
	if r1.Type != r2.Type || r1.RawType != r2.RawType {
		t.Fatalf("%q: type %d %q vs %d %q", in, r1.Type, r1.RawType, r2.Type, r2.RawType)
	}
	if !reflect.DeepEqual(r1.Topics, r2.Topics) {
		t.Fatalf("%q: topics %#v vs %#v", in, r1.Topics, r2.Topics)
	}
	if !sameBytes(r1.Data, r2.Data) {
		t.Fatalf("%q: data %q vs %q", in, r1.Data, r2.Data)
	}
	if !sameBytes(r1.ID, r2.ID) {
		t.Fatalf("%q: id %q vs %q", in, r1.ID, r2.ID)
	}
}

// sameBytes is bytes.Equal that also tells nil from empty.
func sameBytes(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }

// FuzzDecodeJSONFastMatchesSlow holds DecodeJSON (fast path first) to what
// encoding/json alone (decodeJSONStd) decodes, on every input; and the
// fast path's results to keep nothing of the input buffer, which the server
// reuses. Seeds: this target's corpus, FuzzDecodeJSON's, fastSeeds.
func FuzzDecodeJSONFastMatchesSlow(f *testing.F) {
	for _, s := range fastSeeds() {
		f.Add([]byte(s))
	}
	for _, p := range corpusSeeds(f, filepath.Join("testdata", "fuzz", "FuzzDecodeJSON")) {
		f.Add(p)
	}
	// The input as each field's value too: random bytes seldom make a whole
	// request, and these reach the fast path's value checks.
	wrappings := [][2]string{
		{`{"type":"publish","topic":"t","data":`, `,"id":1}`},
		{`{"type":"publish","topic":"t","data":"`, `"}`},
		{`{"type":`, `}`},
		{`{"type":"ping","id":`, `}`},
		{`{"type":"subscribe","topic":"`, `"}`},
		{`{"type":"subscribe","topics":[`, `],"id":"x"}`},
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		checkFastMatchesSlow(t, p)
		for _, w := range wrappings {
			checkFastMatchesSlow(t, slices.Concat([]byte(w[0]), p, []byte(w[1])))
		}
	})
}

func checkFastMatchesSlow(t *testing.T, p []byte) {
	t.Helper()
	want, wantErr := decodeJSONStd(p)
	got, gotErr := DecodeJSON(p)
	sameDecoding(t, p, got, gotErr, want, wantErr)

	q := bytes.Clone(p)
	fast, ok := decodeJSONFast(q)
	if !ok {
		return
	}
	for i := range q {
		q[i] = 'X'
	}
	if wantErr != nil {
		t.Fatalf("%q: the fast path decoded %+v, encoding/json says %v", p, fast, wantErr)
	}
	sameDecoding(t, p, fast, nil, want, nil)
}

// The fast path takes the usual requests (and so the benchmark measures
// it), and leaves the others to encoding/json.
func TestDecodeJSONFastPathTaken(t *testing.T) {
	for _, in := range []string{
		`{"type":"publish","topic":"t12","data":"T000012S0000000001N17000000000","id":17}`,
		`{"type":"publish","topic":"t","data":{"a":[1,{"b":[]},{}],"c":"\u12aB","d":-0.0e-0}}`,
		`{"type":"subscribe","topics":["news","chat/room-1"],"id":"x"}`,
		`{"type":"subscribe","topic":"café,b","topics":["😀"]}`,
		`{"type":2,"topic":"a"}`,
		`{"type":"ping","id":"a\u0062\"c"}`,
		`{"type":null,"topic":null,"topics":null,"data":null,"id":null}`,
		" {\n\"type\" : \"ping\" } ",
		`{}`,
	} {
		if _, ok := decodeJSONFast([]byte(in)); !ok {
			t.Errorf("%s: not taken", in)
		}
	}
	for _, in := range []string{
		`{"Type":"ping"}`,
		`{"type":"ping","type":"ping"}`,
		`{"type":"ping","x":1}`,
		`{"type":"caf\u00e9"}`,
		`{"type":true}`,
		`{"type":1e400}`,
		`{"topic":"\u0061"}`,
		"{\"topic\":\"\xff\"}",
		`{"topics":[null]}`,
		`{"id":true}`,
		`{"type":"ping"} x`,
		`[]`,
		`null`,
	} {
		if _, ok := decodeJSONFast([]byte(in)); ok {
			t.Errorf("%s: taken", in)
		}
	}
}
