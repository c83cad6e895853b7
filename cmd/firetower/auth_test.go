package main

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestDashboardAndMetricsNeedKey: with an API key set (required off
// loopback), /metrics and the dashboard refuse requests without it; a
// browser signs in to the dashboard with a form that sets a session
// cookie.
func TestDashboardAndMetricsNeedKey(t *testing.T) {
	const key = "s3cret-key"
	lines, stop := mtRun(t, "serve", "--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "error", "--api-key", key)
	mtLine(t, lines, "websocket listening on ws://")
	base := "http://" + mtLine(t, lines, "http listening on http://")
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path string, hdr map[string]string, form url.Values) (*http.Response, string) {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequest(method, base+path, body)
		if err != nil {
			t.Fatal(err)
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	check := func(what string, resp *http.Response, body string, status int, contains string) {
		t.Helper()
		if resp.StatusCode != status || !strings.Contains(body, contains) {
			t.Errorf("%s: %d %q, want %d containing %q", what, resp.StatusCode, body, status, contains)
		}
	}
	bearer := map[string]string{"Authorization": "Bearer " + key}

	r, b := do("GET", "/metrics", nil, nil)
	check("metrics without key", r, b, 401, `"code":"unauthorized"`)
	r, b = do("GET", "/metrics", map[string]string{"Authorization": "Bearer wrong"}, nil)
	check("metrics with a wrong key", r, b, 401, `"code":"unauthorized"`)
	r, b = do("GET", "/metrics", bearer, nil)
	check("metrics with the key", r, b, 200, "firetower_connections")
	r, b = do("GET", "/metrics", map[string]string{"X-API-Key": key}, nil)
	check("metrics with X-API-Key", r, b, 200, "firetower_connections")

	r, b = do("GET", "/dashboard", nil, nil)
	check("dashboard without key", r, b, 401, `action="/dashboard/login"`)
	r, b = do("GET", "/dashboard/app.js", nil, nil)
	check("dashboard asset without key", r, b, 401, `"code":"unauthorized"`)
	r, b = do("GET", "/dashboard/", bearer, nil)
	check("dashboard with the key in a header", r, b, 200, "<html")

	r, b = do("POST", "/dashboard/login", nil, url.Values{"key": {"wrong"}})
	check("sign-in with a wrong key", r, b, 401, "wrong key")
	if len(r.Cookies()) != 0 {
		t.Errorf("a wrong key got a cookie: %v", r.Cookies())
	}
	r, _ = do("POST", "/dashboard/login", nil, url.Values{"key": {key}})
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/dashboard/" {
		t.Fatalf("sign-in: %d Location %q, want 303 to /dashboard/", r.StatusCode, r.Header.Get("Location"))
	}
	var session *http.Cookie
	for _, c := range r.Cookies() {
		if c.Name == sessionCookie {
			session = c
		}
	}
	if session == nil || !session.HttpOnly || session.Value == key || strings.Contains(session.Value, key) {
		t.Fatalf("session cookie %+v: want an HttpOnly cookie that does not hold the key", session)
	}
	cookie := map[string]string{"Cookie": session.Name + "=" + session.Value}
	r, b = do("GET", "/dashboard/", cookie, nil)
	check("dashboard with the session", r, b, 200, "<html")
	r, b = do("GET", "/dashboard/app.js", cookie, nil)
	check("dashboard asset with the session", r, b, 200, "")
	r, b = do("GET", "/dashboard/", map[string]string{"Cookie": session.Name + "=forged"}, nil)
	check("dashboard with a forged session", r, b, 401, "login")

	// The push API keeps taking only the key.
	r, b = do("POST", "/api/v1/publish", nil, nil)
	check("API without key", r, b, 401, `"code":"unauthorized"`)
	// Unprotected: health and the demo.
	r, b = do("GET", "/healthz", nil, nil)
	check("healthz", r, b, 200, "ok")
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
}
