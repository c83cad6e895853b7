package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/firetower-go/firetower"
)

// The cluster-wide operations across processes: one manager, two
// gateways; the HTTP API and the dashboard's token on gateway 1 reach what
// only gateway 2 has.
//
// Here: the topic list, presence, unsubscribe and disconnect of a real
// connection on the other gateway (its id found through presence), the
// answers for ids and users no node has (which need every node's answer),
// and the stats topic. The managertest scenarios cover the same operations
// in-process on every Manager, with user ids (the binary sets none).

func TestClusterOps(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns manager and gateway processes")
	}
	bin := buildBinary(t)
	m := startManager(t, bin, "manager", "127.0.0.1:0", "127.0.0.1:0")
	g1 := startGateway(t, bin, 1, m.addr)
	g2 := startGateway(t, bin, 2, m.addr)
	// both gateways count 2 nodes: each has joined the manager with its
	// interest in the control topic
	for _, g := range []*gatewayProc{g1, g2} {
		poll(t, g.name+" to count both nodes", countIs(g.http, firetower.SystemTopicPrefix+"control", 2))
	}

	// ops/on-2 only on gateway 2 (two subscribers), ops/shared on both
	a := dialWS(t, g2)
	a.subscribe("ops/on-2", "ops/shared")
	dialWS(t, g2).subscribe("ops/on-2")
	dialWS(t, g1).subscribe("ops/shared")
	want := []topicRow{{"ops/on-2", 0, 2}, {"ops/shared", 1, 2}}
	t.Run("TopicsOfTheOtherGateway", func(t *testing.T) {
		checkTopics(t, g1, "", want)
		checkTopics(t, g1, "?q=ON-2", want[:1])
		checkTopics(t, g1, "?top=1", want[:1])
		checkTopics(t, g2, "", []topicRow{{"ops/on-2", 2, 2}, {"ops/shared", 1, 2}})
	})

	t.Run("UnknownConnAndUser", func(t *testing.T) {
		// not_found only once gateway 2 has answered that it does not have
		// it either; a gateway that did not answer would make it 503
		// unavailable
		expectAPI(t, g1, "/api/v1/disconnect", `{"conn_id":"2-nosuchconn-1"}`, http.StatusNotFound, "not_found")
		expectAPI(t, g1, "/api/v1/unsubscribe", `{"conn_id":"2-nosuchconn-1","topics":["ops/on-2"]}`, http.StatusNotFound, "not_found")
		var r struct {
			OK           bool `json:"ok"`
			Disconnected int  `json:"disconnected"`
		}
		status, body := postAPI(t, g1, "/api/v1/disconnect", `{"user_id":"nobody","code":4000,"reason":"bye"}`)
		if status != http.StatusOK || json.Unmarshal(body, &r) != nil || !r.OK || r.Disconnected != 0 {
			t.Fatalf("disconnect of a user with no connection: %d %s, want 200 with 0 disconnected", status, body)
		}
		// nothing was touched
		if ok, err := countIs(g1.http, "ops/on-2", 2)(); !ok {
			t.Fatal(err)
		}
	})

	t.Run("StatsTopic", func(t *testing.T) {
		var tok struct {
			URL  string `json:"url"`
			Node uint16 `json:"node"`
		}
		if err := getJSON(g1.http, "/dashboard/token", &tok); err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(tok.URL)
		if err != nil || u.Query().Get(firetower.SystemTokenParam) == "" || tok.Node != 1 {
			t.Fatalf("token answer %+v (url error %v): want a websocket URL with %s from node 1", tok, err, firetower.SystemTokenParam)
		}
		sys := dialURL(t, tok.URL, 64)
		sys.subscribe(firetower.StatsTopic)
		seen := map[uint16]bool{}
		timer := time.NewTimer(clusterWait)
		defer timer.Stop()
		for !seen[1] || !seen[2] {
			select {
			case f := <-sys.deliveries:
				if f.Topic != firetower.StatsTopic {
					t.Fatalf("system connection got a delivery on %s", f.Topic)
				}
				var ns firetower.NodeStats
				if err := json.Unmarshal(f.Data, &ns); err != nil {
					t.Fatalf("NodeStats %s: %v", f.Data, err)
				}
				if ns.Node != 1 && ns.Node != 2 {
					t.Fatalf("NodeStats from node %d", ns.Node)
				}
				if ns.Node == 2 && !slices.Contains(ns.Topics, firetower.TopicCount{Topic: "ops/on-2", Count: 2}) {
					t.Fatalf("NodeStats of node 2 lists %v, want ops/on-2 with 2", ns.Topics)
				}
				seen[ns.Node] = true
			case <-timer.C:
				t.Fatalf("NodeStats from nodes %v within %v, want 1 and 2", seen, clusterWait)
			}
		}
		// the system connection's subscription is no topic of the list
		checkTopics(t, g1, "", want)
		checkTopics(t, g2, "?q=$firetower", []topicRow{})
	})

	t.Run("RealConnectionOnTheOtherGateway", func(t *testing.T) {
		ws, _, err := websocket.DefaultDialer.Dial("ws://"+g2.ws+"/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		_ = ws.SetReadDeadline(time.Now().Add(clusterWait))
		if err := ws.WriteJSON(map[string]any{"type": "subscribe", "topics": []string{"ops/victim", "ops/keep"}, "id": 1}); err != nil {
			t.Fatal(err)
		}
		var ack wsFrame
		if err := ws.ReadJSON(&ack); err != nil || ack.Type != "ack" {
			t.Fatalf("subscribe: %+v %v", ack, err)
		}
		poll(t, "gateway 1 to count the victim", countIs(g1.http, "ops/victim", 1))

		var pres struct {
			Connections []struct {
				ID   string `json:"id"`
				Node int    `json:"node"`
			} `json:"connections"`
		}
		if err := getJSON(g1.http, "/api/v1/presence/ops%2Fvictim", &pres); err != nil {
			t.Fatal(err)
		}
		if len(pres.Connections) != 1 || pres.Connections[0].Node != 2 {
			t.Fatalf("presence of ops/victim from gateway 1: %+v, want one connection on node 2", pres)
		}
		id := pres.Connections[0].ID

		// Unsubscribe through gateway 1: in effect when the answer comes.
		if status, body := postAPI(t, g1, "/api/v1/unsubscribe", `{"conn_id":"`+id+`","topics":["ops/victim"]}`); status != http.StatusOK {
			t.Fatalf("unsubscribe: %d %s", status, body)
		}
		for _, g := range []*gatewayProc{g1, g2} {
			if ok, err := countIs(g.http, "ops/victim", 0)(); !ok {
				t.Fatalf("%s after the unsubscribe: %v", g.name, err)
			}
		}
		if ok, err := countIs(g1.http, "ops/keep", 1)(); !ok {
			t.Fatalf("the other topic: %v", err)
		}

		// Disconnect through gateway 1: the client sees the code and reason.
		if status, body := postAPI(t, g1, "/api/v1/disconnect", `{"conn_id":"`+id+`","code":4005,"reason":"moved"}`); status != http.StatusOK {
			t.Fatalf("disconnect: %d %s", status, body)
		}
		for {
			_, _, err := ws.ReadMessage()
			if err == nil {
				continue
			}
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != 4005 || ce.Text != "moved" {
				t.Fatalf("the client's read ended with %v, want close 4005 moved", err)
			}
			break
		}
		poll(t, "the disconnected client's subscription to leave", countIs(g1.http, "ops/keep", 0))
		expectAPI(t, g1, "/api/v1/disconnect", `{"conn_id":"`+id+`"}`, http.StatusNotFound, "not_found")
	})
}

type topicRow struct {
	Topic string `json:"topic"`
	Local int64  `json:"local"`
	Count int64  `json:"count"`
}

// checkTopics compares GET /api/v1/topics<query> on g with want.
func checkTopics(t *testing.T, g *gatewayProc, query string, want []topicRow) {
	t.Helper()
	var r struct {
		Topics []topicRow `json:"topics"`
	}
	if err := getJSON(g.http, "/api/v1/topics"+query, &r); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Topics, want) {
		t.Fatalf("%s: GET /api/v1/topics%s = %+v, want %+v", g.name, query, r.Topics, want)
	}
}

// postAPI posts a JSON body to g's HTTP API and returns the status and body.
func postAPI(t *testing.T, g *gatewayProc, path, body string) (int, []byte) {
	t.Helper()
	resp, err := httpc.Post("http://"+g.http+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return resp.StatusCode, bytes.TrimSpace(b)
}

// expectAPI posts and wants an error answer with status and code.
func expectAPI(t *testing.T, g *gatewayProc, path, body string, status int, code string) {
	t.Helper()
	got, b := postAPI(t, g, path, body)
	var e struct {
		Code string `json:"code"`
	}
	if got != status || json.Unmarshal(b, &e) != nil || e.Code != code {
		t.Fatalf("POST %s %s: %d %s, want %d with code %s", path, body, got, b, status, code)
	}
}

// dialURL connects a websocket client to a full URL (dialWS builds it from
// a gateway's address).
func dialURL(t *testing.T, u string, queue int) *wsClient {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	resp.Body.Close()
	c := &wsClient{t: t, ws: ws, deliveries: make(chan wsFrame, queue), replies: make(chan wsFrame, 64), done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			var f wsFrame
			if json.Unmarshal(b, &f) != nil {
				continue
			}
			ch := c.replies
			if f.Type == "publish" {
				ch = c.deliveries
			}
			select {
			case ch <- f:
			case <-c.done:
				return
			}
		}
	})
	t.Cleanup(func() { close(c.done); _ = ws.Close(); wg.Wait() })
	return c
}
