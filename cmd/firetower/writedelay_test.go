package main

import (
	"io"
	"strings"
	"testing"
)

// TestServeWriteDelayFlag: serve takes --write-delay as a Go duration and
// refuses a negative one before starting anything.
func TestServeWriteDelayFlag(t *testing.T) {
	var stderr strings.Builder
	args := []string{"serve", "--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--write-delay", "-1ms"}
	if code := run(t.Context(), args, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), "--write-delay") {
		t.Errorf("negative --write-delay: exit status %d, stderr %q; want 2 and a message naming --write-delay", code, stderr.String())
	}
	lines, stop := mtRun(t, "serve", "--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "error", "--write-delay", "10ms")
	mtLine(t, lines, "websocket listening on ws://")
	if code := stop(); code != 0 {
		t.Fatalf("--write-delay 10ms: exit code %d", code)
	}
}
