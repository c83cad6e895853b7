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
	for _, t := range topics {
		if err := a.check(op, t, user); err != nil {
			return err
		}
	}
	return nil
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
