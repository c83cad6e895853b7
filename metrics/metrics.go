// Package metrics exposes a Tower's counters to Prometheus.
//
// NewCollector returns a prometheus.Collector that reads Tower.Stats() on
// every scrape: nothing is counted twice and nothing runs between scrapes.
// Library users register it on their own registry (the registry hook):
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(metrics.NewCollector(tower))
//	http.Handle("GET /metrics", metrics.Handler(reg))
//
// or, for a registry that also has the Go runtime and process collectors:
//
//	http.Handle("GET /metrics", metrics.Handler(metrics.NewRegistry(tower)))
//
// Every metric carries the constant label node_id.
//
// Gauges:
//
//	firetower_connections                      open websocket connections
//	firetower_subscriptions                    local (connection, topic) pairs
//	firetower_topics                           topics with local subscribers
//	firetower_transport_open_connections       TCP connections open (upgraded or not)
//	firetower_compression_connections          connections that negotiated permessage-deflate
//
// Counters:
//
//	firetower_messages_received_total          client messages received
//	firetower_publishes_total                  publishes delivered locally
//	firetower_deliveries_total                 frames queued for subscribers
//	firetower_dropped_messages_total{reason}   reason="read_timeout" (not taken within the read timeout, OnReadTimeout)
//	                                           or "slow_consumer" (not sent under SlowDrop)
//	firetower_slow_consumer_closes_total       connections closed as slow consumers (SlowClose)
//	firetower_flood_closes_total               connections closed with 1008 for flooding
//	firetower_errors_sent_total                error messages sent to clients
//	firetower_hook_panics_total                hook calls that panicked
//	firetower_refused_upgrades_total{reason}   reason="origin" (403) or "limit" (503/429)
//	firetower_cluster_deliveries_received_total publishes received from other nodes
//	firetower_cluster_publish_failures_total   publishes the Manager refused
//	firetower_cluster_bad_control_total        system messages from other nodes that could not be used
//	firetower_transport_accepted_connections_total TCP connections accepted
//	firetower_transport_upgrades_total         websocket upgrades completed
//	firetower_transport_upgrades_rejected_total upgrades refused
//	firetower_transport_frames_received_total  websocket frames received
//	firetower_transport_messages_received_total websocket messages received
//	firetower_transport_writes_total           write calls (coalesced frames count once)
//	firetower_transport_sent_bytes_total       bytes handed to the socket layer
//	firetower_transport_idle_closes_total      connections closed for idleness
//	firetower_transport_protocol_closes_total  connections closed for a protocol error
//	firetower_compression_messages_total       messages compressed (once each, however many subscribers got them)
//	firetower_compression_frames_total         compressed frames queued for connections (one per delivery)
//	firetower_compression_frame_bytes_total{stage} those frames' bytes, stage="before" (uncompressed) or "after" (as sent)
//	firetower_compression_inflated_messages_total compressed client messages decompressed
//	firetower_compression_inflated_bytes_total{stage} their bytes, stage="before" (compressed) or "after" (inflated)
package metrics

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/firetower-go/firetower"
)

// Drop reasons, the values of the reason label of
// firetower_dropped_messages_total.
const (
	ReasonReadTimeout  = "read_timeout"
	ReasonSlowConsumer = "slow_consumer"
)

// Collector is a prometheus.Collector for one Tower.
type Collector struct {
	t       *firetower.Tower
	descs   []*prometheus.Desc
	m       []metric
	latency *prometheus.Desc
}

// metric is one exported series: its descriptor, type, label values and
// how to read it from a Stats snapshot.
type metric struct {
	desc   *prometheus.Desc
	typ    prometheus.ValueType
	labels []string
	value  func(*firetower.Stats) float64
}

// NewCollector returns a collector that reads t.Stats() at every scrape.
func NewCollector(t *firetower.Tower) *Collector {
	c := &Collector{t: t}
	constLabels := prometheus.Labels{"node_id": strconv.FormatUint(uint64(t.NodeID()), 10)}
	byName := map[string]*prometheus.Desc{}
	add := func(name, help string, typ prometheus.ValueType, label, labelValue string, value func(*firetower.Stats) float64) {
		d := byName[name]
		if d == nil {
			var vars []string
			if label != "" {
				vars = []string{label}
			}
			d = prometheus.NewDesc(name, help, vars, constLabels)
			byName[name] = d
			c.descs = append(c.descs, d)
		}
		var lv []string
		if label != "" {
			lv = []string{labelValue}
		}
		c.m = append(c.m, metric{desc: d, typ: typ, labels: lv, value: value})
	}
	gauge := func(name, help string, value func(*firetower.Stats) float64) {
		add(name, help, prometheus.GaugeValue, "", "", value)
	}
	counter := func(name, help string, value func(*firetower.Stats) float64) {
		add(name, help, prometheus.CounterValue, "", "", value)
	}
	u := func(v uint64) float64 { return float64(v) }

	gauge("firetower_connections", "Open websocket connections.",
		func(s *firetower.Stats) float64 { return float64(s.Connections) })
	gauge("firetower_subscriptions", "Local (connection, topic) subscription pairs.",
		func(s *firetower.Stats) float64 { return float64(s.Subscriptions) })
	gauge("firetower_topics", "Topics with local subscribers.",
		func(s *firetower.Stats) float64 { return float64(s.Topics) })
	counter("firetower_messages_received_total", "Client messages received.",
		func(s *firetower.Stats) float64 { return u(s.MessagesIn) })
	counter("firetower_publishes_total", "Publishes delivered locally (from clients, the server or other nodes).",
		func(s *firetower.Stats) float64 { return u(s.Publishes) })
	counter("firetower_deliveries_total", "Frames queued for subscribers.",
		func(s *firetower.Stats) float64 { return u(s.Deliveries) })
	const dropHelp = "Messages dropped, by reason: read_timeout (a client message the server could not take within the read timeout), slow_consumer (not sent to a slow consumer under SlowDrop)."
	add("firetower_dropped_messages_total", dropHelp, prometheus.CounterValue, "reason", ReasonReadTimeout,
		func(s *firetower.Stats) float64 { return u(s.ReadDropped) })
	add("firetower_dropped_messages_total", dropHelp, prometheus.CounterValue, "reason", ReasonSlowConsumer,
		func(s *firetower.Stats) float64 { return u(s.SlowDropped) })
	counter("firetower_slow_consumer_closes_total", "Connections closed as slow consumers (SlowClose).",
		func(s *firetower.Stats) float64 { return u(s.SlowClosed) })
	counter("firetower_flood_closes_total", "Connections closed with 1008 for sending faster than they were served after their queues were full.",
		func(s *firetower.Stats) float64 { return u(s.FloodClosed) })
	counter("firetower_read_pauses_total", "Times a client's reading was paused because its queued requests reached the inbound budget (backpressure, nothing dropped).",
		func(s *firetower.Stats) float64 { return u(s.ReadPauses) })
	gauge("firetower_inbound_queued_bytes", "Budget held by client requests waiting for the hook workers, all connections together.",
		func(s *firetower.Stats) float64 { return float64(s.InboundBytes) })
	gauge("firetower_paused_connections", "Connections whose reading is paused for their inbound budget.",
		func(s *firetower.Stats) float64 { return float64(s.Transport.Paused) })
	counter("firetower_errors_sent_total", "Error messages sent to clients.",
		func(s *firetower.Stats) float64 { return u(s.Errors) })
	counter("firetower_hook_panics_total", "Hook calls that panicked.",
		func(s *firetower.Stats) float64 { return u(s.HookPanics) })
	const refusedHelp = "Websocket upgrades refused by the Tower, by reason: origin (403), limit (WithMaxConnections 503 or WithMaxConnectionsPerIP 429)."
	add("firetower_refused_upgrades_total", refusedHelp, prometheus.CounterValue, "reason", "origin",
		func(s *firetower.Stats) float64 { return u(s.RefusedOrigin) })
	add("firetower_refused_upgrades_total", refusedHelp, prometheus.CounterValue, "reason", "limit",
		func(s *firetower.Stats) float64 { return u(s.RefusedLimit) })
	counter("firetower_cluster_deliveries_received_total", "Publishes received from other nodes.",
		func(s *firetower.Stats) float64 { return u(s.RemoteDeliveries) })
	counter("firetower_cluster_publish_failures_total", "Publishes the cluster Manager refused.",
		func(s *firetower.Stats) float64 { return u(s.RemotePublishFailed) })
	counter("firetower_cluster_bad_control_total", "System messages from other nodes (cluster-wide operations) that could not be used.",
		func(s *firetower.Stats) float64 { return u(s.BadControl) })

	gauge("firetower_transport_open_connections", "TCP connections open (upgraded or not).",
		func(s *firetower.Stats) float64 { return float64(s.Transport.Open) })
	counter("firetower_transport_accepted_connections_total", "TCP connections accepted.",
		func(s *firetower.Stats) float64 { return u(s.Transport.Accepted) })
	counter("firetower_transport_upgrades_total", "Websocket upgrades completed.",
		func(s *firetower.Stats) float64 { return u(s.Transport.Upgraded) })
	counter("firetower_transport_upgrades_rejected_total", "Websocket upgrades refused.",
		func(s *firetower.Stats) float64 { return u(s.Transport.Rejected) })
	counter("firetower_transport_frames_received_total", "Websocket frames received.",
		func(s *firetower.Stats) float64 { return u(s.Transport.FramesIn) })
	counter("firetower_transport_messages_received_total", "Websocket messages received.",
		func(s *firetower.Stats) float64 { return u(s.Transport.MessagesIn) })
	counter("firetower_transport_writes_total", "Socket write calls (frames coalesced into one write count once).",
		func(s *firetower.Stats) float64 { return u(s.Transport.Writes) })
	counter("firetower_transport_sent_bytes_total", "Bytes handed to the socket layer.",
		func(s *firetower.Stats) float64 { return u(s.Transport.BytesOut) })
	counter("firetower_transport_idle_closes_total", "Connections closed for idleness.",
		func(s *firetower.Stats) float64 { return u(s.Transport.IdleClosed) })
	counter("firetower_transport_protocol_closes_total", "Connections closed for a websocket protocol error.",
		func(s *firetower.Stats) float64 { return u(s.Transport.ProtocolClose) })
	counter("firetower_transport_discarded_frames_total", "Frames not sent because their connection was closing or gone.",
		func(s *firetower.Stats) float64 { return u(s.Transport.Discarded) })
	// compression (WithCompression)
	gauge("firetower_compression_connections", "Connections open that negotiated permessage-deflate.",
		func(s *firetower.Stats) float64 { return float64(s.Transport.Compression.Conns) })
	counter("firetower_compression_messages_total", "Messages compressed: once per message and codec, however many subscribers got it.",
		func(s *firetower.Stats) float64 { return u(s.Transport.Compression.Messages) })
	counter("firetower_compression_frames_total", "Compressed frames queued for connections (one per delivery or answer to a compressing connection).",
		func(s *firetower.Stats) float64 { return u(s.Transport.Compression.Frames) })
	const frameBytesHelp = "Bytes of the compressed frames queued for connections, stage=before (as plain frames) or after (as sent)."
	add("firetower_compression_frame_bytes_total", frameBytesHelp, prometheus.CounterValue, "stage", "before",
		func(s *firetower.Stats) float64 { return u(s.Transport.Compression.FrameBytesIn) })
	add("firetower_compression_frame_bytes_total", frameBytesHelp, prometheus.CounterValue, "stage", "after",
		func(s *firetower.Stats) float64 { return u(s.Transport.Compression.FrameBytesOut) })
	counter("firetower_compression_inflated_messages_total", "Compressed client messages decompressed.",
		func(s *firetower.Stats) float64 { return u(s.Transport.Compression.Inflated) })
	const inflatedHelp = "Bytes of the compressed client messages, stage=before (compressed) or after (inflated)."
	add("firetower_compression_inflated_bytes_total", inflatedHelp, prometheus.CounterValue, "stage", "before",
		func(s *firetower.Stats) float64 { return u(s.Transport.Compression.InflatedBytesIn) })
	add("firetower_compression_inflated_bytes_total", inflatedHelp, prometheus.CounterValue, "stage", "after",
		func(s *firetower.Stats) float64 { return u(s.Transport.Compression.InflatedBytesOut) })
	gauge("firetower_outbound_queue_bytes", "Bytes waiting in connections' outbound buffers (as of the last keepalive scan).",
		func(s *firetower.Stats) float64 { return float64(s.Transport.OutboundBuffered) })
	// history (WithHistory): the Manager's streams, shared by the Towers of one LocalManager
	gauge("firetower_history_streams", "Topics with a history stream.",
		func(s *firetower.Stats) float64 { return float64(s.HistoryStreams) })
	gauge("firetower_history_bytes", "Memory held by the publications kept for recovery.",
		func(s *firetower.Stats) float64 { return float64(s.HistoryBytes) })
	c.latency = prometheus.NewDesc("firetower_publish_write_latency_seconds",
		"Age of the oldest frame of each socket write, from publish to the write call.",
		nil, prometheus.Labels{"node_id": strconv.Itoa(int(t.NodeID()))})
	c.descs = append(c.descs, c.latency)
	return c
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector: one Stats snapshot per scrape.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.t.Stats()
	for _, m := range c.m {
		ch <- prometheus.MustNewConstMetric(m.desc, m.typ, m.value(&s), m.labels...)
	}
	h := s.Transport.WriteLatency
	buckets := make(map[float64]uint64, len(h))
	var count uint64
	for i, n := range h[:len(h)-1] {
		count += n
		buckets[h.BucketBound(i).Seconds()] = count
	}
	count += h[len(h)-1]
	ch <- prometheus.MustNewConstHistogram(c.latency, count, 0, buckets)
}

// Register registers a collector for t on reg.
func Register(reg prometheus.Registerer, t *firetower.Tower) error {
	return reg.Register(NewCollector(t))
}

// NewRegistry returns a registry with a collector for t and the Go runtime
// and process collectors: what the firetower binary serves at /metrics.
func NewRegistry(t *firetower.Tower) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		NewCollector(t),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// Handler serves the metrics gathered from g in the Prometheus text (or
// negotiated) exposition format.
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}
