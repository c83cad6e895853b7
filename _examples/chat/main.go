// Command chat is a chat server built on firetower as a library, the way an
// application would write one: all of its logic is middleware on firetower's
// hooks.
//
//	go run . --ws-addr 127.0.0.1:9999 --http-addr 127.0.0.1:8080
//
// then open http://127.0.0.1:8080 in two browser windows. See README.md.
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/firetower-go/firetower"
)

// roomPrefix is the only part of the topic space clients may use.
const roomPrefix = "/chat/"

// Limits of the demo.
const (
	maxNameLen = 32
	maxTextLen = 2000
)

// History of the rooms: the page shows the latest 50 messages on join and
// resumes from the last one it got when it joins again.
const (
	historySize = 100
	historyTTL  = 10 * time.Minute
)

//go:embed index.html
var indexHTML string

func main() {
	wsAddr := flag.String("ws-addr", "127.0.0.1:9999", "websocket listen address")
	httpAddr := flag.String("http-addr", "127.0.0.1:8080", "HTTP listen address of the demo page")
	debug := flag.Bool("debug", false, "log every hook call")
	flag.Parse()

	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *wsAddr, *httpAddr, log); err != nil {
		log.Error("chat", "err", err)
		os.Exit(1)
	}
}

// newTower builds the chat server. The hook chains are built here, once; the
// middleware given to Use wraps every hook.
func newTower(wsAddr string, log *slog.Logger) (*firetower.Tower, error) {
	return firetower.New(
		firetower.WithAddr(wsAddr),
		firetower.WithLogger(log),
		firetower.WithHistory(historySize, historyTTL, roomPrefix),
		firetower.Use(logHooks(log)),
		firetower.OnConnect(authenticate),
		firetower.OnBeforeSubscribe(onlyChatRooms),
		// Who is online: the server's presence events for the rooms
		// (join, leave and a coalesced cluster-wide count), no hook needed.
		firetower.WithPresence("/chat/"),
		firetower.OnRead(stampSender),
		firetower.OnReadTimeout(logTooFast(log)),
	)
}

func run(ctx context.Context, wsAddr, httpAddr string, log *slog.Logger) error {
	t, err := newTower(wsAddr, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return err
	}
	if err := t.Start(ctx); err != nil {
		ln.Close()
		return err
	}
	log.Info("chat ready", "page", "http://"+ln.Addr().String(), "websocket", "ws://"+t.Addr()+"/ws")

	hs := &http.Server{Handler: pageHandler(t.Addr()), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()

	select {
	case <-ctx.Done():
	case err = <-served:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if e := hs.Shutdown(sctx); e != nil && err == nil {
		err = e
	}
	if e := t.Shutdown(sctx); e != nil && err == nil { // closes every client with 1001
		err = e
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// authenticate (OnConnect) runs during the websocket upgrade. It takes the
// user's name from the "name" query parameter, or looks up a "token"; without
// either the upgrade is refused with HTTP 401.
func authenticate(next firetower.Handler) firetower.Handler {
	return func(c *firetower.Context) error {
		q := c.Conn().Request().URL.Query()
		name := strings.TrimSpace(q.Get("name"))
		if name == "" {
			name = userForToken(q.Get("token"))
		}
		if name == "" || utf8.RuneCountInString(name) > maxNameLen {
			return firetower.ErrUnauthorized
		}
		c.Conn().SetUserID(name)
		return next(c)
	}
}

// userForToken stands in for a session store or a JWT check; a hook may
// block on such a lookup (hooks run on firetower's worker pool, not on its
// event loops).
func userForToken(token string) string {
	switch token {
	case "demo-token-alice":
		return "alice"
	case "demo-token-bob":
		return "bob"
	}
	return ""
}

// onlyChatRooms (OnBeforeSubscribe) lets clients into chat rooms only; the
// client gets an error with code "forbidden" for anything else.
func onlyChatRooms(next firetower.Handler) firetower.Handler {
	return func(c *firetower.Context) error {
		for _, topic := range c.Topics() {
			if !strings.HasPrefix(topic, roomPrefix) || len(topic) == len(roomPrefix) {
				return &firetower.Error{Code: firetower.CodeForbidden, Message: "rooms are topics under " + roomPrefix}
			}
		}
		return next(c)
	}
}

// chatMessage is what the server publishes for a client's message.
type chatMessage struct {
	Kind string `json:"kind"` // "message"
	Name string `json:"name"` // the sender, as authenticated by OnConnect
	Text string `json:"text"`
}

// stampSender (OnRead) rewrites a client's publish before the end of the chain
// sends it: the sender's name comes from the connection, never from the
// client, so nobody can speak as someone else. A client sends either
// {"text":"..."} or a bare JSON string as data.
func stampSender(next firetower.Handler) firetower.Handler {
	return func(c *firetower.Context) error {
		m := c.Message()
		var in struct {
			Text string `json:"text"`
		}
		if err := json.Unmarshal(m.Data, &in); err != nil {
			if err := json.Unmarshal(m.Data, &in.Text); err != nil {
				return &firetower.Error{Code: firetower.CodeBadRequest, Message: `data must be {"text":"..."} or a string`}
			}
		}
		in.Text = strings.TrimSpace(in.Text)
		if in.Text == "" {
			return &firetower.Error{Code: firetower.CodeBadRequest, Message: "empty message"}
		}
		if utf8.RuneCountInString(in.Text) > maxTextLen {
			return &firetower.Error{Code: firetower.CodeMessageTooLarge, Message: fmt.Sprintf("at most %d characters", maxTextLen)}
		}
		data, err := json.Marshal(chatMessage{Kind: "message", Name: c.Conn().UserID(), Text: in.Text})
		if err != nil {
			return err
		}
		m.Data = data
		return next(c) // publishes c.Message()
	}
}

// logTooFast (OnReadTimeout) runs when a client sends faster than its hooks
// run: the message was dropped and the client gets an error "rate_limited".
func logTooFast(log *slog.Logger) firetower.Middleware {
	return func(next firetower.Handler) firetower.Handler {
		return func(c *firetower.Context) error {
			topic := ""
			if m := c.Message(); m != nil {
				topic = m.Topic
			}
			log.Warn("client too fast, message dropped", "user", c.Conn().UserID(), "conn", c.Conn().ID(), "topic", topic)
			return next(c)
		}
	}
}

// logHooks (Use) wraps every hook: each call is logged at debug level, and a
// call that fails at info level, with how long it took.
func logHooks(log *slog.Logger) firetower.Middleware {
	return func(next firetower.Handler) firetower.Handler {
		return func(c *firetower.Context) error {
			start := time.Now()
			err := next(c)
			level := slog.LevelDebug
			if err != nil {
				level = slog.LevelInfo
			}
			if log.Enabled(c.Context(), level) {
				attrs := []any{"hook", string(c.Hook()), "took", time.Since(start)}
				if conn := c.Conn(); conn != nil {
					attrs = append(attrs, "conn", conn.ID(), "user", conn.UserID())
				}
				if topics := c.Topics(); len(topics) > 0 {
					attrs = append(attrs, "topics", topics)
				}
				if err != nil {
					attrs = append(attrs, "err", err)
				}
				log.Log(c.Context(), level, "hook", attrs...)
			}
			return err
		}
	}
}

// pageHandler serves the demo page, told where the websocket endpoint is.
func pageHandler(wsAddr string) http.Handler {
	page := template.Must(template.New("index").Parse(indexHTML))
	_, port, _ := net.SplitHostPort(wsAddr)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = page.Execute(w, struct{ Port, Path, Room string }{port, "/ws", roomPrefix + "lobby"})
	})
	return mux
}
