package wsproto

import "unicode/utf8"

// UTF8 checks UTF-8 text that arrives in pieces (the fragments of a text
// message, or the parts of a frame as they are read). It carries the
// incomplete code point at the end of what it was given, so each byte is
// looked at once. The zero value is ready for a new text.
type UTF8 struct {
	carry [3]byte // the start of a code point split between pieces
	n     uint8   // bytes in carry
}

// Write checks the next piece p. It returns false as soon as the text so
// far cannot be the start of valid UTF-8: no bytes that may follow could
// make it valid. After a false result the state is unspecified (Reset it).
func (v *UTF8) Write(p []byte) bool {
	if v.n > 0 {
		// Complete the carried code point with the first bytes of p.
		var seq [4]byte
		n := copy(seq[:], v.carry[:v.n])
		want := seqLen(seq[0])
		k := min(want-n, len(p))
		n += copy(seq[n:], p[:k])
		if !seqPrefix(seq[:n]) {
			return false
		}
		p = p[k:]
		if n < want {
			v.n = uint8(copy(v.carry[:], seq[:n])) //nolint:gosec // G115: copy returns at most len(v.carry), which is 3
			return true
		}
		v.n = 0
	}
	tail, ok := UTF8Prefix(p)
	if !ok {
		return false
	}
	v.n = uint8(copy(v.carry[:], p[len(p)-tail:])) //nolint:gosec // G115: copy returns at most len(v.carry), which is 3
	return true
}

// Complete reports whether the text written so far ends on a code point
// boundary: with every Write true, it is then valid UTF-8.
func (v *UTF8) Complete() bool { return v.n == 0 }

// Reset forgets the text written so far.
func (v *UTF8) Reset() { *v = UTF8{} }

// UTF8Prefix reports whether p is valid UTF-8 except, possibly, for an
// incomplete code point at its end that more bytes could still complete;
// tail is the length of that incomplete code point (0 to 3).
func UTF8Prefix(p []byte) (tail int, ok bool) {
	// An incomplete code point starts at most 3 bytes from the end, at the
	// last byte that is not a continuation byte; what is before it must be
	// valid (one pass over p either way).
	s := len(p)
	for i := len(p) - 1; i >= 0 && i >= len(p)-3; i-- {
		if p[i]&0xC0 != 0x80 {
			if seqLen(p[i]) > len(p)-i && seqPrefix(p[i:]) {
				s = i
			}
			break
		}
	}
	if !utf8.Valid(p[:s]) {
		return 0, false
	}
	return len(p) - s, true
}

// seqLen is the length of the code point that lead byte b starts; 0 if b
// cannot start one (a continuation byte, or a byte never in UTF-8).
func seqLen(b byte) int {
	switch {
	case b < 0x80:
		return 1
	case b >= 0xC2 && b <= 0xDF:
		return 2
	case b >= 0xE0 && b <= 0xEF:
		return 3
	case b >= 0xF0 && b <= 0xF4:
		return 4
	}
	return 0
}

// seqPrefix reports whether s (non-empty, at most one code point long) is
// the start of a valid code point, or a whole one (RFC 3629 section 4: the
// second byte's range excludes overlong forms, surrogates and code points
// past U+10FFFF).
func seqPrefix(s []byte) bool {
	n := seqLen(s[0])
	if n == 0 || len(s) > n {
		return false
	}
	for i := 1; i < len(s); i++ {
		lo, hi := byte(0x80), byte(0xBF)
		if i == 1 {
			switch s[0] {
			case 0xE0:
				lo = 0xA0
			case 0xED:
				hi = 0x9F
			case 0xF0:
				lo = 0x90
			case 0xF4:
				hi = 0x8F
			}
		}
		if s[i] < lo || s[i] > hi {
			return false
		}
	}
	return true
}
