package wsproto

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// Close codes used by the server (RFC 6455 section 7.4.1).
const (
	CloseNormal          = 1000
	CloseGoingAway       = 1001
	CloseProtocolError   = 1002
	CloseUnsupportedData = 1003
	CloseNoStatus        = 1005
	CloseInvalidPayload  = 1007
	ClosePolicyViolation = 1008
	CloseTooBig          = 1009
	CloseInternalError   = 1011
)

// Header is a parsed frame header.
type Header struct {
	Fin    bool
	Rsv    byte // the three RSV bits, in the low bits of the byte's high nibble as on the wire
	Op     ws.OpCode
	Masked bool
	Mask   [4]byte
	Length int64
}

// ParseError is a frame that breaks the protocol; Code is the close code to
// answer with.
type ParseError struct {
	Code   int
	Reason string
}

func (e *ParseError) Error() string { return "websocket: " + e.Reason }

// Rsv1 is the RSV1 bit in Header.Rsv: a compressed message (RFC 7692).
const Rsv1 = 0x40

// ParseHeader parses a client frame header at the start of b. It returns the
// header and its size; n == 0 means b does not yet hold the whole header.
// Protocol violations detectable from the header alone are reported as a
// *ParseError: RSV bits (no extension negotiated), reserved opcodes,
// unmasked frames, fragmented or oversized control frames, and lengths with
// the most significant bit set.
func ParseHeader(b []byte) (h Header, n int, err *ParseError) {
	return ParseHeaderExt(b, false)
}

// ParseHeaderExt is ParseHeader on a connection that negotiated
// permessage-deflate when deflate is true: RSV1 is then allowed on the
// first frame of a text or binary message (a compressed message), and is
// still a protocol error on control frames and continuation frames. RSV2
// and RSV3 are always errors.
func ParseHeaderExt(b []byte, deflate bool) (h Header, n int, err *ParseError) {
	if len(b) < 2 {
		return h, 0, nil
	}
	h.Fin = b[0]&0x80 != 0
	h.Rsv = b[0] & 0x70
	h.Op = ws.OpCode(b[0] & 0x0f)
	h.Masked = b[1]&0x80 != 0
	if h.Rsv != 0 {
		switch {
		case !deflate || h.Rsv != Rsv1:
			return h, 0, &ParseError{CloseProtocolError, "reserved bits set without a negotiated extension"}
		case h.Op.IsControl():
			return h, 0, &ParseError{CloseProtocolError, "compressed control frame"}
		case h.Op == ws.OpContinuation:
			return h, 0, &ParseError{CloseProtocolError, "RSV1 on a continuation frame"}
		}
	}
	if h.Op.IsReserved() {
		return h, 0, &ParseError{CloseProtocolError, "reserved opcode"}
	}
	if !h.Masked {
		return h, 0, &ParseError{CloseProtocolError, "client frames must be masked"}
	}
	l := int64(b[1] & 0x7f)
	n = 2
	switch l {
	case 126:
		if len(b) < 4 {
			return h, 0, nil
		}
		l = int64(binary.BigEndian.Uint16(b[2:4]))
		n = 4
	case 127:
		if len(b) < 10 {
			return h, 0, nil
		}
		u := binary.BigEndian.Uint64(b[2:10])
		if u>>63 != 0 {
			return h, 0, &ParseError{CloseProtocolError, "payload length has its most significant bit set"}
		}
		l = int64(u)
		n = 10
	}
	if h.Op.IsControl() {
		if !h.Fin {
			return h, 0, &ParseError{CloseProtocolError, "fragmented control frame"}
		}
		if l > 125 {
			return h, 0, &ParseError{CloseProtocolError, "control frame payload over 125 bytes"}
		}
	}
	if len(b) < n+4 {
		return h, 0, nil
	}
	copy(h.Mask[:], b[n:n+4])
	h.Length = l
	return h, n + 4, nil
}

// Unmask unmasks p in place; offset is the position of p[0] in the payload.
func Unmask(p []byte, mask [4]byte, offset int) { ws.Cipher(p, mask, offset) }

// HeaderSize is the size of an unmasked server frame header for a payload of n bytes.
func HeaderSize(n int) int {
	switch {
	case n <= 125:
		return 2
	case n <= 0xffff:
		return 4
	default:
		return 10
	}
}

// AppendHeader appends an unmasked, final server frame header for a payload
// of n bytes.
func AppendHeader(dst []byte, op ws.OpCode, n int) []byte {
	b0 := 0x80 | byte(op)
	switch {
	case n <= 125:
		return append(dst, b0, byte(n)) //nolint:gosec // G115: n <= 125
	case n <= 0xffff:
		return append(dst, b0, 126, byte(n>>8), byte(n)) //nolint:gosec // G115: n <= 0xffff; byte() keeps the low byte on purpose (big-endian)
	default:
		dst = append(dst, b0, 127)
		return binary.BigEndian.AppendUint64(dst, uint64(n))
	}
}

// AppendFrame appends a whole unmasked, final server frame.
func AppendFrame(dst []byte, op ws.OpCode, payload []byte) []byte {
	return append(AppendHeader(dst, op, len(payload)), payload...)
}

// AppendClose appends a close frame with code and reason (the reason is cut to
// fit the 125-byte control payload limit). Code 0 sends an empty close frame.
func AppendClose(dst []byte, code int, reason string) []byte {
	if code == 0 {
		return AppendHeader(dst, ws.OpClose, 0)
	}
	if len(reason) > 123 {
		reason = reason[:123]
		for len(reason) > 0 && !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	dst = AppendHeader(dst, ws.OpClose, 2+len(reason))
	dst = append(dst, byte(code>>8), byte(code)) //nolint:gosec // G115: byte() keeps the low byte of the 16-bit close code on purpose (big-endian)
	return append(dst, reason...)
}

// ValidCloseCode reports whether a peer may send code in a close frame
// (RFC 6455 section 7.4; 1012-1014 are registered with IANA and valid).
func ValidCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// ParseClose validates a close frame payload. It returns the peer's code
// (CloseNoStatus for an empty payload) or a *ParseError.
func ParseClose(p []byte) (int, *ParseError) {
	switch {
	case len(p) == 0:
		return CloseNoStatus, nil
	case len(p) == 1:
		return 0, &ParseError{CloseProtocolError, "close payload of one byte"}
	}
	code := int(binary.BigEndian.Uint16(p))
	if !ValidCloseCode(code) {
		return 0, &ParseError{CloseProtocolError, "invalid close code"}
	}
	if !utf8.Valid(p[2:]) {
		return 0, &ParseError{CloseInvalidPayload, "close reason is not valid UTF-8"}
	}
	return code, nil
}
