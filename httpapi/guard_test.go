package httpapi_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firetower-go/firetower/httpapi"
)

// rawRequest sends one request exactly as given: method, Host header,
// headers (Content-Type included, none added) and body.
func (e *env) rawRequest(method, host, path, body string, hdr map[string]string) reply {
	e.tb.Helper()
	req, err := http.NewRequest(method, e.api.URL+path, strings.NewReader(body))
	if err != nil {
		e.tb.Fatalf("NewRequest: %v", err)
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: wait}).Do(req)
	if err != nil {
		e.tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

func (e *env) hostPort() string { return strings.TrimPrefix(e.api.URL, "http://") }

// TestCrossSiteBrowserPOSTRefused: without an API key, what a web page of
// another site can make a browser send without asking (a form, or a fetch
// with a text/plain body) is refused and has no effect; programs such as
// curl, and the server's own pages, are served.
func TestCrossSiteBrowserPOSTRefused(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	sub := e.dial("sub", nil)
	sub.subscribe("/t")
	body := `{"topic":"/t","data":"csrf"}`
	port := e.hostPort()[strings.LastIndexByte(e.hostPort(), ':')+1:]

	for _, c := range []struct {
		name string
		hdr  map[string]string
	}{
		{"text/plain from another site", map[string]string{"Content-Type": "text/plain", "Origin": "http://evil.example"}},
		{"a form from another site", map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": "https://evil.example"}},
		{"multipart from another site", map[string]string{"Content-Type": "multipart/form-data; boundary=x", "Origin": "http://evil.example"}},
		{"another port of the same host", map[string]string{"Content-Type": "text/plain", "Origin": "http://127.0.0.1:1"}},
		{"an opaque origin", map[string]string{"Content-Type": "text/plain", "Origin": "null"}},
		{"junk origin", map[string]string{"Content-Type": "text/plain", "Origin": "::junk"}},
		{"no Origin, Sec-Fetch-Site cross-site", map[string]string{"Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site"}},
		{"no Origin, Sec-Fetch-Site same-site", map[string]string{"Content-Type": "text/plain", "Sec-Fetch-Site": "same-site"}},
		{"JSON from another site", map[string]string{"Content-Type": "application/json", "Origin": "http://evil.example"}},
		{"Basic credentials the browser added", map[string]string{"Content-Type": "text/plain", "Origin": "http://evil.example", "Authorization": "Basic dTpw"}},
	} {
		r := e.rawRequest("POST", "", "/api/v1/publish", body, c.hdr)
		wantError(t, r, http.StatusForbidden, "cross_site")
		if leaked := e.barrier(sub, "/t"); len(leaked) > 0 {
			t.Errorf("%s: refused, yet the subscriber received %s", c.name, leaked)
		}
	}
	for _, path := range []string{"/api/v1/disconnect", "/api/v1/unsubscribe", "/api/v1/publish/batch"} {
		r := e.rawRequest("POST", "", path, `{}`, map[string]string{"Content-Type": "text/plain", "Origin": "http://evil.example"})
		wantError(t, r, http.StatusForbidden, "cross_site")
	}

	// Served: curl -d (a form Content-Type, no browser headers), the same
	// origin (any scheme's default port spelled out or not), and a
	// request carrying an API key header (which no cross-site page can
	// send without asking first).
	for i, hdr := range []map[string]string{
		{"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "curl/8.0"},
		{"Content-Type": "text/plain"},
		{"Content-Type": "application/json", "Origin": "http://" + e.hostPort(), "Sec-Fetch-Site": "same-origin"},
		{"Content-Type": "text/plain", "Origin": "http://127.0.0.1:" + port},
		{"Content-Type": "text/plain", "Sec-Fetch-Site": "none"},
		{"Content-Type": "application/json", "Origin": "http://evil.example", "X-API-Key": "anything"},
		{"Content-Type": "application/json", "Origin": "http://evil.example", "Authorization": "Bearer anything"},
	} {
		r := e.rawRequest("POST", "", "/api/v1/publish", `{"topic":"/t","data":`+string(rune('0'+i))+`}`, hdr)
		if r.status != http.StatusOK {
			t.Errorf("POST with %v: %s, want 200", hdr, r)
			continue
		}
		sub.expect("/t", string(rune('0'+i)))
	}
	// Reading is not concerned: the same-origin policy keeps the answer
	// from another site's page.
	r := e.rawRequest("GET", "", "/api/v1/topics/%2Ft", "", map[string]string{"Origin": "http://evil.example"})
	if r.status != http.StatusOK {
		t.Errorf("GET with a foreign Origin: %s, want 200", r)
	}
}

// TestAllowedOriginsMayPOST: an origin allowed by the configuration may
// send browser POSTs; "*" does not open the API to every page.
func TestAllowedOriginsMayPOST(t *testing.T) {
	e := newEnv(t, httpapi.Config{AllowedOrigins: []string{"*", "https://app.example", "*.corp.example"}})
	sub := e.dial("sub", nil)
	sub.subscribe("/t")
	for _, o := range []string{"https://app.example", "https://x.corp.example:8443"} {
		r := e.rawRequest("POST", "", "/api/v1/publish", `{"topic":"/t","data":1}`, map[string]string{"Content-Type": "text/plain", "Origin": o})
		if r.status != http.StatusOK {
			t.Errorf("Origin %s: %s, want 200", o, r)
			continue
		}
		sub.expect("/t", "1")
	}
	for _, o := range []string{"http://app.example", "https://evil.example", "https://corp.example.evil"} {
		r := e.rawRequest("POST", "", "/api/v1/publish", `{"topic":"/t","data":2}`, map[string]string{"Content-Type": "text/plain", "Origin": o})
		wantError(t, r, http.StatusForbidden, "cross_site")
	}
	if leaked := e.barrier(sub, "/t"); len(leaked) > 0 {
		t.Errorf("refused requests had an effect: %s", leaked)
	}
}

// TestForeignHostRefusedWithoutKey: without an API key, a Host header
// naming another machine (a page whose DNS name was rebound to this
// server's address) is refused, for reads and writes; IP addresses,
// localhost and the allowed hosts are served. With a key, Host is not
// checked.
func TestForeignHostRefusedWithoutKey(t *testing.T) {
	e := newEnv(t, httpapi.Config{AllowedHosts: []string{"firetower.internal", "*.svc.example"}})
	sub := e.dial("sub", nil)
	sub.subscribe("/t")
	port := e.hostPort()[strings.LastIndexByte(e.hostPort(), ':')+1:]
	json := map[string]string{"Content-Type": "application/json"}

	for _, host := range []string{"evil.example:" + port, "evil.example", "localhost.evil.example:" + port, "svc.example", "firetower.internal.evil:" + port} {
		r := e.rawRequest("POST", host, "/api/v1/publish", `{"topic":"/t","data":"rebound"}`, json)
		wantError(t, r, http.StatusMisdirectedRequest, "misdirected_request")
		r = e.rawRequest("GET", host, "/api/v1/topics/%2Ft", "", nil)
		wantError(t, r, http.StatusMisdirectedRequest, "misdirected_request")
	}
	if leaked := e.barrier(sub, "/t"); len(leaked) > 0 {
		t.Errorf("refused requests had an effect: %s", leaked)
	}
	for i, host := range []string{"127.0.0.1:" + port, "localhost:" + port, "LOCALHOST.:" + port, "app.localhost:" + port, "[::1]:" + port, "10.0.0.7", "firetower.internal:" + port, "a.svc.example"} {
		r := e.rawRequest("POST", host, "/api/v1/publish", `{"topic":"/t","data":`+string(rune('0'+i))+`}`, json)
		if r.status != http.StatusOK {
			t.Errorf("Host %q: %s, want 200", host, r)
			continue
		}
		sub.expect("/t", string(rune('0'+i)))
	}

	// With a key the key protects: any Host, with the key.
	const key = "k3y"
	k := newEnv(t, httpapi.Config{APIKey: key})
	r := k.rawRequest("GET", "evil.example", "/api/v1/topics/%2Ft", "", map[string]string{"X-API-Key": key})
	if r.status != http.StatusOK {
		t.Errorf("Host evil.example with the key: %s, want 200", r)
	}
}

func TestHostAllowed(t *testing.T) {
	g := httpapi.NewGuard(httpapi.GuardConfig{AllowedHosts: []string{" Firetower.Internal. ", "*.svc.example", ""}})
	for host, want := range map[string]bool{
		"":                       true, // HTTP/1.0: not a browser
		"127.0.0.1":              true,
		"127.0.0.1:9998":         true,
		"[::1]:9998":             true,
		"[fe80::1%25eth0]:80":    true,
		"192.168.1.9:80":         true,
		"localhost":              true,
		"localhost.":             true,
		"LocalHost:9998":         true,
		"a.b.localhost:1":        true,
		"firetower.internal:1":   true,
		"FIRETOWER.INTERNAL.":    true,
		"x.y.svc.example:443":    true,
		"svc.example":            false,
		"evil.example":           false,
		"evil.example:9998":      false,
		"localhost.evil.example": false,
		"localhostx":             false,
		"127.0.0.1.evil.example": false,
		"2130706433":             false,
		"a b":                    false,
		"evil/x?y#z:80":          false,
		":80":                    false,
		"[":                      false,
	} {
		if got := g.HostAllowed(host); got != want {
			t.Errorf("HostAllowed(%q) = %v, want %v", host, got, want)
		}
	}
	if !httpapi.NewGuard(httpapi.GuardConfig{AllowedHosts: []string{"*"}}).HostAllowed("evil.example") {
		t.Error(`AllowedHosts "*" refuses a host`)
	}
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestWrongKeysRateLimited: past the burst of wrong keys, an address gets
// 429 whatever it presents (the right key included, so that the limit
// cannot be used as an oracle) until it has earned a new try; other
// addresses are not concerned; failures are logged.
func TestWrongKeysRateLimited(t *testing.T) {
	const key = "s3cret-key"
	var logs syncBuffer
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	g := httpapi.NewGuard(httpapi.GuardConfig{
		APIKey: key, FailedKeyBurst: 3, FailedKeyEvery: 10 * time.Second, Now: clock,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	e := newEnv(t, httpapi.Config{})
	h := httpapi.New(e.tower, httpapi.Config{Guard: g})
	sub := e.dial("sub", nil)
	sub.subscribe("/t")

	call := func(from, got string) *httptest.ResponseRecorder {
		t.Helper()
		req := httptest.NewRequest("POST", "/api/v1/publish", strings.NewReader(`{"topic":"/t","data":"x"}`))
		req.RemoteAddr = from
		if got != "" {
			req.Header.Set("X-API-Key", got)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	const attacker, other = "192.0.2.1:4000", "192.0.2.2:4000"
	for i := 0; i < 3; i++ {
		if rec := call(attacker, "guess"); rec.Code != http.StatusUnauthorized {
			t.Fatalf("wrong key %d: %d %s, want 401", i+1, rec.Code, rec.Body)
		}
	}
	for _, got := range []string{"guess", key} {
		rec := call(attacker, got)
		if rec.Code != http.StatusTooManyRequests || !strings.Contains(rec.Body.String(), `"code":"too_many_attempts"`) {
			t.Fatalf("key %q past the burst: %d %s, want 429 too_many_attempts", got, rec.Code, rec.Body)
		}
		if ra := rec.Header().Get("Retry-After"); ra != "10" {
			t.Errorf("Retry-After %q, want 10", ra)
		}
	}
	// The same address on another port, and an IPv6 address of the same
	// /64, are the same client; another address is not.
	if rec := call("192.0.2.1:4001", key); rec.Code != http.StatusTooManyRequests {
		t.Errorf("the attacker from another port: %d, want 429", rec.Code)
	}
	if rec := call(other, key); rec.Code != http.StatusOK {
		t.Errorf("another address with the key: %d %s, want 200", rec.Code, rec.Body)
	}
	sub.expect("/t", `"x"`)
	for i := 0; i < 3; i++ {
		call("[2001:db8::1]:1", "guess")
	}
	if rec := call("[2001:db8::ffff]:1", key); rec.Code != http.StatusTooManyRequests {
		t.Errorf("an address of the limited /64: %d, want 429", rec.Code)
	}

	// One try earned back after FailedKeyEvery.
	advance(10 * time.Second)
	if rec := call(attacker, key); rec.Code != http.StatusOK {
		t.Fatalf("the right key after the wait: %d %s, want 200", rec.Code, rec.Body)
	}
	sub.expect("/t", `"x"`)
	if rec := call(attacker, "guess"); rec.Code != http.StatusUnauthorized {
		t.Fatalf("a wrong key after the wait: %d, want 401", rec.Code)
	}
	if rec := call(attacker, "guess"); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("the next wrong key: %d, want 429", rec.Code)
	}
	if leaked := e.barrier(sub, "/t"); len(leaked) > 0 {
		t.Errorf("refused requests had an effect: %s", leaked)
	}
	out := logs.String()
	if strings.Count(out, "wrong API key") < 4 || !strings.Contains(out, "client=192.0.2.1") || !strings.Contains(out, "client limited") {
		t.Errorf("log does not show the failures and the limit:\n%s", out)
	}
	if strings.Contains(out, "guess") || strings.Contains(out, key) {
		t.Errorf("log shows a presented key:\n%s", out)
	}
}

// TestBatchReservedTopicSendsNothing: a batch with a reserved topic in the
// middle is refused before anything goes out.
func TestBatchReservedTopicSendsNothing(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	sub := e.dial("sub", nil)
	sub.subscribe("/t")
	for _, body := range []string{
		`{"messages":[{"topic":"/t","data":1},{"topic":"$firetower/control","data":2},{"topic":"/t","data":3}]}`,
		`{"messages":[{"topic":"/t","data":1},{"topics":["/t","$firetower/stats"],"data":2}]}`,
	} {
		wantError(t, e.do("POST", "/api/v1/publish/batch", body), http.StatusForbidden, "forbidden")
		if leaked := e.barrier(sub, "/t"); len(leaked) > 0 {
			t.Errorf("refused batch %s had an effect: the subscriber received %s", body, leaked)
		}
	}
	wantError(t, e.do("POST", "/api/v1/publish", `{"topics":["/t","$firetower/control"],"data":1}`), http.StatusForbidden, "forbidden")
	if leaked := e.barrier(sub, "/t"); len(leaked) > 0 {
		t.Errorf("refused publish had an effect: %s", leaked)
	}
}

// TestBatchCountsTopics: each topic of each message is one publish and
// counts toward MaxBatch, in a batch and in a single publish.
func TestBatchCountsTopics(t *testing.T) {
	e := newEnv(t, httpapi.Config{MaxBatch: 3})
	sub := e.dial("sub", nil)
	sub.subscribe("/t")
	for _, c := range []struct{ path, body string }{
		{"/api/v1/publish/batch", `{"messages":[{"topics":["/t","/a","/b","/c"],"data":1}]}`},
		{"/api/v1/publish/batch", `{"messages":[{"topics":["/t","/a"],"data":1},{"topic":"/t","topics":["/b"],"data":2}]}`},
		{"/api/v1/publish", `{"topic":"/t","topics":["/a","/b","/c"],"data":1}`},
	} {
		wantError(t, e.do("POST", c.path, c.body), http.StatusBadRequest, "bad_request")
		if leaked := e.barrier(sub, "/t"); len(leaked) > 0 {
			t.Errorf("refused %s had an effect: the subscriber received %s", c.body, leaked)
		}
	}
	got := e.ok("POST", "/api/v1/publish/batch", `{"messages":[{"topics":["/t","/a"],"data":1},{"topic":"/t","data":2}]}`)
	if got["published"] != float64(3) {
		t.Errorf("a batch of exactly 3 publishes: %v", got)
	}
	sub.expect("/t", "1")
	sub.expect("/t", "2")
}
