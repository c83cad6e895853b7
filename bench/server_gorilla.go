//go:build linux

package bench

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// gorillaHub is a pub/sub hub written the way gorilla/websocket's chat
// example writes its hub: per connection a read pump and a write pump
// goroutine and a buffered send channel; one hub goroutine owns the topic
// map; a publish is turned into one websocket.PreparedMessage that the hub
// hands to every subscriber's channel, dropping (and closing) a subscriber
// whose channel is full. It speaks firetower's JSON protocol subset:
// subscribe with an ack, publish, delivery envelopes.
type gorillaHub struct {
	ln       net.Listener
	srv      *http.Server
	upgrader websocket.Upgrader
	level    int // compression level; 0: off

	subscribe  chan gorillaSub
	unregister chan *gorillaClient
	broadcast  chan gorillaMsg
	quit       chan struct{}
	done       chan struct{}

	connsMu sync.Mutex
	conns   map[*gorillaClient]struct{}
	wg      sync.WaitGroup
}

const (
	gorillaWriteWait      = 10 * time.Second
	gorillaPongWait       = 60 * time.Second
	gorillaPingPeriod     = gorillaPongWait * 9 / 10
	gorillaMaxMessageSize = 4096
	gorillaSendBuffer     = 256
)

type gorillaClient struct {
	hub    *gorillaHub
	conn   *websocket.Conn
	send   chan *websocket.PreparedMessage
	topics map[string]struct{} // owned by the hub goroutine
}

type gorillaSub struct {
	c     *gorillaClient
	topic string
	id    json.RawMessage
}

type gorillaMsg struct {
	topic string
	pm    *websocket.PreparedMessage
}

func newGorillaHub() (*gorillaHub, error) { return newGorillaHubWith(nil, 0) }

// newGorillaHubTLS is the hub served over TLS.
func newGorillaHubTLS(tc *tls.Config) (*gorillaHub, error) { return newGorillaHubWith(tc, 0) }

// newGorillaHubCompressed is the hub with permessage-deflate at level:
// every write compressed, the PreparedMessage compressing a publish once
// for all its compressing subscribers.
func newGorillaHubCompressed(level int) (*gorillaHub, error) { return newGorillaHubWith(nil, level) }

// newGorillaHubWith: over TLS when tc is not nil; compression off when
// level is 0.
func newGorillaHubWith(tc *tls.Config, level int) (*gorillaHub, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	h := &gorillaHub{
		ln:         ln,
		upgrader:   websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024, EnableCompression: level != 0},
		level:      level,
		subscribe:  make(chan gorillaSub),
		unregister: make(chan *gorillaClient),
		broadcast:  make(chan gorillaMsg),
		quit:       make(chan struct{}),
		done:       make(chan struct{}),
		conns:      make(map[*gorillaClient]struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", h.serveWs)
	h.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go h.run()
	go func() { _ = h.srv.Serve(ln) }()
	return h, nil
}

func (h *gorillaHub) Addr() string    { return hostPort(h.ln.Addr()) }
func (h *gorillaHub) Path() string    { return "/ws" }
func (h *gorillaHub) Flavour() string { return flavourFiretower }

// Publish frames the delivery once as a PreparedMessage and hands it to the
// hub goroutine.
func (h *gorillaHub) Publish(topic string, data []byte) error {
	pm, err := websocket.NewPreparedMessage(websocket.TextMessage, appendDelivery(nil, topic, data))
	if err != nil {
		return err
	}
	select {
	case h.broadcast <- gorillaMsg{topic: topic, pm: pm}:
		return nil
	case <-h.done:
		return errors.New("gorilla hub: closed")
	}
}

func (h *gorillaHub) Close() error {
	err := h.srv.Close()
	h.connsMu.Lock()
	for c := range h.conns {
		_ = c.conn.Close()
	}
	h.connsMu.Unlock()
	h.wg.Wait()
	close(h.quit)
	<-h.done
	return err
}

// run is the hub goroutine: it owns the topic map.
func (h *gorillaHub) run() {
	defer close(h.done)
	topics := make(map[string]map[*gorillaClient]struct{})
	drop := func(c *gorillaClient) {
		if c.topics == nil {
			return
		}
		for t := range c.topics {
			delete(topics[t], c)
			if len(topics[t]) == 0 {
				delete(topics, t)
			}
		}
		c.topics = nil
		close(c.send)
	}
	for {
		select {
		case s := <-h.subscribe:
			if s.c.topics == nil {
				continue // already dropped
			}
			set := topics[s.topic]
			if set == nil {
				set = make(map[*gorillaClient]struct{})
				topics[s.topic] = set
			}
			set[s.c] = struct{}{}
			s.c.topics[s.topic] = struct{}{}
			if s.id != nil {
				ack := []byte(`{"type":"ack","id":`)
				ack = append(ack, s.id...)
				ack = append(ack, `,"topics":[`...)
				ack = append(ack, mustJSON(s.topic)...)
				ack = append(ack, "]}"...)
				pm, _ := websocket.NewPreparedMessage(websocket.TextMessage, ack)
				select {
				case s.c.send <- pm:
				default:
					drop(s.c)
				}
			}
		case c := <-h.unregister:
			drop(c)
		case m := <-h.broadcast:
			for c := range topics[m.topic] {
				select {
				case c.send <- m.pm:
				default:
					drop(c)
				}
			}
		case <-h.quit:
			return
		}
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func (h *gorillaHub) serveWs(w http.ResponseWriter, r *http.Request) {
	conn, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	if h.level != 0 {
		conn.EnableWriteCompression(true)
		_ = conn.SetCompressionLevel(h.level)
	}
	c := &gorillaClient{
		hub:    h,
		conn:   conn,
		send:   make(chan *websocket.PreparedMessage, gorillaSendBuffer),
		topics: make(map[string]struct{}),
	}
	h.connsMu.Lock()
	h.conns[c] = struct{}{}
	h.connsMu.Unlock()
	h.wg.Add(2)
	go c.writePump()
	go c.readPump()
}

// request is the part of firetower's client protocol the hub understands.
type request struct {
	Type  string          `json:"type"`
	Topic string          `json:"topic"`
	Data  json.RawMessage `json:"data"`
	ID    json.RawMessage `json:"id"`
}

func (c *gorillaClient) readPump() {
	h := c.hub
	defer func() {
		select {
		case h.unregister <- c:
		case <-h.quit:
		}
		h.connsMu.Lock()
		delete(h.conns, c)
		h.connsMu.Unlock()
		_ = c.conn.Close()
		h.wg.Done()
	}()
	c.conn.SetReadLimit(gorillaMaxMessageSize)
	_ = c.conn.SetReadDeadline(time.Now().Add(gorillaPongWait))
	c.conn.SetPongHandler(func(string) error {
		return c.conn.SetReadDeadline(time.Now().Add(gorillaPongWait))
	})
	for {
		_, msg, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		var req request
		if json.Unmarshal(bytes.TrimSpace(msg), &req) != nil {
			continue
		}
		switch req.Type {
		case "subscribe":
			h.subscribe <- gorillaSub{c: c, topic: req.Topic, id: req.ID}
		case "publish":
			_ = h.Publish(req.Topic, req.Data)
		}
	}
}

func (c *gorillaClient) writePump() {
	ticker := time.NewTicker(gorillaPingPeriod)
	defer func() {
		ticker.Stop()
		_ = c.conn.Close()
		c.hub.wg.Done()
	}()
	for {
		select {
		case pm, ok := <-c.send:
			_ = c.conn.SetWriteDeadline(time.Now().Add(gorillaWriteWait))
			if !ok {
				_ = c.conn.WriteMessage(websocket.CloseMessage, []byte{})
				return
			}
			if err := c.conn.WritePreparedMessage(pm); err != nil {
				return
			}
		case <-ticker.C:
			_ = c.conn.SetWriteDeadline(time.Now().Add(gorillaWriteWait))
			if err := c.conn.WriteMessage(websocket.PingMessage, nil); err != nil {
				return
			}
		}
	}
}
