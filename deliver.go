// Delivery: a publish's road to the local subscribers (framed once,
// fanned out per event loop) and to the other nodes.

package firetower

import (
	"context"
	"encoding/json"

	"github.com/gobwas/ws"

	"github.com/firetower-go/firetower/internal/protocol"
	"github.com/firetower-go/firetower/internal/wsproto"
	"github.com/firetower-go/firetower/transport"
)

// Publish sends data to every subscriber of topic in the cluster. data that
// is valid JSON is delivered as it is; other bytes are delivered as a JSON
// string (and as they are to legacy clients). Any goroutine; it does not
// wait for the network, and does not keep data once it returns.
//
// Local subscribers get the publish before Publish returns (it is queued
// on their event loops); other nodes get it at most once, through the
// Manager (see Link.Publish): publishes made one after another on a topic
// reach every subscriber in that order.
func (t *Tower) Publish(ctx context.Context, topic string, data []byte) error {
	if t.state.Load() != 1 {
		return ErrClosed
	}
	if err := protocol.ValidateTopic(topic); err != nil {
		return &Error{Code: CodeInvalidTopic, Message: err.Error()}
	}
	if IsSystemTopic(topic) {
		return errReserved
	}
	if e := t.publishable(topic); e != nil {
		return e
	}
	j := data
	if !json.Valid(data) {
		j = protocol.AppendJSONString(nil, string(data))
	}
	return t.publish(ctx, topic, j, data)
}

// publish delivers locally, then to the other nodes. The cluster carries
// the raw bytes, so every node embeds them the same way (as they are when
// valid JSON, as a JSON string otherwise; raw for legacy clients).
func (t *Tower) publish(ctx context.Context, topic string, j, raw []byte) error {
	if t.hist != nil && t.hist.covers(topic) { // history.go
		_, err := t.publishHistory(ctx, topic, j, raw)
		return err
	}
	t.deliverLocal(topic, j, raw)
	if err := t.link.Publish(ctx, topic, raw); err != nil {
		t.stats.remotePublishFailed.Add(1)
		return &Error{Code: CodeUnavailable, Message: "the cluster could not take the message: " + err.Error()}
	}
	return nil
}

// deliverLocal frames the publish once per codec in use and hands the same
// frame to every event loop with subscribers.
func (t *Tower) deliverLocal(topic string, j, raw []byte) {
	if t.pats != nil && t.pats.n.Load() > 0 && !IsSystemTopic(topic) {
		t.deliverPatterns(topic, j, raw) // wildcard.go
	}
	subs := t.index.get(topic)
	if subs == nil || subs.count == 0 {
		return
	}
	t.stats.publishes.Add(1)
	var frames [2]*transport.Frame
	if subs.codecs[protocol.JSON] > 0 {
		if t.cfg.legacy {
			frames[protocol.JSON] = t.legacyFrame(raw)
		} else {
			frames[protocol.JSON] = t.deliveryFrameJSON(subs, topic, j)
		}
	}
	if subs.codecs[protocol.Msgpack] > 0 {
		p, err := protocol.AppendDeliveryMsgpack(nil, topic, j)
		if err != nil {
			t.log.Error("firetower: cannot encode a delivery as msgpack", "topic", topic, "err", err)
		} else {
			frames[protocol.Msgpack] = t.srv.NewMessageFrame(ws.OpBinary, p)
		}
	}
	t.fanOut(subs, frames)
}

// fanOut hands each codec's frame to every event loop with subscribers of
// that codec, counts the deliveries and gives up the frames (deliverLocal,
// deliverAt). A codec whose frame could not be built is not counted.
func (t *Tower) fanOut(subs *subscribers, frames [2]*transport.Frame) {
	t.broadcast(subs, frames)
	for _, f := range frames {
		if f != nil {
			f.Release()
		}
	}
}

// broadcast is fanOut without giving up the frames (the caller still
// holds them, for more subscribers: wildcard.go).
func (t *Tower) broadcast(subs *subscribers, frames [2]*transport.Frame) {
	for li := range subs.byLoop {
		for codec, blocks := range subs.byLoop[li] {
			if len(blocks) > 0 && frames[codec] != nil {
				t.srv.Broadcast(li, frames[codec], blocks)
			}
		}
	}
	n := uint64(subs.count) //nolint:gosec // G115: a count of subscribers, never negative
	if frames[protocol.Msgpack] == nil {
		n -= uint64(subs.codecs[protocol.Msgpack]) //nolint:gosec // G115: a count of subscribers, never negative
	}
	t.stats.deliveries.Add(n)
}

// deliveryFrameJSON frames the JSON delivery envelope of a publish
// (protocol.AppendDeliveryJSON) straight into a pooled frame buffer: no
// allocation once the pool is warm. The header needs the payload's exact
// size: DeliveryJSONSize counts the topic as if it needed no escaping, and
// subs.quoted, the topic as the encoder escapes it, says by how much the
// escaping lengthens it.
func (t *Tower) deliveryFrameJSON(subs *subscribers, topic string, j []byte) *transport.Frame {
	n := protocol.DeliveryJSONSize(topic, j) + len(subs.quoted) - (len(topic) + 2)
	f := t.srv.NewFrame(wsproto.HeaderSize(n) + n)
	f.B = wsproto.AppendHeader(f.B, ws.OpText, n)
	f.B = protocol.AppendDeliveryJSON(f.B, topic, j)
	return f
}

// towerNode is the Tower as its Manager sees it (see Node for where its
// methods are called from).
type towerNode struct{ t *Tower }

func (n towerNode) NodeID() uint16 { return n.t.cfg.nodeID }

func (n towerNode) Deliver(topic string, data []byte) {
	if _, ok := presenceTopicOf(topic); ok {
		if n.t.pres != nil {
			n.t.presenceRemote(topic, data) // presence.go
		}
		return
	}
	if IsSystemTopic(topic) && topic != StatsTopic {
		n.t.control(topic, data)
		return
	}
	n.t.stats.remoteDeliveries.Add(1)
	j := data
	if !json.Valid(data) {
		j = protocol.AppendJSONString(nil, string(data))
	}
	n.t.deliverLocal(topic, j, data)
}

func (n towerNode) Interest() map[string]int64 {
	m := n.t.index.counts()
	if n.t.pres != nil {
		for topic, cnt := range m {
			if n.t.pres.covers(topic) {
				m[presenceTopicPrefix+topic] = cnt
			}
		}
	}
	return n.t.systemInterest(m)
}
