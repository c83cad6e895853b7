package protocol

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
)

// AppendJSONString appends s as a JSON string literal.
func AppendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c < 0x20:
				switch c {
				case '\n':
					dst = append(dst, '\\', 'n')
				case '\r':
					dst = append(dst, '\\', 'r')
				case '\t':
					dst = append(dst, '\\', 't')
				default:
					dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
				}
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// AppendDeliveryJSON appends the JSON delivery envelope. data must be valid JSON.
func AppendDeliveryJSON(dst []byte, topic string, data []byte) []byte {
	dst = append(dst, `{"type":"publish","topic":`...)
	dst = AppendJSONString(dst, topic)
	dst = append(dst, `,"data":`...)
	dst = append(dst, data...)
	return append(dst, '}')
}

// DeliveryJSONSize is the exact size AppendDeliveryJSON needs when topic
// needs no escaping, and a lower bound otherwise.
func DeliveryJSONSize(topic string, data []byte) int {
	return len(`{"type":"publish","topic":"","data":}`) + len(topic) + len(data)
}

// AppendDeliveryMsgpack appends the msgpack delivery envelope; data is JSON
// and is converted to the equivalent msgpack value.
func AppendDeliveryMsgpack(dst []byte, topic string, data []byte) ([]byte, error) {
	dst = append(dst, 0x83)
	dst = appendMsgpackStr(dst, "type")
	dst = appendMsgpackStr(dst, "publish")
	dst = appendMsgpackStr(dst, "topic")
	dst = appendMsgpackStr(dst, topic)
	dst = appendMsgpackStr(dst, "data")
	v, err := JSONValue(data)
	if err != nil {
		return dst, err
	}
	m, err := msgpack.Marshal(v)
	if err != nil {
		return dst, err
	}
	return append(dst, m...), nil
}

// JSONValue decodes JSON into Go values, with integers kept as int64 or
// uint64 where they fit so they survive a msgpack round trip exactly.
func JSONValue(data []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return numbers(v), nil
}

func numbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return i
		}
		if u, err := strconv.ParseUint(string(x), 10, 64); err == nil {
			return u
		}
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil || math.IsInf(f, 0) {
			return string(x)
		}
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = numbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = numbers(e)
		}
	}
	return v
}

func appendMsgpackStr(dst []byte, s string) []byte {
	n := len(s)
	switch {
	case n < 32:
		dst = append(dst, 0xa0|byte(n))
	case n < 256:
		dst = append(dst, 0xd9, byte(n))
	case n < 65536:
		dst = append(dst, 0xda, byte(n>>8), byte(n)) //nolint:gosec // G115: n < 256
	default:
		dst = append(dst, 0xdb)
		dst = binary.BigEndian.AppendUint32(dst, uint32(n)) //nolint:gosec // G115: the length of a string held in memory by a message, far below 4 GiB
	}
	return append(dst, s...)
}

func appendMsgpackArrayHeader(dst []byte, n int) []byte {
	switch {
	case n < 16:
		return append(dst, 0x90|byte(n)) //nolint:gosec // G115: n < 16
	case n < 65536:
		return append(dst, 0xdc, byte(n>>8), byte(n)) //nolint:gosec // G115: n < 65536; byte() keeps the low byte on purpose (big-endian)
	default:
		dst = append(dst, 0xdd)
		return binary.BigEndian.AppendUint32(dst, uint32(n)) //nolint:gosec // G115: a count of items held in memory, far below 1<<32
	}
}

// Reply builds the server's answers (ack, error, pong) in one codec.
// id is the request id in that codec, or nil.
type Reply struct{ Codec Codec }

// Ack appends an ack; topics is included when withTopics is set.
func (r Reply) Ack(dst, id []byte, topics []string, withTopics bool) []byte {
	if r.Codec == Msgpack {
		n := byte(2)
		if withTopics {
			n++
		}
		dst = append(dst, 0x80|n)
		dst = appendMsgpackStr(dst, "type")
		dst = appendMsgpackStr(dst, "ack")
		dst = appendMsgpackStr(dst, "id")
		dst = appendMsgpackID(dst, id)
		if withTopics {
			dst = appendMsgpackStr(dst, "topics")
			dst = appendMsgpackArrayHeader(dst, len(topics))
			for _, t := range topics {
				dst = appendMsgpackStr(dst, t)
			}
		}
		return dst
	}
	dst = append(dst, `{"type":"ack","id":`...)
	dst = appendJSONID(dst, id)
	if withTopics {
		dst = append(dst, `,"topics":[`...)
		for i, t := range topics {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendJSONString(dst, t)
		}
		dst = append(dst, ']')
	}
	return append(dst, '}')
}

// Error appends an error message; id may be nil (then it is left out).
func (r Reply) Error(dst, id []byte, code, message string) []byte {
	if r.Codec == Msgpack {
		n := byte(3)
		if id != nil {
			n++
		}
		dst = append(dst, 0x80|n)
		dst = appendMsgpackStr(dst, "type")
		dst = appendMsgpackStr(dst, "error")
		if id != nil {
			dst = appendMsgpackStr(dst, "id")
			dst = append(dst, id...)
		}
		dst = appendMsgpackStr(dst, "code")
		dst = appendMsgpackStr(dst, code)
		dst = appendMsgpackStr(dst, "message")
		return appendMsgpackStr(dst, message)
	}
	dst = append(dst, `{"type":"error",`...)
	if id != nil {
		dst = append(dst, `"id":`...)
		dst = append(dst, id...)
		dst = append(dst, ',')
	}
	dst = append(dst, `"code":`...)
	dst = AppendJSONString(dst, code)
	dst = append(dst, `,"message":`...)
	dst = AppendJSONString(dst, message)
	return append(dst, '}')
}

// Pong appends the answer to an application-level ping.
func (r Reply) Pong(dst, id []byte) []byte {
	if r.Codec == Msgpack {
		if id == nil {
			dst = append(dst, 0x81)
			dst = appendMsgpackStr(dst, "type")
			return appendMsgpackStr(dst, "pong")
		}
		dst = append(dst, 0x82)
		dst = appendMsgpackStr(dst, "type")
		dst = appendMsgpackStr(dst, "pong")
		dst = appendMsgpackStr(dst, "id")
		return append(dst, id...)
	}
	if id == nil {
		return append(dst, `{"type":"pong"}`...)
	}
	dst = append(dst, `{"type":"pong","id":`...)
	dst = append(dst, id...)
	return append(dst, '}')
}

func appendJSONID(dst, id []byte) []byte {
	if id == nil {
		return append(dst, "null"...)
	}
	return append(dst, id...)
}

func appendMsgpackID(dst, id []byte) []byte {
	if id == nil {
		return append(dst, 0xc0)
	}
	return append(dst, id...)
}
