package natsmanager

import (
	"crypto/tls"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/vmihailenco/msgpack/v5"
)

// The tests against real NATS servers are in the natstest module.

func TestSubjectEncoding(t *testing.T) {
	for _, topic := range []string{"room", "a.b", "*", ">", "a.*.>", "ünï/cödé", "/md/*", "/x/**", "//", strings.Repeat("x", 256), strings.Repeat("/", 256)} {
		subj := topicSubject("firetower.", topic)
		toks := strings.Split(strings.TrimPrefix(subj, "firetower.t."), ".")
		if len(toks) != strings.Count(topic, "/")+1 {
			t.Errorf("%q: subject %q has %d tokens, want one per segment", topic, subj, len(toks))
		}
		for _, tok := range toks {
			if !strings.HasPrefix(tok, "_") || strings.ContainsAny(tok, "*> \t") {
				t.Errorf("%q: subject %q has a wildcard or an unmarked token %q", topic, subj, tok)
			}
		}
		back, ok := subjectTopic("firetower.", subj)
		if !ok || back != topic {
			t.Errorf("%q: round trip gave %q %v", topic, back, ok)
		}
	}
	for _, subj := range []string{"firetower.r", "other.t._YQ", "firetower.t.", "firetower.t.!!", "firetower.t.YQ", "firetower.t._YQ..x"} {
		if tp, ok := subjectTopic("firetower.", subj); ok {
			t.Errorf("%q decoded to topic %q", subj, tp)
		}
	}
	// Interest in a pattern is a NATS wildcard subscription; in anything
	// else, the topic's own subject.
	for topic, want := range map[string]string{
		"/md/*":    "p.t._._bWQ.*",
		"/md/**":   "p.t._._bWQ.>",
		"*/x":      "p.t.*._eA",
		"/md/**/x": topicSubject("p.", "/md/**/x"), // not a pattern: "**" before the end
		"/md/a*":   topicSubject("p.", "/md/a*"),
	} {
		if got := interestSubject("p.", topic); got != want {
			t.Errorf("interestSubject(%q) = %q, want %q", topic, got, want)
		}
	}
	if back, ok := subjectTopic("p.", "p.t._._bWQ.>"); !ok || back != "/md/**" {
		t.Errorf("pattern subject decoded to %q %v", back, ok)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("no URL accepted")
	}
	if _, err := New(Config{URLs: []string{"nats://x"}, SubjectPrefix: "a.*."}); err == nil {
		t.Error("wildcard prefix accepted")
	}
	if _, err := New(Config{URLs: []string{"nats://x"}, ReportInterval: time.Second, CountTTL: time.Second}); err == nil {
		t.Error("CountTTL <= ReportInterval accepted")
	}
	m, err := New(Config{URLs: []string{"nats://x"}, SubjectPrefix: "ft", AllowInsecure: true})
	if err != nil {
		t.Fatal(err)
	}
	if m.cfg.SubjectPrefix != "ft." || m.cfg.CountTTL != 3*time.Second || m.Subject("a.b") != "ft.t._YS5i" {
		t.Errorf("defaults: %+v, subject %q", m.cfg, m.Subject("a.b"))
	}
}

type fakeNode struct{ id uint16 }

func (n fakeNode) NodeID() uint16             { return n.id }
func (n fakeNode) Deliver(string, []byte)     {}
func (n fakeNode) Interest() map[string]int64 { return nil }
func (l *link) peerCount(topic string, now time.Time) (n int64) {
	for _, p := range l.peers {
		if p.live(now) {
			n += p.counts[topic]
		}
	}
	return n
}

func testLink(t *testing.T) *link {
	m, err := New(Config{URLs: []string{"nats://x"}, AllowInsecure: true})
	if err != nil {
		t.Fatal(err)
	}
	return &link{m: m, node: fakeNode{1}, boot: 7, peers: make(map[uint16]*peer)}
}

func enc(t *testing.T, r report) []byte {
	b, err := msgpack.Marshal(&r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReports(t *testing.T) {
	l := testLink(t)
	now := time.Now()
	ttl := int64(3000)
	// a full report in two parts counts once complete
	l.receive(enc(t, report{Kind: kindFull, Node: 2, Boot: 1, TTL: ttl, Gen: 1, Part: 0, Parts: 2, Counts: map[string]int64{"a": 2}}), now)
	if n := l.peerCount("a", now); n != 0 {
		t.Errorf("half a report counted: %d", n)
	}
	l.receive(enc(t, report{Kind: kindFull, Node: 2, Boot: 1, TTL: ttl, Gen: 1, Part: 1, Parts: 2, Counts: map[string]int64{"b": 1}}), now)
	if a, b := l.peerCount("a", now), l.peerCount("b", now); a != 2 || b != 1 {
		t.Errorf("after the full report: a=%d b=%d", a, b)
	}
	// deltas carry absolute counts
	l.receive(enc(t, report{Kind: kindDelta, Node: 2, Boot: 1, TTL: ttl, Counts: map[string]int64{"a": 5, "b": 0}}), now)
	if a, b := l.peerCount("a", now), l.peerCount("b", now); a != 5 || b != 0 {
		t.Errorf("after the delta: a=%d b=%d", a, b)
	}
	// a second node adds up; a request for reports is honoured
	if !l.receive(enc(t, report{Kind: kindFull, Node: 3, Boot: 1, TTL: ttl, Gen: 1, Parts: 1, Ask: true, Counts: map[string]int64{"a": 1}}), now) || !l.wantFull.Load() {
		t.Error("Ask not honoured")
	}
	if n := l.peerCount("a", now); n != 6 {
		t.Errorf("two nodes: %d", n)
	}
	// a full report replaces the previous one
	l.receive(enc(t, report{Kind: kindFull, Node: 2, Boot: 1, TTL: ttl, Gen: 2, Parts: 1, Counts: map[string]int64{"c": 1}}), now)
	if a, c := l.peerCount("a", now), l.peerCount("c", now); a != 1 || c != 1 {
		t.Errorf("after the replacement: a=%d c=%d", a, c)
	}
	// a restart (new boot) starts afresh
	l.receive(enc(t, report{Kind: kindDelta, Node: 2, Boot: 9, TTL: ttl, Counts: map[string]int64{"d": 1}}), now)
	if c, d := l.peerCount("c", now), l.peerCount("d", now); c != 0 || d != 1 {
		t.Errorf("after the restart: c=%d d=%d", c, d)
	}
	// a goodbye of an older boot is ignored, the current one's is not
	l.receive(enc(t, report{Kind: kindBye, Node: 2, Boot: 1}), now)
	if l.peers[2] == nil {
		t.Error("stale goodbye honoured")
	}
	l.receive(enc(t, report{Kind: kindBye, Node: 2, Boot: 9}), now)
	if l.peers[2] != nil {
		t.Error("goodbye ignored")
	}
	// reports with our own node id are ignored
	l.receive(enc(t, report{Kind: kindFull, Node: 1, Boot: 99, TTL: ttl, Gen: 1, Parts: 1, Counts: map[string]int64{"a": 100}}), now)
	if n := l.peerCount("a", now); n != 1 {
		t.Errorf("own node id counted: %d", n)
	}
	// silence past the TTL: no longer counted, then forgotten
	later := now.Add(3001 * time.Millisecond)
	if n := l.peerCount("a", later); n != 0 {
		t.Errorf("expired report counted: %d", n)
	}
	l.expire(later)
	if len(l.peers) != 0 {
		t.Errorf("%d peers after expiry", len(l.peers))
	}
	if l.receive([]byte("garbage"), now); l.badReports.Load() != 1 {
		t.Error("garbage not counted")
	}
}

func FuzzReceive(f *testing.F) {
	r := report{Kind: kindFull, Node: 2, Boot: 1, TTL: 1000, Gen: 1, Parts: 1, Counts: map[string]int64{"a": 1}}
	b, _ := msgpack.Marshal(&r)
	f.Add(b)
	f.Add([]byte{0x99})
	f.Fuzz(func(t *testing.T, data []byte) {
		l := testLink(t)
		l.receive(data, time.Now()) // must not panic
		l.expire(time.Now())
	})
}

// TestNewRefusesOpenURLWithoutCredentials: a NATS URL that is not loopback
// needs a credential, from Config, the URL or Config.Options; loopback URLs
// and AllowInsecure need none.
func TestNewRefusesOpenURLWithoutCredentials(t *testing.T) {
	cert := tls.Certificate{Certificate: [][]byte{{1}}}
	for _, c := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"open, nothing", Config{URLs: []string{"nats://10.1.2.3:4222"}}, false},
		{"open name, nothing", Config{URLs: []string{"tls://nats.example.com:4222"}}, false},
		{"bare host:port", Config{URLs: []string{"10.1.2.3:4222"}}, false},
		{"one of two open", Config{URLs: []string{"nats://127.0.0.1:4222", "nats://0.0.0.0:4222"}}, false},
		{"TLS without a client certificate", Config{URLs: []string{"tls://10.1.2.3:4222"}, TLS: &tls.Config{}}, false},
		{"loopback v4", Config{URLs: []string{"nats://127.0.0.1:4222"}}, true},
		{"loopback v6", Config{URLs: []string{"nats://[::1]:4222"}}, true},
		{"localhost", Config{URLs: []string{"nats://localhost:4222"}}, true},
		{"token", Config{URLs: []string{"nats://10.1.2.3:4222"}, Token: "t0k"}, true},
		{"user and password", Config{URLs: []string{"nats://10.1.2.3:4222"}, User: "u", Password: "p"}, true},
		{"creds file", Config{URLs: []string{"nats://10.1.2.3:4222"}, CredsFile: "/etc/nats/user.creds"}, true},
		{"client certificate", Config{URLs: []string{"tls://10.1.2.3:4222"}, TLS: &tls.Config{Certificates: []tls.Certificate{cert}}}, true},
		{"user in the URL", Config{URLs: []string{"nats://u:p@10.1.2.3:4222"}}, true},
		{"token option", Config{URLs: []string{"nats://10.1.2.3:4222"}, Options: []nats.Option{nats.Token("t0k")}}, true},
		{"allowed", Config{URLs: []string{"nats://10.1.2.3:4222"}, AllowInsecure: true}, true},
	} {
		_, err := New(c.cfg)
		switch {
		case c.ok && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case !c.ok && !errors.Is(err, ErrInsecureURL):
			t.Errorf("%s: error %v, want ErrInsecureURL", c.name, err)
		}
	}
	for _, cfg := range []Config{
		{URLs: []string{"nats://127.0.0.1:4222"}, Token: "t", User: "u"},
		{URLs: []string{"nats://127.0.0.1:4222"}, Token: "t", CredsFile: "f"},
		{URLs: []string{"nats://127.0.0.1:4222"}, Password: "p"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

// TestReceiveSizesNothingByDeclaredLengths: a report that declares a map
// of 2^32 entries in a few bytes is refused without allocating for it
// (msgpack preallocates up to a million entries, tens of MB, for such a
// declaration), and so is a report with an invalid topic.
func TestReceiveSizesNothingByDeclaredLengths(t *testing.T) {
	l := testLink(t)
	// [kind 1, node 2, boot 1, ttl 1000, ask false, gen 1, part 0, parts 1, map32 of 2^32-1 entries]
	bomb := []byte{0x99, 0x01, 0x02, 0x01, 0xcd, 0x03, 0xe8, 0xc2, 0x01, 0x00, 0x01, 0xdf, 0xff, 0xff, 0xff, 0xff}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.TotalAlloc
	for range 10 {
		l.receive(bomb, time.Now())
	}
	runtime.ReadMemStats(&ms)
	if grew := ms.TotalAlloc - before; grew > 1<<20 {
		t.Errorf("10 reports of 16 bytes each allocated %d bytes", grew)
	}
	if l.badReports.Load() != 10 {
		t.Errorf("%d bad reports, want 10", l.badReports.Load())
	}
	l.receive(enc(t, report{Kind: kindFull, Node: 2, Boot: 1, TTL: 1000, Gen: 1, Parts: 1, Counts: map[string]int64{"ok": 1, "not ok": 1}}), time.Now())
	if l.badReports.Load() != 11 || l.peerCount("ok", time.Now()) != 0 {
		t.Errorf("a report with an invalid topic was applied")
	}
}
