package middleware_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/middleware"
)

func TestPatternMatch(t *testing.T) {
	cases := []struct {
		pattern, topic, user string
		want                 bool
	}{
		{"/news/sport", "/news/sport", "", true},
		{"/news/sport", "/news/sports", "", false},
		{"/news/sport", "/news/sport/", "", false},
		{"/news/sport", "news/sport", "", false},
		{"chat", "chat", "", true},
		{"chat", "chat/x", "", false},

		{"/news/*", "/news/sport", "", true},
		{"/news/*", "/news/", "", false}, // * is one non-empty segment
		{"/news/*", "/news", "", false},
		{"/news/*", "/news/sport/live", "", false},
		{"/*/sport", "/news/sport", "", true},
		{"*", "chat", "", true},
		{"*", "/chat", "", false},
		{"*/*", "a/b", "", true},

		{"/news/**", "/news/sport", "", true},
		{"/news/**", "/news/sport/live/now", "", true},
		{"/news/**", "/news//x", "", true},
		{"/news/**", "/news", "", false}, // ** is one or more segments
		{"/news/**", "/news/", "", false},
		{"/news/**", "/newsroom/x", "", false},
		{"**", "anything/at/all", "", true},
		{"**", "/", "", true},
		{"/**", "/a", "", true},
		{"/**", "a", "", false},

		{"/user/{user}/**", "/user/alice/inbox", "alice", true},
		{"/user/{user}/**", "/user/alice/a/b", "alice", true},
		{"/user/{user}/**", "/user/alice", "alice", false},
		{"/user/{user}/**", "/user/bob/inbox", "alice", false},
		{"/user/{user}/**", "/user/alicea/inbox", "alice", false},
		{"/user/{user}/**", "/user/alic/inbox", "alice", false},
		{"/user/{user}/**", "/user//inbox", "", false}, // no user id: never matches
		{"/user/{user}/**", "/user/a/b/inbox", "a/b", false},
		{"/user/{user}", "/user/alice", "alice", true},
		{"/room/{user}.{user}", "/room/al.al", "al", true},
		{"/room/{user}.{user}", "/room/al.bo", "al", false},
		{"/room/x{user}y", "/room/xaly", "al", true},
		{"/room/x{user}y", "/room/xaly", "a", false},
		{"/room/x{user}y", "/room/xy", "", false},
	}
	for _, tc := range cases {
		p, err := middleware.ParsePattern(tc.pattern)
		if err != nil {
			t.Fatalf("ParsePattern(%q): %v", tc.pattern, err)
		}
		if got := p.Match(tc.topic, tc.user); got != tc.want {
			t.Errorf("%q.Match(%q, user %q) = %v, want %v", tc.pattern, tc.topic, tc.user, got, tc.want)
		}
		if p.String() != tc.pattern {
			t.Errorf("String() = %q, want %q", p.String(), tc.pattern)
		}
	}
}

func TestParsePatternErrors(t *testing.T) {
	for _, p := range []string{"", "/a/**/b", "**/x", "/a/b*", "/a/*b", "/a/***", "/a/{users}", "/a/{user", "/a/}", "/{user}/{x}", "/dm/{user}-*"} {
		if _, err := middleware.ParsePattern(p); err == nil {
			t.Errorf("ParsePattern(%q) accepted it", p)
		}
	}
}

func TestPatternMatchDoesNotAllocate(t *testing.T) {
	p, err := middleware.ParsePattern("/user/{user}/*/**")
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if !p.Match("/user/alice/inbox/x/y", "alice") {
			t.Fatal("no match")
		}
	}); n != 0 {
		t.Fatalf("Match allocates %v times", n)
	}
}

func TestACLAllowed(t *testing.T) {
	acl, err := middleware.TopicACL(middleware.ACLConfig{Rules: []middleware.Rule{
		middleware.Deny(middleware.OpAll, "/user/{user}/private/admin"),
		middleware.Allow(middleware.OpAll, "/user/{user}/**"),
		middleware.Deny(middleware.OpPublish, "/news/**"),
		middleware.Allow(middleware.OpSubscribe, "/news/*"),
		middleware.Allow(middleware.OpPublish, "/chat/*"),
		middleware.Allow(middleware.OpSubscribe, "/chat/**"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		op          middleware.Op
		topic, user string
		want        bool
	}{
		{middleware.OpSubscribe, "/user/alice/inbox", "alice", true},
		{middleware.OpPublish, "/user/alice/inbox", "alice", true},
		{middleware.OpSubscribe, "/user/alice/private/admin", "alice", false}, // first match wins
		{middleware.OpSubscribe, "/user/bob/inbox", "alice", false},
		{middleware.OpSubscribe, "/user/bob/inbox", "", false},
		{middleware.OpSubscribe, "/news/sport", "alice", true},
		{middleware.OpPublish, "/news/sport", "alice", false},
		{middleware.OpSubscribe, "/news/sport/live", "alice", false}, // default deny
		{middleware.OpPublish, "/chat/lobby", "", true},
		{middleware.OpSubscribe, "/chat/lobby/x", "", true},
		{middleware.OpPublish, "/chat/lobby/x", "", false},
		{middleware.OpSubscribe, "/other", "alice", false},
	}
	for _, tc := range cases {
		if got := acl.Allowed(tc.op, tc.topic, tc.user); got != tc.want {
			t.Errorf("Allowed(%v, %q, %q) = %v, want %v", tc.op, tc.topic, tc.user, got, tc.want)
		}
	}

	open, err := middleware.TopicACL(middleware.ACLConfig{DefaultAllow: true, Rules: []middleware.Rule{
		middleware.Deny(middleware.OpPublish, "/system/**"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !open.Allowed(middleware.OpSubscribe, "/system/x", "") || open.Allowed(middleware.OpPublish, "/system/x", "") || !open.Allowed(middleware.OpPublish, "/other", "") {
		t.Fatal("default allow with one deny rule")
	}
}

func TestTopicACLConfigErrors(t *testing.T) {
	for name, cfg := range map[string]middleware.ACLConfig{
		"bad pattern": {Rules: []middleware.Rule{middleware.Allow(middleware.OpAll, "/a/**/b")}},
		"no ops":      {Rules: []middleware.Rule{{Allow: true, Pattern: "/a"}}},
		"unknown op":  {Rules: []middleware.Rule{{Allow: true, Ops: 8, Pattern: "/a"}}},
	} {
		if _, err := middleware.TopicACL(cfg); !errors.Is(err, firetower.ErrBadOption) {
			t.Errorf("%s: error %v, want ErrBadOption", name, err)
		}
	}
}

// The ACL in a real Tower: subscribes and publishes refused with forbidden, naming the
// topic, and a refused request has no effect.
func TestTopicACLTower(t *testing.T) {
	acl, err := middleware.TopicACL(middleware.ACLConfig{Rules: []middleware.Rule{
		middleware.Allow(middleware.OpAll, "/user/{user}/**"),
		middleware.Deny(middleware.OpPublish, "/news/**"),
		middleware.Allow(middleware.OpSubscribe, "/news/*"),
		middleware.Allow(middleware.OpPublish, "/chat/*"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	tw := newTower(t,
		firetower.WithPublishPolicy(firetower.PublishAny),
		firetower.OnConnect(userFromQuery),
		firetower.Use(acl.Middleware),
	)
	alice := dial(t, tw, "user=alice")
	bob := dial(t, tw, "user=bob")
	anon := dial(t, tw, "")

	wantAck(t, alice.sub(t, "/user/alice/inbox"))
	wantAck(t, alice.sub(t, "/news/sport"))
	for _, topic := range []string{"/user/bob/inbox", "/news/sport/live", "/chat/lobby", "/elsewhere"} {
		m := alice.sub(t, topic)
		wantError(t, m, firetower.CodeForbidden)
		if !strings.Contains(m.Message, topic) || !strings.Contains(m.Message, "subscribe") {
			t.Fatalf("message %q does not name the operation and topic %q", m.Message, topic)
		}
	}
	// one forbidden topic refuses the whole request
	m := alice.sub(t, "/user/alice/outbox", "/user/bob/outbox")
	wantError(t, m, firetower.CodeForbidden)
	if !strings.Contains(m.Message, "/user/bob/outbox") {
		t.Fatalf("message %q does not name the refused topic", m.Message)
	}
	if n, err := tw.ConnectNum(t.Context(), "/user/alice/outbox"); err != nil || n != 0 {
		t.Fatalf("ConnectNum(/user/alice/outbox) = %d, %v; want 0: the refused request subscribed nothing", n, err)
	}

	// publishes: a refused one reaches no one
	for _, c := range []struct {
		c     *client
		topic string
	}{{bob, "/user/alice/inbox"}, {alice, "/news/sport"}, {bob, "/news/sport"}, {anon, "/user//inbox"}} {
		m := c.c.pub(t, c.topic, "refused")
		wantError(t, m, firetower.CodeForbidden)
		if !strings.Contains(m.Message, c.topic) || !strings.Contains(m.Message, "publish") {
			t.Fatalf("message %q does not name the operation and topic %q", m.Message, c.topic)
		}
	}
	if err := tw.Publish(t.Context(), "/news/sport", []byte(`"from the server"`)); err != nil {
		t.Fatal(err)
	}
	alice.expectDelivery(t, "/news/sport", `"from the server"`)
	wantAck(t, alice.pub(t, "/user/alice/inbox", "mine"))
	alice.expectDelivery(t, "/user/alice/inbox", `"mine"`)

	// the anonymous client: no {user} rule applies to it
	wantAck(t, anon.pub(t, "/chat/lobby", 1))
	wantError(t, anon.sub(t, "/user//inbox"), firetower.CodeForbidden)
	wantError(t, anon.sub(t, "/chat/lobby"), firetower.CodeForbidden)
	wantAck(t, anon.sub(t, "/news/weather"))
	// unsubscribing is never refused
	wantAck(t, anon.unsub(t, "/news/weather"))
	wantAck(t, anon.unsub(t, "/user/bob/inbox"))
}

// Topics rewritten by middleware inside the ACL are checked too.
func TestTopicACLChecksRewrittenTopics(t *testing.T) {
	acl, err := middleware.TopicACL(middleware.ACLConfig{Rules: []middleware.Rule{
		middleware.Allow(middleware.OpSubscribe, "/open/*"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	tw := newTower(t,
		firetower.OnBeforeSubscribe(acl.Middleware, hook(func(c *firetower.Context) error {
			if c.Topics()[0] == "/open/redirect" {
				c.SetTopics([]string{"/closed/x"})
			}
			return nil
		})),
	)
	c := dial(t, tw, "")
	wantAck(t, c.sub(t, "/open/a"))
	m := c.sub(t, "/open/redirect")
	wantError(t, m, firetower.CodeForbidden)
	if !strings.Contains(m.Message, "/closed/x") {
		t.Fatalf("message %q does not name the rewritten topic", m.Message)
	}
	if n, err := tw.ConnectNum(t.Context(), "/closed/x"); err != nil || n != 0 {
		t.Fatalf("ConnectNum(/closed/x) = %d, %v; want 0", n, err)
	}
}

// TestACLPatterns: a wildcard subscription is allowed only when every
// topic it can match is allowed, read conservatively (AllowedPattern).
func TestACLPatterns(t *testing.T) {
	acl, err := middleware.TopicACL(middleware.ACLConfig{Rules: []middleware.Rule{
		middleware.Deny(middleware.OpSubscribe, "/md/secret"),
		middleware.Allow(middleware.OpSubscribe, "/md/*"),
		middleware.Allow(middleware.OpSubscribe, "/news/**"),
		middleware.Allow(middleware.OpSubscribe, "/user/{user}/**"),
		middleware.Allow(middleware.OpSubscribe, "/pub/a"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		pattern, user string
		want          bool
	}{
		{"/md/*", "", false},       // it can match /md/secret, denied first
		{"/news/*", "", true},      // within /news/**
		{"/news/*/x/**", "", true}, // within /news/**
		{"/news/**", "", true},     // the rule itself
		{"/**", "", false},         // matches /md/secret too
		{"/*/a", "", false},        // /pub/a is allowed, /x/a is not
		{"/user/alice/*", "alice", true},
		{"/user/alice/*", "bob", false},
		{"/user/*/inbox", "alice", false}, // other users' inboxes too
		{"/user/alice/*", "", false},
		{"/news/**/x", "", false}, // ** before the end: never allowed
	}
	for _, c := range cases {
		if got := acl.AllowedPattern(middleware.OpSubscribe, c.pattern, c.user); got != c.want {
			t.Errorf("AllowedPattern(%q, user %q) = %v, want %v", c.pattern, c.user, got, c.want)
		}
	}
	open, err := middleware.TopicACL(middleware.ACLConfig{DefaultAllow: true, Rules: []middleware.Rule{
		middleware.Deny(middleware.OpSubscribe, "/admin/**"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{"/md/*": true, "/*/x": false /* /admin/x */, "/**": false, "/admin/*": false, "*": true} {
		if got := open.AllowedPattern(middleware.OpSubscribe, p, ""); got != want {
			t.Errorf("default allow, deny /admin/**: AllowedPattern(%q) = %v, want %v", p, got, want)
		}
	}
}

// TestACLPatternsThroughTower: on a Tower with wildcards, the ACL's
// middleware refuses a pattern subscription that reaches past the allowed
// topics (forbidden) and lets one within them through.
func TestACLPatternsThroughTower(t *testing.T) {
	acl, err := middleware.TopicACL(middleware.ACLConfig{Rules: []middleware.Rule{
		middleware.Allow(middleware.OpSubscribe, "/md/**"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	tw := newTower(t, firetower.WithWildcards(true), firetower.Use(acl.Middleware))
	c := dial(t, tw, "")
	c.send(t, map[string]any{"type": "subscribe", "topic": "/md/*", "id": "1"})
	if m := c.answer(t, "1"); m.Type != "ack" {
		t.Fatalf("subscribe /md/*: %s", m)
	}
	c.send(t, map[string]any{"type": "subscribe", "topic": "/*/x", "id": "2"})
	if m := c.answer(t, "2"); m.Type != "error" || m.Code != "forbidden" {
		t.Fatalf("subscribe /*/x: %s, want forbidden", m)
	}
}
