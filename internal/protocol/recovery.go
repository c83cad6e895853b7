package protocol

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"strconv"

	"github.com/vmihailenco/msgpack/v5"
)

// Recovery (PROTOCOL.md, "Recovery"): a subscribe may carry
//
//	"since": {"<topic>": {"offset": N, "epoch": "E"}, ...}
//	"last":  N
//
// and its ack then carries "positions"; deliveries on a topic with history
// carry "offset". Both decoders (JSON through encoding/json, msgpack) check
// the shapes here; the fast JSON path never sees these fields (it takes only
// the keys type, topic, topics, data and id, and falls back for any other).

// Since is one topic's resume point in a subscribe.
type Since struct {
	Topic  string
	Offset uint64
	Epoch  string
}

// MaxLast is the largest "last" a request may carry; the server caps it
// further (at its stream size).
const MaxLast = 1<<31 - 1

// decodeRecoveryJSON reads the since and last fields of a JSON subscribe
// into r; raw values are nil when absent. Other requests ignore them, as
// any unknown field.
func decodeRecoveryJSON(r *Request, since, last json.RawMessage) *RequestError {
	if r.Type != TypeSubscribe {
		return nil
	}
	if len(since) > 0 && !bytes.Equal(since, nullJSON) {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(since, &m); err != nil {
			return &RequestError{Code: CodeBadRequest, Message: `since must be an object: {"<topic>": {"offset": N, "epoch": "E"}}`, ID: r.ID}
		}
		r.HasSince = true
		for topic, raw := range m {
			var p struct {
				Offset json.RawMessage `json:"offset"`
				Epoch  *string         `json:"epoch"`
			}
			if err := json.Unmarshal(raw, &p); err != nil || p.Epoch == nil || len(p.Offset) == 0 {
				return &RequestError{Code: CodeBadRequest, Message: "since." + topic + ` must be {"offset": N, "epoch": "E"}`, ID: r.ID}
			}
			off, err := strconv.ParseUint(string(p.Offset), 10, 64)
			if err != nil {
				return &RequestError{Code: CodeBadRequest, Message: "since." + topic + ".offset must be an unsigned integer", ID: r.ID}
			}
			r.Since = append(r.Since, Since{Topic: topic, Offset: off, Epoch: *p.Epoch})
		}
	}
	if len(last) > 0 && !bytes.Equal(last, nullJSON) {
		n, err := strconv.ParseUint(string(last), 10, 64)
		if err != nil {
			return &RequestError{Code: CodeBadRequest, Message: "last must be an unsigned integer", ID: r.ID}
		}
		r.Last = int(min(n, MaxLast))
		r.HasLast = true
	}
	return nil
}

// decodeRecoveryMsgpack reads the since and last fields of a msgpack
// subscribe into r; isNil tells an absent or nil field. Other requests
// ignore them.
func decodeRecoveryMsgpack(r *Request, fields map[string]msgpack.RawMessage, isNil func(msgpack.RawMessage) bool) *RequestError {
	if r.Type != TypeSubscribe {
		return nil
	}
	if raw, ok := fields["since"]; ok && !isNil(raw) {
		var m map[string]msgpack.RawMessage
		if err := msgpack.Unmarshal(raw, &m); err != nil {
			return &RequestError{Code: CodeBadRequest, Message: `since must be a map: {"<topic>": {"offset": N, "epoch": "E"}}`, ID: r.ID}
		}
		r.HasSince = true
		for topic, raw := range m {
			var p map[string]msgpack.RawMessage
			bad := &RequestError{Code: CodeBadRequest, Message: "since." + topic + ` must be {"offset": N, "epoch": "E"}`, ID: r.ID}
			if err := msgpack.Unmarshal(raw, &p); err != nil {
				return bad
			}
			var epoch string
			var off any
			if e, ok := p["epoch"]; !ok || msgpack.Unmarshal(e, &epoch) != nil {
				return bad
			}
			if o, ok := p["offset"]; !ok || msgpack.Unmarshal(o, &off) != nil {
				return bad
			}
			u, ok := unsigned(off)
			if !ok {
				return &RequestError{Code: CodeBadRequest, Message: "since." + topic + ".offset must be an unsigned integer", ID: r.ID}
			}
			r.Since = append(r.Since, Since{Topic: topic, Offset: u, Epoch: epoch})
		}
	}
	if raw, ok := fields["last"]; ok && !isNil(raw) {
		var v any
		u, ok := uint64(0), false
		if msgpack.Unmarshal(raw, &v) == nil {
			u, ok = unsigned(v)
		}
		if !ok {
			return &RequestError{Code: CodeBadRequest, Message: "last must be an unsigned integer", ID: r.ID}
		}
		r.Last = int(min(u, MaxLast))
		r.HasLast = true
	}
	return nil
}

// unsigned is a msgpack integer that is >= 0.
func unsigned(v any) (uint64, bool) {
	switch x := v.(type) {
	case int8:
		return uint64(x), x >= 0 //nolint:gosec // G115: the value is used only when x >= 0, the second result
	case int16:
		return uint64(x), x >= 0 //nolint:gosec // G115: the value is used only when x >= 0, the second result
	case int32:
		return uint64(x), x >= 0 //nolint:gosec // G115: the value is used only when x >= 0, the second result
	case int64:
		return uint64(x), x >= 0 //nolint:gosec // G115: the value is used only when x >= 0, the second result
	case uint8:
		return uint64(x), true
	case uint16:
		return uint64(x), true
	case uint32:
		return uint64(x), true
	case uint64:
		return x, true
	}
	return 0, false
}

// AppendDeliveryJSONAt appends the JSON delivery envelope of a publish on
// a topic with history: {"type":"publish","topic":T,"data":D,"offset":N}.
// quoted is the topic as a JSON string; data must be valid JSON.
func AppendDeliveryJSONAt(dst []byte, quoted string, data []byte, offset uint64) []byte {
	dst = append(dst, `{"type":"publish","topic":`...)
	dst = append(dst, quoted...)
	dst = append(dst, `,"data":`...)
	dst = append(dst, data...)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendUint(dst, offset, 10)
	return append(dst, '}')
}

// DeliveryJSONAtSize is the exact size AppendDeliveryJSONAt appends.
func DeliveryJSONAtSize(quoted string, data []byte, offset uint64) int {
	n := len(`{"type":"publish","topic":,"data":,"offset":}`) + len(quoted) + len(data)
	for n++; offset >= 10; offset /= 10 {
		n++
	}
	return n
}

// AppendDeliveryMsgpackAt appends the msgpack delivery envelope of a
// publish on a topic with history (a map of type, topic, data, offset).
func AppendDeliveryMsgpackAt(dst []byte, topic string, data []byte, offset uint64) ([]byte, error) {
	start := len(dst)
	dst, err := AppendDeliveryMsgpack(dst, topic, data)
	if err != nil {
		return dst, err
	}
	dst[start] = 0x84
	dst = appendMsgpackStr(dst, "offset")
	return appendMsgpackUint(dst, offset), nil
}

func appendMsgpackUint(dst []byte, u uint64) []byte {
	switch {
	case u < 128:
		return append(dst, byte(u))
	case u < 1<<8:
		return append(dst, 0xcc, byte(u))
	case u < 1<<16:
		return append(dst, 0xcd, byte(u>>8), byte(u)) //nolint:gosec // G115: u < 1<<16; byte() keeps the low byte on purpose (big-endian)
	case u < 1<<32:
		dst = append(dst, 0xce)
		return binary.BigEndian.AppendUint32(dst, uint32(u))
	}
	dst = append(dst, 0xcf)
	return binary.BigEndian.AppendUint64(dst, u)
}

func appendMsgpackMapHeader(dst []byte, n int) []byte {
	switch {
	case n < 16:
		return append(dst, 0x80|byte(n)) //nolint:gosec // G115: n < 16
	case n < 65536:
		return append(dst, 0xde, byte(n>>8), byte(n)) //nolint:gosec // G115: n < 65536; byte() keeps the low byte on purpose (big-endian)
	default:
		dst = append(dst, 0xdf)
		return binary.BigEndian.AppendUint32(dst, uint32(n)) //nolint:gosec // G115: a count of map entries held in memory, far below 1<<32
	}
}

// TopicPosition is a topic's stream position in a subscribe's ack.
type TopicPosition struct {
	Topic     string
	Epoch     string
	Offset    uint64
	Recovered bool
}

// AckPositions appends a subscribe's ack with the topics and, for the
// topics with history, "positions":
// {"<topic>": {"epoch": "E", "offset": TOP, "recovered": true|false}}.
func (r Reply) AckPositions(dst, id []byte, topics []string, pos []TopicPosition) []byte {
	if r.Codec == Msgpack {
		dst = append(dst, 0x84)
		dst = appendMsgpackStr(dst, "type")
		dst = appendMsgpackStr(dst, "ack")
		dst = appendMsgpackStr(dst, "id")
		dst = appendMsgpackID(dst, id)
		dst = appendMsgpackStr(dst, "topics")
		dst = appendMsgpackArrayHeader(dst, len(topics))
		for _, t := range topics {
			dst = appendMsgpackStr(dst, t)
		}
		dst = appendMsgpackStr(dst, "positions")
		dst = appendMsgpackMapHeader(dst, len(pos))
		for _, p := range pos {
			dst = appendMsgpackStr(dst, p.Topic)
			dst = append(dst, 0x83)
			dst = appendMsgpackStr(dst, "epoch")
			dst = appendMsgpackStr(dst, p.Epoch)
			dst = appendMsgpackStr(dst, "offset")
			dst = appendMsgpackUint(dst, p.Offset)
			dst = appendMsgpackStr(dst, "recovered")
			if p.Recovered {
				dst = append(dst, 0xc3)
			} else {
				dst = append(dst, 0xc2)
			}
		}
		return dst
	}
	dst = r.Ack(dst, id, topics, true)
	dst = dst[:len(dst)-1] // the closing brace
	dst = append(dst, `,"positions":{`...)
	for i, p := range pos {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendJSONString(dst, p.Topic)
		dst = append(dst, `:{"epoch":`...)
		dst = AppendJSONString(dst, p.Epoch)
		dst = append(dst, `,"offset":`...)
		dst = strconv.AppendUint(dst, p.Offset, 10)
		dst = append(dst, `,"recovered":`...)
		dst = strconv.AppendBool(dst, p.Recovered)
		dst = append(dst, '}')
	}
	return append(dst, "}}"...)
}
