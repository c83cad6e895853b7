package firetower

import "hash/maphash"

// topicTable is one index shard's topics: an open-addressing hash table of
// snapshot pointers (linear probing, deletion by backward shift, no
// tombstones), 8 bytes a slot where a Go map entry with a string key costs
// 24 plus its control byte. The key is not stored: it is the snapshot's
// quoted name without its quotes, so the table holds only topics whose
// quoted form is exactly "topic" (plain, nearly all of them); the others go
// to odd, a Go map. Readers look up under the shard's read lock, writers
// change it under the write lock.
type topicTable struct {
	slots []*subscribers // nil or a power of two long, at most 3/4 full
	n     int
	odd   map[string]*subscribers // topics that are not plain
}

// minSlots is the size of a table's first slot array.
const minSlots = 16

// name is the topic of a plain snapshot (one in a topicTable's slots).
func (s *subscribers) name() string { return s.quoted[1 : len(s.quoted)-1] }

// plain reports whether s, the snapshot of topic, can live in the slots.
func (s *subscribers) plain(topic string) bool {
	return len(s.quoted) == len(topic)+2 && s.name() == topic
}

// home is the first slot to probe for hash h in a table of mask+1 slots.
// The low bits of h chose the shard; these are other bits.
func home(h uint64, mask int) int { return int(h>>8) & mask }

// slot returns the slot of topic (hash h), or -1 when it is not in the
// slots (it may be in odd).
func (tb *topicTable) slot(h uint64, topic string) int {
	if len(tb.slots) == 0 {
		return -1
	}
	mask := len(tb.slots) - 1
	for i := home(h, mask); ; i = (i + 1) & mask {
		s := tb.slots[i]
		if s == nil {
			return -1
		}
		if len(s.quoted) == len(topic)+2 && s.name() == topic {
			return i
		}
	}
}

// get returns the snapshot of topic (hash h), or nil.
func (tb *topicTable) get(h uint64, topic string) *subscribers {
	if i := tb.slot(h, topic); i >= 0 {
		return tb.slots[i]
	}
	return tb.odd[topic] // reading a nil map is fine
}

// set stores s as the snapshot of topic (hash h), new or replacing one.
func (tb *topicTable) set(seed maphash.Seed, h uint64, topic string, s *subscribers) {
	if !s.plain(topic) {
		if tb.odd == nil {
			tb.odd = make(map[string]*subscribers)
		}
		tb.odd[topic] = s
		return
	}
	if i := tb.slot(h, topic); i >= 0 {
		tb.slots[i] = s
		return
	}
	if (tb.n+1)*4 > len(tb.slots)*3 {
		tb.resize(seed, max(2*len(tb.slots), minSlots))
	}
	tb.put(h, s)
	tb.n++
}

// put places s in the first free slot from its home.
func (tb *topicTable) put(h uint64, s *subscribers) {
	mask := len(tb.slots) - 1
	i := home(h, mask)
	for tb.slots[i] != nil {
		i = (i + 1) & mask
	}
	tb.slots[i] = s
}

// del removes topic (hash h).
func (tb *topicTable) del(seed maphash.Seed, h uint64, topic string) {
	i := tb.slot(h, topic)
	if i < 0 {
		delete(tb.odd, topic)
		return
	}
	// Backward shift: move each later entry of the probe run whose home is
	// not between the hole and itself into the hole, so no lookup passes a
	// gap before its entry.
	mask := len(tb.slots) - 1
	for j := (i + 1) & mask; tb.slots[j] != nil; j = (j + 1) & mask {
		k := home(maphash.String(seed, tb.slots[j].name()), mask)
		if (j > i && (k <= i || k > j)) || (j < i && k <= i && k > j) {
			tb.slots[i] = tb.slots[j]
			i = j
		}
	}
	tb.slots[i] = nil
	tb.n--
	if len(tb.slots) > minSlots && tb.n*8 < len(tb.slots) {
		tb.resize(seed, len(tb.slots)/2)
	}
}

// resize moves every entry into a new slot array of size slots.
func (tb *topicTable) resize(seed maphash.Seed, size int) {
	old := tb.slots
	tb.slots = make([]*subscribers, size)
	for _, s := range old {
		if s != nil {
			tb.put(maphash.String(seed, s.name()), s)
		}
	}
}

// each calls fn for every topic.
func (tb *topicTable) each(fn func(topic string, s *subscribers)) {
	for _, s := range tb.slots {
		if s != nil {
			fn(s.name(), s)
		}
	}
	for t, s := range tb.odd {
		fn(t, s)
	}
}
