// Package mpcheck validates msgpack bytes before they are decoded.
//
// msgpack lets a value declare the length of a string, binary, array or map
// it holds, and decoders allocate by that declared length: 13 bytes can ask
// for gigabytes. Check walks the structure without allocating and refuses
// any length that the remaining bytes cannot hold, and any nesting deeper
// than a bound, so decoding afterwards allocates in proportion to the input.
package mpcheck

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// MaxDepth is the deepest nesting of arrays and maps Check accepts.
const MaxDepth = 64

// ErrInvalid is wrapped by every error of Check.
var ErrInvalid = errors.New("invalid msgpack")

func fail(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

// Check reports whether p holds exactly one well-formed msgpack value whose
// declared lengths all fit in p, nested at most MaxDepth deep.
func Check(p []byte) error {
	var stack [MaxDepth + 1]uint64 // items still expected at each open level
	depth := 0
	stack[0] = 1
	pos := 0
	for {
		for depth > 0 && stack[depth] == 0 {
			depth--
		}
		if stack[depth] == 0 {
			break
		}
		stack[depth]--
		if pos >= len(p) {
			return fail("truncated")
		}
		c := p[pos]
		pos++
		rest := uint64(len(p) - pos) //nolint:gosec // G115: pos <= len(p) after reading p[pos], so never negative

		var skip uint64  // payload bytes to skip
		var items uint64 // child items of an array or map
		container := false
		switch {
		case c <= 0x7f, c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3:
		case c >= 0x80 && c <= 0x8f:
			items, container = 2*uint64(c&0x0f), true
		case c >= 0x90 && c <= 0x9f:
			items, container = uint64(c&0x0f), true
		case c >= 0xa0 && c <= 0xbf:
			skip = uint64(c & 0x1f)
		default:
			n, size, ok := header(c, p[pos:])
			if !ok {
				return fail("truncated header of 0x%02x", c)
			}
			pos += size
			rest = uint64(len(p) - pos) //nolint:gosec // G115: header checked that size bytes are in p[pos:], so pos <= len(p)
			switch c {
			case 0xdc, 0xdd:
				items, container = n, true
			case 0xde, 0xdf:
				items, container = 2*n, true
			default:
				skip = n
			}
		}
		if container {
			// Each item takes at least one byte.
			if items > rest {
				return fail("declares %d items with %d bytes left", items, rest)
			}
			if items > 0 {
				if depth == MaxDepth {
					return fail("nested deeper than %d", MaxDepth)
				}
				depth++
				stack[depth] = items
			}
			continue
		}
		if skip > rest {
			return fail("declares %d bytes with %d left", skip, rest)
		}
		pos += int(skip)
	}
	if pos != len(p) {
		return fail("%d bytes after the value", len(p)-pos)
	}
	return nil
}

// header decodes the length field that follows type byte c: for strings,
// binaries and extensions the payload size (the extension's type byte
// included), for arrays and maps the item count, for numbers their width.
// size is the length field's own size.
func header(c byte, b []byte) (n uint64, size int, ok bool) {
	be := func(w int) (uint64, bool) {
		if len(b) < w {
			return 0, false
		}
		switch w {
		case 1:
			return uint64(b[0]), true
		case 2:
			return uint64(binary.BigEndian.Uint16(b)), true
		default:
			return uint64(binary.BigEndian.Uint32(b)), true
		}
	}
	switch c {
	case 0xcc, 0xd0: // uint8, int8
		return 1, 0, true
	case 0xcd, 0xd1:
		return 2, 0, true
	case 0xca, 0xce, 0xd2:
		return 4, 0, true
	case 0xcb, 0xcf, 0xd3:
		return 8, 0, true
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1..16, plus the type byte
		return 1 + (1 << (c - 0xd4)), 0, true
	case 0xc4, 0xd9: // bin8, str8
		n, ok := be(1)
		return n, 1, ok
	case 0xc5, 0xda, 0xdc, 0xde: // bin16, str16, array16, map16
		n, ok := be(2)
		return n, 2, ok
	case 0xc6, 0xdb, 0xdd, 0xdf: // bin32, str32, array32, map32
		n, ok := be(4)
		return n, 4, ok
	case 0xc7: // ext8: length, then type
		n, ok := be(1)
		return n + 1, 1, ok
	case 0xc8:
		n, ok := be(2)
		return n + 1, 2, ok
	case 0xc9:
		n, ok := be(4)
		return n + 1, 4, ok
	}
	return 0, 0, false // 0xc1: never used
}

// IsMap reports whether p starts with a msgpack map header. Decoders accept
// an extension value where a map or array is expected and read a length
// from inside it, which Check cannot see: callers that expect a map or an
// array check the first byte with IsMap or IsArray too.
func IsMap(p []byte) bool {
	return len(p) > 0 && (p[0]&0xf0 == 0x80 || p[0] == 0xde || p[0] == 0xdf)
}

// IsArray reports whether p starts with a msgpack array header.
func IsArray(p []byte) bool {
	return len(p) > 0 && (p[0]&0xf0 == 0x90 || p[0] == 0xdc || p[0] == 0xdd)
}
