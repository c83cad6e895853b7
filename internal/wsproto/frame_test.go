package wsproto

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

var testMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// clientHeader encodes a masked client frame header the way a client would,
// with the length in the given form: 7, 16 or 64 bits (0 picks the minimal one).
func clientHeader(b0 byte, length uint64, form int, mask [4]byte) []byte {
	if form == 0 {
		switch {
		case length <= 125:
			form = 7
		case length <= 0xffff:
			form = 16
		default:
			form = 64
		}
	}
	var out []byte
	switch form {
	case 7:
		out = []byte{b0, 0x80 | byte(length)}
	case 16:
		out = []byte{b0, 0x80 | 126, byte(length >> 8), byte(length)}
	case 64:
		out = binary.BigEndian.AppendUint64([]byte{b0, 0x80 | 127}, length)
	default:
		panic("bad form")
	}
	return append(out, mask[:]...)
}

func TestParseHeaderValid(t *testing.T) {
	tests := []struct {
		name   string
		in     []byte
		fin    bool
		op     ws.OpCode
		length int64
	}{
		{"text empty", clientHeader(0x81, 0, 7, testMask), true, ws.OpText, 0},
		{"text 5", clientHeader(0x81, 5, 7, testMask), true, ws.OpText, 5},
		{"binary 125", clientHeader(0x82, 125, 7, testMask), true, ws.OpBinary, 125},
		{"16-bit 126", clientHeader(0x82, 126, 16, testMask), true, ws.OpBinary, 126},
		{"16-bit 65535", clientHeader(0x81, 0xffff, 16, testMask), true, ws.OpText, 0xffff},
		{"64-bit 65536", clientHeader(0x82, 0x10000, 64, testMask), true, ws.OpBinary, 0x10000},
		{"64-bit 2^62", clientHeader(0x82, 1<<62, 64, testMask), true, ws.OpBinary, 1 << 62},
		{"64-bit max", clientHeader(0x82, 1<<63-1, 64, testMask), true, ws.OpBinary, 1<<63 - 1},
		{"non-final text", clientHeader(0x01, 10, 7, testMask), false, ws.OpText, 10},
		{"continuation", clientHeader(0x00, 10, 7, testMask), false, ws.OpContinuation, 10},
		{"final continuation", clientHeader(0x80, 300, 16, testMask), true, ws.OpContinuation, 300},
		{"close empty", clientHeader(0x88, 0, 7, testMask), true, ws.OpClose, 0},
		{"close 125", clientHeader(0x88, 125, 7, testMask), true, ws.OpClose, 125},
		{"ping", clientHeader(0x89, 4, 7, testMask), true, ws.OpPing, 4},
		{"pong", clientHeader(0x8a, 125, 7, testMask), true, ws.OpPong, 125},
		// RFC 6455 requires the minimal length form, but a longer one is
		// unambiguous and accepted here, as by most servers.
		{"non-minimal 16-bit", clientHeader(0x81, 5, 16, testMask), true, ws.OpText, 5},
		{"non-minimal 64-bit", clientHeader(0x81, 5, 64, testMask), true, ws.OpText, 5},
		{"ping in non-minimal 16-bit form", clientHeader(0x89, 125, 16, testMask), true, ws.OpPing, 125},
		{"zero mask", clientHeader(0x81, 1, 7, [4]byte{}), true, ws.OpText, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, n, err := ParseHeader(tt.in)
			if err != nil {
				t.Fatalf("error %v", err)
			}
			if n != len(tt.in) {
				t.Fatalf("n = %d, want %d", n, len(tt.in))
			}
			if h.Fin != tt.fin || h.Op != tt.op || h.Length != tt.length || !h.Masked || h.Rsv != 0 {
				t.Fatalf("header %+v, want fin=%v op=%v length=%d masked", h, tt.fin, tt.op, tt.length)
			}
			if h.Mask != [4]byte(tt.in[n-4:n]) {
				t.Fatalf("mask %x, want %x", h.Mask, tt.in[n-4:n])
			}
			// Bytes after the header (the payload) change nothing.
			more := append(append([]byte{}, tt.in...), 0xff, 0x00, 0x81)
			h2, n2, err2 := ParseHeader(more)
			if err2 != nil || n2 != n || h2 != h {
				t.Fatalf("with trailing bytes: %+v %d %v", h2, n2, err2)
			}
			// Every strict prefix is incomplete: no header, no error.
			for k := 0; k < len(tt.in); k++ {
				_, nk, errk := ParseHeader(tt.in[:k])
				if nk != 0 || errk != nil {
					t.Fatalf("prefix of %d bytes: n=%d err=%v, want 0, nil", k, nk, errk)
				}
			}
		})
	}
}

func TestParseHeaderErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"RSV1", clientHeader(0x81|0x40, 1, 7, testMask)},
		{"RSV2", clientHeader(0x81|0x20, 1, 7, testMask)},
		{"RSV3", clientHeader(0x81|0x10, 1, 7, testMask)},
		{"all RSV", clientHeader(0xf1, 1, 7, testMask)},
		{"RSV on ping", clientHeader(0xc9, 1, 7, testMask)},
		{"opcode 3", clientHeader(0x83, 1, 7, testMask)},
		{"opcode 7", clientHeader(0x87, 1, 7, testMask)},
		{"opcode 0xB", clientHeader(0x8b, 1, 7, testMask)},
		{"opcode 0xF", clientHeader(0x8f, 1, 7, testMask)},
		{"unmasked text", []byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'}},
		{"unmasked close", []byte{0x88, 0x00}},
		{"unmasked 64-bit", []byte{0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
		{"fragmented ping", clientHeader(0x09, 1, 7, testMask)},
		{"fragmented close", clientHeader(0x08, 0, 7, testMask)},
		{"fragmented pong", clientHeader(0x0a, 0, 7, testMask)},
		{"close 126", clientHeader(0x88, 126, 16, testMask)},
		{"ping 65535", clientHeader(0x89, 0xffff, 16, testMask)},
		{"pong 64-bit", clientHeader(0x8a, 1<<40, 64, testMask)},
		{"length MSB set", clientHeader(0x82, 1<<63, 64, testMask)},
		{"length all ones", clientHeader(0x82, 1<<64-1, 64, testMask)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, n, err := ParseHeader(tt.in)
			if err == nil {
				t.Fatalf("no error (n=%d)", n)
			}
			if n != 0 {
				t.Errorf("n = %d with an error", n)
			}
			if err.Code != CloseProtocolError {
				t.Errorf("code %d, want %d", err.Code, CloseProtocolError)
			}
			if err.Reason == "" || err.Error() != "websocket: "+err.Reason {
				t.Errorf("Error() = %q", err.Error())
			}
			// The error does not depend on what follows.
			more := append(append([]byte{}, tt.in...), make([]byte, 20)...)
			if _, _, err2 := ParseHeader(more); err2 == nil || *err2 != *err {
				t.Errorf("with trailing bytes: %v, want %v", err2, err)
			}
		})
	}
}

// Errors are reported as soon as the bytes that show them are there, and not
// before.
func TestParseHeaderErrorTiming(t *testing.T) {
	tests := []struct {
		name  string
		in    []byte
		first int // shortest prefix that gives the error
	}{
		{"RSV", clientHeader(0xc1, 1, 7, testMask), 2},
		{"unmasked", []byte{0x81, 0x05}, 2},
		{"fragmented ping", clientHeader(0x09, 1, 7, testMask), 2},
		{"ping over 125 in 16-bit form", clientHeader(0x89, 200, 16, testMask), 4},
		{"length MSB", clientHeader(0x82, 1<<63, 64, testMask), 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k := 0; k <= len(tt.in); k++ {
				_, n, err := ParseHeader(tt.in[:k])
				if n != 0 {
					t.Fatalf("prefix %d: n = %d", k, n)
				}
				if (err != nil) != (k >= tt.first) {
					t.Fatalf("prefix %d: err = %v, want error from %d bytes", k, err, tt.first)
				}
			}
		})
	}
}

// Every header our own encoder can produce parses back to itself.
func TestParseHeaderRoundTrip(t *testing.T) {
	ops := []byte{0x0, 0x1, 0x2, 0x8, 0x9, 0xa}
	lengths := []uint64{0, 1, 125, 126, 127, 1000, 0xffff, 0x10000, 1 << 32, 1<<63 - 1}
	for _, op := range ops {
		for _, fin := range []bool{true, false} {
			for _, l := range lengths {
				b0 := op
				if fin {
					b0 |= 0x80
				}
				in := clientHeader(b0, l, 0, testMask)
				h, n, err := ParseHeader(in)
				control := op >= 0x8
				if control && (!fin || l > 125) {
					if err == nil {
						t.Errorf("op %x fin %v len %d: accepted", op, fin, l)
					}
					continue
				}
				if err != nil || n != len(in) || h.Fin != fin || byte(h.Op) != op || uint64(h.Length) != l {
					t.Errorf("op %x fin %v len %d: %+v n=%d err=%v", op, fin, l, h, n, err)
				}
			}
		}
	}
}

func TestUnmask(t *testing.T) {
	payload := []byte("Hello, websocket! This payload is longer than a mask.")
	masked := append([]byte{}, payload...)
	for i := range masked {
		masked[i] ^= testMask[i%4]
	}
	whole := append([]byte{}, masked...)
	Unmask(whole, testMask, 0)
	if !bytes.Equal(whole, payload) {
		t.Fatalf("Unmask = %q", whole)
	}
	// Unmasking in pieces, with offsets, gives the same result.
	for _, cut := range []int{1, 2, 3, 5, 7, 13} {
		parts := append([]byte{}, masked...)
		for off := 0; off < len(parts); off += cut {
			end := min(off+cut, len(parts))
			Unmask(parts[off:end], testMask, off)
		}
		if !bytes.Equal(parts, payload) {
			t.Fatalf("cut %d: %q", cut, parts)
		}
	}
}

func TestHeaderSizeAndAppendHeader(t *testing.T) {
	tests := []struct {
		n    int
		size int
	}{
		{0, 2}, {1, 2}, {125, 2}, {126, 4}, {127, 4}, {0xffff, 4}, {0x10000, 10}, {1 << 31, 10},
	}
	for _, tt := range tests {
		if got := HeaderSize(tt.n); got != tt.size {
			t.Errorf("HeaderSize(%d) = %d, want %d", tt.n, got, tt.size)
		}
		for _, op := range []ws.OpCode{ws.OpText, ws.OpBinary, ws.OpClose, ws.OpPing, ws.OpPong} {
			got := AppendHeader([]byte{0xee}, op, tt.n)
			if got[0] != 0xee || len(got) != 1+tt.size {
				t.Fatalf("AppendHeader(%v, %d) = %x", op, tt.n, got)
			}
			// Compare with gobwas/ws's encoder.
			var want bytes.Buffer
			if err := ws.WriteHeader(&want, ws.Header{Fin: true, OpCode: op, Length: int64(tt.n)}); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[1:], want.Bytes()) {
				t.Errorf("AppendHeader(%v, %d) = %x, ws.WriteHeader gives %x", op, tt.n, got[1:], want.Bytes())
			}
			h, err := ws.ReadHeader(bytes.NewReader(got[1:]))
			if err != nil || !h.Fin || h.OpCode != op || h.Length != int64(tt.n) || h.Masked || h.Rsv != 0 {
				t.Errorf("AppendHeader(%v, %d) reads back as %+v, %v", op, tt.n, h, err)
			}
		}
	}
}

func TestAppendFrame(t *testing.T) {
	for _, n := range []int{0, 3, 125, 126, 0xffff, 0x10000} {
		payload := bytes.Repeat([]byte{'z'}, n)
		got := AppendFrame([]byte("pre"), ws.OpText, payload)
		if string(got[:3]) != "pre" {
			t.Fatalf("prefix lost")
		}
		f, err := ws.ReadFrame(bytes.NewReader(got[3:])) //nolint:staticcheck // SA1019: the reference decoder, on a bounded in-memory frame
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if !f.Header.Fin || f.Header.OpCode != ws.OpText || f.Header.Masked || !bytes.Equal(f.Payload, payload) {
			t.Fatalf("n=%d: frame %+v", n, f.Header)
		}
		if len(got)-3 != HeaderSize(n)+n {
			t.Fatalf("n=%d: size %d, want %d", n, len(got)-3, HeaderSize(n)+n)
		}
	}
}

// closePayload splits a server close frame built by AppendClose.
func closePayload(t *testing.T, frame []byte) []byte {
	t.Helper()
	if len(frame) < 2 || frame[0] != 0x88 || frame[1]&0x80 != 0 {
		t.Fatalf("not an unmasked final close frame: %x", frame)
	}
	n := int(frame[1])
	if n > 125 {
		t.Fatalf("close payload %d > 125", n)
	}
	if len(frame) != 2+n {
		t.Fatalf("frame of %d bytes for a payload of %d", len(frame), n)
	}
	return frame[2:]
}

func TestAppendClose(t *testing.T) {
	if got := AppendClose(nil, 0, "ignored"); !bytes.Equal(got, []byte{0x88, 0x00}) {
		t.Fatalf("code 0: %x", got)
	}
	if got := AppendClose(nil, CloseNormal, ""); !bytes.Equal(got, []byte{0x88, 0x02, 0x03, 0xe8}) {
		t.Fatalf("1000: %x", got)
	}
	if got := AppendClose([]byte{1}, CloseGoingAway, "bye"); !bytes.Equal(got, []byte{1, 0x88, 0x05, 0x03, 0xe9, 'b', 'y', 'e'}) {
		t.Fatalf("1001 bye: %x", got)
	}
	tests := []struct {
		name   string
		reason string
		want   string // the reason sent
	}{
		{"fits", strings.Repeat("a", 123), strings.Repeat("a", 123)},
		{"one over", strings.Repeat("a", 124), strings.Repeat("a", 123)},
		{"long ASCII", strings.Repeat("x", 1000), strings.Repeat("x", 123)},
		// 2-byte runes: byte 123 is the middle of a rune, so 122 are kept.
		{"2-byte runes", strings.Repeat("\u00e9", 100), strings.Repeat("\u00e9", 61)},
		// 3-byte runes: 123 is a rune boundary.
		{"3-byte runes", strings.Repeat("\u20ac", 50), strings.Repeat("\u20ac", 41)},
		{"3-byte runes shifted", "a" + strings.Repeat("\u20ac", 50), "a" + strings.Repeat("\u20ac", 40)},
		{"3-byte runes shifted twice", "ab" + strings.Repeat("\u20ac", 50), "ab" + strings.Repeat("\u20ac", 40)},
		// 4-byte runes: 1 + 30*4 = 121, the 31st rune would end at 125.
		{"4-byte runes", "a" + strings.Repeat("\U0001F600", 40), "a" + strings.Repeat("\U0001F600", 30)},
		{"rune ending exactly at 123", strings.Repeat("a", 121) + "\u00e9" + "b", strings.Repeat("a", 121) + "\u00e9"},
		{"rune straddling 123", strings.Repeat("a", 122) + "\u00e9", strings.Repeat("a", 122)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := closePayload(t, AppendClose(nil, ClosePolicyViolation, tt.reason))
			code, perr := ParseClose(p)
			if perr != nil {
				t.Fatalf("own close frame does not parse: %v", perr)
			}
			if code != ClosePolicyViolation {
				t.Fatalf("code %d", code)
			}
			reason := string(p[2:])
			if !utf8.ValidString(reason) {
				t.Fatalf("reason is not valid UTF-8: %q", reason)
			}
			if reason != tt.want {
				t.Fatalf("reason %q (%d bytes), want %q (%d bytes)", reason, len(reason), tt.want, len(tt.want))
			}
		})
	}
}

func TestValidCloseCode(t *testing.T) {
	valid := map[int]bool{
		1000: true, 1001: true, 1002: true, 1003: true,
		1007: true, 1008: true, 1009: true, 1010: true, 1011: true,
		1012: true, 1013: true, 1014: true,
		3000: true, 3999: true, 4000: true, 4999: true,
	}
	invalid := []int{-1, 0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535, 1 << 20}
	for code := range valid {
		if !ValidCloseCode(code) {
			t.Errorf("ValidCloseCode(%d) = false, want true", code)
		}
	}
	for _, code := range invalid {
		if ValidCloseCode(code) {
			t.Errorf("ValidCloseCode(%d) = true, want false", code)
		}
	}
	// Exhaustive over the 16-bit range against the RFC's rules.
	for code := 0; code <= 0xffff; code++ {
		want := (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999)
		if ValidCloseCode(code) != want {
			t.Errorf("ValidCloseCode(%d) = %v", code, !want)
		}
	}
}

func TestParseClose(t *testing.T) {
	be := func(code int, reason string) []byte { return append([]byte{byte(code >> 8), byte(code)}, reason...) }
	tests := []struct {
		name    string
		in      []byte
		code    int
		errCode int
	}{
		{"empty", nil, CloseNoStatus, 0},
		{"one byte", []byte{0x03}, 0, CloseProtocolError},
		{"1000", be(1000, ""), 1000, 0},
		{"1000 with reason", be(1000, "done"), 1000, 0},
		{"1001", be(1001, ""), 1001, 0},
		{"1003", be(1003, ""), 1003, 0},
		{"1004 reserved", be(1004, ""), 0, CloseProtocolError},
		{"1005 not on the wire", be(1005, ""), 0, CloseProtocolError},
		{"1006 not on the wire", be(1006, ""), 0, CloseProtocolError},
		{"1007", be(1007, ""), 1007, 0},
		{"1011", be(1011, ""), 1011, 0},
		{"1012 service restart", be(1012, ""), 1012, 0},
		{"1013 try again later", be(1013, ""), 1013, 0},
		{"1014 bad gateway", be(1014, ""), 1014, 0},
		{"1015 TLS, not on the wire", be(1015, ""), 0, CloseProtocolError},
		{"1016", be(1016, ""), 0, CloseProtocolError},
		{"0", be(0, ""), 0, CloseProtocolError},
		{"999", be(999, ""), 0, CloseProtocolError},
		{"2999", be(2999, ""), 0, CloseProtocolError},
		{"3000", be(3000, ""), 3000, 0},
		{"4999", be(4999, "app"), 4999, 0},
		{"5000", be(5000, ""), 0, CloseProtocolError},
		{"65535", be(65535, ""), 0, CloseProtocolError},
		{"UTF-8 reason", be(1000, "caf\u00e9 \U0001F600"), 1000, 0},
		{"invalid UTF-8 reason", be(1000, "\xff"), 0, CloseInvalidPayload},
		{"truncated rune in reason", be(1000, "\xe2\x82"), 0, CloseInvalidPayload},
		{"surrogate in reason", be(1000, "\xed\xa0\x80"), 0, CloseInvalidPayload},
		{"bad code wins over bad reason", be(1005, "\xff"), 0, CloseProtocolError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, err := ParseClose(tt.in)
			if tt.errCode != 0 {
				if err == nil {
					t.Fatalf("accepted with code %d, want error %d", code, tt.errCode)
				}
				if err.Code != tt.errCode {
					t.Fatalf("error code %d (%s), want %d", err.Code, err.Reason, tt.errCode)
				}
				return
			}
			if err != nil {
				t.Fatalf("error %v", err)
			}
			if code != tt.code {
				t.Fatalf("code %d, want %d", code, tt.code)
			}
		})
	}
}
