//go:build linux

package bench

import (
	"bytes"
	"errors"
	"strconv"
)

// Every message the benchmarks publish carries the same 100-byte JSON string
// as its data:
//
//	"T<topic:6>S<seq:10>N<unix-ns:19><pad:60>"
//
// The topic index and a per-topic sequence number let each subscriber check
// that it got every message of its topic, in order, once; the publish time
// gives the latency; the pad (a function of seq) catches corrupted bytes.
const (
	dataSize  = 100
	padOffset = 1 + 1 + 6 + 1 + 10 + 1 + 19 // opening quote, fields
	padSize   = dataSize - padOffset - 1    // -1: closing quote
)

// padPattern holds every pad: the pad of seq s is padPattern[s%26:][:padSize].
var padPattern = func() []byte {
	b := make([]byte, 26+padSize)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}()

// topicName is the name of topic number i.
func topicName(i int) string { return "t" + strconv.Itoa(i) }

// appendData appends the data of message seq on topic ti published at ts.
func appendData(dst []byte, ti int, seq uint64, ts int64) []byte {
	dst = append(dst, '"', 'T')
	dst = appendFixed(dst, uint64(ti), 6)
	dst = append(dst, 'S')
	dst = appendFixed(dst, seq, 10)
	dst = append(dst, 'N')
	dst = appendFixed(dst, uint64(ts), 19)
	dst = append(dst, padPattern[seq%26:][:padSize]...)
	return append(dst, '"')
}

func appendFixed(dst []byte, v uint64, width int) []byte {
	n := len(dst)
	for range width {
		dst = append(dst, '0')
	}
	for i := n + width - 1; i >= n && v > 0; i-- {
		dst[i] = '0' + byte(v%10)
		v /= 10
	}
	return dst
}

func parseFixed(b []byte) (uint64, bool) {
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, true
}

var (
	errEnvelope = errors.New("delivery envelope does not match")
	errData     = errors.New("delivery data is corrupt")
	errTopic    = errors.New("delivery for a topic the connection is not subscribed to")
)

// dataInfo is what checkData read from a data value.
type dataInfo struct {
	seq uint64
	ts  int64
}

// checkData verifies one data value for topic ti.
func checkData(d []byte, ti int) (dataInfo, error) {
	if len(d) != dataSize || d[0] != '"' || d[1] != 'T' || d[8] != 'S' || d[19] != 'N' || d[dataSize-1] != '"' {
		return dataInfo{}, errData
	}
	t, ok1 := parseFixed(d[2:8])
	seq, ok2 := parseFixed(d[9:19])
	ts, ok3 := parseFixed(d[20:39])
	if !ok1 || !ok2 || !ok3 {
		return dataInfo{}, errData
	}
	if int(t) != ti {
		return dataInfo{}, errTopic
	}
	if !bytes.Equal(d[padOffset:dataSize-1], padPattern[seq%26:][:padSize]) {
		return dataInfo{}, errData
	}
	return dataInfo{seq: seq, ts: int64(ts)}, nil
}

// envelope is the shape a server wraps around a delivery's data.
type envelope struct {
	prefix, suffix []byte
}

// protocol flavours the load generator speaks.
const (
	flavourFiretower  = "firetower"  // firetower's JSON protocol (firetower, gorilla hub, floor)
	flavourCentrifuge = "centrifuge" // centrifuge's JSON protocol, version 2
)

func deliveryEnvelope(flavour, topic string) envelope {
	q := strconv.Quote(topic)
	switch flavour {
	case flavourCentrifuge:
		return envelope{
			prefix: []byte(`{"push":{"channel":` + q + `,"pub":{"data":`),
			suffix: []byte(`}}}`),
		}
	default:
		return envelope{
			prefix: []byte(`{"type":"publish","topic":` + q + `,"data":`),
			suffix: []byte(`}`),
		}
	}
}

// appendDelivery appends the firetower delivery message for data on topic.
func appendDelivery(dst []byte, topic string, data []byte) []byte {
	dst = append(dst, `{"type":"publish","topic":`...)
	dst = strconv.AppendQuote(dst, topic)
	dst = append(dst, `,"data":`...)
	dst = append(dst, data...)
	return append(dst, '}')
}

// checkMessage verifies one delivery message against its envelope.
func checkMessage(m []byte, env *envelope, ti int) (dataInfo, error) {
	p, s := len(env.prefix), len(env.suffix)
	if len(m) < p+dataSize+s || !bytes.Equal(m[:p], env.prefix) || !bytes.Equal(m[len(m)-s:], env.suffix) ||
		!offsetOrNothing(m[p+dataSize:len(m)-s]) {
		return dataInfo{}, errEnvelope
	}
	return checkData(m[p:p+dataSize], ti)
}

// offsetOrNothing reports whether what follows a delivery's data is nothing
// or the `,"offset":N` of a server keeping history (firetower's delivery,
// centrifuge's pub).
func offsetOrNothing(b []byte) bool {
	const key = `,"offset":`
	if len(b) == 0 {
		return true
	}
	if len(b) <= len(key) || string(b[:len(key)]) != key {
		return false
	}
	for _, c := range b[len(key):] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
