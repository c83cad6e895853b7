package main

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// documentedPresence reads from PROTOCOL.md the count event it shows for
// the demo's rooms: the one JSON line of a count on a /chat/ topic.
func documentedPresence(t *testing.T) (line string, v map[string]any) {
	t.Helper()
	b, err := os.ReadFile("../../PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "{") && strings.Contains(l, `"type":"count"`) && strings.Contains(l, `"topic":"/chat/`) {
			if line != "" {
				t.Fatalf("PROTOCOL.md shows the demo's count event twice:\n%s\n%s", line, l)
			}
			line = l
		}
	}
	if line == "" {
		t.Fatal(`PROTOCOL.md does not show the demo's count event (a JSON line with "type":"count" on a /chat/ topic)`)
	}
	if err := json.Unmarshal([]byte(line), &v); err != nil {
		t.Fatalf("PROTOCOL.md's count event is not JSON: %s: %v", line, err)
	}
	return line, v
}

// presenceConn is a raw websocket client of the demo server.
type presenceConn struct {
	t  *testing.T
	ws *websocket.Conn
}

func dialPresence(t *testing.T, wsURL string) *presenceConn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return &presenceConn{t, ws}
}

func (c *presenceConn) send(msg string) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		c.t.Fatal(err)
	}
}

// next reads the next message as a JSON object, and its text.
func (c *presenceConn) next() (map[string]any, string) {
	c.t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, p, err := c.ws.ReadMessage()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	var v map[string]any
	if err := json.Unmarshal(p, &v); err != nil {
		c.t.Fatalf("not a JSON object: %s", p)
	}
	return v, string(p)
}

// TestDemoPresenceAsDocumented: what PROTOCOL.md says the demo server
// sends on /chat/ topics (presence counts, tracked there without
// --presence) is what `firetower serve` sends, byte for byte, and only
// there; --presence tracks every topic.
func TestDemoPresenceAsDocumented(t *testing.T) {
	line, doc := documentedPresence(t)
	topic, _ := doc["topic"].(string)
	count, _ := doc["count"].(float64)
	if len(doc) != 3 || !strings.HasPrefix(topic, "/chat/") || count < 2 {
		t.Fatalf("PROTOCOL.md's count event %s: want type, topic (under /chat/) and a count of 2 or more", line)
	}

	lines, stop := mtRun(t, "serve", "--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "error")
	wsURL := "ws://" + mtLine(t, lines, "websocket listening on ws://")
	mtLine(t, lines, "http listening on ")

	// The documented count: that many subscribers, the first one watching
	// the counts go up one by one (it reads the joins and skips them).
	first := dialPresence(t, wsURL)
	first.send(`{"type":"subscribe","topic":"` + topic + `","id":1}`)
	for n := 1; n <= int(count); n++ {
		if n > 1 {
			dialPresence(t, wsURL).send(`{"type":"subscribe","topic":"` + topic + `"}`)
		}
		for {
			v, p := first.next()
			if v["type"] != "count" || v["count"] != float64(n) {
				continue
			}
			if n == int(count) && p != line {
				t.Fatalf("with %d subscribers the first got\n%s\nPROTOCOL.md shows\n%s", n, p, line)
			}
			break
		}
	}

	// Outside /chat/ the demo sends nothing of presence: the first message
	// after the ack is the client's own publish.
	other := dialPresence(t, wsURL)
	other.send(`{"type":"subscribe","topic":"/news/go","id":1}`)
	if v, p := other.next(); v["type"] != "ack" {
		t.Fatalf("subscribe: %s", p)
	}
	other.send(`{"type":"publish","topic":"/news/go","data":"mine"}`)
	if v, p := other.next(); v["data"] != "mine" {
		t.Fatalf("on /news/go the first delivery is %s, want the client's own publish", p)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}

	// With --presence, every topic has events.
	lines, stop = mtRun(t, "serve", "--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "error", "--presence")
	wsURL = "ws://" + mtLine(t, lines, "websocket listening on ws://")
	mtLine(t, lines, "http listening on ")
	news := dialPresence(t, wsURL)
	news.send(`{"type":"subscribe","topic":"/news/go","id":1}`)
	for {
		v, p := news.next()
		if v["type"] == "count" {
			if p != `{"type":"count","topic":"/news/go","count":1}` {
				t.Fatalf("with --presence: %s", p)
			}
			break
		}
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// TestServeWildcards: with --wildcards a "*" subscription gets the
// publishes of the topics it matches, and a publish to a pattern is
// refused (the push API answers 400 invalid_topic); without it, "*" is an
// ordinary character.
func TestServeWildcards(t *testing.T) {
	lines, stop := mtRun(t, "serve", "--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "error", "--wildcards")
	wsURL := "ws://" + mtLine(t, lines, "websocket listening on ws://")
	httpURL := "http://" + mtLine(t, lines, "http listening on http://")
	c := dialPresence(t, wsURL)
	c.send(`{"type":"subscribe","topic":"/md/*","id":1}`)
	if v, p := c.next(); v["type"] != "ack" {
		t.Fatalf("subscribe /md/*: %s", p)
	}
	post := func(topic string) int {
		t.Helper()
		resp, err := http.Post(httpURL+"/api/v1/publish", "application/json", strings.NewReader(`{"topic":"`+topic+`","data":1}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("/md/*"); code != http.StatusBadRequest {
		t.Fatalf("POST /api/v1/publish to /md/*: %d, want 400", code)
	}
	if code := post("/md/AAPL"); code != http.StatusOK {
		t.Fatalf("POST /api/v1/publish to /md/AAPL: %d", code)
	}
	if _, p := c.next(); p != `{"type":"publish","topic":"/md/AAPL","data":1}` {
		t.Fatalf("the pattern subscriber got %s", p)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}
