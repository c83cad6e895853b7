// Admission: the websocket upgrade (Origin policy, connection caps,
// OnConnect) and a connection's opening and end.

package firetower

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/firetower-go/firetower/internal/protocol"
	"github.com/firetower-go/firetower/transport"
)

// wsHandler receives the transport's events, on the event loop of the
// connection each is about.
type wsHandler struct{ t *Tower }

func (h wsHandler) Handshake(tc *transport.Conn, hs *transport.Handshake) transport.Decision {
	t := h.t
	if !t.originAllowed(hs.Request) {
		t.stats.refusedOrigin.Add(1)
		return transport.Decision{Status: http.StatusForbidden, Reason: "origin not allowed"}
	}
	ip := ""
	if a := tc.RemoteAddr(); a != nil && t.cfg.maxConnsPerIP > 0 {
		ip = hostOf(a.String())
	}
	if d, ok := t.admit(ip); !ok {
		return d
	}
	c := &Conn{t: t, tc: tc, id: t.newID(), ip: ip, system: t.systemRequest(hs.Request)}
	for _, p := range hs.Protocols {
		if p == protocol.SubprotocolJSON || p == protocol.SubprotocolMsgpack {
			c.echo = true
			if p == protocol.SubprotocolMsgpack {
				c.codec = protocol.Msgpack
			}
			break
		}
	}
	tc.Value = c
	t.liveAdd()
	if c.system || !t.chains.has(HookConnect) {
		t.opened(c)
		return transport.Decision{Protocol: c.subprotocol()}
	}
	c.req = hs.Request
	c.post(item{kind: itemConnect})
	return transport.Decision{Pending: true}
}

func (h wsHandler) Dropped(tc *transport.Conn, _ int) {
	c := tc.Value.(*Conn)
	h.t.stats.slowDropped.Add(1)
	if h.t.chains.has(HookSlowConsumer) {
		c.post(item{kind: itemSlow})
	}
}

func (h wsHandler) Closed(tc *transport.Conn, _ int, _ error) {
	c := tc.Value.(*Conn)
	c.gone.Store(true)
	c.post(item{kind: itemClosed})
}

// subprotocol is the Sec-WebSocket-Protocol to echo ("" for none).
func (c *Conn) subprotocol() string {
	switch {
	case !c.echo:
		return ""
	case c.codec == protocol.Msgpack:
		return protocol.SubprotocolMsgpack
	}
	return protocol.SubprotocolJSON
}

func (t *Tower) opened(c *Conn) {
	c.open.Store(true)
	t.stats.connections.Add(1)
	t.conns.add(c)
}

func (t *Tower) connect(c *Conn) {
	err := t.run(HookConnect, &Context{conn: c})
	c.req = nil
	if err != nil {
		status := http.StatusForbidden
		switch {
		case errors.Is(err, ErrUnauthorized):
			status = http.StatusUnauthorized
		case errors.Is(err, &Error{Code: CodeInternal}):
			status = http.StatusInternalServerError
		}
		c.tc.Reject(status, asError(err, CodeForbidden).Message)
		return
	}
	t.opened(c)
	c.tc.Accept(c.subprotocol())
}

func (t *Tower) disconnect(c *Conn) {
	defer t.liveDone()
	t.release(c.ip)
	t.conns.remove(c) // also the id a refused connection set in OnConnect
	if !c.open.Swap(false) {
		return // refused by OnConnect: it never joined, so no hooks
	}
	t.stats.connections.Add(-1)
	t.conns.remove(c)
	c.mu.Lock()
	topics := c.topics
	c.topics = nil
	c.mu.Unlock()
	for _, topic := range topics {
		t.unsubscribeOne(c, topic)
	}
	t.presenceChange(c, topics, false)
	for _, topic := range topics {
		_ = t.run(HookUnsubscribe, &Context{conn: c, topics: []string{topic}})
	}
	_ = t.run(HookDisconnect, &Context{conn: c})
}

// originAllowed applies the Origin policy (see WithAllowedOrigins).
func (t *Tower) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	host := strings.ToLower(u.Hostname())
	if len(t.cfg.origins) == 0 {
		return host == strings.ToLower(hostOf(r.Host))
	}
	for _, o := range t.cfg.origins {
		o = strings.ToLower(strings.TrimSpace(o))
		switch {
		case o == "*":
			return true
		case strings.Contains(o, "://"):
			if strings.EqualFold(strings.TrimSuffix(o, "/"), u.Scheme+"://"+u.Host) {
				return true
			}
		case strings.HasPrefix(o, "*."):
			if strings.HasSuffix(host, o[1:]) {
				return true
			}
		case o == host:
			return true
		}
	}
	return false
}

// hostOf strips the port from "host:port" (and brackets from IPv6).
func hostOf(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

// admit counts a new connection against the connection caps.
func (t *Tower) admit(ip string) (transport.Decision, bool) {
	t.admitMu.Lock()
	defer t.admitMu.Unlock()
	if t.cfg.maxConns > 0 && t.admitN >= t.cfg.maxConns {
		t.stats.refusedLimit.Add(1)
		return transport.Decision{Status: http.StatusServiceUnavailable, Reason: "server at its connection limit"}, false
	}
	if t.cfg.maxConnsPerIP > 0 {
		if t.perIP[ip] >= t.cfg.maxConnsPerIP {
			t.stats.refusedLimit.Add(1)
			return transport.Decision{Status: http.StatusTooManyRequests, Reason: "too many connections from this address"}, false
		}
		if t.perIP == nil {
			t.perIP = make(map[string]int)
		}
		t.perIP[ip]++
	}
	t.admitN++
	return transport.Decision{}, true
}

func (t *Tower) release(ip string) {
	t.admitMu.Lock()
	defer t.admitMu.Unlock()
	t.admitN--
	if t.cfg.maxConnsPerIP > 0 {
		if t.perIP[ip]--; t.perIP[ip] <= 0 {
			delete(t.perIP, ip)
		}
	}
}
