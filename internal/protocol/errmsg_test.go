package protocol

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// goInternals matches what an error message for people must not show:
// Go's names for types and decoder internals ("cannot unmarshal array into
// Go value of type protocol.jsonRequest").
var goInternals = regexp.MustCompile(`Go value|Go struct|Go type|unmarshal|protocol\.|jsonRequest|\[\]string|interface ?\{|map\[|reflect|(^|: )(json|msgpack): |\bcode=`)

func checkHumanMessage(t *testing.T, codec string, in []byte, rerr *RequestError) {
	t.Helper()
	if rerr == nil {
		return
	}
	if goInternals.MatchString(rerr.Message) {
		t.Errorf("%s %q: error message shows Go internals: %q", codec, in, rerr.Message)
	}
	if rerr.Message == "" {
		t.Errorf("%s %q: error without a message", codec, in)
	}
}

// TestErrorMessagesAreForHumans: no bad_request message names a Go type or
// quotes a decoder's internals, over the fuzz corpora, the fast path's
// seeds and the requests below.
func TestErrorMessagesAreForHumans(t *testing.T) {
	jsonIn := [][]byte{}
	for _, s := range fastSeeds() {
		jsonIn = append(jsonIn, []byte(s))
	}
	for _, s := range []string{
		`[{"type":"ping"}]`, `"ping"`, `2`, `true`, `null`, ``, `{`, `{"type":"ping"}x`,
		`{"type":"subscribe","topics":"a"}`, `{"type":"subscribe","topics":["a",1]}`,
		`{"type":"subscribe","topics":{"a":1}}`, `{"type":"subscribe","topic":5}`,
		`{"type":{"a":1}}`, `{"type":1e400,"id":9}`, `{"id":[1]}`, `{"data":NaN}`,
	} {
		jsonIn = append(jsonIn, []byte(s))
	}
	msgpackIn := [][]byte{
		mpMarshal(t, "ping"), mpMarshal(t, []any{1}), nil, {0xc1},
		mpMap(t, "type", "subscribe", "topic", 5),
		mpMap(t, "type", "subscribe", "topics", []any{1}),
		mpMap(t, "type", "publish", "topic", "t", "data", map[int]string{1: "a"}),
		mpMarshal(t, map[any]any{"type": "ping", 5: "x"}),
	}
	for _, dir := range []string{"FuzzDecodeJSON", "FuzzDecodeJSONFastMatchesSlow"} {
		if _, err := os.Stat(filepath.Join("testdata", "fuzz", dir)); err == nil {
			jsonIn = append(jsonIn, corpusSeeds(t, filepath.Join("testdata", "fuzz", dir))...)
		}
	}
	msgpackIn = append(msgpackIn, corpusSeeds(t, filepath.Join("testdata", "fuzz", "FuzzDecodeMsgpack"))...)

	errs := 0
	for _, in := range jsonIn {
		_, rerr := DecodeJSON(in)
		checkHumanMessage(t, "JSON", in, rerr)
		_, rerr = decodeJSONStd(in)
		checkHumanMessage(t, "JSON", in, rerr)
		if rerr != nil {
			errs++
		}
	}
	for _, in := range msgpackIn {
		_, rerr := DecodeMsgpack(in)
		checkHumanMessage(t, "msgpack", in, rerr)
		if rerr != nil {
			errs++
		}
	}
	if errs < 20 {
		t.Fatalf("only %d inputs were refused: the corpus no longer tests messages", errs)
	}
}

// TestErrorMessagesSayWhatIsWrong: the usual mistakes get a message that
// says what a request must be.
func TestErrorMessagesSayWhatIsWrong(t *testing.T) {
	for _, c := range []struct {
		in, want string
	}{
		{`[{"type":"ping"}]`, "a request must be a JSON object"},
		{`"ping"`, "a request must be a JSON object"},
		{`2`, "a request must be a JSON object"},
		{`{"type":"subscribe","topics":"a"}`, "topics must be an array of strings"},
		{`{"type":"subscribe","topics":["a",1]}`, "topics must be an array of strings"},
		{`{"type":"ping"`, "invalid JSON"},
	} {
		_, rerr := DecodeJSON([]byte(c.in))
		if rerr == nil || !strings.Contains(rerr.Message, c.want) {
			t.Errorf("%s: %v, want a message with %q", c.in, rerr, c.want)
		}
	}
	for _, c := range []struct {
		name string
		in   []byte
		want string
	}{
		{"int key at the top", mpMarshal(t, map[any]any{"type": "ping", 5: "x"}), "keys must be strings"},
		{"int key in data", mpMap(t, "type", "publish", "topic", "t", "data", map[int]string{1: "a"}), "keys must be strings"},
		{"bool key deep in data", mpMap(t, "type", "publish", "topic", "t", "data", []any{map[any]any{true: 1}}), "keys must be strings"},
		{"array", mpMarshal(t, []any{1}), "must be a map"},
	} {
		_, rerr := DecodeMsgpack(c.in)
		if rerr == nil || !strings.Contains(rerr.Message, c.want) {
			t.Errorf("%s: %v, want a message with %q", c.name, rerr, c.want)
		}
	}
}
