//go:build linux

package bench

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ackOf is what acknowledges a client's publish on a server kind, for the
// window of the Ingest scenario: firetower answers a publish that has an
// id with {"type":"ack","id":N} (or an error frame with that id), and
// centrifuge answers every publish command with a reply (or an error); the
// gorilla hub and the floor answer nothing, so there a publisher counts its
// own delivery of its message (it is subscribed to the topic it publishes
// to) as the acknowledgement. firetower-delay and centrifuge-delay are
// firetower and centrifuge (their answers wait with their deliveries). That spares those two servers a write per
// publish that firetower makes, which can only flatter them.
func ackOf(kind string) string {
	switch kind {
	case "firetower", "firetower-delay", "centrifuge", "centrifuge-delay":
		return "reply"
	}
	return "delivery"
}

// startPublishers connects conns publishing clients to srv, connection g
// subscribed to topic g % topics (see pubgen.go).
func startPublishers(srv server, kind string, conns, topics int) (*clients, error) {
	return startLoad("publishers", srv.Addr(), srv.Path(), srv.Flavour(), conns, topics, "FTBENCH_ACK="+ackOf(kind))
}

// pubResult is what the publishers' load generator reports for a run,
// summed over its processes.
type pubResult struct {
	sent, recv, expected int64 // publishes written; deliveries received and due
	acks, errs           int64 // answers and error frames received
	bad, gaps            int64 // bad frames; messages skipped in a publisher's sequence
	closed               int64 // connections the server closed (or that failed)
	elapsed              time.Duration
	latN                 int
	p50, p99, max        int64
	lag                  time.Duration // chat: the most a publish went out after its time
	notes                []string
}

func (r pubResult) lost() int64 { return r.expected - r.recv }

func (r *pubResult) add(o pubResult) {
	r.sent += o.sent
	r.recv += o.recv
	r.expected += o.expected
	r.acks += o.acks
	r.errs += o.errs
	r.bad += o.bad
	r.gaps += o.gaps
	r.closed += o.closed
	r.elapsed += o.elapsed
	r.latN += o.latN
	// With several processes (or runs) the larger quantiles are kept
	// (conservative), as clients.latency does.
	r.p50, r.p99, r.max = max(r.p50, o.p50), max(r.p99, o.p99), max(r.max, o.max)
	r.lag = max(r.lag, o.lag)
	r.notes = append(r.notes, o.notes...)
}

func parsePubResult(line string) (pubResult, error) {
	var r pubResult
	rest, ok := strings.CutPrefix(line, "result ")
	if !ok {
		return r, fmt.Errorf("bad result line %q", line)
	}
	head, note, _ := strings.Cut(rest, " first=")
	if note = strings.TrimSpace(note); note != "" {
		r.notes = append(r.notes, note)
	}
	for kv := range strings.FieldsSeq(head) {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return r, fmt.Errorf("bad result line %q: %w", line, err)
		}
		switch k {
		case "sent":
			r.sent = n
		case "recv":
			r.recv = n
		case "expected":
			r.expected = n
		case "acks":
			r.acks = n
		case "errors":
			r.errs = n
		case "bad":
			r.bad = n
		case "gaps":
			r.gaps = n
		case "closed":
			r.closed = n
		case "elapsed":
			r.elapsed = time.Duration(n)
		case "latn":
			r.latN = int(n)
		case "p50":
			r.p50 = n
		case "p99":
			r.p99 = n
		case "max":
			r.max = n
		case "lag":
			r.lag = time.Duration(n)
		}
	}
	return r, nil
}

// run sends cmd to every publishers' process and sums their results; the
// elapsed time is the longest of them.
func (c *clients) run(cmd string) (pubResult, error) {
	lines, err := c.all(cmd, 30*time.Minute)
	if err != nil {
		return pubResult{}, err
	}
	var tot pubResult
	for _, l := range lines {
		r, err := parsePubResult(l)
		if err != nil {
			return pubResult{}, err
		}
		el := max(tot.elapsed, r.elapsed)
		tot.add(r)
		tot.elapsed = el
	}
	return tot, nil
}

// ingest has every connection publish n messages to its topic, at most
// window unacknowledged (0: unbounded pipelining), and waits until every
// delivery arrived or nothing moved for stall.
func (c *clients) ingest(n, window int, stall time.Duration) (pubResult, error) {
	return c.run(fmt.Sprintf("ingest %d %d %d", n, window, stall.Milliseconds()))
}

// chat has every member publish msgs messages to its room, one per period,
// the members' phases spread evenly over the period, from start on, and
// waits until every delivery arrived or nothing moved for stall.
func (c *clients) chat(start time.Time, period time.Duration, msgs int, stall time.Duration) (pubResult, error) {
	return c.run(fmt.Sprintf("chat %d %d %d %d", start.UnixNano(), int64(period), msgs, stall.Milliseconds()))
}
