package firetower_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/firetower-go/firetower"
)

type exampleUserKey struct{}

// A Tower mounted in an application's own HTTP server, behind the
// application's authentication: the middleware's user reaches OnConnect
// through the request's context.
func ExampleTower_ServeHTTP() {
	t, err := firetower.New(
		firetower.WithAddr(""), // no listener of its own
		firetower.OnConnect(func(next firetower.Handler) firetower.Handler {
			return func(c *firetower.Context) error {
				user, _ := c.Conn().Request().Context().Value(exampleUserKey{}).(string)
				c.Conn().SetUserID(user)
				fmt.Println("connected:", user)
				return next(c)
			}
		}),
	)
	if err != nil {
		panic(err)
	}
	if err := t.Start(context.Background()); err != nil {
		panic(err)
	}
	defer t.Shutdown(context.Background())

	auth := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			user := r.Header.Get("X-User") // stands for a real session check
			if user == "" {
				http.Error(w, "sign in first", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), exampleUserKey{}, user)))
		})
	}
	mux := http.NewServeMux()
	mux.Handle("GET /ws", auth(t))
	srv := httptest.NewServer(mux) // in a program: http.ListenAndServe(addr, mux)
	defer srv.Close()

	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	if _, resp, err := websocket.DefaultDialer.Dial(url, nil); err != nil {
		fmt.Println("without a user:", resp.StatusCode)
	}
	ws, _, err := websocket.DefaultDialer.Dial(url, http.Header{"X-User": {"alice"}})
	if err != nil {
		panic(err)
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second)) // a guard, not a synchronisation
	_ = ws.WriteJSON(map[string]any{"type": "ping", "id": 1})
	_, p, _ := ws.ReadMessage()
	fmt.Println(string(p))
	// Output:
	// without a user: 401
	// connected: alice
	// {"type":"pong","id":1}
}
