// Package e2e drives the firetower binary and its chat demo page in headless
// Chromium. It is a module of its own so that the root module does not depend
// on chromedp.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

const (
	defaultRoom = "/chat/world"
	waitTimeout = 20 * time.Second
)

var (
	wsLineRE   = regexp.MustCompile(`websocket listening on (ws://\S+)`)
	httpLineRE = regexp.MustCompile(`http listening on (http://\S+)`)
)

// chromiumPath returns the Chromium binary to drive, or "" when there is none.
func chromiumPath() string {
	if fi, err := os.Stat("/usr/bin/chromium"); err == nil && !fi.IsDir() {
		return "/usr/bin/chromium"
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	return ""
}

// lockedBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// listenWatcher is the server's stdout: it keeps everything and reports the
// two "listening on" lines as they are printed.
type listenWatcher struct {
	lockedBuffer
	partial []byte // guarded by lockedBuffer.mu
	ws      chan string
	http    chan string
}

func newListenWatcher() *listenWatcher {
	return &listenWatcher{ws: make(chan string, 1), http: make(chan string, 1)}
}

func (w *listenWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		line := string(w.partial[:i])
		w.partial = w.partial[i+1:]
		if m := wsLineRE.FindStringSubmatch(line); m != nil {
			select {
			case w.ws <- m[1]:
			default:
			}
		}
		if m := httpLineRE.FindStringSubmatch(line); m != nil {
			select {
			case w.http <- m[1]:
			default:
			}
		}
	}
	return len(p), nil
}

type server struct {
	cmd     *exec.Cmd
	stdout  *listenWatcher
	stderr  *lockedBuffer
	done    chan struct{}
	waitErr error // set before done is closed
	wsURL   string
	httpURL string
}

func (s *server) output() string {
	return fmt.Sprintf("--- server stdout ---\n%s--- server stderr ---\n%s", s.stdout.String(), s.stderr.String())
}

// buildServer compiles cmd/firetower of the enclosing module, or returns the
// binary named by $FIRETOWER_BIN (to test a prebuilt binary).
func buildServer(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("FIRETOWER_BIN"); bin != "" {
		t.Logf("using FIRETOWER_BIN=%s", bin)
		return bin
	}
	if _, err := os.Stat(filepath.Join("..", "cmd", "firetower")); err != nil {
		t.Fatalf("../cmd/firetower is missing: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "firetower")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Built from the root module so that its own go.mod and go.sum apply.
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/firetower")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/firetower: %v\n%s", err, out)
	}
	return bin
}

// newBrowser starts headless Chromium for one test (skipping the test where
// there is none), with the flags every browser test uses and extra ones of
// its own, and returns its browser context. Tabs opened from it stay at full
// speed in the background (several are live at once).
func newBrowser(t *testing.T, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	chrome := chromiumPath()
	if chrome == "" {
		t.Skip("chromium not installed: apt-get install chromium")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	browserLog := &lockedBuffer{}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, append([]chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chrome),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.CombinedOutput(browserLog),
	}, extra...)...)
	t.Cleanup(cancelAlloc) // runs after the tabs' cleanups, before TempDir's removal
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("starting %s: %v\n%s", chrome, err, browserLog.String())
	}
	return browser
}

// startServer runs `firetower serve` on the given addresses and waits for it
// to print both listen addresses.
func startServer(t *testing.T, bin, wsAddr, httpAddr string) *server {
	t.Helper()
	s := startServerArgs(t, bin, "serve", "--ws-addr", wsAddr, "--http-addr", httpAddr)
	t.Logf("server: websocket %s, http %s", s.wsURL, s.httpURL)
	return s
}

// terminate sends SIGTERM and expects a graceful exit with status 0.
func (s *server) terminate(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("sending SIGTERM: %v", err)
	}
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("server still running 30s after SIGTERM")
	}
	if err := s.waitErr; err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("server after SIGTERM: %v (exit code %d), want exit 0", err, ee.ExitCode())
		}
		t.Fatalf("server after SIGTERM: %v", err)
	}
}

// hostPort returns the host:port of a ws:// or http:// address.
func hostPort(t *testing.T, addr string) string {
	t.Helper()
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" {
		t.Fatalf("bad address %q: %v", addr, err)
	}
	return u.Host
}

// checkHTTP verifies what the page depends on before a browser is involved:
// /healthz and a /config.json that points at the websocket listener.
func checkHTTP(t *testing.T, s *server) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}

	resp, err := client.Get(s.httpURL + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /healthz: status %d, want 200", resp.StatusCode)
	}

	resp, err = client.Get(s.httpURL + "/config.json")
	if err != nil {
		t.Fatalf("GET /config.json: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /config.json: status %d, err %v, body %q", resp.StatusCode, err, body)
	}
	var cfg struct {
		WSPort json.Number `json:"ws_port"`
		WSPath string      `json:"ws_path"`
	}
	if err := json.Unmarshal(body, &cfg); err != nil {
		t.Fatalf("GET /config.json: %v in %q", err, body)
	}
	u, err := url.Parse(s.wsURL)
	if err != nil {
		t.Fatalf("websocket address %q: %v", s.wsURL, err)
	}
	_, port, _ := net.SplitHostPort(u.Host)
	if cfg.WSPort.String() != port || cfg.WSPath != u.Path {
		t.Fatalf("/config.json = %s; want ws_port %s and ws_path %q to match %s", body, port, u.Path, s.wsURL)
	}
}

// topicCount asks the push API how many subscribers a topic has.
func topicCount(t *testing.T, s *server, topic string) int {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(s.httpURL + "/api/v1/topics/" + url.PathEscape(topic))
	if err != nil {
		t.Fatalf("GET /api/v1/topics/%s: %v", topic, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r struct {
		Topic string `json:"topic"`
		Count int    `json:"count"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &r) != nil || r.Topic != topic {
		t.Fatalf("GET /api/v1/topics/%s: status %d, body %q", url.PathEscape(topic), resp.StatusCode, body)
	}
	return r.Count
}

// page is one browser tab in a browser context of its own.
type page struct {
	name    string
	ctx     context.Context
	console *lockedBuffer
}

func openPage(t *testing.T, browser context.Context, name, addr string) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	p := &page{name: name, ctx: ctx, console: &lockedBuffer{}}
	if err := chromedp.Do(ctx); err != nil { // opens the tab
		t.Fatalf("%s: opening a tab: %v", name, err)
	}
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			fmt.Fprintf(p.console, "%s\n", m)
		}
	}()
	if err := chromedp.Do(ctx, chromedp.Navigate(addr+"/")); err != nil {
		t.Fatalf("%s: loading %s/: %v", name, addr, err)
	}
	return p
}

// state describes what the page shows, for failure messages.
func (p *page) state() string {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
		status: document.getElementById('status').textContent,
		online: document.getElementById('online').textContent,
		room: document.getElementById('current-room').textContent,
		sendDisabled: document.getElementById('send').disabled,
		client: window.chatClient ? window.chatClient.state + ' ' + Array.from(window.chatClient.topics).join(',') : null,
		list: Array.from(document.querySelectorAll('#messages li'), e => e.className + ': ' + e.textContent)
	}, null, 1)`))
	if err != nil {
		s = "(page state unavailable: " + err.Error() + ")"
	}
	return fmt.Sprintf("page %s state: %s\npage %s console:\n%s", p.name, s, p.name, p.console.String())
}

// do runs actions on the page, each call bounded by waitTimeout.
func (p *page) do(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %s: %v\n%s", p.name, what, err, p.state())
	}
}

// waitJS polls a JavaScript predicate on the page until it is true.
func (p *page) waitJS(t *testing.T, what, expr string) {
	t.Helper()
	p.do(t, "waiting until "+what, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(50*time.Millisecond),
		chromedp.WithPollingTimeout(waitTimeout)))
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func (p *page) waitText(t *testing.T, id, want string) {
	t.Helper()
	p.waitJS(t, fmt.Sprintf("#%s reads %q", id, want),
		fmt.Sprintf(`document.getElementById(%s).textContent.trim() === %s`, jsString(id), jsString(want)))
}

// waitMessage waits for a visible chat message from name with text in
// #messages.
func (p *page) waitMessage(t *testing.T, name, text string) {
	t.Helper()
	p.waitJS(t, fmt.Sprintf("a message %q from %q shows", text, name),
		fmt.Sprintf(`Array.from(document.querySelectorAll('#messages .msg')).some(e =>
			e.textContent.includes(%s) && e.textContent.includes(%s) && e.getClientRects().length > 0)`,
			jsString(name), jsString(text)))
}

// joined waits until the page is connected and its subscription to room is
// acknowledged (the page enables #send only then).
func (p *page) joined(t *testing.T, room string) {
	t.Helper()
	p.waitText(t, "status", "connected")
	p.waitText(t, "current-room", room)
	p.do(t, "waiting for #send to be enabled", chromedp.WaitEnabled(chromedp.ID("send")))
}

// clearInput empties an input. (chromedp's SetValue cannot set "": it reads
// the empty result back as a failure.)
func clearInput(id string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		ok, err := chromedp.Evaluate[bool](fmt.Sprintf(
			`(el => !!el && (el.value = '', true))(document.getElementById(%s))`, jsString(id)))(ctx, tg)
		if err == nil && !ok {
			err = fmt.Errorf("no element #%s", id)
		}
		return err
	})
}

func (p *page) setName(t *testing.T, name string) {
	t.Helper()
	p.do(t, "typing a name",
		chromedp.WaitVisible(chromedp.ID("name")),
		clearInput("name"),
		chromedp.SendKeys(chromedp.ID("name"), name))
}

func (p *page) say(t *testing.T, text string, withEnter bool) {
	t.Helper()
	if withEnter {
		p.do(t, "sending with Enter", chromedp.SendKeys(chromedp.ID("text"), text+kb.Enter))
	} else {
		p.do(t, "sending with the button",
			chromedp.SendKeys(chromedp.ID("text"), text),
			chromedp.Click(chromedp.ID("send")))
	}
	p.waitJS(t, "the input is cleared after sending", `document.getElementById('text').value === ''`)
}

func (p *page) switchRoom(t *testing.T, typed string) {
	t.Helper()
	p.do(t, "switching room to "+typed,
		clearInput("room"),
		chromedp.SendKeys(chromedp.ID("room"), typed),
		chromedp.Click(chromedp.ID("join")))
}

func (p *page) msgCount(t *testing.T) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#messages .msg').length`))
	if err != nil {
		t.Fatalf("%s: counting messages: %v", p.name, err)
	}
	return n
}

// pushPublish publishes data to topic through the push API, as a backend
// would: no page takes part.
func pushPublish(t *testing.T, s *server, topic string, data any) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"topic": topic, "data": data})
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Post(s.httpURL+"/api/v1/publish", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST /api/v1/publish: %v", err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /api/v1/publish: status %d, body %q", resp.StatusCode, got)
	}
}

// waitTopicCount polls the push API until topic has want subscribers.
func waitTopicCount(t *testing.T, s *server, topic string, want int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		n := topicCount(t, s, topic)
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /api/v1/topics/%s: count %d after %v, want %d", url.PathEscape(topic), n, waitTimeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkUsesLibrary verifies that the chat demo is built on firetower.js: the
// page loads firetower.js before app.js, its client is a Firetower, and
// app.js opens no WebSocket of its own.
func checkUsesLibrary(t *testing.T, s *server, p *page) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	for _, f := range []struct{ path, has, hasNot string }{
		{"/firetower.js", "Firetower", ""},
		{"/app.js", "new Firetower(", "new WebSocket"},
	} {
		resp, err := client.Get(s.httpURL + f.path)
		if err != nil {
			t.Fatalf("GET %s: %v", f.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(f.has)) {
			t.Fatalf("GET %s: status %d, want 200 and a body with %q", f.path, resp.StatusCode, f.has)
		}
		if f.hasNot != "" && bytes.Contains(body, []byte(f.hasNot)) {
			t.Fatalf("GET %s: the page's own code mentions %q; the socket belongs to firetower.js", f.path, f.hasNot)
		}
	}
	p.waitJS(t, "the page runs on firetower.js", `(() => {
		const src = Array.from(document.scripts, s => new URL(s.src, location.href).pathname);
		const lib = src.indexOf('/firetower.js'), app = src.indexOf('/app.js');
		return lib >= 0 && app > lib && typeof window.Firetower === 'function' &&
			window.chatClient instanceof window.Firetower;
	})()`)
}

// watchResubscribe records, from now on, the frames the page sends, the calls
// the page makes to Firetower.prototype.subscribe, and its fetches. After a
// reconnect, checkResubscribed tells who subscribed the new socket.
func (p *page) watchResubscribe(t *testing.T) {
	t.Helper()
	p.do(t, "installing the frame recorder", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		ok, err := chromedp.Evaluate[bool](`(() => {
			if (typeof window.Firetower !== 'function') return false;
			const rec = window.__e2e = { frames: [], pageSubscribes: 0, fetches: [] };
			const send = WebSocket.prototype.send;
			WebSocket.prototype.send = function (d) {
				try { rec.frames.push(JSON.parse(d)); } catch (e) { rec.frames.push(String(d)); }
				return send.call(this, d);
			};
			const sub = Firetower.prototype.subscribe;
			Firetower.prototype.subscribe = function () { rec.pageSubscribes++; return sub.apply(this, arguments); };
			const f = window.fetch;
			window.fetch = function (u) { rec.fetches.push(String(u)); return f.apply(this, arguments); };
			return true;
		})()`)(ctx, tg)
		if err == nil && !ok {
			err = errors.New("window.Firetower is not defined")
		}
		return err
	}))
}

// checkResubscribed verifies that, since watchResubscribe, the new socket was
// subscribed to room by firetower.js itself (a subscribe frame went out while
// the page called subscribe() not once), and that the page then refreshed
// its count with GET /api/v1/topics/<room>.
func (p *page) checkResubscribed(t *testing.T, room string) {
	t.Helper()
	p.waitJS(t, "firetower.js resubscribed to "+room+" and the page fetched the count", fmt.Sprintf(`(() => {
		const rec = window.__e2e, room = %s;
		return !!rec && rec.pageSubscribes === 0 &&
			rec.frames.some(f => f && f.type === 'subscribe' && Array.isArray(f.topics) && f.topics.includes(room)) &&
			rec.fetches.some(u => new URL(u, location.href).pathname === '/api/v1/topics/' + encodeURIComponent(room)) &&
			window.chatClient.state === 'open' && window.chatClient.topics.has(room);
	})()`, jsString(room)))
}

func TestChatTwoBrowsers(t *testing.T) {
	chrome := chromiumPath()
	if chrome == "" {
		t.Skip("chromium not installed: apt-get install chromium")
	}

	bin := buildServer(t)
	srv := startServer(t, bin, "127.0.0.1:0", "127.0.0.1:0")
	checkHTTP(t, srv)

	browser := newBrowser(t)

	stamp := strconv.FormatInt(time.Now().UnixNano(), 36)
	alice := openPage(t, browser, "A", srv.httpURL)
	bob := openPage(t, browser, "B", srv.httpURL)
	checkUsesLibrary(t, srv, alice)
	alice.setName(t, "alice")
	bob.setName(t, "bob")

	// Both join the default room, and each sees the other in the count.
	for _, p := range []*page{alice, bob} {
		p.joined(t, defaultRoom)
	}
	for _, p := range []*page{alice, bob} {
		p.waitText(t, "online", "2")
	}
	if n := topicCount(t, srv, defaultRoom); n != 2 {
		t.Fatalf("GET /api/v1/topics/%s: count %d, want 2", defaultRoom, n)
	}

	// A message from A reaches B, and A too (A is a subscriber).
	hello := "hello from alice " + stamp
	alice.say(t, hello, false)
	bob.waitMessage(t, "alice", hello)
	alice.waitMessage(t, "alice", hello)

	// And the other way round, sent with the Enter key.
	reply := "hi alice, bob here " + stamp
	bob.say(t, reply, true)
	alice.waitMessage(t, "bob", reply)

	// B moves to another room: its list is cleared and both counts drop to 1.
	other := "/chat/e2e-" + stamp
	bob.switchRoom(t, other)
	bob.joined(t, other)
	bob.waitText(t, "online", "1")
	alice.waitText(t, "online", "1")
	if n := bob.msgCount(t); n != 0 {
		t.Fatalf("B: %d chat messages left after switching rooms, want 0\n%s", n, bob.state())
	}
	if n := topicCount(t, srv, defaultRoom); n != 1 {
		t.Fatalf("GET /api/v1/topics/%s after B left: count %d, want 1", defaultRoom, n)
	}

	// B comes back, typing the bare room name; both read 2 again and talk.
	bob.switchRoom(t, "world")
	bob.joined(t, defaultRoom)
	for _, p := range []*page{alice, bob} {
		p.waitText(t, "online", "2")
	}
	back := "welcome back " + stamp
	alice.say(t, back, true)
	bob.waitMessage(t, "alice", back)

	// SIGTERM: the server shuts down gracefully and exits 0; the pages notice.
	for _, p := range []*page{alice, bob} {
		p.watchResubscribe(t)
	}
	srv.terminate(t)
	for _, p := range []*page{alice, bob} {
		p.waitText(t, "status", "disconnected")
		p.waitText(t, "online", "")
		p.waitJS(t, "#send is disabled", `document.getElementById('send').disabled`)
	}
	t.Logf("after shutdown, %s", alice.state())

	// A server on the same addresses: firetower.js reconnects both pages and
	// subscribes them again by itself; the next message, published by the
	// push API with no page doing anything, reaches both.
	srv2 := startServer(t, bin, hostPort(t, srv.wsURL), hostPort(t, srv.httpURL))
	if srv2.wsURL != srv.wsURL || srv2.httpURL != srv.httpURL {
		t.Fatalf("restarted server listens on %s and %s, want %s and %s", srv2.wsURL, srv2.httpURL, srv.wsURL, srv.httpURL)
	}
	waitTopicCount(t, srv2, defaultRoom, 2)
	pushed := "pushed after the restart " + stamp
	pushPublish(t, srv2, defaultRoom, map[string]string{"kind": "chat", "name": "backend", "text": pushed})
	for _, p := range []*page{alice, bob} {
		p.waitMessage(t, "backend", pushed)
	}
	for _, p := range []*page{alice, bob} {
		p.joined(t, defaultRoom)
		p.checkResubscribed(t, defaultRoom)
	}
	for _, p := range []*page{alice, bob} {
		p.waitText(t, "online", "2")
	}

	// And they chat on.
	again := "still here " + stamp
	bob.say(t, again, false)
	alice.waitMessage(t, "bob", again)
	srv2.terminate(t)
}
