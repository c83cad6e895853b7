package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// waitMessageOnce waits until exactly one chat message from name with text
// shows (a message replayed and also delivered live would show twice).
func (p *page) waitMessageOnce(t *testing.T, name, text string) {
	t.Helper()
	p.waitMessage(t, name, text)
	p.waitJS(t, fmt.Sprintf("the message %q from %q shows once", text, name),
		fmt.Sprintf(`Array.from(document.querySelectorAll('#messages .msg')).filter(e =>
			e.textContent.includes(%s) && e.textContent.includes(%s)).length === 1`,
			jsString(name), jsString(text)))
}

// The demo keeps history for its rooms (serve's default): a page reloaded
// while another page sends shows, once it is back, the messages it missed,
// each once (the latest 50 on join). Connections cut by the server recover
// what was published meanwhile (firetower.js resubscribes with since). After
// a server restart the history is gone, and the page says so.
func TestChatReloadShowsMissedMessages(t *testing.T) {
	browser := newBrowser(t)
	bin := buildServer(t)
	srv := startServer(t, bin, "127.0.0.1:0", "127.0.0.1:0")
	checkHTTP(t, srv)

	stamp := strconv.FormatInt(time.Now().UnixNano(), 36)
	alice := openPage(t, browser, "A", srv.httpURL)
	bob := openPage(t, browser, "B", srv.httpURL)
	alice.setName(t, "alice")
	bob.setName(t, "bob")
	alice.joined(t, defaultRoom)
	bob.joined(t, defaultRoom)
	first := "before the reload " + stamp
	alice.say(t, first, false)
	bob.waitMessageOnce(t, "alice", first)

	// B leaves (its connection closed first: a page kept in the browser's
	// back-forward cache may keep its socket); A sends meanwhile; B loads
	// the page again.
	bob.do(t, "leaving the page", chromedp.Evaluate[chromedp.Void](`window.chatClient.close()`), chromedp.Navigate("about:blank"))
	waitTopicCount(t, srv, defaultRoom, 1)
	var missed []string
	for i := range 3 {
		m := fmt.Sprintf("missed %d %s", i, stamp)
		alice.say(t, m, true)
		alice.waitMessage(t, "alice", m)
		missed = append(missed, m)
	}
	bob.do(t, "loading the page again", chromedp.Navigate(srv.httpURL+"/"))
	bob.joined(t, defaultRoom)
	for _, m := range append([]string{first}, missed...) {
		bob.waitMessageOnce(t, "alice", m)
	}

	// A reload while A keeps sending: every message shows once, whether it
	// came in the latest 50 or live.
	var during []string
	bob.do(t, "reloading", chromedp.Evaluate[chromedp.Void](`location.reload()`))
	for i := range 5 {
		m := fmt.Sprintf("during the reload %d %s", i, stamp)
		alice.say(t, m, true)
		during = append(during, m)
	}
	bob.joined(t, defaultRoom)
	for _, m := range append(missed, during...) {
		bob.waitMessageOnce(t, "alice", m)
	}

	// The server cuts both connections; a backend publishes at once, before
	// firetower.js is back (its first reconnect waits 250 ms at least): on
	// reconnecting, each page resubscribes from its position, the server
	// replays what it missed, and the page shows it, once.
	for _, id := range presenceIDs(t, srv, defaultRoom) {
		apiPost(t, srv, "/api/v1/disconnect", map[string]any{"conn_id": id, "code": 4001, "reason": "e2e cut"})
	}
	var cut []string
	for i := range 3 {
		m := fmt.Sprintf("published while cut off %d %s", i, stamp)
		pushPublish(t, srv, defaultRoom, map[string]string{"kind": "chat", "name": "backend", "text": m})
		cut = append(cut, m)
	}
	for _, p := range []*page{alice, bob} {
		for _, m := range cut {
			p.waitMessageOnce(t, "backend", m)
		}
		p.waitJS(t, "the page recovered "+defaultRoom, fmt.Sprintf(`(() => {
			const r = window.chatClient.lastRecovery.get(%s);
			return window.chatClient.state === 'open' && !!r && r.recovered === true && !!r.since;
		})()`, jsString(defaultRoom)))
	}

	// A server restart loses the history: after reconnecting, the page says
	// that what was sent meanwhile could not be recovered.
	srv.terminate(t)
	bob.waitText(t, "status", "disconnected")
	srv2 := startServer(t, bin, hostPort(t, srv.wsURL), hostPort(t, srv.httpURL))
	bob.waitJS(t, "the page tells that history could not be recovered",
		`Array.from(document.querySelectorAll('#messages li.sys')).some(e => e.textContent.includes('could not be recovered'))`)
	bob.joined(t, defaultRoom)
	after := "after the restart " + stamp
	alice.joined(t, defaultRoom)
	alice.say(t, after, false)
	bob.waitMessageOnce(t, "alice", after)
	srv2.terminate(t)
}

// presenceIDs lists the connection ids subscribed to topic (push API).
func presenceIDs(t *testing.T, s *server, topic string) []string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(s.httpURL + "/api/v1/presence/" + url.PathEscape(topic))
	if err != nil {
		t.Fatalf("GET /api/v1/presence: %v", err)
	}
	defer resp.Body.Close()
	var r struct {
		Connections []struct {
			ID string `json:"id"`
		} `json:"connections"`
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &r) != nil || len(r.Connections) == 0 {
		t.Fatalf("GET /api/v1/presence: status %d, body %q", resp.StatusCode, body)
	}
	var ids []string
	for _, c := range r.Connections {
		ids = append(ids, c.ID)
	}
	return ids
}

// apiPost posts body as JSON to the push API and requires 200.
func apiPost(t *testing.T, s *server, path string, body any) {
	t.Helper()
	b, _ := json.Marshal(body)
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Post(s.httpURL+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: status %d, body %q", path, resp.StatusCode, got)
	}
}
