package main

import (
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestServeCompressionFlag: with --compression a client that offers
// permessage-deflate gets it (server_no_context_takeover), without it not.
func TestServeCompressionFlag(t *testing.T) {
	for _, on := range []bool{true, false} {
		args := []string{"serve", "--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "error"}
		if on {
			args = append(args, "--compression")
		}
		lines, stop := mtRun(t, args...)
		wsURL := "ws://" + mtLine(t, lines, "websocket listening on ws://")
		mtLine(t, lines, "http listening on http://")
		d := websocket.Dialer{EnableCompression: true, HandshakeTimeout: 10 * time.Second}
		ws, resp, err := d.Dial(wsURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		ext := resp.Header.Get("Sec-WebSocket-Extensions")
		ws.Close()
		if got := strings.Contains(ext, "server_no_context_takeover"); got != on {
			t.Errorf("--compression %v: Sec-WebSocket-Extensions %q", on, ext)
		}
		if code := stop(); code != 0 {
			t.Fatalf("exit code %d", code)
		}
	}
}
