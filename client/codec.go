package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/firetower-go/firetower/internal/protocol"
	"strconv"

	"github.com/vmihailenco/msgpack/v5"
)

// request is one client message.
type request struct {
	typ    string
	topics []string
	data   []byte // JSON; nil when the message has no data
	id     uint64
	since  map[string]Position // subscribe: resume points (PROTOCOL.md, Recovery)
	last   int                 // subscribe: the latest N publications; 0 none
}

// message is one decoded server message.
type message struct {
	typ    string // "publish", "ack", "error", "pong"; "" for a legacy delivery
	topic  string
	data   []byte // JSON
	id     uint64
	hasID  bool
	code   string
	text   string
	topics []string

	offset    uint64 // publish: the position in the topic's stream
	hasOffset bool
	positions map[string]ackPosition // subscribe ack: the history topics' positions
}

// ackPosition is one topic's entry in a subscribe ack's "positions".
type ackPosition struct {
	Epoch     string `json:"epoch" msgpack:"epoch"`
	Offset    uint64 `json:"offset" msgpack:"offset"`
	Recovered bool   `json:"recovered" msgpack:"recovered"`
}

func (c Codec) encode(r request) ([]byte, error) {
	if c == Msgpack {
		return encodeMsgpack(r)
	}
	return encodeJSON(r), nil
}

func (c Codec) decode(p []byte) (message, error) {
	if c == Msgpack {
		return decodeMsgpack(p)
	}
	return decodeJSON(p), nil
}

func encodeJSON(r request) []byte {
	b := make([]byte, 0, 64+len(r.data))
	b = append(b, `{"type":`...)
	b = strconv.AppendQuote(b, r.typ)
	if len(r.topics) > 0 {
		t, _ := json.Marshal(r.topics) // []string always marshals
		b = append(b, `,"topics":`...)
		b = append(b, t...)
	}
	if r.data != nil {
		b = append(b, `,"data":`...)
		b = append(b, r.data...)
	}
	if len(r.since) > 0 {
		b = append(b, `,"since":{`...)
		first := true
		for t, p := range r.since {
			if !first {
				b = append(b, ',')
			}
			first = false
			q, _ := json.Marshal(t) // a string always marshals
			b = append(b, q...)
			b = append(b, `:{"offset":`...)
			b = strconv.AppendUint(b, p.Offset, 10)
			e, _ := json.Marshal(p.Epoch)
			b = append(b, `,"epoch":`...)
			b = append(b, e...)
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	if r.last > 0 {
		b = append(b, `,"last":`...)
		b = strconv.AppendInt(b, int64(r.last), 10)
	}
	b = append(b, `,"id":`...)
	b = strconv.AppendUint(b, r.id, 10)
	return append(b, '}')
}

func encodeMsgpack(r request) ([]byte, error) {
	m := map[string]any{"type": r.typ, "id": r.id}
	if len(r.topics) > 0 {
		m["topics"] = r.topics
	}
	if r.data != nil {
		v, err := protocol.JSONValue(r.data)
		if err != nil {
			return nil, err
		}
		m["data"] = v
	}
	if len(r.since) > 0 {
		since := make(map[string]any, len(r.since))
		for t, p := range r.since {
			since[t] = map[string]any{"offset": p.Offset, "epoch": p.Epoch}
		}
		m["since"] = since
	}
	if r.last > 0 {
		m["last"] = uint64(r.last)
	}
	return msgpack.Marshal(m)
}

type jsonEnvelope struct {
	Type    json.RawMessage `json:"type"`
	Topic   json.RawMessage `json:"topic"`
	Data    json.RawMessage `json:"data"`
	ID      json.RawMessage `json:"id"`
	Code    string          `json:"code"`
	Message string          `json:"message"`
	Topics  []string        `json:"topics"`

	Offset    json.RawMessage `json:"offset"`
	Positions json.RawMessage `json:"positions"`
}

// decodeJSON never fails: a frame that is not one of the server's messages
// is a legacy delivery (raw data, no envelope).
func decodeJSON(p []byte) message {
	legacy := message{data: p}
	var env jsonEnvelope
	if err := json.Unmarshal(p, &env); err != nil {
		return legacy
	}
	var typ string
	if err := json.Unmarshal(env.Type, &typ); err != nil {
		return legacy
	}
	m := message{typ: typ, code: env.Code, text: env.Message, topics: env.Topics}
	switch typ {
	case "publish":
		if err := json.Unmarshal(env.Topic, &m.topic); err != nil {
			return legacy
		}
		m.data = env.Data
		if len(m.data) == 0 {
			m.data = []byte("null")
		}
		if len(env.Offset) > 0 {
			if off, err := strconv.ParseUint(string(env.Offset), 10, 64); err == nil {
				m.offset, m.hasOffset = off, true
			}
		}
	case "ack", "error", "pong":
		if typ == "ack" && len(env.Positions) > 0 {
			// A malformed positions object is ignored: the ack still
			// answers its request.
			_ = json.Unmarshal(env.Positions, &m.positions)
		}
		if len(env.ID) > 0 {
			if id, err := strconv.ParseUint(string(env.ID), 10, 64); err == nil {
				m.id, m.hasID = id, true
			}
		}
	default:
		return legacy
	}
	return m
}

type msgpackEnvelope struct {
	Type    string             `msgpack:"type"`
	Topic   string             `msgpack:"topic"`
	Data    msgpack.RawMessage `msgpack:"data"`
	ID      any                `msgpack:"id"`
	Code    string             `msgpack:"code"`
	Message string             `msgpack:"message"`
	Topics  []string           `msgpack:"topics"`

	Offset    any                `msgpack:"offset"`
	Positions msgpack.RawMessage `msgpack:"positions"`
}

func decodeMsgpack(p []byte) (message, error) {
	var env msgpackEnvelope
	if err := msgpack.Unmarshal(p, &env); err != nil {
		return message{}, fmt.Errorf("client: undecodable msgpack message from the server: %w", err)
	}
	m := message{typ: env.Type, topic: env.Topic, code: env.Code, text: env.Message, topics: env.Topics}
	m.id, m.hasID = msgpackID(env.ID)
	if env.Type == "ack" && len(env.Positions) > 0 {
		_ = msgpack.Unmarshal(env.Positions, &m.positions) // malformed: ignored, as in JSON
	}
	if env.Type == "publish" {
		m.offset, m.hasOffset = msgpackID(env.Offset)
		m.data = []byte("null")
		if len(env.Data) > 0 {
			j, err := msgpackToJSON(env.Data)
			if err != nil {
				return message{}, err
			}
			m.data = j
		}
	}
	return m, nil
}

func msgpackID(v any) (uint64, bool) {
	switch x := v.(type) {
	case uint8:
		return uint64(x), true
	case uint16:
		return uint64(x), true
	case uint32:
		return uint64(x), true
	case uint64:
		return x, true
	case int8:
		return uint64(x), x >= 0 //nolint:gosec // G115: the value is used only when x >= 0, the second result
	case int16:
		return uint64(x), x >= 0 //nolint:gosec // G115: the value is used only when x >= 0, the second result
	case int32:
		return uint64(x), x >= 0 //nolint:gosec // G115: the value is used only when x >= 0, the second result
	case int64:
		return uint64(x), x >= 0 //nolint:gosec // G115: the value is used only when x >= 0, the second result
	}
	return 0, false
}

var errNotJSON = errors.New("client: delivered msgpack value cannot be represented as JSON")

func msgpackToJSON(raw []byte) ([]byte, error) {
	var v any
	if err := msgpack.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("client: undecodable msgpack data: %w", err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(protocol.Jsonable(v)); err != nil {
		return nil, fmt.Errorf("%w: %v", errNotJSON, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
