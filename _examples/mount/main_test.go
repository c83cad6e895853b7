package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/client"
)

// TestMounted mounts a Tower in the standard mux and in a chi router
// beside other routes, and checks both sides: the routes answer, the
// middleware refuses a websocket without a token, and an authenticated
// client gets what the application's own route publishes.
func TestMounted(t *testing.T) {
	for name, router := range map[string]func(*firetower.Tower) http.Handler{"std": stdMux, "chi": chiRouter} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			tw, err := newTower()
			if err != nil {
				t.Fatal(err)
			}
			if err := tw.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := tw.Shutdown(ctx); err != nil {
					t.Errorf("Shutdown: %v", err)
				}
			}()
			srv := httptest.NewServer(router(tw))
			defer srv.Close()
			ws := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"

			resp, err := http.Get(srv.URL + "/hello")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "hello" {
				t.Fatalf("GET /hello beside the Tower: %d %q", resp.StatusCode, body)
			}

			if c, err := client.Dial(ctx, ws, client.WithReconnect(false)); err == nil {
				c.Close()
				t.Fatal("a websocket without a token was upgraded")
			}

			got := make(chan string, 1)
			c, err := client.Dial(ctx, ws+"?token=alice", client.WithHandler(func(topic string, data []byte) {
				got <- topic + " " + string(data)
			}))
			if err != nil {
				t.Fatalf("Dial with a token: %v", err)
			}
			defer c.Close()
			if err := c.Subscribe(ctx, "news"); err != nil {
				t.Fatal(err)
			}
			resp, err = http.Post(srv.URL+"/notify/news", "application/json", strings.NewReader(`{"n":1}`))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("POST /notify/news: %d", resp.StatusCode)
			}
			select {
			case m := <-got:
				if m != `news {"n":1}` {
					t.Fatalf("delivery %q", m)
				}
			case <-ctx.Done():
				t.Fatal("no delivery")
			}
			// OnConnect set the user the middleware found.
			if n, err := tw.DisconnectUser(ctx, "alice", 1000, "bye"); err != nil || n != 1 {
				t.Fatalf("DisconnectUser(alice) = %d, %v; want 1 (the user id set from the request context)", n, err)
			}
			if err := c.Close(); err != nil && !errors.Is(err, client.ErrClosed) {
				t.Fatal(err)
			}
		})
	}
}
