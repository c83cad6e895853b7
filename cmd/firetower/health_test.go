package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestHealthzFollowsTheTower: /healthz is 200 while the Tower serves
// websockets and 503, with the reason, once it does not (here: shut down;
// the same answer comes when its event loops stop on their own).
func TestHealthzFollowsTheTower(t *testing.T) {
	tw := ttTower(t)
	h := newHTTPHandler(tw, httpConfig{})
	get := func() (int, string) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "http://127.0.0.1/healthz", nil))
		return w.Code, w.Body.String()
	}
	if code, body := get(); code != http.StatusOK || !strings.Contains(body, "ok") {
		t.Fatalf("serving: %d %q", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tw.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "closed") {
		t.Fatalf("shut down: %d %q, want 503 with the reason", code, body)
	}
}
