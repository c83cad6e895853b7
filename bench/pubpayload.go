//go:build linux

package bench

import (
	"bytes"
	"strconv"
)

// The scenarios where clients publish (Ingest, Chat) have several
// publishers per topic, so their data names the publisher too. It is the
// same 100-byte JSON string as payload.go's, with one more field:
//
//	"T<topic:6>M<member:6>S<seq:10>N<unix-ns:19><pad:53>"
//
// member is the publisher's index among its topic's publishers, seq its own
// sequence number (+1 per publish of that publisher), so every receiver can
// check that it got each publisher's messages once and in order; the pad (a
// function of seq) catches corrupted bytes.
const (
	pubPadOffset = 1 + 1 + 6 + 1 + 6 + 1 + 10 + 1 + 19
	pubPadSize   = dataSize - pubPadOffset - 1
)

// appendPubData appends the data of publisher member's message seq on
// topic ti, published at ts.
func appendPubData(dst []byte, ti, member int, seq uint64, ts int64) []byte {
	dst = append(dst, '"', 'T')
	dst = appendFixed(dst, uint64(ti), 6)
	dst = append(dst, 'M')
	dst = appendFixed(dst, uint64(member), 6)
	dst = append(dst, 'S')
	dst = appendFixed(dst, seq, 10)
	dst = append(dst, 'N')
	dst = appendFixed(dst, uint64(ts), 19)
	dst = append(dst, padPattern[seq%26:][:pubPadSize]...)
	return append(dst, '"')
}

// pubInfo is what checkPubData read from a data value.
type pubInfo struct {
	member int
	seq    uint64
	ts     int64
}

// checkPubData verifies one data value for topic ti.
func checkPubData(d []byte, ti int) (pubInfo, error) {
	if len(d) != dataSize || d[0] != '"' || d[1] != 'T' || d[8] != 'M' || d[15] != 'S' || d[26] != 'N' || d[dataSize-1] != '"' {
		return pubInfo{}, errData
	}
	t, ok1 := parseFixed(d[2:8])
	m, ok2 := parseFixed(d[9:15])
	seq, ok3 := parseFixed(d[16:26])
	ts, ok4 := parseFixed(d[27:46])
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return pubInfo{}, errData
	}
	if int(t) != ti {
		return pubInfo{}, errTopic
	}
	if !bytes.Equal(d[pubPadOffset:dataSize-1], padPattern[seq%26:][:pubPadSize]) {
		return pubInfo{}, errData
	}
	return pubInfo{member: int(m), seq: seq, ts: int64(ts)}, nil
}

// checkPubMessage verifies one delivery message against its envelope.
func checkPubMessage(m []byte, env *envelope, ti int) (pubInfo, error) {
	p, s := len(env.prefix), len(env.suffix)
	if len(m) != p+dataSize+s || !bytes.Equal(m[:p], env.prefix) || !bytes.Equal(m[p+dataSize:], env.suffix) {
		return pubInfo{}, errEnvelope
	}
	return checkPubData(m[p:p+dataSize], ti)
}

// appendPublishRequest appends a client's publish request for data on
// topic in the flavour's protocol. The firetower form puts data last, so a
// server may take the data as the bytes between `"data":` and the closing
// brace (the floor does). withID asks for an answer: firetower sends an ack
// (or an error) for a request with an id; centrifuge's commands always
// carry one and always get a reply.
func appendPublishRequest(dst []byte, flavour, topic string, id uint64, withID bool, data []byte) []byte {
	if flavour == flavourCentrifuge {
		dst = append(dst, `{"id":`...)
		dst = strconv.AppendUint(dst, id, 10)
		dst = append(dst, `,"publish":{"channel":`...)
		dst = strconv.AppendQuote(dst, topic)
		dst = append(dst, `,"data":`...)
		dst = append(dst, data...)
		return append(dst, "}}"...)
	}
	dst = append(dst, `{"type":"publish","topic":`...)
	dst = strconv.AppendQuote(dst, topic)
	if withID {
		dst = append(dst, `,"id":`...)
		dst = strconv.AppendUint(dst, id, 10)
	}
	dst = append(dst, `,"data":`...)
	dst = append(dst, data...)
	return append(dst, '}')
}

// appendMaskedFrame appends a final, masked client frame of opcode op with
// payload p, masked with key (clients must mask; any key will do, and this
// one costs nothing to make, unlike appendClientFrame's random one).
func appendMaskedFrame(dst []byte, op byte, p []byte, key uint32) []byte {
	dst = append(dst, 0x80|op)
	switch n := len(p); {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n < 1<<16:
		dst = append(dst, 0x80|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x80|127)
		for i := 7; i >= 0; i-- {
			dst = append(dst, byte(uint64(n)>>(8*i)))
		}
	}
	mask := [4]byte{byte(key >> 24), byte(key >> 16), byte(key >> 8), byte(key)}
	dst = append(dst, mask[:]...)
	start := len(dst)
	dst = append(dst, p...)
	for i := range p {
		dst[start+i] ^= mask[i&3]
	}
	return dst
}
