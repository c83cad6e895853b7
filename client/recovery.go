package client

import (
	"context"
	"maps"
	"slices"
)

// Recovery (PROTOCOL.md, "Recovery"). On a topic the server keeps history
// for, every delivery carries its offset in the topic's stream, and the ack
// of a subscribe gives the stream's epoch and latest offset. The Client
// keeps, per subscribed history topic, the epoch and the offset of the last
// delivery it got (its Position), and on every reconnect subscribes again
// with them as "since": the server then replays what was published while
// the Client was away, in order, before the live deliveries, or says that
// it cannot (another epoch: the server restarted; or the stream no longer
// reaches back that far). Each such resubscription is told to the
// RecoveryHandler, and one that did not recover to the GapHandler too: the
// application should then refetch what it shows.

// Position is a place in a topic's stream: an offset within an epoch.
type Position struct {
	Epoch  string
	Offset uint64
}

// Recovery is the outcome of subscribing to a history topic.
type Recovery struct {
	Topic string
	// Since is the position the subscribe asked to resume from (zero when
	// it asked for none).
	Since Position
	// Top is the stream's position in the ack: its epoch and the offset of
	// its latest publish (0 when nothing was published in this epoch).
	Top Position
	// Recovered: every publish after Since follows, in order, then the
	// live ones. False: nothing is replayed for Since (another epoch, an
	// offset the stream no longer holds, or no Since given); a Client that
	// had a position has missed messages it cannot get this way.
	Recovered bool
}

// Delivery is one publish received on a subscribed topic.
type Delivery struct {
	Topic string
	Data  []byte // JSON (a Msgpack client's value converted to JSON)
	// Offset is the publish's position in the topic's stream (its epoch
	// is the one of the topic's Position); 0 on a topic without history.
	Offset uint64
}

// DeliveryHandler receives deliveries with their offset.
type DeliveryHandler func(d Delivery)

// RecoveryHandler is told the outcome of every resubscription of a history
// topic after a reconnect.
type RecoveryHandler func(r Recovery)

// WithDeliveryHandler sets a handler that gets every delivery with its
// offset. It runs like the Handler (and after it, when both are set).
func WithDeliveryHandler(h DeliveryHandler) Option {
	return func(cf *config) { cf.onDelivery = h }
}

// WithRecoveryHandler sets the handler told, after every reconnect, whether
// each history topic the Client had a position for was recovered. It runs
// on the handler goroutine before the replayed deliveries.
func WithRecoveryHandler(h RecoveryHandler) Option {
	return func(cf *config) { cf.onRecovery = h }
}

// WithGapHandler sets the handler told when, after a reconnect, a history
// topic could not be recovered (Recovered false): messages published while
// the Client was away are lost to it, and the application should refetch.
// It runs on the handler goroutine before the live deliveries of the topic.
// It is also told, while connected, of a delivery whose offset skips some
// (Since is the position before it, Top the delivery's, Recovered false):
// the publications between were lost on the way, as with a server that
// drops messages for slow consumers; it runs before that delivery.
func WithGapHandler(h RecoveryHandler) Option {
	return func(cf *config) { cf.onGap = h }
}

// SubscribeOptions asks a subscribe for history.
type SubscribeOptions struct {
	// Last asks for the latest Last publications of each history topic of
	// the request that Since does not name (the server caps it); they
	// arrive right after the ack, oldest first. 0: none.
	Last int
	// Since resumes topics from positions the application kept (for
	// example across a restart of the program).
	Since map[string]Position
}

// SubscribeWith subscribes to topics as Subscribe does, asking for the
// history opts names, and returns, for each history topic of the request,
// its Recovery (the positions in the server's ack). A topic without history
// has no entry. Negative Last is taken as 0.
func (c *Client) SubscribeWith(ctx context.Context, opts SubscribeOptions, topics ...string) (map[string]Recovery, error) {
	cn, err := c.waitOpen(ctx)
	if err != nil {
		return nil, err
	}
	topics = slices.Clone(topics)
	since := maps.Clone(opts.Since)
	var out map[string]Recovery
	_, err = c.roundTrip(ctx, cn, request{typ: "subscribe", topics: topics, since: since, last: max(opts.Last, 0)}, func(m message) {
		c.mu.Lock()
		c.topics = union(c.topics, topics)
		c.mu.Unlock()
		out = c.track(m, since, false)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Position returns the Client's position in topic's stream: the epoch of
// the latest subscribe ack and the offset of the latest delivery (or the
// ack's offset, when it was not recovered). ok is false for a topic that is
// not subscribed or keeps no history.
func (c *Client) Position(topic string) (p Position, ok bool) {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	tp, ok := c.pos[topic]
	if !ok {
		return Position{}, false
	}
	return tp.Position, true
}

// Positions returns the position of every subscribed history topic.
func (c *Client) Positions() map[string]Position {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	out := make(map[string]Position, len(c.pos))
	for t, tp := range c.pos {
		out[t] = tp.Position
	}
	return out
}

// LastRecovery returns the outcome of the latest subscribe of topic that
// carried positions (the first subscribe, or the resubscription after the
// latest reconnect). ok is false for a topic without history.
func (c *Client) LastRecovery(topic string) (r Recovery, ok bool) {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	tp, ok := c.pos[topic]
	if !ok {
		return Recovery{}, false
	}
	return tp.last, true
}

// topicPos is what the Client knows of one history topic.
type topicPos struct {
	Position
	last Recovery
}

// track records the positions of a subscribe ack (on the reader goroutine,
// before the deliveries that follow it) and returns them. reconnect says
// whether the subscribe restored topics after a reconnect: then each
// outcome goes to the recovery and gap handlers, queued before the
// replayed deliveries.
func (c *Client) track(m message, since map[string]Position, reconnect bool) map[string]Recovery {
	if len(m.positions) == 0 {
		return nil
	}
	out := make(map[string]Recovery, len(m.positions))
	c.mu.Lock()
	subscribed := slices.Clone(c.topics)
	c.mu.Unlock()
	c.pmu.Lock()
	for t, ap := range m.positions {
		r := Recovery{Topic: t, Since: since[t], Top: Position{Epoch: ap.Epoch, Offset: ap.Offset}, Recovered: ap.Recovered}
		out[t] = r
		if !slices.Contains(subscribed, t) {
			continue // unsubscribed meanwhile
		}
		tp := c.pos[t]
		if tp == nil {
			tp = &topicPos{}
			c.pos[t] = tp
		}
		tp.last = r
		if ap.Recovered {
			// The replay brings the offset from Since up to Top.
			tp.Position = r.Since
		} else {
			tp.Position = r.Top
		}
	}
	c.pmu.Unlock()
	if reconnect {
		for _, t := range slices.Sorted(maps.Keys(out)) {
			r := out[t]
			if _, had := since[t]; !had {
				continue // a topic the Client had no position for: nothing to recover
			}
			if h := c.cfg.onRecovery; h != nil {
				c.ev.post(func() { h(r) })
			}
			if h := c.cfg.onGap; h != nil && !r.Recovered {
				c.ev.post(func() { h(r) })
			}
		}
	}
	return out
}

// delivered moves topic's position to a delivery's offset. A delivery
// that skips offsets (more than one past the position) means the
// publications between were lost on the way, for example dropped for a slow
// consumer (SlowDrop): that is a gap, returned with ok true, Since the
// position before and Top the delivery's. Offsets at or below the position
// are the replay of a subscribe's last N, already counted.
func (c *Client) delivered(topic string, offset uint64) (gap Recovery, ok bool) {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	tp := c.pos[topic]
	if tp == nil || offset <= tp.Offset {
		return Recovery{}, false
	}
	if tp.Epoch != "" && offset > tp.Offset+1 {
		gap = Recovery{Topic: topic, Since: tp.Position, Top: Position{Epoch: tp.Epoch, Offset: offset}}
		ok = true
	}
	tp.Offset = offset
	return gap, ok
}

// forget drops the positions of unsubscribed topics.
func (c *Client) forget(topics []string) {
	c.pmu.Lock()
	for _, t := range topics {
		delete(c.pos, t)
	}
	c.pmu.Unlock()
}

// resumePoints are the positions to send as since when subscribing to
// topics again.
func (c *Client) resumePoints(topics []string) map[string]Position {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	var out map[string]Position
	for _, t := range topics {
		if tp := c.pos[t]; tp != nil && tp.Epoch != "" {
			if out == nil {
				out = map[string]Position{}
			}
			out[t] = tp.Position
		}
	}
	return out
}
