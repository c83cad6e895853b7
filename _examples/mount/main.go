// Command mount serves firetower from an application's own HTTP server:
// the Tower is an http.Handler, mounted on a route next to the
// application's others, on the application's port. The application
// authenticates in its HTTP middleware, before the upgrade, and passes
// the user to firetower through the request's context.
//
//	go run . -router std   # net/http's ServeMux
//	go run . -router chi   # github.com/go-chi/chi/v5
//
// Then open ws://127.0.0.1:8080/ws?token=alice (a token is a user name
// here; a real application checks a session or a signed token), and
// publish to a topic with POST /notify/{topic}.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/firetower-go/firetower"
)

// userKey is the request-context key the authentication middleware sets.
type userKey struct{}

// authenticate is the application's own middleware: it refuses requests
// without a valid token and stores the user in the request's context.
func authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user := r.URL.Query().Get("token") // stands for a real session or token check
		if user == "" {
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, user)))
	})
}

// newTower makes a Tower with no listener of its own (WithAddr("")): the
// application's server hands it the upgrade requests. OnConnect takes the
// user the middleware found from the request's context.
func newTower() (*firetower.Tower, error) {
	return firetower.New(
		firetower.WithAddr(""),
		firetower.OnConnect(func(next firetower.Handler) firetower.Handler {
			return func(c *firetower.Context) error {
				user, _ := c.Conn().Request().Context().Value(userKey{}).(string)
				if user == "" {
					return firetower.ErrUnauthorized // not mounted behind authenticate
				}
				c.Conn().SetUserID(user)
				return next(c)
			}
		}),
	)
}

// notify publishes the request body to a topic: the application's own
// route, beside the Tower.
func notify(tw *firetower.Tower, topic string, w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := tw.Publish(r.Context(), topic, body); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// stdMux is the seed's shape, http.HandleFunc("/ws", handler), with the
// standard library's ServeMux.
func stdMux(tw *firetower.Tower) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /ws", authenticate(tw))
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "hello") })
	mux.HandleFunc("POST /notify/{topic}", func(w http.ResponseWriter, r *http.Request) {
		notify(tw, r.PathValue("topic"), w, r)
	})
	return mux
}

// chiRouter is the same with chi: the Tower mounted in a group that uses
// the authentication middleware.
func chiRouter(tw *firetower.Tower) http.Handler {
	r := chi.NewRouter()
	r.Get("/hello", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "hello") })
	r.Post("/notify/{topic}", func(w http.ResponseWriter, r *http.Request) {
		notify(tw, chi.URLParam(r, "topic"), w, r)
	})
	r.Group(func(r chi.Router) {
		r.Use(authenticate)
		r.Handle("/ws", tw)
	})
	return r
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	router := flag.String("router", "std", "std or chi")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *addr, *router); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, addr, router string) error {
	tw, err := newTower()
	if err != nil {
		return err
	}
	if err := tw.Start(ctx); err != nil {
		return err
	}
	h := stdMux(tw)
	if router == "chi" {
		h = chiRouter(tw)
	}
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Printf("serving on http://%s (websocket: ws://%s/ws?token=alice)", addr, addr)
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The HTTP server first (no new upgrades), then the Tower, which closes
	// its websocket clients with 1001: http.Server.Shutdown does not wait
	// for connections handed over to it.
	_ = srv.Shutdown(sctx)
	if e := tw.Shutdown(sctx); e != nil && err == nil {
		err = e
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
