package middleware

import (
	"errors"
	"fmt"
	"strings"

	"github.com/firetower-go/firetower"
)

// Pattern is a compiled topic pattern. A pattern is matched against a topic
// segment by segment, segments being separated by "/":
//
//   - "*" is exactly one segment, not empty;
//   - "**", only as the last segment, is one or more segments: the rest of
//     the topic, not empty ("/a/**" matches "/a/b" and "/a/b/c", not "/a"
//     nor "/a/");
//   - "{user}", anywhere in a segment, stands for the connection's user id:
//     "/user/{user}/**" matches "/user/alice/inbox" for user "alice" only. A
//     segment with "{user}" never matches for a connection without a user
//     id, nor for a user id containing "/";
//   - anything else matches itself. A segment with "*" or a brace elsewhere
//     is refused by ParsePattern.
type Pattern struct {
	src  string
	segs []segment
}

type segKind uint8

const (
	segLiteral segKind = iota
	segStar
	segRest
	segUser
)

type segment struct {
	kind  segKind
	lit   string   // segLiteral
	parts []string // segUser: the literal text around each "{user}"
}

// ParsePattern compiles a pattern (see Pattern).
func ParsePattern(p string) (*Pattern, error) {
	if p == "" {
		return nil, errors.New("firetower: empty topic pattern")
	}
	pat := &Pattern{src: p}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		switch {
		case s == "**":
			if i != len(segs)-1 {
				return nil, fmt.Errorf("firetower: topic pattern %q: ** must be the last segment", p)
			}
			pat.segs = append(pat.segs, segment{kind: segRest})
		case s == "*":
			pat.segs = append(pat.segs, segment{kind: segStar})
		case strings.Contains(s, "*"):
			return nil, fmt.Errorf("firetower: topic pattern %q: * must be a whole segment", p)
		case strings.Contains(s, "{user}"):
			parts := strings.Split(s, "{user}")
			for _, part := range parts {
				if strings.ContainsAny(part, "{}") {
					return nil, fmt.Errorf("firetower: topic pattern %q: only {user} may be in braces", p)
				}
			}
			pat.segs = append(pat.segs, segment{kind: segUser, parts: parts})
		case strings.ContainsAny(s, "{}"):
			return nil, fmt.Errorf("firetower: topic pattern %q: only {user} may be in braces", p)
		default:
			pat.segs = append(pat.segs, segment{kind: segLiteral, lit: s})
		}
	}
	return pat, nil
}

// String is the pattern as written.
func (p *Pattern) String() string { return p.src }

// Match reports whether topic matches the pattern for a connection of user
// id user. It does not allocate.
func (p *Pattern) Match(topic, user string) bool {
	rest := topic
	for i, s := range p.segs {
		if s.kind == segRest {
			return rest != ""
		}
		seg, after, more := strings.Cut(rest, "/")
		switch s.kind {
		case segLiteral:
			if seg != s.lit {
				return false
			}
		case segStar:
			if seg == "" {
				return false
			}
		case segUser:
			if user == "" || !matchUser(s.parts, user, seg) {
				return false
			}
		}
		if i == len(p.segs)-1 {
			return !more
		}
		if !more {
			return false
		}
		rest = after
	}
	return false
}

// matchUser reports whether seg is parts joined by user.
func matchUser(parts []string, user, seg string) bool {
	for i, part := range parts {
		if i > 0 {
			if !strings.HasPrefix(seg, user) {
				return false
			}
			seg = seg[len(user):]
		}
		if !strings.HasPrefix(seg, part) {
			return false
		}
		seg = seg[len(part):]
	}
	return seg == ""
}

// Op is a set of operations a Rule applies to.
type Op uint8

// The operations.
const (
	OpSubscribe Op = 1 << iota // a subscribe (OnBeforeSubscribe)
	OpPublish                  // a client publish (OnRead)
	OpAll       = OpSubscribe | OpPublish
)

func (o Op) String() string {
	switch o {
	case OpSubscribe:
		return "subscribe"
	case OpPublish:
		return "publish"
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// Rule allows or denies the operations Ops on the topics matching Pattern
// (see Pattern for the syntax).
type Rule struct {
	Allow   bool
	Ops     Op
	Pattern string
}

// Allow is a Rule allowing ops on the topics matching pattern.
func Allow(ops Op, pattern string) Rule { return Rule{Allow: true, Ops: ops, Pattern: pattern} }

// Deny is a Rule denying ops on the topics matching pattern.
func Deny(ops Op, pattern string) Rule { return Rule{Allow: false, Ops: ops, Pattern: pattern} }

// ACLConfig configures TopicACL.
type ACLConfig struct {
	// Rules are tried in order; the first that applies to the operation and
	// matches the topic decides.
	Rules []Rule
	// DefaultAllow decides when no rule matches. Default false: deny.
	DefaultAllow bool
}

type compiledRule struct {
	allow bool
	ops   Op
	pat   *Pattern
}

// ACL is a compiled access list; TopicACL returns one.
type ACL struct {
	rules []compiledRule
	def   bool
}

// TopicACL compiles cfg into an ACL. It fails on a bad pattern or a rule
// applying to no operation.
func TopicACL(cfg ACLConfig) (*ACL, error) {
	a := &ACL{def: cfg.DefaultAllow}
	for i, r := range cfg.Rules {
		if r.Ops&OpAll == 0 || r.Ops&^OpAll != 0 {
			return nil, fmt.Errorf("%w: middleware.TopicACL: rule %d (%q) has operations %d", firetower.ErrBadOption, i, r.Pattern, r.Ops)
		}
		p, err := ParsePattern(r.Pattern)
		if err != nil {
			return nil, fmt.Errorf("%w: middleware.TopicACL: rule %d: %w", firetower.ErrBadOption, i, err)
		}
		a.rules = append(a.rules, compiledRule{allow: r.Allow, ops: r.Ops, pat: p})
	}
	return a, nil
}

// Allowed reports whether the connection of user id user may do op
// (OpSubscribe or OpPublish) on topic.
func (a *ACL) Allowed(op Op, topic, user string) bool {
	for _, r := range a.rules {
		if r.ops&op != 0 && r.pat.Match(topic, user) {
			return r.allow
		}
	}
	return a.def
}

// Middleware checks, in OnBeforeSubscribe, every topic of c.Topics() for
// OpSubscribe (one refused topic refuses the whole request), and in OnRead
// the topic of c.Message() for OpPublish; it lets every other hook pass, so
// firetower.Use(acl.Middleware) works. A refusal is an error with code
// forbidden naming the topic. Unsubscribing is always allowed.
//
// The topics a subscribe ends with are checked again after the rest of the
// chain, which may have rewritten them with SetTopics. A publish is made by
// the end of the chain: middleware that changes c.Message().Topic must run
// before (outside) the ACL.
func (a *ACL) Middleware(next firetower.Handler) firetower.Handler {
	return func(c *firetower.Context) error {
		switch c.Hook() {
		case firetower.HookBeforeSubscribe:
			if err := a.checkAll(c, OpSubscribe, c.Topics()); err != nil {
				return err
			}
			if err := next(c); err != nil {
				return err
			}
			return a.checkAll(c, OpSubscribe, c.Topics())
		case firetower.HookRead:
			if m := c.Message(); m != nil {
				if err := a.check(OpPublish, m.Topic, userOf(c)); err != nil {
					return err
				}
			}
		}
		return next(c)
	}
}

func (a *ACL) checkAll(c *firetower.Context, op Op, topics []string) error {
	user := userOf(c)
	wild := op == OpSubscribe && c.Tower() != nil && c.Tower().Wildcards()
	for _, t := range topics {
		if wild && isSubPattern(t) {
			if !a.AllowedPattern(op, t, user) {
				return &firetower.Error{Code: firetower.CodeForbidden, Message: fmt.Sprintf("%s to pattern %q is not allowed: it can match topics the access list does not allow", op, t)}
			}
			continue
		}
		if err := a.check(op, t, user); err != nil {
			return err
		}
	}
	return nil
}

// isSubPattern reports whether a subscription is a wildcard pattern (a
// segment that is exactly "*" or "**"; see firetower.WithWildcards).
func isSubPattern(topic string) bool {
	for _, seg := range strings.Split(topic, "/") {
		if seg == "*" || seg == "**" {
			return true
		}
	}
	return false
}

// AllowedPattern reports whether the connection of user id user may do op
// on every topic the wildcard subscription pattern can match
// (firetower.WithWildcards: "*" one non-empty segment, a last "**" one or
// more). The rules are read in order, as Allowed does for one topic, and
// conservatively: a Deny rule that matches any topic of the pattern
// refuses it; an Allow rule that matches every topic of the pattern allows
// it; an Allow rule that matches only some of them decides nothing, and
// the next rules are read; with no rule deciding, DefaultAllow does (and a
// Deny that overlaps the pattern anywhere has refused it before). So
// "/md/*" is allowed by Allow "/md/*" or "/md/**" or "/**", and refused
// when a Deny "/md/secret" comes first.
func (a *ACL) AllowedPattern(op Op, pattern, user string) bool {
	sub := subSegments(pattern)
	if sub == nil {
		return false // "**" before the end: not a pattern anything matches
	}
	for _, r := range a.rules {
		if r.ops&op == 0 {
			continue
		}
		rs, ok := r.pat.forUser(user)
		if !ok {
			continue // a {user} rule for a connection without a usable user id
		}
		if !r.allow {
			if intersects(rs, sub) {
				return false
			}
			continue
		}
		if covers(rs, sub) {
			return true
		}
	}
	return a.def
}

// subSegments parses a subscription pattern into segments (literal, star,
// rest); nil when "**" is not last.
func subSegments(p string) []segment {
	parts := strings.Split(p, "/")
	out := make([]segment, len(parts))
	for i, s := range parts {
		switch s {
		case "**":
			if i != len(parts)-1 {
				return nil
			}
			out[i] = segment{kind: segRest}
		case "*":
			out[i] = segment{kind: segStar}
		default:
			out[i] = segment{kind: segLiteral, lit: s}
		}
	}
	return out
}

// forUser is the rule's segments with {user} replaced by user; false when
// a {user} segment cannot match (no user id, or one with "/").
func (p *Pattern) forUser(user string) ([]segment, bool) {
	out := p.segs
	for i, s := range p.segs {
		if s.kind != segUser {
			continue
		}
		if user == "" || strings.Contains(user, "/") {
			return nil, false
		}
		if &out[0] == &p.segs[0] {
			out = append([]segment(nil), p.segs...)
		}
		out[i] = segment{kind: segLiteral, lit: strings.Join(s.parts, user)}
	}
	return out, true
}

// covers reports whether every topic sub matches, r matches.
func covers(r, sub []segment) bool {
	for i := range r {
		if r[i].kind == segRest {
			// sub has at least one more segment, and not just an empty one
			return i < len(sub) && (i != len(sub)-1 || sub[i].kind != segLiteral || sub[i].lit != "")
		}
		if i >= len(sub) {
			return false
		}
		switch sub[i].kind {
		case segRest:
			return false // any number of segments: r has a fixed count here
		case segStar:
			if r[i].kind != segStar {
				return false
			}
		default: // literal
			if r[i].kind == segStar {
				if sub[i].lit == "" {
					return false
				}
			} else if r[i].lit != sub[i].lit {
				return false
			}
		}
	}
	return len(r) == len(sub)
}

// intersects reports whether some topic matches both r and sub.
func intersects(r, sub []segment) bool {
	for i := 0; ; i++ {
		rEnd, sEnd := i >= len(r), i >= len(sub)
		switch {
		case rEnd || sEnd:
			return rEnd && sEnd
		case r[i].kind == segRest:
			return true // sub has at least one more segment to give it
		case sub[i].kind == segRest:
			return true
		}
		rl, sl := r[i].kind == segLiteral, sub[i].kind == segLiteral
		switch {
		case rl && sl:
			if r[i].lit != sub[i].lit {
				return false
			}
		case rl:
			if r[i].lit == "" {
				return false
			}
		case sl:
			if sub[i].lit == "" {
				return false
			}
		}
	}
}

func (a *ACL) check(op Op, topic, user string) error {
	if a.Allowed(op, topic, user) {
		return nil
	}
	return &firetower.Error{Code: firetower.CodeForbidden, Message: fmt.Sprintf("%s to topic %q is not allowed", op, topic)}
}

func userOf(c *firetower.Context) string {
	if conn := c.Conn(); conn != nil {
		return conn.UserID()
	}
	return ""
}
