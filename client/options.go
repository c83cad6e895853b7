package client

import (
	"crypto/tls"
	"net/http"
	"net/url"
	"time"
)

// Codec is the encoding spoken on the connection.
type Codec uint8

const (
	// JSON sends text frames and offers the subprotocol firetower.v1.json
	// (the default).
	JSON Codec = iota
	// Msgpack sends binary frames and requires the subprotocol
	// firetower.v1.msgpack.
	Msgpack
)

// Subprotocol names (Sec-WebSocket-Protocol).
const (
	SubprotocolJSON    = "firetower.v1.json"
	SubprotocolMsgpack = "firetower.v1.msgpack"
)

func (c Codec) String() string {
	if c == Msgpack {
		return "msgpack"
	}
	return "json"
}

// State is the state of a Client's connection.
type State uint8

const (
	// StateConnecting: the first connection is being made (Dial).
	StateConnecting State = iota
	// StateOpen: connected, and every topic subscribed before a reconnect
	// is subscribed again.
	StateOpen
	// StateReconnecting: the connection dropped; the Client is waiting out
	// its backoff or dialing again.
	StateReconnecting
	// StateClosed: Close was called, or the connection dropped and
	// reconnecting is off or gave up. Final.
	StateClosed
)

func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateOpen:
		return "open"
	case StateReconnecting:
		return "reconnecting"
	case StateClosed:
		return "closed"
	}
	return "unknown"
}

// Handler receives deliveries: the topic and the data as JSON bytes (for a
// Msgpack client, the delivered value converted to JSON). A delivery from a
// server running with legacy delivery carries no envelope: it arrives with
// topic "" and the raw frame as data. WithDeliveryHandler gets the same
// deliveries with their offset.
type Handler func(topic string, data []byte)

// StateHandler is told of every state change; err is the cause of a drop
// (StateReconnecting, StateClosed after a failure), nil otherwise.
type StateHandler func(s State, err error)

// ErrorHandler is told of errors that belong to no call: an error message
// from the server without a request id, a topic the server refused when it
// was subscribed again after a reconnect, a failed reconnect attempt.
type ErrorHandler func(err error)

// Option configures a Client.
type Option func(*config)

type config struct {
	codec        Codec
	header       http.Header
	query        url.Values
	handler      Handler
	onState      StateHandler
	onError      ErrorHandler
	reconnect    bool
	minDelay     time.Duration
	maxDelay     time.Duration
	maxRetries   int
	dialTimeout  time.Duration
	writeTimeout time.Duration
	readTimeout  time.Duration
	readLimit    int64
	failFast     bool
	onDelivery   DeliveryHandler
	onRecovery   RecoveryHandler
	onGap        RecoveryHandler

	tls *tls.Config
}

func defaultConfig() config {
	return config{
		reconnect:    true,
		minDelay:     250 * time.Millisecond,
		maxDelay:     15 * time.Second,
		dialTimeout:  10 * time.Second,
		writeTimeout: 10 * time.Second,
		readLimit:    16 << 20,
	}
}

// WithTLSConfig sets the TLS configuration of wss:// connections (for a
// private CA: RootCAs; for a client certificate: Certificates). Default
// nil: the system's roots, as crypto/tls does.
func WithTLSConfig(c *tls.Config) Option { return func(cf *config) { cf.tls = c } }

// WithCodec sets the codec. Default JSON.
func WithCodec(c Codec) Option { return func(cf *config) { cf.codec = c } }

// WithHeader adds HTTP headers to every upgrade request (for instance an
// Authorization header checked by the server's OnConnect hook).
func WithHeader(h http.Header) Option {
	return func(cf *config) {
		if cf.header == nil {
			cf.header = http.Header{}
		}
		for k, vs := range h {
			for _, v := range vs {
				cf.header.Add(k, v)
			}
		}
	}
}

// WithQuery adds query parameters to the URL of every upgrade request (for
// instance a token, where headers cannot be set).
func WithQuery(q url.Values) Option {
	return func(cf *config) {
		if cf.query == nil {
			cf.query = url.Values{}
		}
		for k, vs := range q {
			for _, v := range vs {
				cf.query.Add(k, v)
			}
		}
	}
}

// WithHandler sets the handler for deliveries. Handlers (deliveries, state
// changes, errors) run one at a time, in order, on one goroutine of the
// Client; they may call Subscribe, Publish and the like, but not Close (use
// go c.Close()).
func WithHandler(h Handler) Option { return func(cf *config) { cf.handler = h } }

// WithStateHandler sets the handler for state changes.
func WithStateHandler(h StateHandler) Option { return func(cf *config) { cf.onState = h } }

// WithErrorHandler sets the handler for errors that belong to no call.
func WithErrorHandler(h ErrorHandler) Option { return func(cf *config) { cf.onError = h } }

// WithReconnect turns automatic reconnection on or off. Default on.
func WithReconnect(on bool) Option { return func(cf *config) { cf.reconnect = on } }

// WithBackoff sets the reconnect delays: the n-th attempt in a row waits
// min*2^(n-1), capped at max, scaled by a random factor in [0.5, 1).
// Default 250ms and 15s. Values <= 0 keep the default.
func WithBackoff(min, max time.Duration) Option {
	return func(cf *config) {
		if min > 0 {
			cf.minDelay = min
		}
		if max > 0 {
			cf.maxDelay = max
		}
	}
}

// WithMaxRetries bounds the reconnect attempts in a row; past it the Client
// gives up (StateClosed). 0, the default, retries until Close.
func WithMaxRetries(n int) Option { return func(cf *config) { cf.maxRetries = n } }

// WithDialTimeout bounds each reconnect attempt. Default 10s. (The first
// connection is bounded by the context given to Dial.)
func WithDialTimeout(d time.Duration) Option {
	return func(cf *config) {
		if d > 0 {
			cf.dialTimeout = d
		}
	}
}

// WithWriteTimeout bounds each write. Default 10s.
func WithWriteTimeout(d time.Duration) Option {
	return func(cf *config) {
		if d > 0 {
			cf.writeTimeout = d
		}
	}
}

// WithReadTimeout drops (and reconnects) a connection on which nothing, not
// even a websocket ping, arrived for d. Set it above the server's ping
// interval (25s by default). Default 0: off.
func WithReadTimeout(d time.Duration) Option { return func(cf *config) { cf.readTimeout = d } }

// WithReadLimit sets the largest message accepted from the server. Default
// 16 MiB.
func WithReadLimit(n int64) Option {
	return func(cf *config) {
		if n > 0 {
			cf.readLimit = n
		}
	}
}

// WithFailFast makes Subscribe, Publish and Ping fail at once with
// ErrNotConnected while the Client is not connected (reconnecting),
// instead of waiting for the connection until their context ends, which
// is the default. Nothing of such a request is kept or sent later. A
// request already sent when the connection drops fails with
// ErrConnectionLost either way.
func WithFailFast(on bool) Option { return func(cf *config) { cf.failFast = on } }
