package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/firetower-go/firetower"
)

// czPage opens a websocket to the tower, subscribes to /z, publishes two
// large messages (Chromium compresses them) and keeps what arrives.
const czPage = `<!doctype html><meta charset="utf-8"><title>compression</title>
<script>
window.got = [];
window.ext = null;
window.wsErr = null;
const big = (n) => JSON.stringify({rows: Array.from({length: n}, (_, i) => ({symbol: "EURUSD", bid: 1.08 + i / 1e4, seq: i}))});
window.sent = [big(40), big(60)];
const ws = new WebSocket(%q);
ws.onerror = () => { window.wsErr = 'error'; };
ws.onopen = () => {
  window.ext = ws.extensions;
  ws.send(JSON.stringify({type: "subscribe", id: "s", topics: ["/z"]}));
};
ws.onmessage = (e) => {
  const m = JSON.parse(e.data);
  if (m.type === "ack" && m.id === "s") {
    for (const d of window.sent) ws.send('{"type":"publish","topic":"/z","data":' + d + '}');
  } else if (m.type === "publish") {
    window.got.push(JSON.stringify(m.data));
  }
};
</script>`

// TestCompressionChromium: headless Chromium offers permessage-deflate, the
// Tower accepts it, Chromium's compressed publishes are inflated and the
// compressed deliveries arrive intact.
func TestCompressionChromium(t *testing.T) {
	chrome := chromiumPath()
	if chrome == "" {
		t.Skip("chromium not installed: apt-get install chromium")
	}
	page := httptest.NewServer(nil) // its handler is set once the tower's address is known
	t.Cleanup(page.Close)
	tw, err := firetower.New(firetower.WithAddr("127.0.0.1:0"), firetower.WithCompression(1, 64),
		firetower.WithAllowedOrigins(page.URL), firetower.WithStatsInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		_ = tw.Shutdown(ctx)
	})
	html := fmt.Sprintf(czPage, "ws://"+tw.Addr()+"/ws")
	page.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(html))
	})

	browser := newBrowser(t)
	if err := chromedp.Do(browser, chromedp.Navigate(page.URL+"/")); err != nil {
		t.Fatalf("loading the page: %v", err)
	}
	wait := func(what, expr string) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(browser, waitTimeout)
		defer wcancel()
		if err := chromedp.Do(wctx, chromedp.Poll[chromedp.Void](expr,
			chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(waitTimeout))); err != nil {
			state, _ := chromedp.Run(browser, chromedp.Evaluate[string](`JSON.stringify({ext: window.ext, err: window.wsErr, got: window.got.length})`))
			t.Fatalf("waiting until %s: %v; page: %s", what, err, state)
		}
	}
	wait("the websocket opened", `window.ext !== null`)
	ext, err := chromedp.Run(browser, chromedp.Evaluate[string](`window.ext`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ext, "permessage-deflate") || !strings.Contains(ext, "server_no_context_takeover") {
		t.Fatalf("WebSocket.extensions = %q, want permessage-deflate with server_no_context_takeover", ext)
	}
	wait("both deliveries arrived", `window.got.length === 2`)
	intact, err := chromedp.Run(browser, chromedp.Evaluate[bool](`window.got.every((g, i) => g === window.sent[i])`))
	if err != nil || !intact {
		t.Fatalf("the deliveries differ from what was published (%v)", err)
	}
	s := tw.Stats().Transport.Compression
	if s.Conns != 1 || s.Frames < 2 || s.FrameBytesOut*2 > s.FrameBytesIn {
		t.Fatalf("compression stats %+v: want one compressing connection and deliveries compressed to under half", s)
	}
	if s.Inflated < 2 {
		t.Fatalf("compression stats %+v: Chromium's publishes were not compressed (Inflated < 2)", s)
	}
	t.Logf("Chromium negotiated %q; stats %+v", ext, s)
}
