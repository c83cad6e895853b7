// Package protocol decodes client requests and encodes server messages of the
// firetower client protocol, version 1, in its two codecs: JSON in text
// frames and msgpack in binary frames. It knows nothing about connections.
package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

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
		return nil, &RequestError{Code: CodeBadRequest, Message: jsonErrorMessage(err)}
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

// jsonErrorMessage says, for the client's developer, why encoding/json
// refused a request, in the protocol's terms: never with Go's names for
// types, as its errors have them ("cannot unmarshal array into Go value of
// type protocol.jsonRequest").
func jsonErrorMessage(err error) string {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		// Only "topics" has a Go type that can mismatch: the other fields
		// are kept raw and checked one by one in decodeJSONStd.
		if typeErr.Field == "" {
			return "a request must be a JSON object, not " + jsonKindArticle(typeErr.Value)
		}
		field, _, _ := strings.Cut(typeErr.Field, ".")
		if field == "topics" {
			return "topics must be an array of strings"
		}
		return "field " + strconv.Quote(field) + " has the wrong type"
	case errors.As(err, &syntaxErr):
		// encoding/json's syntax messages name only JSON things
		// ("invalid character 'x' after top-level value").
		return fmt.Sprintf("invalid JSON at byte %d: %s", syntaxErr.Offset, trimErr(err))
	case errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "unexpected end of JSON input"):
		return "invalid JSON: the request ends too early"
	}
	return "invalid JSON request"
}

// jsonKindArticle names a JSON kind as UnmarshalTypeError.Value has it
// ("array", "string", "number", "bool", "object"), with its article.
func jsonKindArticle(kind string) string {
	switch kind {
	case "array", "object":
		return "an " + kind
	case "bool":
		return "a boolean"
	case "string", "number":
		return "a " + kind
	}
	return "this"
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
	fields, err := msgpackFields(p)
	if err != nil {
		return nil, &RequestError{Code: CodeBadRequest, Message: msgpackErrorMessage(err, "a msgpack request's", "invalid msgpack request")}
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
		v, err := msgpackData(raw)
		if err != nil {
			return nil, &RequestError{Code: CodeBadRequest, Message: msgpackErrorMessage(err, "data: map", "invalid data"), ID: r.ID}
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

// errKeyNotString: a msgpack map has a key that is not a string. JSON
// objects have string keys only, and the protocol makes none up (PROTOCOL.md
// section 2, "Data").
var errKeyNotString = errors.New("map key is not a string")

// isStringKey reports whether a msgpack value starting with code c is read
// as a map key: a str, or a bin (which older encoders use for text).
func isStringKey(c byte) bool { return msgpcode.IsString(c) || msgpcode.IsBin(c) }

// msgpackFields reads a request's top-level map into its raw fields; of a
// repeated key, the last counts.
func msgpackFields(p []byte) (map[string]msgpack.RawMessage, error) {
	d := msgpack.NewDecoder(bytes.NewReader(p))
	n, err := d.DecodeMapLen()
	if err != nil {
		return nil, err
	}
	fields := make(map[string]msgpack.RawMessage, min(max(n, 0), 8))
	for range n {
		c, err := d.PeekCode()
		if err != nil {
			return nil, err
		}
		if !isStringKey(c) {
			return nil, errKeyNotString
		}
		k, err := d.DecodeString()
		if err != nil {
			return nil, err
		}
		v, err := d.DecodeRaw()
		if err != nil {
			return nil, err
		}
		fields[k] = v
	}
	return fields, nil
}

// msgpackData decodes a publish's msgpack data into Go values that
// encoding/json can write: maps keyed by strings (errKeyNotString for any
// other key, at any depth).
func msgpackData(raw []byte) (any, error) {
	d := msgpack.NewDecoder(bytes.NewReader(raw))
	d.SetMapDecoder(decodeStringKeyedMap)
	return d.DecodeInterface()
}

func decodeStringKeyedMap(d *msgpack.Decoder) (any, error) {
	n, err := d.DecodeMapLen()
	if err != nil || n < 0 {
		return nil, err
	}
	m := make(map[string]any, min(n, 64))
	for range n {
		c, err := d.PeekCode()
		if err != nil {
			return nil, err
		}
		if !isStringKey(c) {
			return nil, errKeyNotString
		}
		k, err := d.DecodeString()
		if err != nil {
			return nil, err
		}
		if m[k], err = d.DecodeInterface(); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// msgpackErrorMessage says why msgpack decoding failed without quoting the
// decoder's own messages, which name Go types and internals: "<what> keys
// must be strings", or otherwise.
func msgpackErrorMessage(err error, what, otherwise string) string {
	if errors.Is(err, errKeyNotString) {
		return what + " keys must be strings"
	}
	return otherwise
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
