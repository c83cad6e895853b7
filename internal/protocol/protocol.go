// Package protocol decodes client requests and encodes server messages of the
// firetower client protocol, version 1, in its two codecs: JSON in text
// frames and msgpack in binary frames. It knows nothing about connections.
package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/firetower-go/firetower/internal/mpcheck"
)

// Codec is the encoding a connection negotiated.
type Codec uint8

const (
	JSON Codec = iota
	Msgpack
)

// Subprotocol names (Sec-WebSocket-Protocol).
const (
	SubprotocolJSON    = "firetower.v1.json"
	SubprotocolMsgpack = "firetower.v1.msgpack"
)

// Request types.
const (
	TypeUnknown = iota
	TypePublish
	TypeSubscribe
	TypeUnsubscribe
	TypePing
)

// Error codes of the protocol.
const (
	CodeBadRequest      = "bad_request"
	CodeUnknownType     = "unknown_type"
	CodeInvalidTopic    = "invalid_topic"
	CodeForbidden       = "forbidden"
	CodeTooManyTopics   = "too_many_topics"
	CodeRateLimited     = "rate_limited"
	CodeMessageTooLarge = "message_too_large"
	CodeUnavailable     = "unavailable"
	CodeInternal        = "internal"
)

// MaxTopicLen is the longest topic in bytes.
const MaxTopicLen = 256

// Request is a decoded client message.
type Request struct {
	Type int
	// RawType is the type as sent, for error messages.
	RawType string
	// Topics is the union of "topic" (split at commas) and "topics", in order,
	// without duplicates. Topics are not validated here.
	Topics []string
	// Data is the publish payload as JSON, byte for byte as a JSON client sent
	// it ("null" when absent).
	Data []byte
	// ID is the request id encoded in the request's codec (raw JSON, or a
	// msgpack value), nil when absent.
	ID []byte
	// Recovery fields of a subscribe (recovery.go): Since in no
	// particular order, Last when HasLast.
	Since    []Since
	HasSince bool
	Last     int
	HasLast  bool
}

// RequestError is a request that cannot be decoded; the ID is kept when it
// could be read so the error can carry it.
type RequestError struct {
	Code    string
	Message string
	ID      []byte
}

func (e *RequestError) Error() string { return e.Code + ": " + e.Message }

type jsonRequest struct {
	Type   json.RawMessage `json:"type"`
	Topic  json.RawMessage `json:"topic"`
	Topics []string        `json:"topics"`
	Data   json.RawMessage `json:"data"`
	ID     json.RawMessage `json:"id"`
	Since  json.RawMessage `json:"since"` // recovery.go
	Last   json.RawMessage `json:"last"`  // recovery.go
}

var nullJSON = []byte("null")

// DecodeJSON decodes a JSON request. The usual requests take a fast path
// (decode_fast.go); the others, and all errors, take encoding/json's.
func DecodeJSON(p []byte) (*Request, *RequestError) {
	if r, ok := decodeJSONFast(p); ok {
		return r, nil
	}
	return decodeJSONStd(p)
}

// decodeJSONStd is DecodeJSON with encoding/json: the reference for every
// request, and the path for those the fast decoder does not take.
func decodeJSONStd(p []byte) (*Request, *RequestError) {
	var jr jsonRequest
	if err := json.Unmarshal(p, &jr); err != nil {
		return nil, &RequestError{Code: CodeBadRequest, Message: "invalid JSON request: " + trimErr(err)}
	}
	r := &Request{Data: jr.Data}
	if len(jr.ID) > 0 && !bytes.Equal(jr.ID, nullJSON) {
		if c := jr.ID[0]; c == '{' || c == '[' || c == 't' || c == 'f' {
			return nil, &RequestError{Code: CodeBadRequest, Message: "id must be a string or a number"}
		}
		r.ID = jr.ID
	}
	if len(r.Data) == 0 {
		r.Data = nullJSON
	}
	var typ any
	if len(jr.Type) > 0 {
		if err := json.Unmarshal(jr.Type, &typ); err != nil {
			return nil, &RequestError{Code: CodeBadRequest, Message: "invalid type", ID: r.ID}
		}
	}
	r.Type, r.RawType = parseType(typ)
	var topic string
	if len(jr.Topic) > 0 && !bytes.Equal(jr.Topic, nullJSON) {
		if err := json.Unmarshal(jr.Topic, &topic); err != nil {
			return nil, &RequestError{Code: CodeBadRequest, Message: "topic must be a string", ID: r.ID}
		}
	}
	r.Topics = unionTopics(topic, jr.Topics)
	if rerr := decodeRecoveryJSON(r, jr.Since, jr.Last); rerr != nil {
		return nil, rerr
	}
	return r, nil
}

// DecodeMsgpack decodes a msgpack request; its data is converted to JSON.
// The request is read as a map of raw fields and each known field decoded
// on its own (decoding straight into a struct panics inside the msgpack
// library on some duplicate keys).
func DecodeMsgpack(p []byte) (*Request, *RequestError) {
	// Declared lengths are checked against the message first: msgpack
	// decoders allocate by them.
	if err := mpcheck.Check(p); err != nil {
		return nil, &RequestError{Code: CodeBadRequest, Message: trimErr(err)}
	}
	if !mpcheck.IsMap(p) {
		return nil, &RequestError{Code: CodeBadRequest, Message: "a msgpack request must be a map"}
	}
	var fields map[string]msgpack.RawMessage
	if err := msgpack.Unmarshal(p, &fields); err != nil {
		return nil, &RequestError{Code: CodeBadRequest, Message: "invalid msgpack request: " + trimErr(err)}
	}
	// A nil field reads as an empty RawMessage (or 0xc0).
	isNil := func(raw msgpack.RawMessage) bool { return len(raw) == 0 || (len(raw) == 1 && raw[0] == 0xc0) }
	r := &Request{Data: nullJSON}
	if raw, ok := fields["id"]; ok && !isNil(raw) {
		var id any
		if err := msgpack.Unmarshal(raw, &id); err != nil {
			return nil, &RequestError{Code: CodeBadRequest, Message: "invalid id"}
		}
		switch id.(type) {
		case string, int8, int16, int32, int64, uint8, uint16, uint32, uint64, float32, float64:
			r.ID = raw
		default:
			return nil, &RequestError{Code: CodeBadRequest, Message: "id must be a string or a number"}
		}
	}
	var typ any
	if raw, ok := fields["type"]; ok && !isNil(raw) {
		if err := msgpack.Unmarshal(raw, &typ); err != nil {
			return nil, &RequestError{Code: CodeBadRequest, Message: "invalid type", ID: r.ID}
		}
	}
	r.Type, r.RawType = parseType(typ)
	var topic string
	var topics []string
	if raw, ok := fields["topic"]; ok && !isNil(raw) {
		if err := msgpack.Unmarshal(raw, &topic); err != nil {
			return nil, &RequestError{Code: CodeBadRequest, Message: "topic must be a string", ID: r.ID}
		}
	}
	if raw, ok := fields["topics"]; ok && !isNil(raw) {
		if err := msgpack.Unmarshal(raw, &topics); err != nil {
			return nil, &RequestError{Code: CodeBadRequest, Message: "topics must be an array of strings", ID: r.ID}
		}
	}
	r.Topics = unionTopics(topic, topics)
	if raw, ok := fields["data"]; ok && !isNil(raw) {
		var v any
		if err := msgpack.Unmarshal(raw, &v); err != nil {
			return nil, &RequestError{Code: CodeBadRequest, Message: "invalid data", ID: r.ID}
		}
		j, err := json.Marshal(Jsonable(v))
		if err != nil {
			return nil, &RequestError{Code: CodeBadRequest, Message: "data cannot be represented as JSON", ID: r.ID}
		}
		r.Data = j
	}
	if rerr := decodeRecoveryMsgpack(r, fields, isNil); rerr != nil {
		return nil, rerr
	}
	return r, nil
}

// Jsonable turns maps with non-string keys (which msgpack allows) into maps
// keyed by their printed key, so any msgpack value can be carried as JSON.
func Jsonable(v any) any {
	switch x := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = Jsonable(e)
		}
		return m
	case map[string]any:
		for k, e := range x {
			x[k] = Jsonable(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = Jsonable(e)
		}
		return x
	}
	return v
}

func trimErr(err error) string {
	s := err.Error()
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

func parseType(v any) (int, string) {
	switch x := v.(type) {
	case string:
		switch x {
		case "publish":
			return TypePublish, x
		case "subscribe":
			return TypeSubscribe, x
		case "unsubscribe", "unSubscribe":
			return TypeUnsubscribe, x
		case "ping":
			return TypePing, x
		}
		return TypeUnknown, x
	case float64:
		return numType(x), strconv.FormatFloat(x, 'g', -1, 64)
	case float32:
		return numType(float64(x)), strconv.FormatFloat(float64(x), 'g', -1, 32)
	case int8, int16, int32, int64, uint8, uint16, uint32, uint64:
		f, _ := strconv.ParseFloat(fmt.Sprint(x), 64)
		return numType(f), fmt.Sprint(x)
	case nil:
		return TypeUnknown, ""
	}
	return TypeUnknown, fmt.Sprint(v)
}

func numType(f float64) int {
	switch f {
	case 1:
		return TypePublish
	case 2:
		return TypeSubscribe
	case 3:
		return TypeUnsubscribe
	}
	return TypeUnknown
}

func unionTopics(topic string, topics []string) []string {
	var out []string
	var seen map[string]struct{} // for long lists only: keeps this linear
	add := func(t string) {
		if seen != nil {
			if _, dup := seen[t]; dup {
				return
			}
			seen[t] = struct{}{}
			out = append(out, t)
			return
		}
		for _, o := range out {
			if o == t {
				return
			}
		}
		out = append(out, t)
		if len(out) == 16 {
			seen = make(map[string]struct{}, 32)
			for _, o := range out {
				seen[o] = struct{}{}
			}
		}
	}
	if topic != "" {
		for _, t := range strings.Split(topic, ",") {
			add(t)
		}
	}
	for _, t := range topics {
		add(t)
	}
	return out
}

// ErrInvalidTopic describes why a topic is refused.
var errTopicEmpty = errors.New("topic is empty")

// ValidateTopic checks a topic: 1..256 bytes of printable UTF-8, no comma, no
// white space.
func ValidateTopic(t string) error {
	if t == "" {
		return errTopicEmpty
	}
	if len(t) > MaxTopicLen {
		return fmt.Errorf("topic longer than %d bytes", MaxTopicLen)
	}
	for i, r := range t {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(t[i:]); size <= 1 {
				return errors.New("topic is not valid UTF-8")
			}
		}
		if r == ',' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("topic contains %q", r)
		}
	}
	return nil
}
