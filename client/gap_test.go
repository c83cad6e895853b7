package client_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/firetower-go/firetower/client"
)

// TestGapWhileConnected: a delivery whose offset skips some (here 3 and 4,
// as a server dropping messages for a slow consumer would) is a gap, told
// to the gap handler before that delivery; replayed offsets at or below the
// ack's position (last N) and consecutive ones are not.
func TestGapWhileConnected(t *testing.T) {
	up := websocket.Upgrader{Subprotocols: []string{"firetower.v1.json"}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		var req struct {
			ID json.RawMessage `json:"id"`
		}
		if err := ws.ReadJSON(&req); err != nil {
			return
		}
		script := []string{
			`{"type":"ack","id":` + string(req.ID) + `,"topics":["/h"],"positions":{"/h":{"epoch":"E","offset":2,"recovered":false}}}`,
			`{"type":"publish","topic":"/h","data":"one","offset":1}`, // last 2: replayed
			`{"type":"publish","topic":"/h","data":"two","offset":2}`,
			`{"type":"publish","topic":"/h","data":"five","offset":5}`, // 3 and 4 lost
			`{"type":"publish","topic":"/h","data":"six","offset":6}`,
		}
		for _, m := range script {
			if err := ws.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
				return
			}
		}
		_, _, _ = ws.ReadMessage() // until the client goes
	}))
	defer srv.Close()

	events := make(chan string, 16)
	c, err := client.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"),
		client.WithDeliveryHandler(func(d client.Delivery) { events <- "delivery " + string(d.Data) }),
		client.WithGapHandler(func(r client.Recovery) {
			events <- "gap " + r.Topic + " " + r.Since.Epoch + ":" + strconv.FormatUint(r.Since.Offset, 10) + " to " + strconv.FormatUint(r.Top.Offset, 10)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.SubscribeWith(context.Background(), client.SubscribeOptions{Last: 2}, "/h"); err != nil {
		t.Fatal(err)
	}
	want := []string{`delivery "one"`, `delivery "two"`, "gap /h E:2 to 5", `delivery "five"`, `delivery "six"`}
	for i, w := range want {
		select {
		case got := <-events:
			if got != w {
				t.Fatalf("event %d: %q, want %q", i, got, w)
			}
		case <-time.After(wait):
			t.Fatalf("event %d: nothing, want %q", i, w)
		}
	}
	if p, _ := c.Position("/h"); p != (client.Position{Epoch: "E", Offset: 6}) {
		t.Errorf("position %+v, want E:6", p)
	}
}
