package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// v04Page is a chat page written the way firetower v0.4's fireclient.html
// was: a bare WebSocket, requests with a comma-separated "topic" and an
// empty "data", no ids, raw deliveries, and the online count taken from
// the server's {"type":"onSubscribe","data":N} and
// {"type":"onUnsubscribe","data":N} messages. %s is the websocket URL.
const v04Page = `<!DOCTYPE html>
<html>
<head><meta charset="utf-8"><title>firetower v0.4 chat</title></head>
<body>
<p>online: <span id="online">-</span></p>
<ul id="messages"></ul>
<script>
var ws = new WebSocket("%s");
var topic = "/chat/world";
ws.onopen = function () {
  ws.send(JSON.stringify({ type: "subscribe", topic: topic, data: "" }));
};
ws.onmessage = function (e) {
  var json = JSON.parse(e.data);
  switch (json.type) {
    case "onSubscribe":
    case "onUnsubscribe":
      document.getElementById("online").innerText = json.data;
      break;
    default:
      var li = document.createElement("li");
      li.innerText = e.data;
      document.getElementById("messages").appendChild(li);
  }
};
</script>
</body>
</html>
`

// startServerArgs runs the firetower binary with args and waits for it to
// print both listen lines (startServer: `serve` on two addresses).
func startServerArgs(t *testing.T, bin string, args ...string) *server {
	t.Helper()
	s := &server{stdout: newListenWatcher(), stderr: &lockedBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout = s.stdout
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			_ = s.cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			t.Logf("server output:\n%s", s.output())
		}
	})
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	for s.wsURL == "" || s.httpURL == "" {
		select {
		case s.wsURL = <-s.stdout.ws:
		case s.httpURL = <-s.stdout.http:
		case <-s.done:
			t.Fatalf("server exited (%v) before printing both listen lines", s.waitErr)
		case <-timer.C:
			t.Fatalf("server printed no `websocket listening on ws://…` and `http listening on http://…` lines on stdout within 30s (got ws=%q http=%q)", s.wsURL, s.httpURL)
		}
	}
	return s
}

// evalUntil evaluates a JavaScript predicate on the page every 50ms until
// it is true, for at most waitTimeout.
func (p *page) evalUntil(t *testing.T, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			html, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string](`document.body.innerText`))
			t.Fatalf("%s: not %s within %v (last error %v); the page shows:\n%s", p.name, what, waitTimeout, err, html)
		}
		time.Sleep(50 * time.Millisecond) // polling the page for a condition
	}
}

// online waits until the page's online count reads want.
func (p *page) online(t *testing.T, want string) {
	t.Helper()
	p.evalUntil(t, "showing "+want+" online", fmt.Sprintf(`document.getElementById("online").innerText.trim() === %s`, jsString(want)))
}

// TestPresenceV04PageLegacy: the unmodified v0.4 chat page, open in two
// Chromium tabs against `firetower serve --legacy-delivery`, shows an
// online count of 2 in both, and 1 in the first once the second is gone;
// chat messages still arrive raw, as v0.4 sent them.
func TestPresenceV04PageLegacy(t *testing.T) {
	chrome := chromiumPath()
	if chrome == "" {
		t.Skip("chromium not installed: apt-get install chromium")
	}
	// The page is served from an origin of its own, as an app embedding
	// the v0.4 client would be; the server allows it.
	var wsURL string
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, v04Page, wsURL)
	}))
	t.Cleanup(site.Close)

	bin := buildServer(t)
	srv := startServerArgs(t, bin, "serve", "--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--legacy-delivery", "--allowed-origins", site.URL)
	wsURL = srv.wsURL

	browser := newBrowser(t)
	a := openPage(t, browser, "A", site.URL)
	a.online(t, "1") // the server's onSubscribe after A's subscribe
	b := openPage(t, browser, "B", site.URL)
	a.online(t, "2")
	b.online(t, "2")

	pushPublish(t, srv, defaultRoom, map[string]string{"text": "hello v0.4"})
	b.evalUntil(t, "showing the raw delivery", `Array.from(document.querySelectorAll("#messages li")).some(li => li.innerText === '{"text":"hello v0.4"}')`)

	// B leaves: its page closes the socket, as closing the tab does
	// (navigating away may keep the page, socket and all, in the
	// back/forward cache).
	if _, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`ws.close(), true`)); err != nil {
		t.Fatalf("closing B's socket: %v", err)
	}
	a.online(t, "1")
	srv.terminate(t)
}
