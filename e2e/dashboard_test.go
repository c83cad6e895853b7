package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/dashboard"
)

const dashWait = 20 * time.Second

// dashChromium returns the Chromium binary, or "" when there is none.
func dashChromium() string {
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// dashLog is a buffer safe for concurrent writers and readers.
type dashLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *dashLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *dashLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// dashTab is one headless Chromium tab showing the dashboard.
type dashTab struct {
	ctx     context.Context
	console *dashLog
}

// dashOpen starts a headless Chromium and loads url in a tab.
func dashOpen(t *testing.T, chrome, url string) *dashTab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	browserLog := &dashLog{}
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
		t.Fatalf("starting %s: %v\n%s", chrome, err, browserLog.String())
	}
	tabCtx, cancelTab := chromedp.NewContext(browser)
	t.Cleanup(cancelTab)
	tab := &dashTab{ctx: tabCtx, console: &dashLog{}}
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
	if err := chromedp.Do(tabCtx, chromedp.EmulateViewport(1280, 900), chromedp.Navigate(url)); err != nil {
		t.Fatalf("loading %s: %v", url, err)
	}
	return tab
}

// state describes what the page shows, for failure messages.
func (p *dashTab) state() string {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
		feed: document.getElementById('feed-state').textContent,
		connections: document.getElementById('stat-connections').textContent,
		deliveries: document.getElementById('rate-deliveries').textContent + ' (' + document.getElementById('rate-deliveries').dataset.value + ')',
		topics: Array.from(document.querySelectorAll('#topics tbody tr'), r => r.dataset.topic + ' ' + r.querySelector('.local').textContent + '/' + r.querySelector('.count').textContent),
		summary: document.getElementById('topics-summary').textContent
	}, null, 1)`))
	if err != nil {
		s = "(page state unavailable: " + err.Error() + ")"
	}
	return fmt.Sprintf("dashboard state: %s\nconsole:\n%s", s, p.console.String())
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

// typeSearch replaces the text of the topic search box.
func (p *dashTab) typeSearch(t *testing.T, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, dashWait)
	defer cancel()
	err := chromedp.Do(ctx,
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`(document.getElementById('topic-search').value = '', true)`)(ctx, tg)
			return err
		}),
		chromedp.SendKeys(chromedp.ID("topic-search"), text))
	if err != nil {
		t.Fatalf("typing %q in the search box: %v\n%s", text, err, p.state())
	}
}

func dashJS(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// dashTopicRow is a predicate: the topics table has a row for topic with
// these local and cluster counts.
func dashTopicRow(topic string, local, count int) string {
	return fmt.Sprintf(`Array.from(document.querySelectorAll('#topics tbody tr')).some(r =>
		r.dataset.topic === %s && r.querySelector('.local').textContent === %s && r.querySelector('.count').textContent === %s)`,
		dashJS(topic), dashJS(strconv.Itoa(local)), dashJS(strconv.Itoa(count)))
}

func TestDashboardLive(t *testing.T) {
	chrome := dashChromium()
	if chrome == "" {
		t.Skip("chromium not installed (apt-get install chromium): skipping the dashboard browser test")
	}

	tw, err := firetower.New(firetower.WithAddr("127.0.0.1:0"))
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
	d := dashboard.New(tw, dashboard.Config{Interval: 250 * time.Millisecond})
	mux := http.NewServeMux()
	mux.Handle("/dashboard", d)
	mux.Handle("/dashboard/", d)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(d.Close) // ends the page's stream before srv.Close waits for it

	tab := dashOpen(t, chrome, srv.URL+"/dashboard")
	tab.until(t, "the feed is live", `document.getElementById('feed-state').dataset.state === 'live'`)
	tab.until(t, "0 connections show", `document.getElementById('stat-connections').textContent === '0'`)

	// A websocket client connects and subscribes.
	topic := "e2e/dash-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+tw.Addr()+"/ws", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	received := make(chan struct{}, 1)
	acked := make(chan struct{})
	readDone := make(chan struct{})
	t.Cleanup(func() { ws.Close(); <-readDone })
	go func() {
		defer close(readDone)
		var once sync.Once
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			var m struct{ Type string }
			_ = json.Unmarshal(b, &m)
			switch m.Type {
			case "ack":
				once.Do(func() { close(acked) })
			case "publish":
				select {
				case received <- struct{}{}:
				default:
				}
			}
		}
	}()
	sub, _ := json.Marshal(map[string]any{"type": "subscribe", "topic": topic, "id": "sub"})
	if err := ws.WriteMessage(websocket.TextMessage, sub); err != nil {
		t.Fatal(err)
	}
	select {
	case <-acked:
	case <-time.After(dashWait):
		t.Fatal("no ack for the subscription")
	}

	tab.until(t, "1 connection shows", `document.getElementById('stat-connections').textContent === '1'`)
	tab.until(t, "the topic shows with count 1", dashTopicRow(topic, 1, 1))

	// The search box filters the table.
	tab.typeSearch(t, "no-such-topic")
	tab.until(t, "the table empties for a search that matches nothing",
		`document.querySelectorAll('#topics tbody tr').length === 0 && document.getElementById('topics-summary').textContent.includes('no-such-topic')`)
	tab.typeSearch(t, topic[len("e2e/"):])
	tab.until(t, "the topic shows again for a matching search", dashTopicRow(topic, 1, 1))

	// The rate is 0 while nothing is published.
	tab.until(t, "the delivery rate reads 0", `document.getElementById('rate-deliveries').dataset.value === '0'`)

	// Publish until the page's delivery rate moves (a rate is a difference
	// between two snapshots, so the load runs until the page has seen it).
	pubCtx, stopPub := context.WithCancel(context.Background())
	pubDone := make(chan error, 1)
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			if err := tw.Publish(pubCtx, topic, fmt.Appendf(nil, `{"n":%d}`, i)); err != nil {
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
	tab.until(t, "the delivery rate is above 0",
		`(e => parseFloat(e.dataset.value) > 0 && e.textContent !== '0' && e.textContent !== '–')(document.getElementById('rate-deliveries'))`)
	tab.until(t, "the publish rate is above 0", `parseFloat(document.getElementById('rate-publishes').dataset.value) > 0`)
	stopPub()
	if err := <-pubDone; err != nil {
		t.Fatalf("Publish: %v", err)
	}
	select {
	case <-received:
	case <-time.After(dashWait):
		t.Fatal("the subscriber received none of the publishes")
	}
	tab.until(t, "the deliveries total counts them", `parseInt(document.getElementById('stat-deliveries').dataset.value, 10) > 0`)

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
	ws.Close()
	tab.until(t, "0 connections show after the client left", `document.getElementById('stat-connections').textContent === '0'`)
	tab.until(t, "the topic is gone", `document.querySelectorAll('#topics tbody tr').length === 0`)
	if strings.Contains(tab.console.String(), "bad snapshot") {
		t.Fatalf("the page logged errors:\n%s", tab.console.String())
	}
}
