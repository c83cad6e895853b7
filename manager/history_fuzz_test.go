package manager_test

import (
	"reflect"
	"testing"

	"github.com/firetower-go/firetower/manager"
)

// histItemsSeed is a valid Data of a RECOVER: a since query, a last query
// and a result with publications.
func histItemsSeed(tb testing.TB) []byte {
	b, err := manager.AppendHistItems(nil, []manager.HistItem{
		{Topic: "h", Since: true, Offset: 41, Epoch: "9f3c"},
		{Topic: "/chat/go", Limit: 50},
		{Topic: "r", Offset: 2, Epoch: "e", Recovered: true, Pubs: []manager.HistPub{{Offset: 1, Data: []byte("a")}, {Offset: 2, Data: []byte{}}}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzDecodeHistItems feeds arbitrary bytes to DecodeHistItems (what a
// peer puts in the Data of HISTORY, RECOVER and their reply): no panic, no
// allocation out of proportion to the input, at most MaxHistItems items,
// and whatever decodes re-encodes to itself.
func FuzzDecodeHistItems(f *testing.F) {
	seed := histItemsSeed(f)
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff}) // an array that claims 4 billion items
	f.Add([]byte{0x91, 0x97, 0xa1, 'h', 0xc3, 0x01, 0xa0, 0x00, 0xc2, 0xdd, 0x7f, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > fuzzMax {
			return
		}
		before := allocated()
		items, err := manager.DecodeHistItems(in)
		if alloc := allocated() - before; alloc > fuzzAllocBound {
			t.Fatalf("decoding %d bytes allocated %d (bound %d)", len(in), alloc, fuzzAllocBound)
		}
		if err != nil {
			return
		}
		if len(items) > manager.MaxHistItems {
			t.Fatalf("%d items (limit %d)", len(items), manager.MaxHistItems)
		}
		b, err := manager.AppendHistItems(nil, items)
		if err != nil {
			t.Fatalf("re-encoding: %v", err)
		}
		again, err := manager.DecodeHistItems(b)
		if err != nil {
			t.Fatalf("decoding the re-encoded items: %v", err)
		}
		if !reflect.DeepEqual(normItems(items), normItems(again)) {
			t.Fatalf("round trip changed the items:\n%+v\n%+v", items, again)
		}
	})
}

// normItems makes empty and nil slices equal.
func normItems(items []manager.HistItem) []manager.HistItem {
	out := make([]manager.HistItem, len(items))
	for i, it := range items {
		if len(it.Pubs) == 0 {
			it.Pubs = nil
		}
		out[i] = it
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
