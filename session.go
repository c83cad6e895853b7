// The client session: a connection's inbox items and its requests
// (subscribe, unsubscribe, publish, ping).

package firetower

import (
	"fmt"

	"github.com/firetower-go/firetower/internal/protocol"
	"github.com/firetower-go/firetower/internal/wsproto"
)

// readFinal ends the OnRead chain: it publishes the message (for a client
// publish, it queues it until every topic's chain has passed).
func (t *Tower) readFinal(c *Context) error {
	m := c.Message()
	if m == nil {
		return nil
	}
	if IsSystemTopic(m.Topic) {
		return errReserved // an OnRead hook rewrote the topic to a reserved one
	}
	if e := t.publishable(m.Topic); e != nil {
		return e // an OnRead hook rewrote the topic to a pattern
	}
	if c.outbox != nil {
		*c.outbox = append(*c.outbox, *m)
		return nil
	}
	return t.publish(c.Context(), m.Topic, m.Data, m.Data)
}

// drain runs up to max items of c's inbox; it reports whether more are left.
func (t *Tower) drain(c *Conn, max int) bool {
	for range max {
		it, ok := c.next()
		if !ok {
			return false
		}
		t.process(c, it)
	}
	return true
}

func (t *Tower) process(c *Conn, it item) {
	switch it.kind {
	case itemConnect:
		t.connect(c)
	case itemRequest:
		n := requestCost(it.buf)
		t.handle(c, it.req, it.rerr)
		t.srv.PutBuffer(it.buf)
		c.handled(n)
	case itemReadTimeout:
		t.readTimeout(c, it)
		if it.buf != nil {
			t.srv.PutBuffer(it.buf)
		}
	case itemSlow:
		_ = t.run(HookSlowConsumer, &Context{conn: c})
	case itemFlood:
		c.tc.Close(wsproto.ClosePolicyViolation, "too many messages waiting: slow down")
	case itemFunc:
		it.fn()
	case itemClosed:
		t.disconnect(c)
	}
}

func (t *Tower) decode(c *Conn, p []byte) (*protocol.Request, *protocol.RequestError) {
	if c.codec == protocol.Msgpack {
		return protocol.DecodeMsgpack(p)
	}
	return protocol.DecodeJSON(p)
}

// handle answers one decoded client request (or its decoding error), on a
// worker or inline on the event loop (see inbound.go).
func (t *Tower) handle(c *Conn, req *protocol.Request, rerr *protocol.RequestError) {
	if rerr != nil {
		c.sendError(rerr.ID, &Error{Code: rerr.Code, Message: rerr.Message})
		return
	}
	switch req.Type {
	case protocol.TypeSubscribe:
		t.subscribe(c, req)
	case protocol.TypeUnsubscribe:
		t.unsubscribe(c, req)
	case protocol.TypePublish:
		t.clientPublish(c, req)
	case protocol.TypePing:
		c.reply(func(r protocol.Reply, dst []byte) []byte { return r.Pong(dst, req.ID) })
	default:
		c.sendError(req.ID, &Error{Code: CodeUnknownType, Message: fmt.Sprintf("unknown message type %q", req.RawType)})
	}
}

func validTopics(topics []string) *Error {
	if len(topics) == 0 {
		return &Error{Code: CodeInvalidTopic, Message: "no topic given"}
	}
	for _, tp := range topics {
		if err := protocol.ValidateTopic(tp); err != nil {
			return &Error{Code: CodeInvalidTopic, Message: err.Error()}
		}
	}
	return nil
}

func (t *Tower) subscribe(c *Conn, req *protocol.Request) {
	if e := validTopics(req.Topics); e != nil {
		c.sendError(req.ID, e)
		return
	}
	if e := t.checkPatterns(req.Topics); e != nil {
		c.sendError(req.ID, e)
		return
	}
	if e := systemTopicsAllowed(c, req.Topics); e != nil {
		c.sendError(req.ID, e)
		return
	}
	topics := req.Topics
	if t.hooked(HookBeforeSubscribe, c) {
		cx := &Context{conn: c, topics: req.Topics}
		if err := t.run(HookBeforeSubscribe, cx); err != nil {
			c.sendError(req.ID, asError(err, CodeForbidden))
			return
		}
		topics = cx.topics
	}
	if e := validTopics(topics); e != nil {
		c.sendError(req.ID, e)
		return
	}
	if e := t.checkPatterns(topics); e != nil {
		c.sendError(req.ID, e) // OnBeforeSubscribe rewrote it to a bad pattern
		return
	}
	if e := systemTopicsAllowed(c, topics); e != nil {
		c.sendError(req.ID, e) // OnBeforeSubscribe rewrote to a system topic
		return
	}
	c.mu.Lock()
	var added []string
	for _, tp := range topics {
		if !containsString(c.topics, tp) && !containsString(added, tp) {
			added = append(added, tp)
		}
	}
	if len(c.topics)+len(added) > t.cfg.maxTopics {
		c.mu.Unlock()
		c.sendError(req.ID, &Error{Code: CodeTooManyTopics, Message: fmt.Sprintf("a connection may subscribe to at most %d topics", t.cfg.maxTopics)})
		return
	}
	c.topics = append(c.topics, added...)
	c.mu.Unlock()
	if t.hist != nil { // history.go: topics with history subscribe, ack and replay there
		if qs := t.historyQueries(req, topics); len(qs) > 0 {
			if t.subscribeHistory(c, req, topics, added, qs) && len(added) > 0 {
				t.presenceChange(c, added, true)
				if t.hooked(HookSubscribe, c) {
					_ = t.run(HookSubscribe, &Context{conn: c, topics: added})
				}
			}
			return
		}
	}
	for _, tp := range added {
		t.index.update(tp, c.tc, c.codec, true, func(n int64) { t.reportInterest(tp, n) })
	}
	if len(added) > 0 {
		// In effect locally at once; cluster-wide once the Manager has it.
		// A Manager that is down gets the subscription on resync.
		if err := t.link.Flush(t.ctx); err != nil {
			t.log.Debug("firetower: subscription not yet confirmed by the cluster", "err", err)
		}
	}
	if req.ID != nil {
		c.reply(func(r protocol.Reply, dst []byte) []byte { return r.Ack(dst, req.ID, topics, true) })
	}
	if len(added) > 0 {
		t.presenceChange(c, added, true)
		if t.hooked(HookSubscribe, c) {
			_ = t.run(HookSubscribe, &Context{conn: c, topics: added})
		}
	}
}

// systemTopicsAllowed checks a subscription against the system topics: a
// system connection may subscribe to StatsTopic only, others to none.
func systemTopicsAllowed(c *Conn, topics []string) *Error {
	for _, tp := range topics {
		switch {
		case c.system && tp != StatsTopic:
			return &Error{Code: CodeForbidden, Message: "a system connection may subscribe only to " + StatsTopic}
		case !c.system && IsSystemTopic(tp):
			return errReserved
		}
	}
	return nil
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (t *Tower) unsubscribeOne(c *Conn, topic string) {
	t.index.update(topic, c.tc, c.codec, false, func(n int64) { t.reportInterest(topic, n) })
}

func (t *Tower) unsubscribe(c *Conn, req *protocol.Request) {
	if e := validTopics(req.Topics); e != nil {
		c.sendError(req.ID, e)
		return
	}
	c.mu.Lock()
	var removed []string
	kept := c.topics[:0]
	for _, tp := range c.topics {
		if containsString(req.Topics, tp) {
			removed = append(removed, tp)
		} else {
			kept = append(kept, tp)
		}
	}
	clear(c.topics[len(kept):])
	c.topics = kept
	c.mu.Unlock()
	for _, tp := range removed {
		t.unsubscribeOne(c, tp)
	}
	if len(removed) > 0 {
		if err := t.link.Flush(t.ctx); err != nil {
			t.log.Debug("firetower: unsubscribe not yet confirmed by the cluster", "err", err)
		}
	}
	if req.ID != nil {
		c.reply(func(r protocol.Reply, dst []byte) []byte { return r.Ack(dst, req.ID, req.Topics, true) })
	}
	if len(removed) > 0 {
		t.presenceChange(c, removed, false)
		_ = t.run(HookUnsubscribe, &Context{conn: c, topics: removed})
	}
}

func (t *Tower) clientPublish(c *Conn, req *protocol.Request) {
	if e := validTopics(req.Topics); e != nil {
		c.sendError(req.ID, e)
		return
	}
	if c.system {
		c.sendError(req.ID, &Error{Code: CodeForbidden, Message: "a system connection may not publish"})
		return
	}
	for _, tp := range req.Topics {
		if IsSystemTopic(tp) {
			c.sendError(req.ID, errReserved)
			return
		}
		if e := t.publishable(tp); e != nil {
			c.sendError(req.ID, e)
			return
		}
	}
	switch t.cfg.publishPolicy {
	case PublishNone:
		c.sendError(req.ID, &Error{Code: CodeForbidden, Message: "clients may not publish on this server"})
		return
	case PublishSubscribed:
		for _, tp := range req.Topics {
			if !c.subscribed(tp) {
				c.sendError(req.ID, &Error{Code: CodeForbidden, Message: "publish to a topic you are not subscribed to: " + tp})
				return
			}
		}
	}
	if t.chains.plainRead {
		for _, tp := range req.Topics {
			if err := t.publish(t.ctx, tp, req.Data, req.Data); err != nil {
				c.sendError(req.ID, asError(err, CodeUnavailable))
				return
			}
		}
		if req.ID != nil {
			c.reply(func(r protocol.Reply, dst []byte) []byte { return r.Ack(dst, req.ID, nil, false) })
		}
		return
	}
	// Every topic's OnRead chain runs first and the publishes go out only
	// when all passed: a publish to several topics is all or nothing.
	var out []Message
	for _, tp := range req.Topics {
		cx := &Context{conn: c, msg: &Message{Topic: tp, Data: req.Data}, outbox: &out}
		if err := t.run(HookRead, cx); err != nil {
			c.sendError(req.ID, asError(err, CodeForbidden))
			return
		}
	}
	for _, m := range out {
		if err := t.publish(t.ctx, m.Topic, m.Data, m.Data); err != nil {
			c.sendError(req.ID, asError(err, CodeUnavailable))
			return
		}
	}
	if req.ID != nil {
		c.reply(func(r protocol.Reply, dst []byte) []byte { return r.Ack(dst, req.ID, nil, false) })
	}
}

// readTimeout answers a request dropped over the inbound budget: OnReadTimeout
// sees it (c.Message()), the client gets rate_limited with its id.
func (t *Tower) readTimeout(c *Conn, it item) {
	var id []byte
	if it.rerr != nil {
		id = it.rerr.ID
	} else if it.req != nil {
		id = it.req.ID
	}
	if t.chains.has(HookReadTimeout) {
		cx := &Context{conn: c}
		if it.req != nil {
			topic := ""
			if len(it.req.Topics) > 0 {
				topic = it.req.Topics[0]
			}
			cx.msg = &Message{Topic: topic, Data: it.req.Data}
		} else {
			cx.msg = &Message{Data: append([]byte(nil), it.buf...)}
		}
		_ = t.run(HookReadTimeout, cx)
	}
	c.sendError(id, &Error{Code: CodeRateLimited, Message: "message dropped: the server could not keep up with this connection's messages"})
}
