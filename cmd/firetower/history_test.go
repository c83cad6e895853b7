package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

func TestServeHistoryFlags(t *testing.T) {
	lines, stop := mtRun(t, "serve", "--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "error",
		"--history-size", "3", "--history-ttl", "5m")
	mtLine(t, lines, "websocket listening on ws://")
	base := "http://" + mtLine(t, lines, "http listening on http://")
	for i, want := range []string{`"offset":1`, `"offset":2`, `"offset":3`, `"offset":4`} {
		status, body := mtGet(t, "POST", base+"/api/v1/publish", `{"topic":"room/a","data":`+string(rune('1'+i))+`}`)
		if status != 200 || !strings.Contains(body, want) {
			t.Fatalf("publish %d: %d %s, want %s", i+1, status, body, want)
		}
	}
	status, body := mtGet(t, "GET", base+"/api/v1/history/room%2Fa?limit=2", "")
	if status != 200 || !strings.Contains(body, `"publications":[{"offset":3,"data":3},{"offset":4,"data":4}]`) || !strings.Contains(body, `"offset":4`) {
		t.Fatalf("history: %d %s", status, body)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

func TestServeHistoryFlagsRefused(t *testing.T) {
	for _, args := range [][]string{
		{"--history-size", "10"},
		{"--history-ttl", "1m"},
		{"--history-size", "-1", "--history-ttl", "1m"},
	} {
		var stderr strings.Builder
		all := append([]string{"serve", "--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, args...)
		if code := run(context.Background(), all, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), "--history-") {
			t.Errorf("%v: exit %d, %q; want 2 naming the flag", args, code, stderr.String())
		}
	}
}

// Without --history-* flags the demo's rooms keep history (the chat page asks
// for the latest 50 on join); other topics do not; --history-size 0
// --history-ttl 0 turns it off.
func TestServeDemoRoomsKeepHistory(t *testing.T) {
	for _, tc := range []struct {
		args        []string
		chat, other bool
	}{
		{nil, true, false},
		{[]string{"--history-size", "0", "--history-ttl", "0"}, false, false},
	} {
		lines, stop := mtRun(t, append([]string{"serve", "--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "error"}, tc.args...)...)
		mtLine(t, lines, "websocket listening on ws://")
		base := "http://" + mtLine(t, lines, "http listening on http://")
		for topic, want := range map[string]bool{"/chat/go": tc.chat, "news": tc.other} {
			status, body := mtGet(t, "POST", base+"/api/v1/publish", `{"topic":"`+topic+`","data":1}`)
			if status != 200 || strings.Contains(body, `"offset":1`) != want {
				t.Errorf("%v: publish to %s: %d %s; offset wanted: %v", tc.args, topic, status, body, want)
			}
		}
		if code := stop(); code != 0 {
			t.Fatalf("exit code %d", code)
		}
	}
}

func TestManagerHistoryFlagsRefused(t *testing.T) {
	for _, args := range [][]string{
		{"--history-max-size", "0"},
		{"--history-max-ttl", "-1s"},
		{"--history-max-bytes", "0"},
	} {
		var stderr strings.Builder
		all := append([]string{"manager", "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, args...)
		if code := run(context.Background(), all, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), "--history-max-") {
			t.Errorf("%v: exit %d, %q; want 2 naming the flag", args, code, stderr.String())
		}
	}
}
