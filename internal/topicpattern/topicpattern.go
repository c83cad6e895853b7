// Package topicpattern parses and matches wildcard subscriptions (issue
// 15): a topic is split on "/" into segments; in a pattern, a segment that
// is exactly "*" matches any one non-empty segment, and a last segment
// "**" matches one or more segments (the rest of the topic, not empty).
// Every other segment matches itself. Trie indexes many patterns so that
// matching a topic costs O(segments), not O(patterns).
package topicpattern

import (
	"errors"
	"strings"
)

// ErrRestNotLast: "**" anywhere but as the last segment.
var ErrRestNotLast = errors.New(`"**" may only be the last segment of a pattern`)

// IsPattern reports whether topic has a "*" or "**" segment.
func IsPattern(topic string) bool {
	if !strings.Contains(topic, "*") {
		return false // the common case, without walking the segments
	}
	for rest := topic; ; {
		seg, after, more := strings.Cut(rest, "/")
		if seg == "*" || seg == "**" {
			return true
		}
		if !more {
			return false
		}
		rest = after
	}
}

// Check reports whether a pattern is well formed: "**" only last.
func Check(pattern string) error {
	for rest := pattern; ; {
		seg, after, more := strings.Cut(rest, "/")
		if seg == "**" && more {
			return ErrRestNotLast
		}
		if !more {
			return nil
		}
		rest = after
	}
}

// Match reports whether topic matches pattern (a well formed one). It does
// not allocate.
func Match(pattern, topic string) bool {
	p, t := pattern, topic
	for {
		ps, pafter, pmore := strings.Cut(p, "/")
		if ps == "**" {
			return t != ""
		}
		ts, tafter, tmore := strings.Cut(t, "/")
		switch {
		case ps == "*":
			if ts == "" {
				return false
			}
		case ps != ts:
			return false
		}
		if !pmore || !tmore {
			return pmore == tmore
		}
		p, t = pafter, tafter
	}
}

// Trie is a set of patterns indexed by segment. It is not safe for
// concurrent use: its owner locks.
type Trie struct {
	root node
	n    int
}

type node struct {
	lits map[string]*node
	star *node
	// end: a pattern ends at this node (its last segment led here);
	// rest: a pattern whose next, last segment is "**".
	end, rest bool
	endP      string
	restP     string
}

// Len is the number of patterns in the trie.
func (tr *Trie) Len() int { return tr.n }

// Add adds a pattern (well formed: see Check); it reports false when it
// was there already.
func (tr *Trie) Add(pattern string) bool {
	n := &tr.root
	for rest := pattern; ; {
		seg, after, more := strings.Cut(rest, "/")
		if seg == "**" {
			if n.rest {
				return false
			}
			n.rest, n.restP = true, pattern
			tr.n++
			return true
		}
		var next *node
		if seg == "*" {
			if n.star == nil {
				n.star = &node{}
			}
			next = n.star
		} else {
			next = n.lits[seg]
			if next == nil {
				if n.lits == nil {
					n.lits = make(map[string]*node)
				}
				next = &node{}
				n.lits[seg] = next
			}
		}
		n = next
		if !more {
			if n.end {
				return false
			}
			n.end, n.endP = true, pattern
			tr.n++
			return true
		}
		rest = after
	}
}

// Remove removes a pattern; it reports false when it was not there.
func (tr *Trie) Remove(pattern string) bool {
	if tr.root.remove(pattern) {
		tr.n--
		return true
	}
	return false
}

// remove removes the pattern rest below n, pruning nodes left empty.
func (n *node) remove(rest string) bool {
	seg, after, more := strings.Cut(rest, "/")
	if seg == "**" {
		if !n.rest {
			return false
		}
		n.rest, n.restP = false, ""
		return true
	}
	var next *node
	if seg == "*" {
		next = n.star
	} else {
		next = n.lits[seg]
	}
	if next == nil {
		return false
	}
	var ok bool
	if !more {
		ok = next.end
		next.end, next.endP = false, ""
	} else {
		ok = next.remove(after)
	}
	if ok && next.empty() {
		if seg == "*" {
			n.star = nil
		} else {
			delete(n.lits, seg)
		}
	}
	return ok
}

func (n *node) empty() bool {
	return !n.end && !n.rest && n.star == nil && len(n.lits) == 0
}

// Match calls fn with every pattern of the trie that topic matches. It
// does not allocate; its cost grows with the topic's segments (and with
// how many "*" branches apply at each), not with the number of patterns.
func (tr *Trie) Match(topic string, fn func(pattern string)) {
	if tr.n == 0 {
		return
	}
	tr.root.match(topic, fn)
}

// match matches rest, the topic's remaining segments (at least one), below
// n.
func (n *node) match(rest string, fn func(string)) {
	if n.rest && rest != "" {
		fn(n.restP)
	}
	seg, after, more := strings.Cut(rest, "/")
	if c := n.lits[seg]; c != nil {
		c.step(after, more, fn)
	}
	if n.star != nil && seg != "" {
		n.star.step(after, more, fn)
	}
}

func (n *node) step(after string, more bool, fn func(string)) {
	if more {
		n.match(after, fn)
	} else if n.end {
		fn(n.endP)
	}
}

// AppendMatches appends to dst every pattern of the trie that topic
// matches and returns it (Match without a callback: nothing allocates
// while dst has room).
func (tr *Trie) AppendMatches(dst []string, topic string) []string {
	if tr.n == 0 {
		return dst
	}
	return tr.root.appendMatches(dst, topic)
}

func (n *node) appendMatches(dst []string, rest string) []string {
	if n.rest && rest != "" {
		dst = append(dst, n.restP)
	}
	seg, after, more := strings.Cut(rest, "/")
	if c := n.lits[seg]; c != nil {
		dst = c.appendStep(dst, after, more)
	}
	if n.star != nil && seg != "" {
		dst = n.star.appendStep(dst, after, more)
	}
	return dst
}

func (n *node) appendStep(dst []string, after string, more bool) []string {
	if more {
		return n.appendMatches(dst, after)
	}
	if n.end {
		dst = append(dst, n.endP)
	}
	return dst
}
