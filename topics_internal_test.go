package firetower

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestTopTopicsMatchesSort checks the bounded top-N selection against a full
// sort of every topic: ties broken by name, system topics left out, the
// query filter, top larger than the number of topics, and top <= 0 (all).
func TestTopTopicsMatchesSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	conns := newConns(40)
	ti := newTestIndex(conns, 2, rng)
	var names []string
	for i := range 400 {
		name := fmt.Sprintf("room/%d", i)
		if i%7 == 0 {
			name = fmt.Sprintf("Chat/%d", i)
		}
		names = append(names, name)
		for _, c := range conns[:1+rng.IntN(12)] { // many ties
			ti.set(name, c, true)
		}
	}
	for _, c := range conns {
		ti.set(StatsTopic, c, true) // the most subscribers, and never listed
	}
	want := func(q string) []TopicCount {
		var rows []TopicCount
		for _, n := range names {
			if q == "" || strings.Contains(strings.ToLower(n), strings.ToLower(q)) {
				rows = append(rows, TopicCount{Topic: n, Count: ti.get(n).count})
			}
		}
		sortTopicCounts(rows)
		return rows
	}
	for _, q := range []string{"", "chat", "CHAT/1", "nothing"} {
		all := want(q)
		for _, top := range []int{1, 2, 3, 20, 57, len(all), len(all) + 5, 0, -1} {
			got := topTopics(ti.index, q, top)
			exp := all
			if top > 0 && len(exp) > top {
				exp = exp[:top]
			}
			if !slices.Equal(got, exp) {
				t.Fatalf("q=%q top=%d: got %d rows %v..., want %d rows %v...", q, top, len(got), head(got), len(exp), head(exp))
			}
			if got == nil {
				t.Fatalf("q=%q top=%d: nil, want an empty list", q, top)
			}
		}
	}
}

func head(rows []TopicCount) []TopicCount { return rows[:min(len(rows), 4)] }

// TestTopTopicsBounded: the dashboard's top-N over many topics keeps only
// N rows (it allocates its result and nothing per topic), where a full
// listing grows with every topic.
func TestTopTopicsBounded(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	conns := newConns(8)
	ti := newTestIndex(conns, 1, rng)
	for i := range 20000 {
		name := fmt.Sprintf("t/%d", i)
		for _, c := range conns[:1+rng.IntN(len(conns))] {
			ti.set(name, c, true)
		}
	}
	var rows []TopicCount
	allocs := testing.AllocsPerRun(5, func() { rows = topTopics(ti.index, "", 20) })
	if len(rows) != 20 || rows[0].Count != int64(len(conns)) {
		t.Fatalf("top 20: %v", head(rows))
	}
	if allocs > 3 {
		t.Fatalf("top 20 of 20,000 topics: %v allocations, want a bounded few", allocs)
	}
}
