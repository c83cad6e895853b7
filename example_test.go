package firetower_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/firetower-go/firetower"
)

// exampleDial opens a websocket to t with gorilla/websocket, as any client would.
// query is appended to the URL ("" or "?k=v").
func exampleDial(t *firetower.Tower, query string) (*websocket.Conn, error) {
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+t.Addr()+"/ws"+query, nil)
	if err != nil {
		return nil, err
	}
	// A deadline, not a synchronisation: it only stops a broken example from hanging.
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	return ws, nil
}

// exampleRead returns the next message the client receives, as text.
func exampleRead(ws *websocket.Conn) string {
	_, p, err := ws.ReadMessage()
	if err != nil {
		return "read error: " + err.Error()
	}
	return string(p)
}

// A Tower serving websockets with one hook: OnConnect names each client after
// the "user" query parameter and refuses clients without one. A client
// subscribes to a topic and publishes to it; being subscribed, it receives its
// own message.
func ExampleNew() {
	ctx := context.Background()
	t, err := firetower.New(
		firetower.WithAddr("127.0.0.1:0"), // port 0: any free port, see t.Addr()
		firetower.OnConnect(func(next firetower.Handler) firetower.Handler {
			return func(c *firetower.Context) error {
				user := c.Conn().Request().URL.Query().Get("user")
				if user == "" {
					return firetower.ErrUnauthorized // HTTP 401, no upgrade
				}
				c.Conn().SetUserID(user)
				return next(c)
			}
		}),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := t.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer t.Shutdown(ctx)

	if _, err := exampleDial(t, ""); err != nil {
		fmt.Println("without a user:", err)
	}
	ws, err := exampleDial(t, "?user=alice")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ws.Close()

	_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"subscribe","topic":"/room/1","id":1}`))
	fmt.Println(exampleRead(ws))
	_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"publish","topic":"/room/1","data":{"text":"hi"}}`))
	fmt.Println(exampleRead(ws))
	// Output:
	// without a user: websocket: bad handshake
	// {"type":"ack","id":1,"topics":["/room/1"]}
	// {"type":"publish","topic":"/room/1","data":{"text":"hi"}}
}

// OnBeforeSubscribe may rewrite the topics of a subscribe with SetTopics. Here
// every client asks for "inbox" and gets its own user's inbox; the ack carries
// the topics in effect, and the server publishes to that user alone.
func ExampleOnBeforeSubscribe() {
	ctx := context.Background()
	t, err := firetower.New(
		firetower.WithAddr("127.0.0.1:0"),
		firetower.OnConnect(func(next firetower.Handler) firetower.Handler {
			return func(c *firetower.Context) error {
				c.Conn().SetUserID(c.Conn().Request().URL.Query().Get("user"))
				return next(c)
			}
		}),
		firetower.OnBeforeSubscribe(func(next firetower.Handler) firetower.Handler {
			return func(c *firetower.Context) error {
				user := c.Conn().UserID()
				topics := make([]string, 0, len(c.Topics()))
				for _, topic := range c.Topics() {
					if topic == "inbox" {
						topic = "/user/" + user + "/inbox"
					} else if strings.HasPrefix(topic, "/user/") {
						return firetower.ErrForbidden // no subscribing to someone's inbox by name
					}
					topics = append(topics, topic)
				}
				c.SetTopics(topics)
				return next(c)
			}
		}),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := t.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer t.Shutdown(ctx)

	ws, err := exampleDial(t, "?user=alice")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ws.Close()

	_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"subscribe","topic":"inbox","id":1}`))
	fmt.Println(exampleRead(ws))
	_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"subscribe","topic":"/user/bob/inbox","id":2}`))
	fmt.Println(exampleRead(ws))

	_ = t.Publish(ctx, "/user/alice/inbox", []byte(`{"from":"bob","text":"lunch?"}`))
	fmt.Println(exampleRead(ws))
	// Output:
	// {"type":"ack","id":1,"topics":["/user/alice/inbox"]}
	// {"type":"error","id":2,"code":"forbidden","message":"forbidden"}
	// {"type":"publish","topic":"/user/alice/inbox","data":{"from":"bob","text":"lunch?"}}
}

// Tower.Publish sends data from the server side to every subscriber of a topic
// in the cluster. Valid JSON is delivered as it is, byte for byte; any other
// bytes arrive as a JSON string. Publishes from one publisher to one topic
// arrive in order.
func ExampleTower_Publish() {
	ctx := context.Background()
	t, err := firetower.New(firetower.WithAddr("127.0.0.1:0"))
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := t.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer t.Shutdown(ctx)

	ws, err := exampleDial(t, "")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ws.Close()
	_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"subscribe","topic":"/news","id":"s"}`))
	fmt.Println(exampleRead(ws)) // the ack: the subscription is in effect

	n, _ := t.ConnectNum(ctx, "/news")
	fmt.Println("subscribers:", n)

	_ = t.Publish(ctx, "/news", []byte(`{"title": "firetower 1.0"}`))
	_ = t.Publish(ctx, "/news", []byte(`[1, 2, 3]`))
	_ = t.Publish(ctx, "/news", []byte("plain text, not JSON"))
	for range 3 {
		fmt.Println(exampleRead(ws))
	}
	// Output:
	// {"type":"ack","id":"s","topics":["/news"]}
	// subscribers: 1
	// {"type":"publish","topic":"/news","data":{"title": "firetower 1.0"}}
	// {"type":"publish","topic":"/news","data":[1, 2, 3]}
	// {"type":"publish","topic":"/news","data":"plain text, not JSON"}
}
