package firetower

import (
	"context"
	"fmt"
	"runtime/debug"
)

// Handler handles one hook call.
//
// Where hooks run: on the Tower's workers, one call at a time per
// connection, in the order of that connection's requests, so a hook may
// block (a blocked hook holds one worker and delays only its own
// connection). The OnRead chain of a Tower built WithNonBlockingHooks(HookRead)
// runs on the connection's event loop instead, and must not block. Hooks
// of different connections run concurrently.
type Handler func(c *Context) error

// Middleware wraps a Handler. In a chain the first middleware listed is the
// outermost: it runs first and sees the result of everything after it.
type Middleware func(next Handler) Handler

// Hook names a point where a Tower runs a chain of middleware.
type Hook string

// The hooks.
const (
	HookConnect         Hook = "connect"
	HookBeforeSubscribe Hook = "before_subscribe"
	HookSubscribe       Hook = "subscribe"
	HookUnsubscribe     Hook = "unsubscribe"
	HookRead            Hook = "read"
	HookReadTimeout     Hook = "read_timeout"
	HookDisconnect      Hook = "disconnect"
	HookSlowConsumer    Hook = "slow_consumer"
)

const numHooks = 8

func (h Hook) index() int {
	switch h {
	case HookConnect:
		return 0
	case HookBeforeSubscribe:
		return 1
	case HookSubscribe:
		return 2
	case HookUnsubscribe:
		return 3
	case HookRead:
		return 4
	case HookReadTimeout:
		return 5
	case HookDisconnect:
		return 6
	}
	return 7
}

var hookOrder = [numHooks]Hook{HookConnect, HookBeforeSubscribe, HookSubscribe, HookUnsubscribe, HookRead, HookReadTimeout, HookDisconnect, HookSlowConsumer}

// Message is a publication seen by a hook.
type Message struct {
	Topic string
	// Data is the payload as JSON, exactly as the client sent it.
	Data []byte
}

// Context is the argument of one hook call. Use it only inside that call,
// on the goroutine running it: its methods are not synchronised, and it is
// not safe to keep after the call returns. What it hands out (Context,
// Tower, Conn) may be kept and used from any goroutine.
type Context struct {
	ctx    context.Context
	tower  *Tower
	conn   *Conn
	hook   Hook
	topics []string
	msg    *Message
	outbox *[]Message // client publish: where the end of OnRead queues it
}

// Context is the call's context; it is cancelled when the Tower shuts down.
func (c *Context) Context() context.Context { return c.ctx }

// Tower is the Tower running the hook.
func (c *Context) Tower() *Tower { return c.tower }

// Conn is the client connection the hook runs for.
func (c *Context) Conn() *Conn { return c.conn }

// Hook is the hook being run.
func (c *Context) Hook() Hook { return c.hook }

// Topics are the topics of a subscribe or unsubscribe.
func (c *Context) Topics() []string { return c.topics }

// SetTopics replaces the topics of a subscribe (in OnBeforeSubscribe).
func (c *Context) SetTopics(topics []string) { c.topics = topics }

// Message is the publication of OnRead, OnReadTimeout and OnSlowConsumer.
func (c *Context) Message() *Message { return c.msg }

// chains are the hook chains, built once by New. blocking marks the chains
// that may block (they run on workers); plainRead: OnRead has no
// middleware (a client publish needs no Context).
type chains struct {
	h         [numHooks]Handler
	mayBlock  [numHooks]bool
	plainRead bool
}

func buildChains(cfg *config, read Handler) chains {
	var ch chains
	ch.plainRead = len(cfg.hooks[HookRead.index()]) == 0 && len(cfg.use) == 0
	for i, h := range hookOrder {
		ch.mayBlock[i] = !cfg.nonBlocking[i] && (len(cfg.hooks[i]) > 0 || len(cfg.use) > 0)
		final := func(*Context) error { return nil }
		if h == HookRead {
			final = read
		}
		if len(cfg.hooks[i]) == 0 && len(cfg.use) == 0 {
			if h == HookRead {
				ch.h[i] = read
			}
			continue // nil: nothing to run
		}
		next := Handler(final)
		for j := len(cfg.hooks[i]) - 1; j >= 0; j-- {
			next = cfg.hooks[i][j](next)
		}
		for j := len(cfg.use) - 1; j >= 0; j-- {
			next = cfg.use[j](next)
		}
		ch.h[i] = next
	}
	return ch
}

// has reports whether hook h runs anything.
func (ch *chains) has(h Hook) bool { return ch.h[h.index()] != nil }

// nonBlocking reports whether hook h's chain may run on an event loop:
// empty, or declared non-blocking (WithNonBlockingHooks).
func (ch *chains) nonBlocking(h Hook) bool { return !ch.mayBlock[h.index()] }

// run runs hook h's chain. A panic in hook code does not take the server
// down: it is logged, counted, and becomes an internal error.
// hooked reports whether hook h has a chain to run for connection c, so
// that callers build no Context for nothing.
func (t *Tower) hooked(h Hook, c *Conn) bool {
	return t.chains.h[h.index()] != nil && (c == nil || !c.system)
}

func (t *Tower) run(h Hook, c *Context) (err error) {
	fn := t.chains.h[h.index()]
	if fn == nil || (c.conn != nil && c.conn.system) {
		return nil // system connections (the dashboard's) run no hooks
	}
	c.hook = h
	c.tower = t
	if c.ctx == nil {
		c.ctx = t.ctx
	}
	defer func() {
		if r := recover(); r != nil {
			t.stats.hookPanics.Add(1)
			t.log.Error("firetower: hook panicked", "hook", string(h), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = &Error{Code: CodeInternal, Message: "internal error"}
		}
	}()
	return fn(c)
}
