package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/manager"
)

// mtRun runs the command in-process and returns the lines it prints, as
// they come, and a function that stops it (as a signal would) and returns
// its exit code.
func mtRun(t *testing.T, args ...string) (<-chan string, func() int) {
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
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, args, pw, io.Discard)
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
	return lines, stop
}

func mtLine(t *testing.T, lines <-chan string, prefix string) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("command ended before printing %q", prefix)
			}
			if strings.HasPrefix(l, prefix) {
				return strings.TrimPrefix(l, prefix)
			}
		case <-timeout:
			t.Fatalf("no line %q", prefix)
		}
	}
}

func mtGet(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServeHTTPSurface(t *testing.T) {
	lines, stop := mtRun(t, "serve", "--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "error")
	ws := mtLine(t, lines, "websocket listening on ws://")
	if !strings.HasSuffix(ws, "/ws") {
		t.Fatalf("websocket line ends %q, want /ws", ws)
	}
	base := "http://" + mtLine(t, lines, "http listening on http://")
	for _, tc := range []struct {
		method, path, body string
		status             int
		contains           string
	}{
		{"GET", "/healthz", "", 200, "ok"},
		{"GET", "/", "", 200, "<html"},
		{"GET", "/config.json", "", 200, `"ws_path":"/ws"`},
		{"POST", "/api/v1/publish", `{"topic":"/chat/world","data":{"x":1}}`, 200, `"ok":true`},
		{"GET", "/api/v1/topics/%2Fchat%2Fworld", "", 200, `"count":0`},
		{"POST", "/api/v1/publish", `{"topic":"","data":1}`, 400, `"code":"invalid_topic"`},
		{"POST", "/", "", 405, "method_not_allowed"},
		{"GET", "/dashboard", "", 200, "<html"},
		{"GET", "/metrics", "", 200, "firetower_connections"},
		{"GET", "/firetower.js", "", 200, "Firetower"},
	} {
		status, body := mtGet(t, tc.method, base+tc.path, tc.body)
		if status != tc.status || !strings.Contains(body, tc.contains) {
			t.Errorf("%s %s: %d %q, want %d containing %q", tc.method, tc.path, status, body, tc.status, tc.contains)
		}
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d after the signal, want 0", code)
	}
}

func TestServeRefusesOpenAPIWithoutKey(t *testing.T) {
	if code := run(context.Background(), []string{"serve", "--http-addr", "0.0.0.0:0", "--api-key", ""}, io.Discard, io.Discard); code != 2 {
		t.Fatalf("exit code %d, want 2 for a non-loopback HTTP address without an API key", code)
	}
}

func TestManagerCommand(t *testing.T) {
	lines, stop := mtRun(t, "manager", "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "error")
	mtLine(t, lines, "manager listening on ")
	base := "http://" + mtLine(t, lines, "http listening on http://")
	if status, body := mtGet(t, "GET", base+"/healthz", ""); status != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("manager /healthz: %d %q", status, body)
	}
	if code := stop(); code != 0 {
		t.Fatalf("manager exit code %d, want 0", code)
	}
}

func TestUnknownCommand(t *testing.T) {
	if code := run(context.Background(), []string{"frobnicate"}, io.Discard, io.Discard); code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
}

func TestManagerPushAPI(t *testing.T) {
	lines, stop := mtRun(t, "manager", "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "error")
	maddr := mtLine(t, lines, "manager listening on ")
	base := "http://" + mtLine(t, lines, "http listening on http://")
	defer func() {
		if code := stop(); code != 0 {
			t.Errorf("manager exit code %d", code)
		}
	}()
	mc, err := manager.NewClient(manager.ClientConfig{Addrs: []string{maddr}})
	if err != nil {
		t.Fatal(err)
	}
	tw, err := firetower.New(firetower.WithAddr("127.0.0.1:0"), firetower.WithNodeID(7), firetower.WithManager(mc))
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer tw.Shutdown(context.Background())
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+tw.Addr()+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"subscribe","topic":"news","id":1}`)); err != nil {
		t.Fatal(err)
	}
	if _, p, err := ws.ReadMessage(); err != nil || !strings.Contains(string(p), `"ack"`) {
		t.Fatalf("subscribe: %s %v", p, err)
	}
	for _, tc := range []struct {
		method, path, body string
		status             int
		contains           string
	}{
		{"GET", "/api/v1/nodes", "", 200, `"node":7`},
		{"GET", "/api/v1/topics", "", 200, `{"topic":"news","count":1}`},
		{"GET", "/api/v1/topics/news", "", 200, `"count":1`},
		{"GET", "/api/v1/topics/bad%20topic", "", 400, "invalid_topic"},
		{"POST", "/api/v1/publish", `{"topic":"news","data":{"from":"manager"}}`, 200, `"gateways":1`},
		{"POST", "/api/v1/publish", `{"topic":"","data":1}`, 400, "invalid_topic"},
		{"POST", "/api/v1/publish", `not json`, 400, "bad_request"},
	} {
		status, body := mtGet(t, tc.method, base+tc.path, tc.body)
		if status != tc.status || !strings.Contains(body, tc.contains) {
			t.Errorf("%s %s: %d %q, want %d containing %q", tc.method, tc.path, status, body, tc.status, tc.contains)
		}
	}
	_, p, err := ws.ReadMessage()
	if err != nil || string(p) != `{"type":"publish","topic":"news","data":{"from":"manager"}}` {
		t.Fatalf("delivery of the manager's publish: %s %v", p, err)
	}
}
