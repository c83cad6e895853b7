// Package client is a Go client for firetower servers (protocol version 1).
//
// A Client holds one websocket connection and keeps it: when it drops, the
// Client dials again with exponential backoff and jitter, subscribes again to
// every topic it had, and only then reports StateOpen. Requests (Subscribe,
// Unsubscribe, Publish, Ping) carry an id and wait for the server's answer;
// an error answer is returned as an *Error with the server's code.
//
//	c, err := client.Dial(ctx, "ws://127.0.0.1:9999/ws",
//		client.WithHandler(func(topic string, data []byte) {
//			fmt.Printf("%s: %s\n", topic, data)
//		}))
//	if err != nil { ... }
//	defer c.Close()
//	if err := c.Subscribe(ctx, "/chat/world"); err != nil { ... }
//	err = c.Publish(ctx, "/chat/world", []byte(`{"text":"hi"}`))
//
// On topics the server keeps history for, the Client tracks its position
// (epoch and offset) from acks and deliveries and resubscribes with it as
// "since" after every reconnect, so that what was published meanwhile is
// replayed; WithRecoveryHandler and WithGapHandler tell the application how
// that went, SubscribeWith asks for the latest N messages (recovery.go).
//
// Every goroutine a Client starts is stopped by Close, which returns once they
// are gone.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/firetower-go/firetower/internal/protocol"
)

// Error codes the server sends (see the protocol's error message).
const (
	CodeBadRequest      = protocol.CodeBadRequest
	CodeUnknownType     = protocol.CodeUnknownType
	CodeInvalidTopic    = protocol.CodeInvalidTopic
	CodeForbidden       = protocol.CodeForbidden
	CodeTooManyTopics   = protocol.CodeTooManyTopics
	CodeRateLimited     = protocol.CodeRateLimited
	CodeMessageTooLarge = protocol.CodeMessageTooLarge
	CodeUnavailable     = protocol.CodeUnavailable
	CodeInternal        = protocol.CodeInternal
)

// Error is an error message from the server.
type Error struct {
	Code    string // one of the Code constants
	Message string // for humans
}

func (e *Error) Error() string { return "firetower: " + e.Code + ": " + e.Message }

// Is reports whether target is an *Error with the same code (and the same
// message, when target has one), so errors.Is(err, &client.Error{Code:
// client.CodeForbidden}) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Message == "" || t.Message == e.Message)
}

var (
	// ErrClosed: the Client is closed (Close was called, or it stopped
	// reconnecting).
	ErrClosed = errors.New("client: closed")
	// ErrConnectionLost: the connection dropped before the server answered.
	// Whether the server acted on the request is unknown.
	ErrConnectionLost = errors.New("client: connection lost")
	// ErrNotConnected: with WithFailFast(true), a request was made while
	// the Client was not connected (reconnecting). It was not sent.
	ErrNotConnected = errors.New("client: not connected")
	// ErrInvalidData: Publish was given data that is not valid JSON.
	ErrInvalidData = errors.New("client: data is not valid JSON")
)

// Client is a connection to a firetower server that reconnects by itself.
// Its methods are safe for concurrent use.
type Client struct {
	cfg    config
	url    string
	dialer websocket.Dialer

	ctx     context.Context // cancelled by Close
	cancel  context.CancelFunc
	closing chan struct{} // closed by Close
	ended   chan struct{} // closed when the supervisor returns
	stopped chan struct{} // closed when Close is done
	wg      sync.WaitGroup
	ev      dispatcher
	nextID  atomic.Uint64

	mu     sync.Mutex
	closed bool
	live   *conn         // the latest connection, open or not
	open   *conn         // the connection serving requests; nil while not open
	ready  chan struct{} // closed while open != nil
	state  State
	final  error    // why the Client stopped by itself
	topics []string // subscribed topics, as requested, in order

	pmu sync.Mutex           // guards pos; never held while taking mu
	pos map[string]*topicPos // positions of subscribed history topics (recovery.go)
}

// Dial connects to a firetower server at rawURL ("ws://host:port/ws"; http
// and https are taken as ws and wss) and returns once the connection is open.
// ctx bounds this first connection only.
func Dial(ctx context.Context, rawURL string, opts ...Option) (*Client, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if cfg.maxDelay < cfg.minDelay {
		cfg.maxDelay = cfg.minDelay
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("client: bad url: %w", err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return nil, fmt.Errorf("client: bad url %q: scheme must be ws or wss", rawURL)
	}
	if len(cfg.query) > 0 {
		q := u.Query()
		for k, vs := range cfg.query {
			for _, v := range vs {
				q.Add(k, v)
			}
		}
		u.RawQuery = q.Encode()
	}
	proto := SubprotocolJSON
	if cfg.codec == Msgpack {
		proto = SubprotocolMsgpack
	}
	c := &Client{
		cfg:     cfg,
		url:     u.String(),
		dialer:  websocket.Dialer{Subprotocols: []string{proto}, TLSClientConfig: cfg.tls},
		closing: make(chan struct{}),
		ended:   make(chan struct{}),
		stopped: make(chan struct{}),
		ready:   make(chan struct{}),
		pos:     map[string]*topicPos{},
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.ev.start()
	if cfg.onState != nil {
		c.ev.post(func() { cfg.onState(StateConnecting, nil) })
	}
	cn, err := c.dial(ctx)
	if err != nil {
		c.cancel()
		c.setState(StateClosed, err)
		c.ev.stop()
		return nil, err
	}
	c.mu.Lock()
	c.live, c.open = cn, cn
	close(c.ready)
	c.setStateLocked(StateOpen, nil)
	c.wg.Add(2)
	c.mu.Unlock()
	go cn.read()
	go c.supervise(cn)
	return c, nil
}

// State is the current state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Topics are the topics the Client is subscribed to (and subscribes to again
// after a reconnect).
func (c *Client) Topics() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.topics)
}

// Subscribe subscribes to topics and returns once the server acknowledged
// it. While the Client is reconnecting it first waits for the connection,
// until ctx ends (then it returns ctx.Err() and the topics are not
// subscribed); with WithFailFast(true) it returns ErrNotConnected at once
// instead. A refusal is an *Error (invalid_topic, forbidden,
// too_many_topics, ...); ErrConnectionLost means the connection dropped
// before the answer; ErrClosed that the Client is closed or gave up
// reconnecting. Subscribed topics are subscribed again after every
// reconnect; on topics with history, from the position the Client reached
// (see Position and WithGapHandler).
func (c *Client) Subscribe(ctx context.Context, topics ...string) error {
	_, err := c.SubscribeWith(ctx, SubscribeOptions{}, topics...)
	return err
}

// Unsubscribe unsubscribes from topics and returns once the server
// acknowledged it. The topics are forgotten at once: they are not
// subscribed again after a reconnect, and while the Client is not connected
// Unsubscribe returns nil without waiting.
func (c *Client) Unsubscribe(ctx context.Context, topics ...string) error {
	c.mu.Lock()
	if err := c.closedErrLocked(); err != nil {
		c.mu.Unlock()
		return err
	}
	c.topics = minus(c.topics, topics)
	cn := c.open
	c.mu.Unlock()
	c.forget(topics)
	if cn == nil {
		return nil // the connection being restored will not have them
	}
	_, err := c.roundTrip(ctx, cn, request{typ: "unsubscribe", topics: slices.Clone(topics)}, nil)
	if errors.Is(err, ErrConnectionLost) {
		return nil // the server forgot every subscription of that connection
	}
	return err
}

// Publish publishes data, which must be JSON (nil or empty means null), to
// topic and returns once the server acknowledged it. A Msgpack client sends
// the equivalent msgpack value. By default a server accepts a publish only
// to a topic the client is subscribed to (else *Error forbidden).
//
// While the Client is reconnecting, Publish waits for the connection and
// sends once it is back; it blocks until then or until ctx ends (then it
// returns ctx.Err() and nothing is sent), so give ctx a deadline. With
// WithFailFast(true) it returns ErrNotConnected at once instead.
// ErrConnectionLost means the connection dropped after the publish was
// sent: whether the server took it is unknown. ErrClosed: the Client is
// closed or gave up reconnecting.
func (c *Client) Publish(ctx context.Context, topic string, data []byte) error {
	if len(data) == 0 {
		data = []byte("null")
	} else if !json.Valid(data) {
		return ErrInvalidData
	}
	cn, err := c.waitOpen(ctx)
	if err != nil {
		return err
	}
	_, err = c.roundTrip(ctx, cn, request{typ: "publish", topics: []string{topic}, data: data}, nil)
	return err
}

// Ping sends an application-level ping and waits for the pong. While the
// Client is reconnecting it waits for the connection as Publish does (or,
// with WithFailFast(true), returns ErrNotConnected).
func (c *Client) Ping(ctx context.Context) error {
	cn, err := c.waitOpen(ctx)
	if err != nil {
		return err
	}
	_, err = c.roundTrip(ctx, cn, request{typ: "ping"}, nil)
	return err
}

// Close closes the connection (close code 1000), stops reconnecting, fails
// pending requests with ErrClosed and returns once every goroutine of the
// Client has ended, after the handlers got StateClosed. It must not be
// called from a handler (use go c.Close()). Calling it again is a no-op.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.stopped
		return nil
	}
	c.closed = true
	close(c.closing)
	cn := c.live
	c.mu.Unlock()
	c.cancel()
	if cn != nil {
		cn.shutdown()
	}
	c.wg.Wait()
	c.setState(StateClosed, nil)
	c.ev.stop()
	close(c.stopped)
	return nil
}

func (c *Client) closedErrLocked() error {
	if c.closed {
		return ErrClosed
	}
	if c.state == StateClosed {
		if c.final != nil {
			return fmt.Errorf("%w: %w", ErrClosed, c.final)
		}
		return ErrClosed
	}
	return nil
}

// waitOpen returns the open connection, waiting while there is none (or,
// with WithFailFast, failing with ErrNotConnected).
func (c *Client) waitOpen(ctx context.Context) (*conn, error) {
	for {
		c.mu.Lock()
		if err := c.closedErrLocked(); err != nil {
			c.mu.Unlock()
			return nil, err
		}
		if c.open != nil {
			cn := c.open
			c.mu.Unlock()
			return cn, nil
		}
		if c.cfg.failFast {
			c.mu.Unlock()
			return nil, ErrNotConnected
		}
		ready := c.ready
		c.mu.Unlock()
		select {
		case <-ready:
		case <-c.ended:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// roundTrip sends r with a fresh id on cn and waits for the answer. onAck,
// if set, runs on the reader goroutine when the ack arrives, even after ctx
// ended (the server acted on the request all the same).
func (c *Client) roundTrip(ctx context.Context, cn *conn, r request, onAck func(message)) (message, error) {
	if err := ctx.Err(); err != nil {
		return message{}, err
	}
	r.id = c.nextID.Add(1)
	b, err := c.cfg.codec.encode(r)
	if err != nil {
		return message{}, fmt.Errorf("client: encoding %s: %w", r.typ, err)
	}
	p := &pending{ch: make(chan result, 1), onAck: onAck}
	cn.mu.Lock()
	if cn.dead != nil {
		err := cn.dead
		cn.mu.Unlock()
		return message{}, err
	}
	cn.pending[r.id] = p
	cn.mu.Unlock()
	if err := cn.write(b); err != nil {
		cn.mu.Lock()
		delete(cn.pending, r.id)
		dead := cn.dead
		cn.mu.Unlock()
		_ = cn.ws.Close() // the reader ends; the supervisor reconnects
		if dead != nil {
			return message{}, dead
		}
		return message{}, fmt.Errorf("%w: %v", ErrConnectionLost, err)
	}
	select {
	case res := <-p.ch:
		if res.err != nil {
			return message{}, res.err
		}
		if res.m.typ == "error" {
			return res.m, &Error{Code: res.m.code, Message: res.m.text}
		}
		return res.m, nil
	case <-ctx.Done():
		return message{}, ctx.Err()
	}
}

func (c *Client) dial(ctx context.Context) (*conn, error) {
	ws, resp, err := c.dialer.DialContext(ctx, c.url, c.cfg.header.Clone())
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("client: dial %s: %w (HTTP %s)", c.url, err, resp.Status)
		}
		return nil, fmt.Errorf("client: dial %s: %w", c.url, err)
	}
	if c.cfg.codec == Msgpack && ws.Subprotocol() != SubprotocolMsgpack {
		_ = ws.Close()
		return nil, fmt.Errorf("client: dial %s: the server did not accept subprotocol %s", c.url, SubprotocolMsgpack)
	}
	ws.SetReadLimit(c.cfg.readLimit)
	cn := &conn{c: c, ws: ws, pending: map[uint64]*pending{}, done: make(chan struct{})}
	if rt := c.cfg.readTimeout; rt > 0 {
		_ = ws.SetReadDeadline(time.Now().Add(rt))
		ws.SetPongHandler(func(string) error { return ws.SetReadDeadline(time.Now().Add(rt)) })
		ws.SetPingHandler(func(data string) error {
			_ = ws.SetReadDeadline(time.Now().Add(rt))
			err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(c.cfg.writeTimeout))
			var ne net.Error
			if errors.Is(err, websocket.ErrCloseSent) || (errors.As(err, &ne) && ne.Timeout()) {
				return nil
			}
			return err
		})
	}
	return cn, nil
}

// supervise owns the connection's life after Dial: it waits for each
// connection to drop, then reconnects with backoff and restores the
// subscriptions, until Close or until it gives up.
func (c *Client) supervise(cn *conn) {
	defer c.wg.Done()
	defer close(c.ended)
	attempt := 0
	var cause error
	for {
		if cn != nil {
			<-cn.done
			c.mu.Lock()
			if c.open == cn {
				c.open = nil
				c.ready = make(chan struct{})
			}
			closed := c.closed
			c.mu.Unlock()
			if closed {
				return
			}
			cause = cn.err
			if !c.cfg.reconnect {
				c.end(cause)
				return
			}
			c.setState(StateReconnecting, cause)
			cn = nil
		}
		attempt++
		if c.cfg.maxRetries > 0 && attempt > c.cfg.maxRetries {
			c.end(fmt.Errorf("client: gave up after %d reconnect attempts: %w", c.cfg.maxRetries, cause))
			return
		}
		if !c.sleep(backoff(c.cfg.minDelay, c.cfg.maxDelay, attempt, rand.Float64())) { //nolint:gosec // G404: reconnect jitter, not a secret
			return
		}
		dctx, cancel := context.WithTimeout(c.ctx, c.cfg.dialTimeout)
		next, err := c.dial(dctx)
		cancel()
		if err != nil {
			if c.ctx.Err() != nil {
				return
			}
			cause = err
			c.report(fmt.Errorf("client: reconnect attempt %d: %w", attempt, err))
			continue
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			_ = next.ws.Close()
			return
		}
		c.live = next
		c.wg.Add(1)
		c.mu.Unlock()
		go next.read()
		cn = next
		if err := c.restore(next); err != nil {
			_ = next.ws.Close()
			continue // waits for the reader, then retries
		}
		attempt = 0
	}
}

// backoff is the delay before reconnect attempt n (1-based): lo*2^(n-1)
// capped at hi, scaled by 0.5+r/2 for r in [0, 1).
func backoff(lo, hi time.Duration, n int, r float64) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return time.Duration(float64(d) * (0.5 + r/2))
}

func (c *Client) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.closing:
		return false
	}
}

// restore brings the subscriptions of a new connection in line with
// c.topics, then makes it the open connection. A topic the server now
// refuses is forgotten and reported to the error handler.
func (c *Client) restore(cn *conn) error {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.dialTimeout)
	defer cancel()
	var sent []string
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return ErrClosed
		}
		add, del := minus(c.topics, sent), minus(sent, c.topics)
		if len(add) == 0 && len(del) == 0 {
			c.open = cn
			close(c.ready)
			c.setStateLocked(StateOpen, nil)
			c.mu.Unlock()
			return nil
		}
		c.mu.Unlock()
		if len(del) > 0 {
			if _, err := c.roundTrip(ctx, cn, request{typ: "unsubscribe", topics: del}, nil); err != nil && !isServerError(err) {
				return err
			}
			sent = minus(sent, del)
		}
		if len(add) == 0 {
			continue
		}
		_, err := c.resubscribe(ctx, cn, add)
		if err == nil {
			sent = append(sent, add...)
			continue
		}
		if !isServerError(err) {
			return err
		}
		// Refused as a whole: one by one, forgetting those refused.
		for _, t := range add {
			_, err := c.resubscribe(ctx, cn, []string{t})
			switch {
			case err == nil:
				sent = append(sent, t)
			case isServerError(err):
				c.mu.Lock()
				c.topics = minus(c.topics, []string{t})
				c.mu.Unlock()
				c.forget([]string{t})
				c.report(fmt.Errorf("client: subscribing again to %q after a reconnect: %w", t, err))
			default:
				return err
			}
		}
	}
}

// resubscribe subscribes cn to topics after a reconnect, resuming the
// history topics from the Client's positions.
func (c *Client) resubscribe(ctx context.Context, cn *conn, topics []string) (message, error) {
	since := c.resumePoints(topics)
	return c.roundTrip(ctx, cn, request{typ: "subscribe", topics: topics, since: since}, func(m message) {
		c.track(m, since, true)
	})
}

func isServerError(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// end makes the Client stop by itself (no reconnect, or gave up).
func (c *Client) end(cause error) {
	c.mu.Lock()
	c.final = cause
	if c.final == nil {
		c.final = ErrConnectionLost
	}
	c.setStateLocked(StateClosed, cause)
	c.mu.Unlock()
}

func (c *Client) setState(s State, err error) {
	c.mu.Lock()
	c.setStateLocked(s, err)
	c.mu.Unlock()
}

// setStateLocked records s and queues the state handler; c.mu is held, so
// the handler sees the states in order.
func (c *Client) setStateLocked(s State, err error) {
	if c.state == s {
		return
	}
	c.state = s
	if h := c.cfg.onState; h != nil {
		c.ev.post(func() { h(s, err) })
	}
}

func (c *Client) report(err error) {
	if h := c.cfg.onError; h != nil {
		c.ev.post(func() { h(err) })
	}
}

// conn is one websocket connection and the requests waiting on it.
type conn struct {
	c   *Client
	ws  *websocket.Conn
	wmu sync.Mutex

	mu      sync.Mutex
	pending map[uint64]*pending
	dead    error // set when the reader ended; requests fail with it

	done chan struct{} // closed when the reader has ended
	err  error         // why it ended; read after done
}

type pending struct {
	ch    chan result // buffered: the reader never blocks on it
	onAck func(message)
}

type result struct {
	m   message
	err error
}

func (cn *conn) write(b []byte) error {
	mt := websocket.TextMessage
	if cn.c.cfg.codec == Msgpack {
		mt = websocket.BinaryMessage
	}
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	_ = cn.ws.SetWriteDeadline(time.Now().Add(cn.c.cfg.writeTimeout))
	return cn.ws.WriteMessage(mt, b)
}

// shutdown sends a normal close and closes the socket; the reader ends.
func (cn *conn) shutdown() {
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	_ = cn.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	_ = cn.ws.Close()
}

func (cn *conn) read() {
	c := cn.c
	defer c.wg.Done()
	want := websocket.TextMessage
	if c.cfg.codec == Msgpack {
		want = websocket.BinaryMessage
	}
	var err error
	for {
		var mt int
		var p []byte
		mt, p, err = cn.ws.ReadMessage()
		if err != nil {
			break
		}
		if rt := c.cfg.readTimeout; rt > 0 {
			_ = cn.ws.SetReadDeadline(time.Now().Add(rt))
		}
		if mt != want {
			c.report(fmt.Errorf("client: unexpected websocket message type %d from the server", mt))
			continue
		}
		m, derr := c.cfg.codec.decode(p)
		if derr != nil {
			c.report(derr)
			continue
		}
		cn.handle(m)
	}
	_ = cn.ws.Close()
	dead := fmt.Errorf("%w: %v", ErrConnectionLost, err)
	select {
	case <-c.closing:
		dead = ErrClosed
	default:
	}
	cn.mu.Lock()
	cn.dead = dead
	ps := cn.pending
	cn.pending = nil
	cn.mu.Unlock()
	for _, p := range ps {
		p.ch <- result{err: dead}
	}
	cn.err = err
	close(cn.done)
}

func (cn *conn) handle(m message) {
	c := cn.c
	switch m.typ {
	case "publish", "":
		if m.hasOffset {
			if gap, ok := c.delivered(m.topic, m.offset); ok {
				if h := c.cfg.onGap; h != nil {
					c.ev.post(func() { h(gap) })
				}
			}
		}
		h, hd := c.cfg.handler, c.cfg.onDelivery
		if h != nil || hd != nil {
			d := Delivery{Topic: m.topic, Data: m.data, Offset: m.offset}
			c.ev.post(func() {
				if h != nil {
					h(d.Topic, d.Data)
				}
				if hd != nil {
					hd(d)
				}
			})
		}
	case "ack", "pong", "error":
		if m.hasID {
			cn.mu.Lock()
			p := cn.pending[m.id]
			delete(cn.pending, m.id)
			cn.mu.Unlock()
			if p != nil {
				if m.typ != "error" && p.onAck != nil {
					p.onAck(m)
				}
				p.ch <- result{m: m}
				return
			}
		}
		if m.typ == "error" {
			c.report(&Error{Code: m.code, Message: m.text})
		}
	default:
		c.report(fmt.Errorf("client: unexpected message type %q from the server", m.typ))
	}
}

// dispatcher runs the user's handlers one at a time, in order, on one
// goroutine, so that a slow handler never stalls the reader and a handler
// may make requests.
type dispatcher struct {
	mu   sync.Mutex
	q    []func()
	wake chan struct{}
	quit chan struct{}
	done chan struct{}
}

func (d *dispatcher) start() {
	d.wake = make(chan struct{}, 1)
	d.quit = make(chan struct{})
	d.done = make(chan struct{})
	go d.run()
}

func (d *dispatcher) post(f func()) {
	d.mu.Lock()
	d.q = append(d.q, f)
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *dispatcher) take() []func() {
	d.mu.Lock()
	defer d.mu.Unlock()
	q := d.q
	d.q = nil
	return q
}

func (d *dispatcher) run() {
	defer close(d.done)
	for {
		q := d.take()
		for _, f := range q {
			f()
		}
		if len(q) > 0 {
			continue
		}
		select {
		case <-d.wake:
		case <-d.quit:
			for _, f := range d.take() {
				f()
			}
			return
		}
	}
}

// stop runs what is queued, then ends the goroutine and waits for it.
func (d *dispatcher) stop() {
	close(d.quit)
	<-d.done
}

// union appends to list the topics not in it.
func union(list, topics []string) []string {
	for _, t := range topics {
		if !slices.Contains(list, t) {
			list = append(list, t)
		}
	}
	return list
}

// minus is list without topics, as a new slice.
func minus(list, topics []string) []string {
	var out []string
	for _, t := range list {
		if !slices.Contains(topics, t) {
			out = append(out, t)
		}
	}
	return out
}
