package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/firetower-go/firetower"
	pb "github.com/firetower-go/firetower/grpcapi/firetowerpb"
)

// ttRun is mtRun with the command's log kept: it returns the log too.
func ttRun(t *testing.T, args ...string) (<-chan string, *syncBuffer, func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	logs := &syncBuffer{}
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, args, pw, logs)
		pw.Close()
	}()
	stop := func() int {
		cancel()
		select {
		case c := <-code:
			return c
		case <-time.After(15 * time.Second):
			t.Fatal("command did not exit after its context ended")
			return -1
		}
	}
	t.Cleanup(func() { cancel() })
	return lines, logs, stop
}

// ttDo sends one request as given (Host, headers, body) without following
// redirects.
func ttDo(t *testing.T, method, rawURL, host, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, rawURL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func ttWant(t *testing.T, what string, resp *http.Response, body string, status int, contains string) {
	t.Helper()
	if resp.StatusCode != status || !strings.Contains(body, contains) {
		t.Errorf("%s: %d %q, want %d containing %q", what, resp.StatusCode, body, status, contains)
	}
}

// TestServeRefusesCrossSiteAndForeignHost: on loopback without a key, the
// binary refuses what any web page could make a browser send: a
// cross-site text/plain POST (CSRF), and a request naming a foreign host
// (DNS rebinding), whose dashboard token would name ws://evil.example.
// curl -d, the same origin, /healthz and --allowed-hosts are served.
func TestServeRefusesCrossSiteAndForeignHost(t *testing.T) {
	lines, stop := mtRun(t, "serve", "--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "error", "--allowed-hosts", "firetower.test")
	mtLine(t, lines, "websocket listening on ws://")
	hp := mtLine(t, lines, "http listening on http://")
	base := "http://" + hp
	_, port, _ := net.SplitHostPort(hp)
	pub := `{"topic":"/chat/world","data":"x"}`

	r, b := ttDo(t, "POST", base+"/api/v1/publish", "", pub, map[string]string{"Content-Type": "text/plain", "Origin": "http://evil.example"})
	ttWant(t, "text/plain POST from another site", r, b, 403, `"code":"cross_site"`)
	r, b = ttDo(t, "POST", base+"/api/v1/disconnect", "", `{"user_id":"u"}`, map[string]string{"Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site"})
	ttWant(t, "cross-site disconnect", r, b, 403, `"code":"cross_site"`)
	r, b = ttDo(t, "POST", base+"/dashboard/login", "", "key=x", map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": "null"})
	ttWant(t, "cross-site sign-in", r, b, 403, `"code":"cross_site"`)

	for _, p := range []string{"/dashboard/token", "/dashboard/", "/api/v1/topics/%2Fchat%2Fworld", "/config.json", "/metrics", "/"} {
		r, b = ttDo(t, "GET", base+p, "evil.example:"+port, "", nil)
		ttWant(t, "GET "+p+" naming evil.example", r, b, 421, `"code":"misdirected_request"`)
		if strings.Contains(b, "ws://") {
			t.Errorf("GET %s naming evil.example answered a websocket URL: %s", p, b)
		}
	}
	r, b = ttDo(t, "POST", base+"/api/v1/publish", "evil.example:"+port, pub, map[string]string{"Content-Type": "application/json", "Origin": "http://evil.example:" + port})
	ttWant(t, "a DNS-rebound page's same-origin POST", r, b, 421, `"code":"misdirected_request"`)

	// Served.
	r, b = ttDo(t, "POST", base+"/api/v1/publish", "", pub, map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	ttWant(t, "curl -d", r, b, 200, `"ok":true`)
	r, b = ttDo(t, "POST", base+"/api/v1/publish", "", pub, map[string]string{"Content-Type": "application/json", "Origin": base})
	ttWant(t, "a POST from the server's own page", r, b, 200, `"ok":true`)
	r, b = ttDo(t, "GET", base+"/healthz", "evil.example", "", nil)
	ttWant(t, "healthz under any name", r, b, 200, "ok")
	r, b = ttDo(t, "GET", base+"/dashboard/token", "firetower.test:"+port, "", nil)
	ttWant(t, "token for an allowed host", r, b, 200, `"url":"ws://firetower.test:`)
	r, b = ttDo(t, "GET", base+"/dashboard/token", "localhost:"+port, "", nil)
	ttWant(t, "token for localhost", r, b, 200, `"url":"ws://localhost:`)
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
}

// TestServeWrongKeysGet429: past ten wrong keys from one address, the API,
// /metrics and the dashboard sign-in answer 429, the right key included;
// the failures are logged.
func TestServeWrongKeysGet429(t *testing.T) {
	const key = "s3cret-key"
	lines, logs, stop := ttRun(t, "serve", "--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--api-key", key)
	mtLine(t, lines, "websocket listening on ws://")
	base := "http://" + mtLine(t, lines, "http listening on http://")
	wrong := map[string]string{"Authorization": "Bearer wrong"}
	for i := range 10 {
		path := []string{"/api/v1/topics", "/metrics"}[i%2]
		r, b := ttDo(t, "GET", base+path, "", "", wrong)
		ttWant(t, fmt.Sprintf("wrong key %d", i+1), r, b, 401, `"code":"unauthorized"`)
	}
	r, b := ttDo(t, "GET", base+"/api/v1/topics", "", "", wrong)
	ttWant(t, "the 11th wrong key", r, b, 429, `"code":"too_many_attempts"`)
	if r.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	r, b = ttDo(t, "GET", base+"/metrics", "", "", map[string]string{"X-API-Key": key})
	ttWant(t, "the right key while limited", r, b, 429, `"code":"too_many_attempts"`)
	r, b = ttDo(t, "POST", base+"/dashboard/login", "", url.Values{"key": {key}}.Encode(), map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	ttWant(t, "sign-in while limited", r, b, 429, "too many wrong keys")
	if len(r.Cookies()) != 0 {
		t.Errorf("a limited sign-in got a cookie: %v", r.Cookies())
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	out := logs.String()
	if strings.Count(out, "wrong API key") < 10 || !strings.Contains(out, "client limited") || strings.Contains(out, "wrong\"") {
		t.Errorf("log does not show the failures and the limit:\n%s", out)
	}
}

// ttTower is a started Tower for handler-level tests.
func ttTower(t *testing.T, opts ...firetower.Option) *firetower.Tower {
	t.Helper()
	tw, err := firetower.New(append([]firetower.Option{firetower.WithAddr("127.0.0.1:0")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = tw.Shutdown(ctx)
	})
	return tw
}

// TestDashboardSessionExpiresAndSignsOut: a dashboard session lasts its
// TTL, no longer, and signing out voids it even for a kept copy of the
// cookie; a session of another process, or an altered one, is refused.
func TestDashboardSessionExpiresAndSignsOut(t *testing.T) {
	const key = "s3cret-key"
	var mu sync.Mutex
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	h := newHTTPHandler(ttTower(t), httpConfig{apiKey: key, sessionTTL: time.Hour, now: clock})
	do := func(method, path, cookie, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Host = "127.0.0.1:9998"
		if body != "" {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if cookie != "" {
			req.Header.Set("Cookie", sessionCookie+"="+cookie)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	signIn := func() *http.Cookie {
		t.Helper()
		rec := do("POST", "/dashboard/login", "", "key="+key)
		if rec.Code != http.StatusSeeOther {
			t.Fatalf("sign-in: %d %s", rec.Code, rec.Body)
		}
		for _, c := range rec.Result().Cookies() {
			if c.Name == sessionCookie && c.Value != "" {
				return c
			}
		}
		t.Fatal("sign-in set no session cookie")
		return nil
	}
	in := func(cookie string) bool { return do("GET", "/dashboard/", cookie, "").Code == http.StatusOK }

	c := signIn()
	if c.MaxAge != 3600 || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || strings.Contains(c.Value, key) {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, Max-Age 3600 and no key", c)
	}
	if !in(c.Value) {
		t.Fatal("a fresh session is refused")
	}
	if rec := do("GET", "/metrics", c.Value, ""); rec.Code != http.StatusOK {
		t.Errorf("/metrics with the session: %d", rec.Code)
	}
	advance(59 * time.Minute)
	if !in(c.Value) {
		t.Fatal("a 59-minute-old session of a 1h TTL is refused")
	}
	advance(time.Minute)
	if in(c.Value) {
		t.Fatal("an expired session is accepted")
	}
	if rec := do("GET", "/dashboard/", c.Value, ""); rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), `action="/dashboard/login"`) {
		t.Errorf("expired session: %d, want 401 and the sign-in form", rec.Code)
	}

	// Altered expiry (the MAC no longer matches), junk, another process.
	c = signIn()
	parts := strings.Split(c.Value, ".")
	parts[1] = fmt.Sprint(now.Add(1000 * time.Hour).UnixMilli())
	for _, v := range []string{strings.Join(parts, "."), "v1", "v1....", "x.y.z.w", strings.Repeat("a", 500), sessionValueOf(t, key)} {
		if in(v) {
			t.Errorf("session %q accepted", v)
		}
	}

	// Sign out: the cookie is cleared, and a kept copy is void.
	rec := do("POST", "/dashboard/logout", c.Value, "")
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/dashboard/" {
		t.Fatalf("sign-out: %d %q, want 303 to /dashboard/", rec.Code, rec.Header().Get("Location"))
	}
	cleared := false
	for _, k := range rec.Result().Cookies() {
		cleared = cleared || (k.Name == sessionCookie && k.MaxAge < 0)
	}
	if !cleared {
		t.Errorf("sign-out did not clear the cookie: %v", rec.Header()["Set-Cookie"])
	}
	if in(c.Value) {
		t.Fatal("a signed-out session is accepted")
	}
	if other := signIn(); !in(other.Value) {
		t.Fatal("signing out one session voided a new one")
	}
}

// sessionValueOf is a well-formed session of another process with the
// same key.
func sessionValueOf(t *testing.T, key string) string {
	t.Helper()
	v, _ := newSessions(key, time.Hour, nil).issue()
	return v
}

// TestSessionRevocationFull: when the table of signed-out sessions is
// full, signing out voids every session issued so far rather than
// forgetting one.
func TestSessionRevocationFull(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := newSessions("k", time.Hour, func() time.Time { return now })
	s.max = 2
	a, _ := s.issue()
	b, _ := s.issue()
	c, _ := s.issue()
	s.revoke(a)
	s.revoke(b)
	if s.valid(a) || s.valid(b) || !s.valid(c) {
		t.Fatal("revocation")
	}
	now = now.Add(time.Millisecond)
	d, _ := s.issue()
	s.revoke(d) // no room: everything issued so far goes
	if s.valid(a) || s.valid(b) || s.valid(c) || s.valid(d) {
		t.Fatal("a full table let a session live on")
	}
	now = now.Add(time.Millisecond)
	if e, _ := s.issue(); !s.valid(e) {
		t.Fatal("a session issued after the purge is refused")
	}
}

// TestAPIKeyFromFile: --api-key-file supplies the key (so it is not on
// the command line), alone.
func TestAPIKeyFromFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "key")
	if err := os.WriteFile(file, []byte("  file-key-123 \n# comment\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lines, stop := mtRun(t, "serve", "--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "error", "--api-key-file", file)
	mtLine(t, lines, "websocket listening on ws://")
	base := "http://" + mtLine(t, lines, "http listening on http://")
	pub := `{"topic":"/t","data":1}`
	r, b := ttDo(t, "POST", base+"/api/v1/publish", "", pub, nil)
	ttWant(t, "no key", r, b, 401, "unauthorized")
	r, b = ttDo(t, "POST", base+"/api/v1/publish", "", pub, map[string]string{"X-API-Key": "file-key-123"})
	ttWant(t, "the key from the file", r, b, 200, `"ok":true`)
	r, b = ttDo(t, "GET", base+"/metrics", "", "", map[string]string{"Authorization": "Bearer file-key-123"})
	ttWant(t, "metrics with the key from the file", r, b, 200, "firetower_connections")
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}

	// The manager takes it too.
	lines, stop = mtRun(t, "manager", "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "error", "--api-key-file", file)
	mtLine(t, lines, "manager listening on ")
	mbase := "http://" + mtLine(t, lines, "http listening on http://")
	r, b = ttDo(t, "GET", mbase+"/api/v1/nodes", "", "", nil)
	ttWant(t, "manager without key", r, b, 401, "unauthorized")
	r, b = ttDo(t, "GET", mbase+"/api/v1/nodes", "", "", map[string]string{"X-API-Key": "file-key-123"})
	ttWant(t, "manager with the key from the file", r, b, 200, "nodes")
	if code := stop(); code != 0 {
		t.Fatalf("manager exit code %d", code)
	}

	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"serve", "--http-addr", "127.0.0.1:0", "--api-key-file", filepath.Join(dir, "missing")},
		{"serve", "--http-addr", "127.0.0.1:0", "--api-key-file", empty},
		{"serve", "--http-addr", "127.0.0.1:0", "--api-key-file", file, "--api-key", "other"},
		{"manager", "--http-addr", "127.0.0.1:0", "--api-key-file", empty},
	} {
		var stderr syncBuffer
		if code := run(context.Background(), args, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), "api-key") {
			t.Errorf("%q: exit %d %q, want 2 and a message naming the flag", args, code, stderr.String())
		}
	}
}

// TestHTTPTimeoutsCutSlowBodies: the servers of both commands have every
// timeout set, and slow-body POSTs (a body promised and never sent) are
// cut off after --http-read-timeout while others are served.
func TestHTTPTimeoutsCutSlowBodies(t *testing.T) {
	hs := newHTTPServer(http.NotFoundHandler(), defaultHTTPTimeouts())
	if hs.ReadHeaderTimeout <= 0 || hs.ReadTimeout <= 0 || hs.WriteTimeout <= hs.ReadTimeout || hs.IdleTimeout <= 0 || hs.MaxHeaderBytes <= 0 {
		t.Fatalf("default HTTP server %+v: want every timeout set", hs)
	}

	for _, cmd := range [][]string{
		{"serve", "--ws-addr", "127.0.0.1:0"},
		{"manager", "--addr", "127.0.0.1:0"},
	} {
		lines, stop := mtRun(t, append(cmd, "--http-addr", "127.0.0.1:0", "--log-level", "error", "--http-read-timeout", "300ms")...)
		hp := ""
		for hp == "" {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("%s ended before printing its HTTP address", cmd[0])
				}
				if a, ok := strings.CutPrefix(l, "http listening on http://"); ok {
					hp = a
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s printed no HTTP address", cmd[0])
			}
		}
		n := 300
		if cmd[0] == "manager" {
			n = 20
		}
		paths := []string{"/api/v1/publish", "/dashboard/login"}
		if cmd[0] == "manager" {
			paths = []string{"/api/v1/publish"}
		}
		conns := make([]net.Conn, 0, n)
		for i := range n {
			c, err := net.Dial("tcp", hp)
			if err != nil {
				t.Fatalf("dial %d: %v", i, err)
			}
			defer c.Close()
			fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"topic\":", paths[i%len(paths)], hp)
			conns = append(conns, c)
		}
		// A well-behaved client is served meanwhile.
		if status, body := mtGet(t, "GET", "http://"+hp+"/healthz", ""); status != 200 {
			t.Fatalf("%s: healthz during the slow bodies: %d %q", cmd[0], status, body)
		}
		// Every slow connection is closed by the server: reading it ends
		// (an error answer, then EOF). The deadline only bounds a failure.
		deadline := time.Now().Add(20 * time.Second)
		for i, c := range conns {
			_ = c.SetReadDeadline(deadline)
			if _, err := io.Copy(io.Discard, c); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("%s: slow-body connection %d still open after 20s", cmd[0], i)
				}
			}
		}
		if code := stop(); code != 0 {
			t.Fatalf("%s exit code %d", cmd[0], code)
		}
	}
}

// TestServeAllowedOrigins: --allowed-origins lets the named browser
// origins open websockets (and POST), besides the same host; others get
// 403.
func TestServeAllowedOrigins(t *testing.T) {
	dial := func(ws, origin string) int {
		t.Helper()
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		c, resp, err := websocket.DefaultDialer.Dial(ws, h)
		if err == nil {
			c.Close()
			return resp.StatusCode
		}
		if resp == nil {
			t.Fatalf("dial %s with Origin %q: %v", ws, origin, err)
		}
		return resp.StatusCode
	}
	lines, stop := mtRun(t, "serve", "--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "error",
		"--allowed-origins", "https://app.example,*.corp.example")
	ws := "ws://" + mtLine(t, lines, "websocket listening on ws://")
	hp := mtLine(t, lines, "http listening on http://")
	_, wsPort, _ := net.SplitHostPort(strings.TrimSuffix(strings.TrimPrefix(ws, "ws://"), "/ws"))
	for origin, want := range map[string]int{
		"https://app.example":          101,
		"https://x.corp.example":       101,
		"http://127.0.0.1:" + wsPort:   101, // the same host
		"http://" + hp:                 101, // the demo's own page
		"":                             101, // not a browser
		"http://app.example":           403,
		"https://evil.example":         403,
		"https://corp.example.evil.io": 403,
	} {
		if got := dial(ws, origin); got != want {
			t.Errorf("--allowed-origins: Origin %q got %d, want %d", origin, got, want)
		}
	}
	r, b := ttDo(t, "POST", "http://"+hp+"/api/v1/publish", "", `{"topic":"/t","data":1}`, map[string]string{"Content-Type": "text/plain", "Origin": "https://app.example"})
	ttWant(t, "POST from an allowed origin", r, b, 200, `"ok":true`)
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}

	// Without the flag, only the same host.
	lines, stop = mtRun(t, "serve", "--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "error")
	ws = "ws://" + mtLine(t, lines, "websocket listening on ws://")
	mtLine(t, lines, "http listening on http://")
	if got := dial(ws, "https://app.example"); got != 403 {
		t.Errorf("no --allowed-origins: Origin https://app.example got %d, want 403", got)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// TestManagerHTTPTrust: the manager's HTTP refuses a reserved topic, a
// cross-site POST and a foreign Host.
func TestManagerHTTPTrust(t *testing.T) {
	lines, stop := mtRun(t, "manager", "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "error")
	mtLine(t, lines, "manager listening on ")
	base := "http://" + mtLine(t, lines, "http listening on http://")
	r, b := ttDo(t, "POST", base+"/api/v1/publish", "", `{"topic":"$firetower/control","data":{"op":"disconnect"}}`, nil)
	ttWant(t, "reserved topic", r, b, 403, `"code":"forbidden"`)
	r, b = ttDo(t, "POST", base+"/api/v1/publish", "", `{"topic":"news","data":1}`, map[string]string{"Content-Type": "text/plain", "Origin": "http://evil.example"})
	ttWant(t, "cross-site POST", r, b, 403, `"code":"cross_site"`)
	r, b = ttDo(t, "GET", base+"/api/v1/nodes", "evil.example", "", nil)
	ttWant(t, "foreign Host", r, b, 421, `"code":"misdirected_request"`)
	r, b = ttDo(t, "POST", base+"/api/v1/publish", "", `{"topic":"news","data":1}`, map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	ttWant(t, "curl -d", r, b, 200, `"ok":true`)
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// TestServeWrongKeysCountAcrossAPIs: the HTTP and gRPC push APIs of one
// process share the limit: wrong keys on HTTP lock the address out of
// gRPC too.
func TestServeWrongKeysCountAcrossAPIs(t *testing.T) {
	const key = "s3cret-key"
	lines, stop := mtRun(t, "serve", "--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--log-level", "error", "--api-key", key)
	mtLine(t, lines, "websocket listening on ws://")
	base := "http://" + mtLine(t, lines, "http listening on http://")
	gaddr := mtLine(t, lines, "grpc listening on ")
	cc, err := grpc.NewClient(gaddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	api := pb.NewPushServiceClient(cc)
	count := func() error {
		ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-api-key", key), 10*time.Second)
		defer cancel()
		_, err := api.Count(ctx, &pb.CountRequest{Topic: "/t"})
		return err
	}
	if err := count(); err != nil {
		t.Fatalf("gRPC with the key: %v", err)
	}
	for range 10 {
		ttDo(t, "GET", base+"/api/v1/topics", "", "", map[string]string{"X-API-Key": "guess"})
	}
	if err := count(); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("gRPC with the key after 10 wrong keys on HTTP: %v, want ResourceExhausted", err)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// TestDashboardSignOutButton: with a key, the dashboard page has a sign-out
// button posting to /dashboard/logout; without one, none.
func TestDashboardSignOutButton(t *testing.T) {
	tw := ttTower(t)
	for _, key := range []string{"", "k"} {
		h := newHTTPHandler(tw, httpConfig{apiKey: key})
		req := httptest.NewRequest("GET", "/dashboard/", nil)
		req.Host = "127.0.0.1:9998"
		if key != "" {
			req.Header.Set("X-API-Key", key)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		has := strings.Contains(rec.Body.String(), `id="signout"`) && strings.Contains(rec.Body.String(), `data-action="logout"`)
		if rec.Code != 200 || has != (key != "") {
			t.Errorf("key %q: %d, sign-out button %v", key, rec.Code, has)
		}
	}
}
