package firetower

import (
	"fmt"
	"hash/maphash"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/firetower-go/firetower/internal/protocol"
	"github.com/firetower-go/firetower/transport"
)

// testIndex is an index whose connections' event loops are given by the
// test (a transport.Conn outside a Server has none).
type testIndex struct {
	*index
	loops map[*transport.Conn]int
	codec map[*transport.Conn]protocol.Codec
}

func newTestIndex(conns []*transport.Conn, loops int, rng *rand.Rand) *testIndex {
	ti := &testIndex{index: newIndex(), loops: map[*transport.Conn]int{}, codec: map[*transport.Conn]protocol.Codec{}}
	ti.loop = func(c *transport.Conn) int { return ti.loops[c] }
	for _, c := range conns {
		ti.loops[c] = rng.IntN(loops)
		if rng.IntN(4) == 0 {
			ti.codec[c] = protocol.Msgpack
		}
	}
	return ti
}

func (ti *testIndex) set(topic string, c *transport.Conn, add bool) (reported int64) {
	reported = -1
	ti.update(topic, c, ti.codec[c], add, func(n int64) { reported = n })
	return reported
}

func newConns(n int) []*transport.Conn {
	conns := make([]*transport.Conn, n)
	for i := range conns {
		conns[i] = new(transport.Conn)
	}
	return conns
}

// members lists a snapshot's subscribers per list, in list order.
func members(s *subscribers) map[[2]int][]*transport.Conn {
	out := map[[2]int][]*transport.Conn{}
	if s == nil {
		return out
	}
	for l, lists := range s.byLoop {
		for k, list := range lists {
			for _, b := range list {
				out[[2]int{l, k}] = append(out[[2]int{l, k}], b...)
			}
		}
	}
	return out
}

// check verifies the index's invariants for topic against the model (the
// set of its subscribers).
func (ti *testIndex) check(t *testing.T, step int, topic string, model map[*transport.Conn]bool) {
	t.Helper()
	s := ti.get(topic)
	sh, _ := ti.shard(topic)
	if len(model) == 0 {
		if s != nil {
			t.Fatalf("step %d: %s: snapshot with %d subscribers, want none", step, topic, s.count)
		}
		if sh.pos[topic] != nil {
			t.Fatalf("step %d: %s: position map left behind", step, topic)
		}
		return
	}
	if s == nil {
		t.Fatalf("step %d: %s: no snapshot, want %d subscribers", step, topic, len(model))
	}
	if s.count != int64(len(model)) {
		t.Fatalf("step %d: %s: count %d, want %d", step, topic, s.count, len(model))
	}
	if want := string(protocol.AppendJSONString(nil, topic)); s.quoted != want {
		t.Fatalf("step %d: quoted %s, want %s", step, s.quoted, want)
	}
	var codecs [2]int32
	seen := map[*transport.Conn]bool{}
	for key, list := range members(s) {
		for _, c := range list {
			if seen[c] {
				t.Fatalf("step %d: %s: %p listed twice", step, topic, c)
			}
			seen[c] = true
			if ti.loops[c] != key[0] || int(ti.codec[c]) != key[1] {
				t.Fatalf("step %d: %s: %p in list %v, want [%d %d]", step, topic, c, key, ti.loops[c], ti.codec[c])
			}
			codecs[key[1]]++
		}
	}
	if !maps.Equal(seen, model) {
		t.Fatalf("step %d: %s: %d subscribers listed, model has %d", step, topic, len(seen), len(model))
	}
	if codecs != s.codecs {
		t.Fatalf("step %d: %s: codecs %v, want %v", step, topic, s.codecs, codecs)
	}
	for l, lists := range s.byLoop {
		for k, list := range lists {
			for i, b := range list {
				if len(b) == 0 || len(b) > blockSize || (i < len(list)-1 && len(b) != blockSize) {
					t.Fatalf("step %d: %s: list [%d %d] block %d of %d holds %d: blocks must be full but the last, none empty",
						step, topic, l, k, i, len(list), len(b))
				}
			}
		}
	}
	pos := sh.pos[topic]
	if (pos != nil) != (len(model) > smallTopic) {
		t.Fatalf("step %d: %s: %d subscribers, position map %v", step, topic, len(model), pos != nil)
	}
	if pos != nil {
		want := positions(s.byLoop)
		if !maps.Equal(pos, want) {
			t.Fatalf("step %d: %s: position map out of date", step, topic)
		}
	}
}

// checkSolos verifies that every shared solo list is used by exactly the
// topics whose one subscriber its connection is.
func (ti *testIndex) checkSolos(t *testing.T, step int, models map[string]map[*transport.Conn]bool) {
	t.Helper()
	want := map[*transport.Conn]int{}
	for topic, m := range models {
		if len(m) == 1 {
			for c := range m {
				want[c]++
				s := ti.get(topic)
				if got := ti.soloOf(c); got == nil || &got.byLoop[0] != &s.byLoop[0] {
					t.Fatalf("step %d: %s: its one subscriber's list is not the shared one", step, topic)
				}
			}
		}
	}
	got := map[*transport.Conn]int{}
	for i := range ti.solos {
		for c, s := range ti.solos[i].m {
			got[c] = s.refs
		}
	}
	if !maps.Equal(got, want) {
		t.Fatalf("step %d: shared lists in use %v, want %v", step, got, want)
	}
}

func (ti *testIndex) soloOf(c *transport.Conn) *solo {
	for i := range ti.solos {
		if s := ti.solos[i].m[c]; s != nil {
			return s
		}
	}
	return nil
}

type frozen struct {
	s    *subscribers
	want map[[2]int][]*transport.Conn
}

// TestIndexModel runs random subscribes and unsubscribes on a few topics
// against a model: after every step the index lists exactly the model's
// subscribers, in the right lists, dense, with correct counts, position
// maps and shared single-subscriber lists; and every earlier snapshot still
// reads exactly as it did (copy-on-write).
func TestIndexModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	conns := newConns(1500)
	ti := newTestIndex(conns, 3, rng)
	topics := []string{"a", "b", `q"uote`, "big"}
	models := map[string]map[*transport.Conn]bool{}
	for _, tp := range topics {
		models[tp] = map[*transport.Conn]bool{}
	}
	var snaps []frozen
	steps := 30000
	if testing.Short() {
		steps = 8000
	}
	for step := range steps {
		tp := topics[rng.IntN(len(topics))]
		m := models[tp]
		// "big" grows past several blocks; the others hover around the
		// single-subscriber and position-map thresholds.
		pool := conns[:40]
		if tp == "big" {
			pool = conns
		}
		c := pool[rng.IntN(len(pool))]
		bias := 2
		if tp == "big" && step < steps/2 {
			bias = 4 // mostly adds while it grows
		}
		switch {
		case m[c] && rng.IntN(bias) == 0:
			if got := ti.set(tp, c, false); got != int64(len(m)-1) {
				t.Fatalf("step %d: remove reported %d, want %d", step, got, len(m)-1)
			}
			delete(m, c)
		case !m[c]:
			if got := ti.set(tp, c, true); got != int64(len(m)+1) {
				t.Fatalf("step %d: add reported %d, want %d", step, got, len(m)+1)
			}
			m[c] = true
		default:
			// A stranger's removal changes nothing and reports nothing.
			stranger := conns[len(conns)-1-rng.IntN(10)]
			if !m[stranger] {
				if got := ti.set(tp, stranger, false); got != -1 {
					t.Fatalf("step %d: removing a stranger reported %d", step, got)
				}
			}
		}
		ti.check(t, step, tp, m)
		if step%53 == 0 {
			ti.checkSolos(t, step, models)
		}
		if step%97 == 0 {
			if s := ti.get(tp); s != nil {
				snaps = append(snaps, frozen{s, members(s)})
			}
		}
	}
	ti.checkSolos(t, steps, models)
	var subs, ntopics int64
	for _, m := range models {
		subs += int64(len(m))
		if len(m) > 0 {
			ntopics++
		}
	}
	if ti.subs.Load() != subs || ti.topics.Load() != ntopics {
		t.Fatalf("counters: %d subscriptions on %d topics, want %d on %d", ti.subs.Load(), ti.topics.Load(), subs, ntopics)
	}
	if n := len(models["big"]); n < 3*blockSize {
		t.Fatalf("the big topic peaked too low to test blocks: %d at the end", n)
	}
	for i, f := range snaps {
		if got := members(f.s); !maps.EqualFunc(got, f.want, slices.Equal) {
			t.Fatalf("snapshot %d changed after later updates", i)
		}
	}
	// Empty everything: no topic, no position map, no shared list is left.
	for tp, m := range models {
		for c := range m {
			ti.set(tp, c, false)
		}
		clear(m)
		ti.check(t, steps+1, tp, m)
	}
	ti.checkSolos(t, steps+1, models)
	if ti.subs.Load() != 0 || ti.topics.Load() != 0 {
		t.Fatalf("counters after emptying: %d subscriptions on %d topics", ti.subs.Load(), ti.topics.Load())
	}
}

// TestIndexUnsubscribeIsNotAScan removes every subscriber of a large topic,
// from the front (the worst case for a scan): while the topic is large the
// removal finds the position in the map, and each copies at most two
// blocks (the one that changes and the shortened last one), not the list.
func TestIndexUnsubscribeIsNotAScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const n = 20 * blockSize
	conns := newConns(n)
	ti := newTestIndex(conns, 1, rng)
	clear(ti.codec)
	for _, c := range conns {
		ti.set("t", c, true)
	}
	// Remove from the front, the worst case for a scan.
	for i, c := range conns {
		s := ti.get("t")
		if sh, _ := ti.shard("t"); (sh.pos["t"] != nil) != (s.count > smallTopic) {
			t.Fatalf("removal %d: %d subscribers, position map %v", i, s.count, sh.pos["t"] != nil)
		}
		list := s.byLoop[0][0]
		ti.set("t", c, false)
		next := ti.get("t")
		if i == n-1 {
			if next != nil {
				t.Fatal("topic left after its last subscriber")
			}
			break
		}
		changed := 0
		nl := next.byLoop[0][0]
		for b := range nl {
			if b >= len(list) || &nl[b][0] != &list[b][0] {
				changed++
			}
		}
		if changed > 2 {
			t.Fatalf("removal %d copied %d blocks, want at most 2", i, changed)
		}
	}
}

// TestIndexSingleSubscriberShares checks that the topics one connection
// is alone in share one list, and that a topic's own lists appear when a
// second subscriber comes and go when it leaves.
func TestIndexSingleSubscriberShares(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	conns := newConns(2)
	ti := newTestIndex(conns, 2, rng)
	a, b := conns[0], conns[1]
	for i := range 100 {
		ti.set(fmt.Sprint("t", i), a, true)
	}
	first := ti.get("t0")
	for i := range 100 {
		s := ti.get(fmt.Sprint("t", i))
		if &s.byLoop[0] != &first.byLoop[0] {
			t.Fatalf("topic t%d has a list of its own", i)
		}
	}
	ti.set("t7", b, true)
	if s := ti.get("t7"); &s.byLoop[0] == &first.byLoop[0] {
		t.Fatal("a topic with two subscribers still uses the shared list")
	}
	ti.set("t7", a, false)
	if s, sb := ti.get("t7"), ti.soloOf(b); s.count != 1 || sb == nil || &s.byLoop[0] != &sb.byLoop[0] {
		t.Fatal("the subscriber left alone does not use its shared list")
	}
	for i := range 100 {
		ti.set(fmt.Sprint("t", i), a, false)
	}
	if ti.soloOf(a) != nil {
		t.Fatal("the shared list outlives its last topic")
	}
}

// TestIndexGetAllocs: looking a topic up and walking its lists, as a
// publish does, allocates nothing.
func TestIndexGetAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	conns := newConns(600)
	ti := newTestIndex(conns, 2, rng)
	for _, c := range conns {
		ti.set("t", c, true)
	}
	n := 0
	allocs := testing.AllocsPerRun(100, func() {
		s := ti.get("t")
		for li := range s.byLoop {
			for _, blocks := range s.byLoop[li] {
				n += len(blocks)
			}
		}
	})
	if allocs != 0 || n == 0 {
		t.Fatalf("%v allocations per lookup (%d blocks seen)", allocs, n)
	}
}

// TestTopicTableModel runs random inserts, replacements and deletions of
// plain and odd topics on one topicTable against a Go map, through growth
// and shrinking: every topic is found with its latest snapshot, no deleted
// one is, and each lists exactly the model.
func TestTopicTableModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	seed := maphash.MakeSeed()
	var tb topicTable
	model := map[string]*subscribers{}
	names := make([]string, 3000)
	for i := range names {
		names[i] = fmt.Sprintf("t/%d", i)
		if i%50 == 0 {
			names[i] = fmt.Sprintf(`odd "%d"`, i) // quoted with escapes: not plain
		}
	}
	snap := func(topic string) *subscribers {
		return &subscribers{quoted: string(protocol.AppendJSONString(nil, topic)), count: rng.Int64N(100)}
	}
	checkAll := func(step int, names []string) {
		t.Helper()
		for _, n := range names {
			if got := tb.get(maphash.String(seed, n), n); got != model[n] {
				t.Fatalf("step %d: get(%q) = %p, want %p", step, n, got, model[n])
			}
		}
		seen := map[string]*subscribers{}
		tb.each(func(n string, s *subscribers) { seen[n] = s })
		if !maps.Equal(seen, model) {
			t.Fatalf("step %d: each listed %d topics, want %d", step, len(seen), len(model))
		}
		if plain := len(model) - len(tb.odd); tb.n != plain || (len(tb.slots) > 0 && tb.n*4 > len(tb.slots)*3) {
			t.Fatalf("step %d: %d entries in %d slots, want %d plain ones at most 3/4 full", step, tb.n, len(tb.slots), plain)
		}
	}
	for step := range 40000 {
		// Grow for the first half, shrink in the second.
		n := names[rng.IntN(len(names))]
		h := maphash.String(seed, n)
		grow := step < 20000
		switch {
		case model[n] != nil && (!grow || rng.IntN(3) == 0):
			tb.del(seed, h, n)
			delete(model, n)
		default:
			s := snap(n)
			tb.set(seed, h, n, s)
			model[n] = s
		}
		if step%1000 == 0 || step == 39999 {
			checkAll(step, names)
		}
	}
	for n := range model {
		tb.del(seed, maphash.String(seed, n), n)
		delete(model, n)
	}
	checkAll(-1, names)
	if len(tb.slots) > minSlots {
		t.Fatalf("%d slots left for no topic", len(tb.slots))
	}
	// A small table (16 slots) kept between 6 and 12 entries of ever other
	// topics, checked after every step: probe runs that wrap around the
	// end of the slots are common.
	var present []string
	for step := range 20000 {
		if len(present) >= 12 || (len(present) > 6 && rng.IntN(2) == 0) {
			k := rng.IntN(len(present))
			n := present[k]
			present = slices.Delete(present, k, k+1)
			tb.del(seed, maphash.String(seed, n), n)
			delete(model, n)
			checkAll(step, []string{n})
		} else {
			n := names[1+rng.IntN(len(names)-1)]
			if model[n] == nil {
				present = append(present, n)
			}
			s := snap(n)
			tb.set(seed, maphash.String(seed, n), n, s)
			model[n] = s
		}
		if len(tb.slots) != minSlots {
			t.Fatalf("step %d: %d slots, want %d", step, len(tb.slots), minSlots)
		}
		checkAll(step, present)
	}
}
