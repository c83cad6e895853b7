// Stats and figures: the Tower's counters and their snapshot.

package firetower

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/firetower-go/firetower/internal/protocol"
	"github.com/firetower-go/firetower/transport"
)

type counters struct {
	connections                           atomic.Int64
	messagesIn, publishes, deliveries     atomic.Uint64
	readDropped, slowDropped, errors      atomic.Uint64
	remotePublishFailed, remoteDeliveries atomic.Uint64
	hookPanics, floodClosed               atomic.Uint64
	refusedOrigin, refusedLimit           atomic.Uint64
	badControl                            atomic.Uint64
}

// Stats is a snapshot of a Tower's counters. Every message that is dropped
// is counted in one of the *Dropped fields.
type Stats struct {
	Connections   int64  // open websocket connections
	Subscriptions int64  // local (connection, topic) pairs
	Topics        int64  // topics with local subscribers
	MessagesIn    uint64 // client messages received
	Publishes     uint64 // publishes delivered locally (client, server or other nodes)
	Deliveries    uint64 // frames queued for subscribers
	Errors        uint64 // error messages sent to clients
	// ReadDropped counts client messages dropped because the server could
	// not take them within the read timeout (OnReadTimeout, rate_limited).
	ReadDropped uint64
	// ReadPauses counts the times a client's reading was paused because its
	// queued requests reached the inbound budget (WithInboundLimit,
	// WithInboundTotal): backpressure, nothing lost.
	ReadPauses uint64
	// InboundBytes is the budget held now by queued client requests, all
	// connections together (at most about WithInboundTotal).
	InboundBytes int64
	// SlowDropped counts messages not sent to slow consumers (SlowDrop).
	SlowDropped uint64
	// SlowClosed counts connections closed as slow consumers (SlowClose).
	SlowClosed uint64
	// RemotePublishFailed counts publishes the Manager refused.
	RemotePublishFailed uint64
	// RemoteDeliveries counts publishes received from other nodes.
	RemoteDeliveries uint64
	// FloodClosed counts connections closed with 1008 because, paused past
	// the read timeout, they kept sending until the queue of their
	// rate_limited answers was full too (every message dropped from then on
	// is in ReadDropped too).
	FloodClosed uint64
	// RefusedOrigin counts upgrades refused for their Origin (403).
	RefusedOrigin uint64
	// RefusedLimit counts upgrades refused by WithMaxConnections (503) or
	// WithMaxConnectionsPerIP (429).
	RefusedLimit uint64
	// HookPanics counts hook calls that panicked (the client got "internal").
	HookPanics uint64
	// BadControl counts system messages from other nodes that could not
	// be used (undecodable, or on the wrong topic).
	BadControl uint64
	// HistoryStreams and HistoryBytes are the topics with a stream and the
	// memory their publications hold (WithHistory), in the Manager: shared
	// by every Tower joined to one LocalManager.
	HistoryStreams int64
	HistoryBytes   int64
	// Transport are the websocket server's own counters.
	Transport TransportStats
}

// TransportStats are the counters of a Tower's websocket server, beneath
// the hooks and the topic index: sockets, frames and writes.
type TransportStats struct {
	Accepted      uint64 // TCP connections accepted
	Upgraded      uint64 // websocket upgrades completed
	Rejected      uint64 // upgrades refused
	Open          int64  // TCP connections open now
	FramesIn      uint64 // frames received, control frames included
	MessagesIn    uint64 // whole messages received
	BytesOut      uint64 // bytes handed to the socket layer
	Writes        uint64 // write calls (frames coalesced into one write count once)
	Dropped       uint64 // frames dropped under SlowDrop
	Discarded     uint64 // frames not sent because their connection was closing or gone
	SlowClosed    uint64 // connections closed under SlowClose
	IdleClosed    uint64 // connections closed by the idle timeout
	ProtocolClose uint64 // connections failed for breaking RFC 6455 (or sending the wrong codec)
	AcceptErrors  uint64 // failed accepts (out of descriptors: EMFILE, ENFILE...), each retried after a backoff
	Hijacked      uint64 // connections taken from an HTTP server (Tower.ServeHTTP) into the event loops
	Proxied       int64  // TLS connections (from Tower.ServeHTTP) open now, relayed by a goroutine pair each
	ReadPauses    uint64 // times a connection's reading was paused
	Overflowed    uint64 // messages read from a connection paused past the read timeout
	Paused        int64  // connections whose reading is paused now
	// OutboundBuffered is the bytes waiting in connections' outbound
	// buffers, as of the last keepalive scan.
	OutboundBuffered int64
	// WriteLatency counts writes by the age of the oldest frame they
	// carried (from frame creation, i.e. publish, to the write call).
	WriteLatency LatencyHistogram
	// Compression counts permessage-deflate work (WithCompression).
	Compression CompressionStats
}

// LatencyBuckets is the number of buckets of a LatencyHistogram.
const LatencyBuckets = 28

// LatencyHistogram counts durations in power-of-two buckets: bucket i
// holds durations below 2^i microseconds (the last one: everything longer).
//
// It has the transport's bucket layout, which the conversion in
// transportStats checks at compile time.
type LatencyHistogram [LatencyBuckets]uint64

// BucketBound is the upper bound of bucket i.
func (h LatencyHistogram) BucketBound(i int) time.Duration {
	return transport.LatencyHistogram(h).BucketBound(i)
}

// Quantile estimates the q-quantile (0..1) as the upper bound of the bucket
// holding it; 0 when empty.
func (h LatencyHistogram) Quantile(q float64) time.Duration {
	return transport.LatencyHistogram(h).Quantile(q)
}

// transportStats is the one place where the transport's counters become
// firetower's.
func transportStats(ts transport.Stats) TransportStats {
	return TransportStats{
		Accepted: ts.Accepted, Upgraded: ts.Upgraded, Rejected: ts.Rejected, Open: ts.Open,
		FramesIn: ts.FramesIn, MessagesIn: ts.MessagesIn, BytesOut: ts.BytesOut, Writes: ts.Writes,
		Dropped: ts.Dropped, Discarded: ts.Discarded, SlowClosed: ts.SlowClosed, IdleClosed: ts.IdleClosed,
		ProtocolClose: ts.ProtocolClose, AcceptErrors: ts.AcceptErrors, ReadPauses: ts.ReadPauses,
		Overflowed: ts.Overflowed, Paused: ts.Paused, OutboundBuffered: ts.OutboundBuffered,
		Hijacked: ts.Hijacked, Proxied: ts.Proxied,
		WriteLatency: LatencyHistogram(ts.WriteLatency),
		Compression:  CompressionStats(ts.Compression),
	}
}

// ConnectNum is the number of subscribers of topic in the whole cluster.
// Any goroutine; it may wait for the Manager, up to ctx.
func (t *Tower) ConnectNum(ctx context.Context, topic string) (int64, error) {
	if t.state.Load() != 1 {
		return 0, ErrClosed
	}
	if err := protocol.ValidateTopic(topic); err != nil {
		return 0, &Error{Code: CodeInvalidTopic, Message: err.Error()}
	}
	n, err := t.link.Count(ctx, topic)
	if err != nil {
		return 0, &Error{Code: CodeUnavailable, Message: "the cluster could not count: " + err.Error()}
	}
	return n, nil
}

// Stats returns the Tower's counters. Any goroutine; each counter is read
// atomically, the snapshot as a whole is not.
func (t *Tower) Stats() Stats {
	ts := t.srv.Stats()
	hs := t.historyStats()
	return Stats{
		ReadPauses:          ts.ReadPauses,
		Connections:         t.stats.connections.Load(),
		Subscriptions:       t.index.subs.Load(),
		Topics:              t.index.topics.Load(),
		MessagesIn:          t.stats.messagesIn.Load(),
		Publishes:           t.stats.publishes.Load(),
		Deliveries:          t.stats.deliveries.Load(),
		Errors:              t.stats.errors.Load(),
		ReadDropped:         t.stats.readDropped.Load(),
		InboundBytes:        t.inbound.total.Load(),
		SlowDropped:         t.stats.slowDropped.Load(),
		SlowClosed:          ts.SlowClosed,
		RemotePublishFailed: t.stats.remotePublishFailed.Load(),
		RemoteDeliveries:    t.stats.remoteDeliveries.Load(),
		HookPanics:          t.stats.hookPanics.Load(),
		FloodClosed:         t.stats.floodClosed.Load(),
		RefusedOrigin:       t.stats.refusedOrigin.Load(),
		RefusedLimit:        t.stats.refusedLimit.Load(),
		BadControl:          t.stats.badControl.Load(),
		HistoryStreams:      hs.Streams,
		HistoryBytes:        hs.Bytes,
		Transport:           transportStats(ts),
	}
}
