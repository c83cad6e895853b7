package protocol

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestPresenceEncodings(t *testing.T) {
	j := AppendPresenceJSON(nil, PresenceJoin, `/room/"1"`, "1-ab-2", "alice")
	var got map[string]any
	if err := json.Unmarshal(j, &got); err != nil {
		t.Fatalf("%s: %v", j, err)
	}
	want := map[string]any{"type": "join", "topic": `/room/"1"`, "conn": "1-ab-2", "user": "alice"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("json join %s, want %v", j, want)
	}
	var mp map[string]any
	if err := msgpack.Unmarshal(AppendPresenceMsgpack(nil, PresenceLeave, "/r", "c", ""), &mp); err != nil {
		t.Fatal(err)
	}
	if want := map[string]any{"type": "leave", "topic": "/r", "conn": "c", "user": ""}; !reflect.DeepEqual(mp, want) {
		t.Fatalf("msgpack leave %v, want %v", mp, want)
	}
	if s := string(AppendCountJSON(nil, "/r", 12)); s != `{"type":"count","topic":"/r","count":12}` {
		t.Fatalf("json count %s", s)
	}
	for _, n := range []int64{0, 5, 127, 128, 1 << 40} {
		mp = nil
		if err := msgpack.Unmarshal(AppendCountMsgpack(nil, "/r", n), &mp); err != nil {
			t.Fatal(err)
		}
		if c, ok := mp["count"]; !ok || reflect.ValueOf(c).Convert(reflect.TypeOf(int64(0))).Int() != n || mp["type"] != "count" || mp["topic"] != "/r" {
			t.Fatalf("msgpack count %d: %v", n, mp)
		}
	}
	if s := string(AppendLegacyCount(nil, LegacyOnSubscribe, 2)); s != `{"type":"onSubscribe","data":2}` {
		t.Fatalf("legacy count %s", s)
	}
}
