package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/firetower-go/firetower/client"
)

// The dashboard of the real binary in headless Chromium: one node, then a
// cluster of a topic manager and two gateways.

const dashWait = 20 * time.Second

var (
	dashManagerRE = regexp.MustCompile(`^manager listening on (\S+)$`)
	dashWSRE      = regexp.MustCompile(`^websocket listening on (ws://\S+)$`)
	dashHTTPRE    = regexp.MustCompile(`^http listening on (http://\S+)$`)
)

// dashLines is a process's output: every line kept, waiters woken.
type dashLines struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
	notify  chan struct{}
}

func (l *dashLines) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, b...)
	added := false
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, string(l.partial[:i]))
		l.partial = l.partial[i+1:]
		added = true
	}
	if added {
		close(l.notify)
		l.notify = make(chan struct{})
	}
	return len(b), nil
}

func (l *dashLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n") + "\n" + string(l.partial)
}

// dashProc is a firetower process.
type dashProc struct {
	name     string
	cmd      *exec.Cmd
	out, err *dashLines
	done     chan struct{}
}

// dashStart runs the binary with args; it is killed when the test ends.
func dashStart(t *testing.T, bin, name string, args ...string) *dashProc {
	t.Helper()
	p := &dashProc{
		name: name, cmd: exec.Command(bin, args...), done: make(chan struct{}),
		out: &dashLines{notify: make(chan struct{})}, err: &dashLines{notify: make(chan struct{})},
	}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.err
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s (%s) stdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), p.out, p.err)
		}
	})
	return p
}

func (p *dashProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// wait returns the first submatch of re in a line of the process's stdout.
func (p *dashProc) wait(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	for {
		p.out.mu.Lock()
		for _, ln := range p.out.lines {
			if m := re.FindStringSubmatch(ln); m != nil {
				p.out.mu.Unlock()
				return m[1]
			}
		}
		ch := p.out.notify
		p.out.mu.Unlock()
		select {
		case <-ch:
		case <-p.done:
			t.Fatalf("%s exited before printing a line matching %q", p.name, re)
		case <-timer.C:
			t.Fatalf("%s printed no line matching %q within 30s", p.name, re)
		}
	}
}

// dashGateway runs `firetower serve` on the given addresses and returns it
// with its websocket and HTTP base URLs.
func dashGateway(t *testing.T, bin, name, wsAddr, httpAddr string, args ...string) (p *dashProc, wsURL, httpURL string) {
	t.Helper()
	p = dashStart(t, bin, name, append([]string{"serve", "--ws-addr", wsAddr, "--http-addr", httpAddr}, args...)...)
	return p, p.wait(t, dashWSRE), p.wait(t, dashHTTPRE)
}

// dashTab is one headless Chromium tab showing a dashboard.
type dashTab struct {
	ctx     context.Context
	console *dashLines
}

// dashOpen starts a headless Chromium and loads url in a tab of 1280x1000.
func dashOpen(t *testing.T, chrome, url string) *dashTab {
	t.Helper()
	return dashOpenSized(t, chrome, url, 1280, 1000)
}

// dashOpenSized is dashOpen with a viewport of width x height CSS pixels.
func dashOpenSized(t *testing.T, chrome, url string, width, height int64) *dashTab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	browserLog := &dashLines{notify: make(chan struct{})}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
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
	)
	t.Cleanup(cancelAlloc)
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("starting %s: %v\n%s", chrome, err, browserLog)
	}
	tabCtx, cancelTab := chromedp.NewContext(browser)
	t.Cleanup(cancelTab)
	tab := &dashTab{ctx: tabCtx, console: &dashLines{notify: make(chan struct{})}}
	if err := chromedp.Do(tabCtx); err != nil {
		t.Fatalf("opening a tab: %v", err)
	}
	go func() {
		for m, err := range chromedp.Console(tabCtx) {
			if err != nil {
				return
			}
			fmt.Fprintf(tab.console, "%s\n", m)
		}
	}()
	if err := chromedp.Do(tabCtx, chromedp.EmulateViewport(width, height), chromedp.Navigate(url)); err != nil {
		t.Fatalf("loading %s: %v", url, err)
	}
	return tab
}

// state describes what the page shows, for failure messages.
func (p *dashTab) state() string {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
		url: location.href,
		state: document.getElementById('state').dataset.state,
		error: document.getElementById('error').textContent,
		connections: document.getElementById('connections').dataset.value,
		rates: ['rate-in', 'rate-publishes', 'rate-deliveries'].map(id => id + '=' + document.getElementById(id).dataset.value),
		nodes: Array.from(document.querySelectorAll('#nodes tbody tr'), r => r.dataset.node + ' ' + r.dataset.state + ' ' + r.textContent),
		topicsFrom: document.getElementById('topics').dataset.source,
		topics: Array.from(document.querySelectorAll('#topics tbody tr'), r => r.dataset.topic + ' ' + r.querySelector('.count').dataset.value),
		summary: document.getElementById('topics-summary').textContent
	}, null, 1)`))
	if err != nil {
		s = "(page state unavailable: " + err.Error() + ")"
	}
	return fmt.Sprintf("dashboard: %s\nconsole:\n%s", s, p.console)
}

// until polls a JavaScript predicate on the page until it holds.
func (p *dashTab) until(t *testing.T, what, expr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, dashWait)
	defer cancel()
	err := chromedp.Do(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(50*time.Millisecond),
		chromedp.WithPollingTimeout(dashWait)))
	if err != nil {
		t.Fatalf("waiting until %s: %v\n%s", what, err, p.state())
	}
}

// search replaces the text of the search box ("" clears it) as typed.
func (p *dashTab) search(t *testing.T, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, dashWait)
	defer cancel()
	clear := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](`(e => (e.value = '', e.dispatchEvent(new Event('input')), true))(document.getElementById('search'))`)(ctx, tg)
		return err
	})
	steps := []chromedp.Action[chromedp.Void]{clear}
	if text != "" {
		steps = append(steps, chromedp.SendKeys(chromedp.ID("search"), text))
	}
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("typing %q in the search box: %v\n%s", text, err, p.state())
	}
}

func dashJS(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// dashTopicRow is a predicate: the topics table, from source ("live": the
// nodes' stats, "search": topics.json), has a row for topic with count.
func dashTopicRow(source, topic string, count int) string {
	return fmt.Sprintf(`document.getElementById('topics').dataset.source === %s &&
		Array.from(document.querySelectorAll('#topics tbody tr')).some(r =>
			r.dataset.topic === %s && r.querySelector('.count').dataset.value === %s)`,
		dashJS(source), dashJS(topic), dashJS(strconv.Itoa(count)))
}

// dashNode is a predicate: the nodes table shows node in state (live or gone).
func dashNode(node int, state string) string {
	return fmt.Sprintf(`(r => !!r && r.dataset.state === %s)(document.querySelector('#nodes tbody tr[data-node="%d"]'))`, dashJS(state), node)
}

// dashValue is a predicate on the data-value of the element with this id.
func dashValue(id, cond string) string {
	return fmt.Sprintf(`(v => v !== '' && (%s))(document.getElementById(%s).dataset.value)`, cond, dashJS(id))
}

// dashClient connects a websocket client, subscribed to topic, that
// counts its deliveries.
func dashClient(t *testing.T, wsURL, topic string) (*client.Client, *atomic.Int64) {
	t.Helper()
	var got atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), dashWait)
	defer cancel()
	c, err := client.Dial(ctx, wsURL, client.WithReconnect(false),
		client.WithHandler(func(string, []byte) { got.Add(1) }))
	if err != nil {
		t.Fatalf("dial %s: %v", wsURL, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Subscribe(ctx, topic); err != nil {
		t.Fatalf("subscribe %s: %v", topic, err)
	}
	return c, &got
}

func dashHTTP(t *testing.T, method, url, body string) string {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: status %d, body %q", method, url, resp.StatusCode, b)
	}
	return string(b)
}

// dashUsesLibrary checks that the page's socket belongs to firetower.js:
// the page loads firetower.js, then app.js, which opens no WebSocket of
// its own, and its client is a Firetower subscribed to the stats.
func dashUsesLibrary(t *testing.T, tab *dashTab, httpURL string) {
	t.Helper()
	if lib := dashHTTP(t, "GET", httpURL+"/dashboard/firetower.js", ""); !strings.Contains(lib, "function Firetower(") {
		t.Fatal("/dashboard/firetower.js is not firetower.js")
	}
	app := dashHTTP(t, "GET", httpURL+"/dashboard/app.js", "")
	if !strings.Contains(app, "new Firetower(") || strings.Contains(app, "new WebSocket") {
		t.Fatal("app.js does not use firetower.js, or opens a WebSocket of its own")
	}
	tab.until(t, "the page's socket is firetower.js's", `(() => {
		const src = Array.from(document.scripts, s => new URL(s.src, location.href).pathname);
		const lib = src.indexOf('/dashboard/firetower.js'), app = src.indexOf('/dashboard/app.js');
		return lib >= 0 && app > lib && typeof window.Firetower === 'function' &&
			window.dashboardClient instanceof window.Firetower && window.dashboardClient.state === 'open' &&
			window.dashboardClient.topics.has('$firetower/stats');
	})()`)
}

func dashChecks(t *testing.T) (chrome, bin string) {
	t.Helper()
	chrome = chromiumPath()
	if chrome == "" {
		t.Skip("chromium not installed (apt-get install chromium): skipping the dashboard browser test")
	}
	return chrome, buildServer(t)
}

func TestDashboardLive(t *testing.T) {
	chrome, bin := dashChecks(t)
	srv, wsURL, httpURL := dashGateway(t, bin, "firetower", "127.0.0.1:0", "127.0.0.1:0")
	tab := dashOpen(t, chrome, httpURL+"/dashboard")

	tab.until(t, "the page's socket is open", `document.getElementById('state').dataset.state === 'open'`)
	tab.until(t, "the redirect to /dashboard/ happened", `location.pathname === '/dashboard/'`)
	dashUsesLibrary(t, tab, httpURL)
	tab.until(t, "node 1 shows, live", dashNode(1, "live"))
	// The page's own socket is the only connection.
	tab.until(t, "1 connection shows", dashValue("connections", "v === '1'"))

	// A client connects and subscribes: the page shows it and the topic.
	topic := "e2e/dash-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	c, got := dashClient(t, wsURL, topic)
	tab.until(t, "2 connections show", dashValue("connections", "v === '2'"))
	tab.until(t, "the topic shows with count 1", dashTopicRow("live", topic, 1))
	tab.until(t, "node 1's row counts 2 connections",
		`document.querySelector('#nodes tbody tr[data-node="1"] .connections').dataset.value === '2'`)

	// The search asks the cluster.
	tab.search(t, "no-such-topic")
	tab.until(t, "a search that matches nothing empties the table", `document.getElementById('topics').dataset.source === 'search' &&
		document.querySelectorAll('#topics tbody tr').length === 0 && document.getElementById('topics-summary').textContent.includes('no-such-topic')`)
	tab.search(t, topic[len("e2e/"):])
	tab.until(t, "the topic shows in the search results", dashTopicRow("search", topic, 1))
	tab.search(t, "")
	tab.until(t, "the live list is back", dashTopicRow("live", topic, 1))

	// Nothing comes from clients while idle.
	tab.until(t, "the inbound rate reads 0", dashValue("rate-in", "v === '0'"))

	// Publish, through the HTTP API and from the client, until the page's
	// rates move (a rate is the difference of two stats messages, so the
	// load runs until the page has seen it).
	pubCtx, stopPub := context.WithCancel(context.Background())
	pubDone := make(chan error, 1)
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		hc := &http.Client{Timeout: 10 * time.Second}
		for i := 0; ; i++ {
			body := fmt.Sprintf(`{"topic":%q,"data":{"n":%d}}`, topic, i)
			req, _ := http.NewRequestWithContext(pubCtx, http.MethodPost, httpURL+"/api/v1/publish", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := hc.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("POST /api/v1/publish: status %d", resp.StatusCode)
				}
			}
			if err == nil && i%5 == 0 {
				err = c.Publish(pubCtx, topic, []byte(`{"from":"client"}`))
			}
			if pubCtx.Err() != nil {
				pubDone <- nil
				return
			}
			if err != nil {
				pubDone <- err
				return
			}
			select {
			case <-pubCtx.Done():
				pubDone <- nil
				return
			case <-tick.C:
			}
		}
	}()
	// The baseline of publishes and deliveries is the stats this page
	// reads: one per second.
	tab.until(t, "the publish rate moves", dashValue("rate-publishes", "parseFloat(v) > 5"))
	tab.until(t, "the delivery rate moves", dashValue("rate-deliveries", "parseFloat(v) > 5"))
	tab.until(t, "the inbound rate moves", dashValue("rate-in", "parseFloat(v) > 0"))
	tab.until(t, "the deliveries chart has drawn it", `(f => parseInt(f.querySelector('svg').dataset.points, 10) >= 2 &&
		parseFloat(f.querySelector('.legend b').dataset.value) > 5 && f.querySelector('path').getAttribute('d').includes('L'))(document.getElementById('chart-deliveries'))`)
	tab.until(t, "a latency shows", dashValue("latency-p99", "parseFloat(v) >= 0"))
	stopPub()
	if err := <-pubDone; err != nil {
		t.Fatalf("publishing: %v", err)
	}
	if got.Load() == 0 {
		t.Fatal("the client received none of the publishes")
	}

	if path := os.Getenv("FIRETOWER_DASHBOARD_SCREENSHOT"); path != "" {
		ctx, cancel := context.WithTimeout(tab.ctx, dashWait)
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		cancel()
		if err == nil {
			err = os.WriteFile(path, png, 0o644)
		}
		if err != nil {
			t.Errorf("screenshot: %v", err)
		}
	}

	// The client leaves: the page follows.
	_ = c.Close()
	tab.until(t, "1 connection shows after the client left", dashValue("connections", "v === '1'"))
	tab.until(t, "the topic is gone", `document.querySelectorAll('#topics tbody tr').length === 0`)
	dashCleanConsole(t, tab)

	// The server goes away and comes back on the same addresses: the page
	// reconnects with a token it fetches for the new attempt (one from
	// before would not do: the new process has another key).
	tab.until(t, "the fetch recorder is in", `(() => {
		const f = window.fetch, rec = window.__e2eFetches = [];
		window.fetch = function (u) { rec.push(new URL(String(u), location.href).pathname); return f.apply(this, arguments); };
		return true;
	})()`)
	srv.kill()
	tab.until(t, "the page notices", `document.getElementById('state').dataset.state === 'reconnecting'`)
	dashGateway(t, bin, "firetower again", strings.TrimPrefix(strings.TrimSuffix(wsURL, "/ws"), "ws://"), strings.TrimPrefix(httpURL, "http://"))
	tab.until(t, "the page's socket is open again", `document.getElementById('state').dataset.state === 'open' &&
		window.__e2eFetches.includes('/dashboard/token') && window.dashboardClient.topics.has('$firetower/stats')`)
	tab.until(t, "node 1 shows, live", dashNode(1, "live"))
	tab.until(t, "the new process's connection shows", dashValue("connections", "v === '1'"))
	tab.until(t, "the error is gone", `document.getElementById('error').hidden`)
}

// dashCleanConsole fails the test when the page wrote a warning or an
// error to its console, or the browser logged one for it (a
// Content-Security-Policy violation, a failed request, an exception).
func dashCleanConsole(t *testing.T, tab *dashTab) {
	t.Helper()
	// The messages arrive as events: write a marker and wait for it, so
	// that every message before it is in.
	const marker = "e2e: end of the checks"
	tab.until(t, "the marker is written", `(console.info(`+dashJS(marker)+`), true)`)
	timer := time.NewTimer(dashWait)
	defer timer.Stop()
	for {
		tab.console.mu.Lock()
		lines := slices.Clone(tab.console.lines)
		ch := tab.console.notify
		tab.console.mu.Unlock()
		if slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, marker) }) {
			for _, l := range lines {
				for _, bad := range []string{"error:", "warning:", "exception:"} {
					if strings.HasPrefix(l, bad) {
						t.Fatalf("the page's console has %q:\n%s", l, tab.console)
					}
				}
			}
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("the console marker did not arrive within %v:\n%s", dashWait, tab.console)
		}
	}
}

// TestDashboardCluster opens node 1's dashboard in a cluster of two
// gateways and a topic manager: it shows both nodes, and a topic
// subscribed on node 2.
func TestDashboardCluster(t *testing.T) {
	chrome, bin := dashChecks(t)
	mgr := dashStart(t, bin, "manager", "manager", "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	maddr := mgr.wait(t, dashManagerRE)
	_, _, http1 := dashGateway(t, bin, "gateway 1", "127.0.0.1:0", "127.0.0.1:0", "--manager", maddr, "--node-id", "1")
	g2, ws2, _ := dashGateway(t, bin, "gateway 2", "127.0.0.1:0", "127.0.0.1:0", "--manager", maddr, "--node-id", "2")

	tab := dashOpen(t, chrome, http1+"/dashboard/")
	tab.until(t, "the page's socket is open", `document.getElementById('state').dataset.state === 'open'`)
	tab.until(t, "node 1 shows, live", dashNode(1, "live"))
	tab.until(t, "node 2 shows, live", dashNode(2, "live"))
	tab.until(t, "the page marks node 1 as its own", `!!document.querySelector('#nodes tbody tr[data-node="1"] .own') &&
		!document.querySelector('#nodes tbody tr[data-node="2"] .own')`)

	topic := "e2e/on-two-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	dashClient(t, ws2, topic)
	tab.until(t, "2 connections show in the cluster", dashValue("connections", "v === '2'"))
	tab.until(t, "node 2's row counts its client", `document.querySelector('#nodes tbody tr[data-node="2"] .connections').dataset.value === '1'`)
	tab.until(t, "node 2's topic shows in the live list", dashTopicRow("live", topic, 1))
	tab.search(t, topic[len("e2e/"):])
	tab.until(t, "node 2's topic shows in the search results", dashTopicRow("search", topic, 1))
	tab.search(t, "")

	// Node 2 dies: the page shows it gone, and the totals lose it.
	g2.kill()
	tab.until(t, "node 2 shows as gone", dashNode(2, "gone"))
	tab.until(t, "1 connection shows in the cluster", dashValue("connections", "v === '1'"))
	tab.until(t, "node 1 is still live", dashNode(1, "live"))
	dashCleanConsole(t, tab)
}
