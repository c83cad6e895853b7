package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/websocket"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/middleware"
)

// exampleTower starts a Tower on a free port with opts; stop shuts it down.
func exampleTower(opts ...firetower.Option) (t *firetower.Tower, stop func(), err error) {
	t, err = firetower.New(append([]firetower.Option{firetower.WithAddr("127.0.0.1:0")}, opts...)...)
	if err != nil {
		return nil, nil, err
	}
	if err := t.Start(context.Background()); err != nil {
		return nil, nil, err
	}
	return t, func() { _ = t.Shutdown(context.Background()) }, nil
}

// exampleDial opens a websocket to t as any client would, with a raw query ("" or
// "?k=v"), extra headers and subprotocols. A refused upgrade is reported by its status.
func exampleDial(t *firetower.Tower, query string, header http.Header, protocols ...string) (*websocket.Conn, error) {
	d := websocket.Dialer{Subprotocols: protocols}
	ws, resp, err := d.Dial("ws://"+t.Addr()+"/ws"+query, header)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("HTTP %s", resp.Status)
		}
		return nil, err
	}
	// A deadline, not a synchronisation: it only stops a broken example from hanging.
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	return ws, nil
}

// exampleSend sends one request and returns the next message the client receives.
func exampleSend(ws *websocket.Conn, request string) string {
	if err := ws.WriteMessage(websocket.TextMessage, []byte(request)); err != nil {
		return "write error: " + err.Error()
	}
	_, p, err := ws.ReadMessage()
	if err != nil {
		return "read error: " + err.Error()
	}
	return string(p)
}

// Auth with a verifier of your own: here a table of session tokens. The token may come in
// the query, an Authorization: Bearer header, a "token" cookie, or, from a browser, in
// Sec-WebSocket-Protocol next to firetower.v1.json:
//
//	new WebSocket("wss://example.com/ws", ["firetower.v1.json", "token." + token])
func ExampleAuth() {
	sessions := map[string]string{"s3cr3t": "alice"}
	verify := func(ctx context.Context, token string) (string, error) {
		if user, ok := sessions[token]; ok {
			return user, nil
		}
		return "", errors.New("no such session")
	}
	t, stop, err := exampleTower(
		firetower.OnConnect(middleware.Auth(verify)),
		firetower.OnBeforeSubscribe(func(next firetower.Handler) firetower.Handler {
			return func(c *firetower.Context) error {
				fmt.Println("subscribe by", c.Conn().UserID())
				return next(c)
			}
		}),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()

	_, err = exampleDial(t, "", nil)
	fmt.Println("no token:", err)
	_, err = exampleDial(t, "?token=guess", nil)
	fmt.Println("bad token:", err)

	ws, err := exampleDial(t, "", nil, "firetower.v1.json", "token.s3cr3t")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ws.Close()
	fmt.Println("subprotocol:", ws.Subprotocol())
	fmt.Println(exampleSend(ws, `{"type":"subscribe","topic":"/room/1","id":1}`))
	// Output:
	// no token: HTTP 401 Unauthorized
	// bad token: HTTP 401 Unauthorized
	// subprotocol: firetower.v1.json
	// subscribe by alice
	// {"type":"ack","id":1,"topics":["/room/1"]}
}

// Auth with HS256 JSON Web Tokens: the token's subject becomes the user id. SignJWT is
// what a login service of yours would call.
func ExampleNewJWTVerifier() {
	key := []byte("a secret of at least thirty-two bytes")
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	v, err := middleware.NewJWTVerifier(middleware.JWTConfig{
		Key:      key,
		Audience: "chat",
		Now:      func() time.Time { return now }, // default time.Now
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	token, _ := middleware.SignJWT(key, middleware.JWTClaims{
		Subject:   "alice",
		Audience:  []string{"chat"},
		ExpiresAt: now.Add(time.Hour),
	})
	fmt.Println(v.Verify(context.Background(), token))

	expired, _ := middleware.SignJWT(key, middleware.JWTClaims{Subject: "alice", Audience: []string{"chat"}, ExpiresAt: now.Add(-time.Minute)})
	_, err = v.Verify(context.Background(), expired)
	fmt.Println(errors.Is(err, middleware.ErrTokenExpired))

	forged, _ := middleware.SignJWT([]byte("not the key, but just as long as it"), middleware.JWTClaims{Subject: "root", Audience: []string{"chat"}, ExpiresAt: now.Add(time.Hour)})
	_, err = v.Verify(context.Background(), forged)
	fmt.Println(errors.Is(err, middleware.ErrTokenSignature))

	// In a Tower: firetower.OnConnect(middleware.Auth(v.Verify)).

	// Output:
	// alice <nil>
	// true
	// true
}

// A RateLimiter registered with Use sees publishes (OnRead), subscribes
// (OnBeforeSubscribe) and disconnects (OnDisconnect, where it forgets the connection).
// Here a connection may publish twice at once and once a second after that. The clock is
// fixed so that the output is the same on every run.
func ExampleRateLimit() {
	start := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	rl, err := middleware.RateLimit(middleware.RateLimitConfig{
		ConnPublish:   middleware.Rate{PerSecond: 1, Burst: 2},
		ConnSubscribe: middleware.Rate{PerSecond: 0.1, Burst: 5},
		UserPublish:   middleware.Rate{PerSecond: 10, Burst: 20}, // over all of a user's connections
		Now:           func() time.Time { return start },         // default time.Now
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	t, stop, err := exampleTower(
		firetower.WithPublishPolicy(firetower.PublishAny),
		firetower.Use(rl.Middleware),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()

	ws, err := exampleDial(t, "", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ws.Close()
	for i := 1; i <= 3; i++ {
		fmt.Println(exampleSend(ws, fmt.Sprintf(`{"type":"publish","topic":"/chat","data":%d,"id":%d}`, i, i)))
	}
	// Output:
	// {"type":"ack","id":1}
	// {"type":"ack","id":2}
	// {"type":"error","id":3,"code":"rate_limited","message":"publish rate limit of this connection exceeded: retry in 1s"}
}

// TopicACL: everyone may read the news, each user owns /user/<id>/..., nothing else.
func ExampleTopicACL() {
	acl, err := middleware.TopicACL(middleware.ACLConfig{
		Rules: []middleware.Rule{
			middleware.Allow(middleware.OpAll, "/user/{user}/**"),
			middleware.Allow(middleware.OpSubscribe, "/news/*"),
		},
		DefaultAllow: false, // the default: what no rule allows is denied
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	t, stop, err := exampleTower(
		firetower.OnConnect(func(next firetower.Handler) firetower.Handler {
			return func(c *firetower.Context) error {
				c.Conn().SetUserID(c.Conn().Request().URL.Query().Get("user")) // use Auth in earnest
				return next(c)
			}
		}),
		firetower.Use(acl.Middleware),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()

	ws, err := exampleDial(t, "?user=alice", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ws.Close()
	fmt.Println(exampleSend(ws, `{"type":"subscribe","topic":"/user/alice/inbox","id":1}`))
	fmt.Println(exampleSend(ws, `{"type":"subscribe","topic":"/news/sport","id":2}`))
	fmt.Println(exampleSend(ws, `{"type":"subscribe","topic":"/user/bob/inbox","id":3}`))
	fmt.Println(exampleSend(ws, `{"type":"publish","topic":"/news/sport","data":"fake news","id":4}`))
	// Output:
	// {"type":"ack","id":1,"topics":["/user/alice/inbox"]}
	// {"type":"ack","id":2,"topics":["/news/sport"]}
	// {"type":"error","id":3,"code":"forbidden","message":"subscribe to topic \"/user/bob/inbox\" is not allowed"}
	// {"type":"error","id":4,"code":"forbidden","message":"publish to topic \"/news/sport\" is not allowed"}
}

func ExamplePattern_Match() {
	p, err := middleware.ParsePattern("/user/{user}/**")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(p.Match("/user/alice/inbox", "alice"))
	fmt.Println(p.Match("/user/alice/a/b", "alice"))
	fmt.Println(p.Match("/user/alice", "alice")) // ** is at least one segment
	fmt.Println(p.Match("/user/bob/inbox", "alice"))
	fmt.Println(p.Match("/user//inbox", "")) // no user id: {user} matches nothing

	star, _ := middleware.ParsePattern("/news/*")
	fmt.Println(star.Match("/news/sport", ""), star.Match("/news/sport/live", ""))
	// Output:
	// true
	// true
	// false
	// false
	// false
	// true false
}

// MaxTopics caps the topics of one connection below the Tower's own limit.
func ExampleMaxTopics() {
	t, stop, err := exampleTower(firetower.OnBeforeSubscribe(middleware.MaxTopics(2)))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()

	ws, err := exampleDial(t, "", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ws.Close()
	fmt.Println(exampleSend(ws, `{"type":"subscribe","topics":["a","b"],"id":1}`))
	fmt.Println(exampleSend(ws, `{"type":"subscribe","topics":["c"],"id":2}`))
	fmt.Println(exampleSend(ws, `{"type":"unsubscribe","topics":["a"],"id":3}`))
	fmt.Println(exampleSend(ws, `{"type":"subscribe","topics":["c"],"id":4}`))
	// Output:
	// {"type":"ack","id":1,"topics":["a","b"]}
	// {"type":"error","id":2,"code":"too_many_topics","message":"a connection may subscribe to at most 2 topics: it has 2, this request would make 3"}
	// {"type":"ack","id":3,"topics":["a"]}
	// {"type":"ack","id":4,"topics":["c"]}
}

// Recover: a hook that panics becomes an error with code internal, and the server goes
// on serving. A Logger listed before Recover (firetower.Use(middleware.Logger(l),
// middleware.Recover)) logs the panic as an ordinary error.
func ExampleRecover() {
	t, stop, err := exampleTower(
		firetower.Use(middleware.Recover),
		firetower.OnBeforeSubscribe(func(next firetower.Handler) firetower.Handler {
			return func(c *firetower.Context) error {
				if c.Topics()[0] == "bug" {
					panic("a bug")
				}
				return next(c)
			}
		}),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()

	ws, err := exampleDial(t, "", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ws.Close()
	fmt.Println(exampleSend(ws, `{"type":"subscribe","topic":"bug","id":1}`))
	fmt.Println(exampleSend(ws, `{"type":"subscribe","topic":"fine","id":2}`))
	// Output:
	// {"type":"error","id":1,"code":"internal","message":"internal error"}
	// {"type":"ack","id":2,"topics":["fine"]}
}
