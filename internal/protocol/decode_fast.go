package protocol

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"unicode/utf8"
)

// The fast path of DecodeJSON: a scanner for the request shapes clients
// actually send, which gives exactly what decodeJSONStd (encoding/json)
// gives for them and reports false for anything else, which then takes the
// encoding/json path; so every error, and every unusual request, is decoded
// by encoding/json alone. FuzzDecodeJSONFastMatchesSlow holds the two paths
// to the same results.
//
// The fast path takes a request that is one JSON object, with white space
// around it and in it as JSON allows, whose keys are among "type", "topic",
// "topics", "data" and "id", spelled exactly so (no escapes), each at most
// once (encoding/json matches keys without regard to case and lets the last
// of repeated keys win: those requests fall back), and whose values are:
//
//	type    a string without escapes, of valid UTF-8; a number; or null
//	topic   a string without escapes, of valid UTF-8; or null
//	topics  an array of such strings; or null
//	data    any JSON value (checked as encoding/json checks it, invalid
//	        UTF-8 inside strings included) nested at most maxFastDepth deep
//	id      a string (any escapes) or a number; or null
//
// A string without escapes is its own value when it is valid UTF-8
// (encoding/json would replace invalid bytes with U+FFFD: those fall back).
// Data and ID are the raw bytes of their values, copied out of the input
// (as json.RawMessage copies them), both into one allocation.
//
// The reference is encoding/json as of Go 1.26, also when built with
// GOEXPERIMENT=jsonv2 (its json.Unmarshal keeps version 1's handling of
// invalid UTF-8, repeated and case-folded keys; the fuzz target passed
// there too). Should that change, FuzzDecodeJSONFastMatchesSlow says so.

// maxFastDepth is how deeply arrays and objects in data may nest on the fast
// path; deeper data falls back (encoding/json allows 10000 for the whole
// request).
const maxFastDepth = 512

// The fields of a request, as bits of fastScan.seen.
const (
	fieldType = 1 << iota
	fieldTopic
	fieldTopics
	fieldData
	fieldID
)

// fastScan is where scanRequest found the values of a request's fields:
// offsets into the input, p[a:b].
type fastScan struct {
	seen uint8

	typA, typB int
	typNumber  bool // the type is a number, else (when typB > typA) a string's contents

	topicA, topicB int  // the topic string's contents
	hasTopic       bool // a topic string (not null)

	topicsA, topicsB int  // the array's insides, between [ and ]
	hasTopics        bool // an array (not null)
	nTopics          int

	dataA, dataB int // the data value, when dataB > dataA
	idA, idB     int // the id value, when idB > idA (not null)
}

// decodeJSONFast decodes the requests described above; false means the
// request must be decoded by decodeJSONStd.
func decodeJSONFast(p []byte) (*Request, bool) {
	var s fastScan
	if !scanRequest(p, &s) {
		return nil, false
	}
	var r Request // moved to the heap at the end, with or without a topic
	if s.typB > s.typA {
		t := p[s.typA:s.typB]
		if s.typNumber {
			f, err := strconv.ParseFloat(string(t), 64)
			if err != nil {
				return nil, false // out of range: "invalid type"
			}
			r.Type = numType(f)
			switch f {
			case 1:
				r.RawType = "1"
			case 2:
				r.RawType = "2"
			case 3:
				r.RawType = "3"
			default:
				r.RawType = strconv.FormatFloat(f, 'g', -1, 64)
			}
		} else {
			switch string(t) {
			case "publish":
				r.Type, r.RawType = TypePublish, "publish"
			case "subscribe":
				r.Type, r.RawType = TypeSubscribe, "subscribe"
			case "unsubscribe":
				r.Type, r.RawType = TypeUnsubscribe, "unsubscribe"
			case "unSubscribe":
				r.Type, r.RawType = TypeUnsubscribe, "unSubscribe"
			case "ping":
				r.Type, r.RawType = TypePing, "ping"
			default:
				r.Type, r.RawType = TypeUnknown, string(t)
			}
		}
	}

	// Data and ID: copies, in one allocation; Data cannot grow into ID.
	nd, ni := s.dataB-s.dataA, s.idB-s.idA
	if nd+ni > 0 {
		buf := make([]byte, nd+ni)
		copy(buf, p[s.dataA:s.dataB])
		copy(buf[nd:], p[s.idA:s.idB])
		if nd > 0 {
			r.Data = buf[:nd:nd]
		}
		if ni > 0 {
			r.ID = buf[nd:]
		}
	}
	if r.Data == nil {
		r.Data = nullJSON
	}

	var topic []byte
	if s.hasTopic {
		topic = p[s.topicA:s.topicB]
	}
	if (!s.hasTopics || s.nTopics == 0) && len(topic) > 0 && bytes.IndexByte(topic, ',') < 0 {
		// One topic, the usual publish: the request and its Topics in one
		// allocation.
		rt := &requestTopic{Request: r}
		rt.topic[0] = string(topic)
		rt.Topics = rt.topic[:]
		return &rt.Request, true
	}
	r.Topics = fastUnion(topic, p[s.topicsA:s.topicsB], s.nTopics)
	out := new(Request)
	*out = r
	return out, true
}

// requestTopic is a Request with room for one topic.
type requestTopic struct {
	Request
	topic [1]string
}

// fastUnion is unionTopics for the fast path: topic is a topic string's
// contents, or nil; array is the insides of a topics array of n strings
// without escapes, checked by scanField. A topic is made a string only once
// it is known not to be a duplicate.
func fastUnion(topic, array []byte, n int) []string {
	pieces := 0
	if len(topic) > 0 {
		pieces = 1 + bytes.Count(topic, []byte{','})
	}
	if pieces+n == 0 {
		return nil
	}
	u := bytesUnion{out: make([]string, 0, pieces+n)}
	if len(topic) > 0 {
		for {
			i := bytes.IndexByte(topic, ',')
			if i < 0 {
				u.add(topic)
				break
			}
			u.add(topic[:i])
			topic = topic[i+1:]
		}
	}
	for i := 0; i < len(array); {
		// White space, commas, and strings without escapes.
		if array[i] != '"' {
			i++
			continue
		}
		e := i + 1 + bytes.IndexByte(array[i+1:], '"')
		u.add(array[i+1 : e])
		i = e + 1
	}
	return u.out
}

// bytesUnion collects topics in order without duplicates, as unionTopics.
type bytesUnion struct {
	out  []string
	seen map[string]struct{} // for long lists only: keeps this linear
}

func (u *bytesUnion) add(b []byte) {
	if u.seen != nil {
		if _, dup := u.seen[string(b)]; dup {
			return
		}
		t := string(b)
		u.seen[t] = struct{}{}
		u.out = append(u.out, t)
		return
	}
	for _, o := range u.out {
		if o == string(b) {
			return
		}
	}
	u.out = append(u.out, string(b))
	if len(u.out) == 16 {
		u.seen = make(map[string]struct{}, 32)
		for _, o := range u.out {
			u.seen[o] = struct{}{}
		}
	}
}

// scanRequest checks that p is a request the fast path decodes and notes
// where its fields' values are.
func scanRequest(p []byte, s *fastScan) bool {
	i := skipSpace(p, 0)
	if i >= len(p) || p[i] != '{' {
		return false
	}
	i = skipSpace(p, i+1)
	if i < len(p) && p[i] == '}' {
		return skipSpace(p, i+1) == len(p)
	}
	for {
		if i >= len(p) || p[i] != '"' {
			return false
		}
		k := i + 1
		e := k
		for e < len(p) && p[e] != '"' && p[e] != '\\' && e-k < 6 {
			e++
		}
		if e >= len(p) || p[e] != '"' {
			return false // an escape, a key longer than any field's, or no end
		}
		var field uint8
		switch string(p[k:e]) {
		case "type":
			field = fieldType
		case "topic":
			field = fieldTopic
		case "topics":
			field = fieldTopics
		case "data":
			field = fieldData
		case "id":
			field = fieldID
		default:
			return false
		}
		if s.seen&field != 0 {
			return false
		}
		s.seen |= field
		i = skipSpace(p, e+1)
		if i >= len(p) || p[i] != ':' {
			return false
		}
		i = skipSpace(p, i+1)
		if i >= len(p) {
			return false
		}
		i = scanField(p, i, field, s)
		if i < 0 {
			return false
		}
		i = skipSpace(p, i)
		if i >= len(p) {
			return false
		}
		switch p[i] {
		case ',':
			i = skipSpace(p, i+1)
		case '}':
			return skipSpace(p, i+1) == len(p)
		default:
			return false
		}
	}
}

// scanField checks the value of a field at p[i] (i < len(p)), notes where it
// is, and returns the offset after it, or -1.
func scanField(p []byte, i int, field uint8, s *fastScan) int {
	c := p[i]
	if c == 'n' {
		// null: as if the field were absent, except in data, where it is
		// the value
		if len(p)-i < 4 || string(p[i:i+4]) != "null" {
			return -1
		}
		if field == fieldData {
			s.dataA, s.dataB = i, i+4
		}
		return i + 4
	}
	switch field {
	case fieldType:
		if c == '"' {
			e := plainString(p, i+1)
			if e < 0 {
				return -1
			}
			s.typA, s.typB = i+1, e
			return e + 1
		}
		if c == '-' || (c >= '0' && c <= '9') {
			e := skipNumber(p, i)
			s.typA, s.typB, s.typNumber = i, e, true
			return e
		}
		return -1
	case fieldTopic:
		if c != '"' {
			return -1
		}
		e := plainString(p, i+1)
		if e < 0 {
			return -1
		}
		s.topicA, s.topicB, s.hasTopic = i+1, e, true
		return e + 1
	case fieldTopics:
		if c != '[' {
			return -1
		}
		s.hasTopics = true
		s.topicsA = i + 1
		i = skipSpace(p, i+1)
		if i < len(p) && p[i] == ']' {
			s.topicsB = i
			return i + 1
		}
		for {
			if i >= len(p) || p[i] != '"' {
				return -1
			}
			e := plainString(p, i+1)
			if e < 0 {
				return -1
			}
			s.nTopics++
			i = skipSpace(p, e+1)
			if i >= len(p) {
				return -1
			}
			switch p[i] {
			case ',':
				i = skipSpace(p, i+1)
			case ']':
				s.topicsB = i
				return i + 1
			default:
				return -1
			}
		}
	case fieldData:
		var e int
		if c == '"' {
			e = skipString(p, i+1) // the usual data, without skipValue's stack
		} else {
			e = skipValue(p, i)
		}
		s.dataA, s.dataB = i, e
		return e
	case fieldID:
		var e int
		switch {
		case c == '"':
			e = skipString(p, i+1)
		case c == '-' || (c >= '0' && c <= '9'):
			e = skipNumber(p, i)
		default:
			return -1 // not a string or a number: an error
		}
		s.idA, s.idB = i, e
		return e
	}
	return -1
}

// skipSpace returns the offset of the first byte at or after i that is not
// JSON white space.
func skipSpace(p []byte, i int) int {
	for i < len(p) {
		switch p[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// Eight bytes at a time: x has a byte below 0x20, a '"' or a '\\' exactly
// when specialBytes(x) != 0 (which bytes it marks beyond the first such one
// is not exact).
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

func specialBytes(x uint64) uint64 {
	q := x ^ (ones * '"')
	b := x ^ (ones * '\\')
	return ((x - ones*0x20) &^ x) | ((q - ones) &^ q) | ((b - ones) &^ b)
}

// plainString scans a string's contents from p[i] (after the opening
// quote) and returns the offset of its closing quote, or -1 if the string
// is not closed, has an escape or a control byte, or is not valid UTF-8.
func plainString(p []byte, i int) int {
	start := i
	var high uint64
	for ; i+8 <= len(p); i += 8 {
		x := binary.LittleEndian.Uint64(p[i:])
		if specialBytes(x)&highs != 0 {
			break
		}
		high |= x
	}
	for ; i < len(p); i++ {
		c := p[i]
		if c == '"' {
			if high&highs != 0 && !utf8.Valid(p[start:i]) {
				return -1
			}
			return i
		}
		if c == '\\' || c < 0x20 {
			return -1
		}
		high |= uint64(c)
	}
	return -1
}

// skipString checks a string from p[i] (after the opening quote) as JSON
// does (escapes; no control bytes; any other bytes, even invalid UTF-8) and
// returns the offset after its closing quote, or -1.
func skipString(p []byte, i int) int {
	for {
		for ; i+8 <= len(p); i += 8 {
			if specialBytes(binary.LittleEndian.Uint64(p[i:]))&highs != 0 {
				break
			}
		}
		for ; i < len(p); i++ {
			c := p[i]
			if c == '"' {
				return i + 1
			}
			if c < 0x20 {
				return -1
			}
			if c == '\\' {
				break
			}
		}
		if i >= len(p) {
			return -1
		}
		// An escape at p[i].
		if i+1 >= len(p) {
			return -1
		}
		switch p[i+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			i += 2
		case 'u':
			if len(p)-i < 6 || !isHex(p[i+2]) || !isHex(p[i+3]) || !isHex(p[i+4]) || !isHex(p[i+5]) {
				return -1
			}
			i += 6
		default:
			return -1
		}
	}
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// skipNumber checks a number at p[i] as JSON's grammar has it and returns
// the offset after it, or -1. What follows is for the caller to check.
func skipNumber(p []byte, i int) int {
	if p[i] == '-' {
		i++
	}
	switch {
	case i >= len(p):
		return -1
	case p[i] == '0':
		i++
	case p[i] >= '1' && p[i] <= '9':
		i++
		for i < len(p) && isDigit(p[i]) {
			i++
		}
	default:
		return -1
	}
	if i < len(p) && p[i] == '.' {
		i++
		if i >= len(p) || !isDigit(p[i]) {
			return -1
		}
		for i < len(p) && isDigit(p[i]) {
			i++
		}
	}
	if i < len(p) && (p[i] == 'e' || p[i] == 'E') {
		i++
		if i < len(p) && (p[i] == '+' || p[i] == '-') {
			i++
		}
		if i >= len(p) || !isDigit(p[i]) {
			return -1
		}
		for i < len(p) && isDigit(p[i]) {
			i++
		}
	}
	return i
}

// skipLiteral checks that p[i:] starts with lit and returns the offset
// after it, or -1.
func skipLiteral(p []byte, i int, lit string) int {
	if len(p)-i < len(lit) || string(p[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// skipValue checks the JSON value at p[i] (not white space) and returns the
// offset after it, or -1 if it is not valid JSON or nests deeper than
// maxFastDepth. What follows the value is for the caller to check.
func skipValue(p []byte, i int) int {
	// inObject has a bit set for each open object, clear for each open
	// array, depth bits deep.
	var inObject [maxFastDepth / 64]uint64
	depth := 0
	for {
		// A value at p[i].
		if i < 0 || i >= len(p) {
			return -1
		}
		switch c := p[i]; {
		case c == '"':
			i = skipString(p, i+1)
		case c == '{' || c == '[':
			j := skipSpace(p, i+1)
			if j < len(p) && p[j] == c+2 { // '}' is '{'+2, ']' is '['+2
				i = j + 1
				break
			}
			if depth == maxFastDepth {
				return -1
			}
			if c == '{' {
				inObject[depth/64] |= 1 << (depth % 64)
				if j = skipKey(p, j); j < 0 {
					return -1
				}
			} else {
				inObject[depth/64] &^= 1 << (depth % 64)
			}
			depth++
			i = j
			continue
		case c == 't':
			i = skipLiteral(p, i, "true")
		case c == 'f':
			i = skipLiteral(p, i, "false")
		case c == 'n':
			i = skipLiteral(p, i, "null")
		case c == '-' || (c >= '0' && c <= '9'):
			i = skipNumber(p, i)
		default:
			return -1
		}
		// After a value: close what ends here, up to the next value.
		for {
			if i < 0 {
				return -1
			}
			if depth == 0 {
				return i
			}
			i = skipSpace(p, i)
			if i >= len(p) {
				return -1
			}
			d := depth - 1
			obj := inObject[d/64]&(1<<(d%64)) != 0
			c := p[i]
			if c == ',' {
				i = skipSpace(p, i+1)
				if obj {
					i = skipKey(p, i)
				}
				break
			}
			if (obj && c == '}') || (!obj && c == ']') {
				depth--
				i++
				continue
			}
			return -1
		}
	}
}

// skipKey checks an object's key and its colon at p[i] and returns the
// offset of the value after them (white space skipped), or -1.
func skipKey(p []byte, i int) int {
	if i >= len(p) || p[i] != '"' {
		return -1
	}
	i = skipString(p, i+1)
	if i < 0 {
		return -1
	}
	i = skipSpace(p, i)
	if i >= len(p) || p[i] != ':' {
		return -1
	}
	return skipSpace(p, i+1)
}
