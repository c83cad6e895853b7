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
	case "ack", "error", "pong":
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
}

func decodeMsgpack(p []byte) (message, error) {
	var env msgpackEnvelope
	if err := msgpack.Unmarshal(p, &env); err != nil {
		return message{}, fmt.Errorf("client: undecodable msgpack message from the server: %w", err)
	}
	m := message{typ: env.Type, topic: env.Topic, code: env.Code, text: env.Message, topics: env.Topics}
	m.id, m.hasID = msgpackID(env.ID)
	if env.Type == "publish" {
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
		return uint64(x), x >= 0
	case int16:
		return uint64(x), x >= 0
	case int32:
		return uint64(x), x >= 0
	case int64:
		return uint64(x), x >= 0
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
