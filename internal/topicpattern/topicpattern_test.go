package topicpattern

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

var cases = []struct {
	pattern, topic string
	want           bool
}{
	{"/md/*", "/md/AAPL", true},
	{"/md/*", "/md/", false},
	{"/md/*", "/md", false},
	{"/md/*", "/md/a/b", false},
	{"/md/**", "/md/a", true},
	{"/md/**", "/md/a/b/c", true},
	{"/md/**", "/md/", false},
	{"/md/**", "/md", false},
	{"*/x", "a/x", true},
	{"*/x", "/x", false},
	{"a/*/c", "a/b/c", true},
	{"a/*/c", "a/b/d", false},
	{"**", "anything/at/all", true},
	{"**", "", false},
	{"a", "a", true},
	{"a", "a/b", false},
	{"a/b", "a", false},
	{"*", "x", true},
	{"*/**", "x", false},
	{"*/**", "x/y", true},
}

func TestMatch(t *testing.T) {
	for _, c := range cases {
		if got := Match(c.pattern, c.topic); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.pattern, c.topic, got, c.want)
		}
	}
}

func TestIsPatternAndCheck(t *testing.T) {
	for topic, want := range map[string]bool{"/a/*": true, "/a/**": true, "*": true, "/a*/b": false, "/a/b": false, "/**/x": true, "x*": false} {
		if IsPattern(topic) != want {
			t.Errorf("IsPattern(%q) != %v", topic, want)
		}
	}
	if Check("/a/**/b") == nil || Check("**/x") == nil {
		t.Error("Check accepted ** before the last segment")
	}
	if Check("/a/*/**") != nil || Check("/a/b*") != nil {
		t.Error("Check refused a good pattern")
	}
}

// TestTrieAgreesWithMatch: the trie finds exactly the patterns Match
// accepts, before and after removals.
func TestTrieAgreesWithMatch(t *testing.T) {
	var tr Trie
	pats := []string{}
	for _, c := range cases {
		if !slices.Contains(pats, c.pattern) {
			pats = append(pats, c.pattern)
			if !tr.Add(c.pattern) {
				t.Fatalf("Add(%q) reported a duplicate", c.pattern)
			}
		}
	}
	if tr.Add(pats[0]) || tr.Len() != len(pats) {
		t.Fatalf("re-adding: Len %d, want %d", tr.Len(), len(pats))
	}
	check := func() {
		for _, c := range cases {
			var got []string
			tr.Match(c.topic, func(p string) { got = append(got, p) })
			var want []string
			for _, p := range pats {
				if Match(p, c.topic) {
					want = append(want, p)
				}
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("trie matches %q with %v, want %v", c.topic, got, want)
			}
			app := tr.AppendMatches(nil, c.topic)
			slices.Sort(app)
			if !slices.Equal(app, want) {
				t.Errorf("AppendMatches(%q) = %v, want %v", c.topic, app, want)
			}
		}
	}
	check()
	for i := 0; i < len(pats); i += 2 {
		if !tr.Remove(pats[i]) || tr.Remove(pats[i]) {
			t.Fatalf("Remove(%q) twice", pats[i])
		}
	}
	kept := pats[:0]
	for i, p := range pats {
		if i%2 == 1 {
			kept = append(kept, p)
		}
	}
	pats = kept
	check()
	for _, p := range pats {
		tr.Remove(p)
	}
	if tr.Len() != 0 || !tr.root.empty() {
		t.Fatalf("emptied trie: Len %d, root %+v", tr.Len(), tr.root)
	}
}

func TestTrieMatchDoesNotAllocate(t *testing.T) {
	var tr Trie
	for _, p := range []string{"/md/*", "/md/**", "/news/*/x"} {
		tr.Add(p)
	}
	n := 0
	fn := func(string) { n++ }
	if a := testing.AllocsPerRun(100, func() { tr.Match("/md/AAPL", fn) }); a != 0 {
		t.Fatalf("%v allocations per Match", a)
	}
	if n == 0 {
		t.Fatal("no match")
	}
	var buf [4]string
	if a := testing.AllocsPerRun(100, func() { _ = tr.AppendMatches(buf[:0], "/md/AAPL") }); a != 0 {
		t.Fatalf("%v allocations per AppendMatches", a)
	}
}

// FuzzPattern: for any pattern and topic, Check, IsPattern, Match and the
// trie agree and never panic.
func FuzzPattern(f *testing.F) {
	for _, c := range cases {
		f.Add(c.pattern, c.topic)
	}
	f.Add("/a/**/b", "/a/x/b")
	f.Fuzz(func(t *testing.T, pattern, topic string) {
		if len(pattern) > 256 || len(topic) > 256 {
			return
		}
		err := Check(pattern)
		if err != nil {
			if !strings.Contains(pattern, "**") {
				t.Fatalf("Check(%q) = %v without **", pattern, err)
			}
			return
		}
		m := Match(pattern, topic)
		if !IsPattern(pattern) && m != (pattern == topic) {
			t.Fatalf("literal %q vs %q: Match %v", pattern, topic, m)
		}
		var tr Trie
		tr.Add(pattern)
		found := false
		tr.Match(topic, func(p string) { found = found || p == pattern })
		if found != m {
			t.Fatalf("trie %v, Match %v for %q / %q", found, m, pattern, topic)
		}
		if app := tr.AppendMatches(nil, topic); (len(app) == 1 && app[0] == pattern) != m || len(app) > 1 {
			t.Fatalf("AppendMatches %v, Match %v for %q / %q", app, m, pattern, topic)
		}
		if !tr.Remove(pattern) || tr.Len() != 0 {
			t.Fatalf("Remove(%q)", pattern)
		}
	})
}

// BenchmarkTrieMatch: the cost of the pattern index to one publish, with
// 10,000 patterns indexed: a topic no pattern matches, and one that one
// "*" pattern among 1,000 siblings matches.
func BenchmarkTrieMatch(b *testing.B) {
	var tr Trie
	for i := range 10000 {
		tr.Add("p" + strconv.Itoa(i) + "/*")
	}
	for i := range 1000 {
		tr.Add("/md/" + strconv.Itoa(i) + "/*")
	}
	tr.Add("/md/*")
	n := 0
	fn := func(string) { n++ }
	b.Run("miss", func(b *testing.B) {
		for range b.N {
			tr.Match("t12345", fn)
		}
	})
	b.Run("hit", func(b *testing.B) {
		for range b.N {
			tr.Match("/md/AAPL", fn)
		}
	})
	if n == 0 {
		b.Fatal("no match")
	}
}
