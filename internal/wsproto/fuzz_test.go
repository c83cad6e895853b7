package wsproto

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

// Fuzz targets for the parsers of this package. Seed corpora live in
// testdata/fuzz/<FuzzName>/; run one with, for example,
//
//	go test -run '^$' -fuzz '^FuzzParseHeader$' -fuzztime 5m -parallel 1 ./internal/wsproto/

// maxClientHeader is the largest client frame header: 2 + 8 + 4 bytes.
const maxClientHeader = 14

// refHeaderSize is the size of the client header starting at b, computed
// from the RFC alone (b holds at least two bytes).
func refHeaderSize(b []byte) int {
	switch b[1] & 0x7f {
	case 126:
		return 2 + 2 + 4
	case 127:
		return 2 + 8 + 4
	}
	return 2 + 4
}

// refLength is the payload length field of a complete header, and the
// number of bits of its form (7, 16 or 64).
func refLength(b []byte) (uint64, int) {
	switch l := b[1] & 0x7f; l {
	case 126:
		return uint64(binary.BigEndian.Uint16(b[2:4])), 16
	case 127:
		return binary.BigEndian.Uint64(b[2:10]), 64
	default:
		return uint64(l), 7
	}
}

func FuzzParseHeader(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x81})
	f.Add(clientHeader(0x81, 5, 7, testMask))
	f.Add(append(clientHeader(0x81, 5, 7, testMask), "\x7f\x9f\x4d\x51\x58"...))
	f.Add(clientHeader(0x82, 300, 16, testMask))
	f.Add(clientHeader(0x82, 1<<20, 64, testMask))
	f.Add(clientHeader(0x82, 1<<63, 64, testMask))
	f.Add(clientHeader(0x89, 125, 7, testMask))
	f.Add(clientHeader(0x09, 1, 7, testMask))
	f.Add(clientHeader(0x88, 126, 16, testMask))
	f.Add(clientHeader(0xc1, 1, 7, testMask))
	f.Add(clientHeader(0x83, 1, 7, testMask))
	f.Add([]byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'})
	f.Add(clientHeader(0x01, 3, 7, testMask)[:5])
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := ParseHeader(b)
		if err != nil {
			if n != 0 {
				t.Fatalf("n = %d with error %v", n, err)
			}
			if err.Code != CloseProtocolError || err.Reason == "" {
				t.Fatalf("error %+v: want code 1002 and a reason", *err)
			}
			if len(b) < 2 {
				t.Fatalf("error %v from %d bytes", err, len(b))
			}
			// The error is justified by the bytes, per RFC 6455 section 5.
			b0, b1 := b[0], b[1]
			op := b0 & 0x0f
			reservedOp := (op > 2 && op < 8) || op > 0xa
			ctrl := op >= 8
			justified := b0&0x70 != 0 || reservedOp || b1&0x80 == 0 || (ctrl && b0&0x80 == 0)
			if !justified && len(b) >= refHeaderSize(b)-4 {
				l := uint64(b1 & 0x7f)
				switch l {
				case 126:
					l = uint64(binary.BigEndian.Uint16(b[2:4]))
				case 127:
					l = binary.BigEndian.Uint64(b[2:10])
				}
				justified = l>>63 != 0 || (ctrl && l > 125)
			}
			if !justified {
				t.Fatalf("error %v for a valid header prefix %x", err, b)
			}
			// The error does not depend on what follows.
			more := append(append([]byte{}, b...), make([]byte, maxClientHeader)...)
			if _, _, err2 := ParseHeader(more); err2 == nil || *err2 != *err {
				t.Fatalf("with more bytes: %v, want %v", err2, err)
			}
			return
		}
		if n == 0 {
			// Incomplete: only when fewer bytes than the header needs.
			if len(b) >= 2 && len(b) >= refHeaderSize(b) {
				t.Fatalf("n = 0 without error on %d bytes, header needs %d: %x", len(b), refHeaderSize(b), b)
			}
			if len(b) >= maxClientHeader {
				t.Fatalf("n = 0 on %d bytes", len(b))
			}
			return
		}
		if n > len(b) {
			t.Fatalf("n = %d > len %d", n, len(b))
		}
		if n != refHeaderSize(b) {
			t.Fatalf("n = %d, header size is %d", n, refHeaderSize(b))
		}
		l, form := refLength(b)
		if h.Fin != (b[0]&0x80 != 0) || h.Rsv != 0 || byte(h.Op) != b[0]&0x0f || !h.Masked ||
			uint64(h.Length) != l || h.Length < 0 || h.Mask != [4]byte(b[n-4:n]) {
			t.Fatalf("header %+v does not match bytes %x", h, b[:n])
		}
		if h.Op.IsReserved() {
			t.Fatalf("reserved opcode %x accepted", h.Op)
		}
		if h.Op.IsControl() && (!h.Fin || h.Length > 125) {
			t.Fatalf("bad control frame accepted: %+v", h)
		}
		// Re-encoding in the same length form gives the same bytes.
		if re := clientHeader(b[0], uint64(h.Length), form, h.Mask); !bytes.Equal(re, b[:n]) {
			t.Fatalf("re-encoded %x, input %x", re, b[:n])
		}
		// The minimal form parses to the same header.
		minimal := clientHeader(b[0], uint64(h.Length), 0, h.Mask)
		h2, n2, err2 := ParseHeader(minimal)
		if err2 != nil || n2 != len(minimal) || h2 != h {
			t.Fatalf("minimal form %x parses to %+v %d %v, want %+v", minimal, h2, n2, err2, h)
		}
		// Every strict prefix is incomplete, not an error.
		for k := 0; k < n; k++ {
			if _, nk, errk := ParseHeader(b[:k]); nk != 0 || errk != nil {
				t.Fatalf("prefix %d of a valid header: n=%d err=%v", k, nk, errk)
			}
		}
		// The server side encoder agrees on the size of the length field.
		if int64(int(h.Length)) == h.Length {
			if got, want := HeaderSize(int(h.Length)), len(minimal)-4; got != want {
				t.Fatalf("HeaderSize(%d) = %d, want %d", h.Length, got, want)
			}
			srv := AppendHeader(nil, h.Op, int(h.Length))
			if !bytes.Equal(srv[1:], append([]byte{minimal[1] &^ 0x80}, minimal[2:len(minimal)-4]...)) || srv[0] != 0x80|byte(h.Op) {
				t.Fatalf("AppendHeader(%v, %d) = %x, client header %x", h.Op, h.Length, srv, minimal)
			}
		}
	})
}

func FuzzHandshake(f *testing.F) {
	valid := string(upgradeRequest("GET /ws HTTP/1.1", stdHeaders(nil)...))
	f.Add([]byte(valid))
	f.Add([]byte(valid + "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"))
	f.Add(upgradeRequest("GET /ws?x=1 HTTP/1.1", stdHeaders([]string{"Connection"}, "Connection: keep-alive, Upgrade", "Sec-WebSocket-Protocol: firetower.v1.msgpack, firetower.v1.json")...))
	f.Add(upgradeRequest("POST /ws HTTP/1.1", stdHeaders(nil)...))
	f.Add(upgradeRequest("GET /ws HTTP/1.0", stdHeaders(nil)...))
	f.Add(upgradeRequest("GET /ws HTTP/1.1", stdHeaders([]string{"Sec-WebSocket-Version"}, "Sec-WebSocket-Version: 8")...))
	f.Add(upgradeRequest("GET /ws HTTP/1.1", stdHeaders([]string{"Sec-WebSocket-Key"}, "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAAA")...))
	f.Add(upgradeRequest("GET http://h/ws HTTP/1.1", stdHeaders([]string{"Host"})...))
	f.Add([]byte("GET / HTTP/1.1\nHost: x\n\n"))
	f.Add([]byte("\r\n\r\n"))
	f.Add([]byte(valid[:len(valid)-3]))
	f.Fuzz(func(t *testing.T, b []byte) {
		end := HeaderEnd(b)
		i := bytes.Index(b, []byte("\r\n\r\n"))
		if (i < 0 && end != -1) || (i >= 0 && end != i+4) {
			t.Fatalf("HeaderEnd = %d, CRLFCRLF at %d", end, i)
		}
		head := b
		if end >= 0 {
			head = b[:end]
		}
		for _, served := range []PathMatcher{nil, onlyWS} {
			hs, herr := ParseHandshake(head, served)
			checkHandshake(t, hs, herr, served)
		}
		// The whole input, trailing bytes and all, must not break it either.
		hs, herr := ParseHandshake(b, nil)
		checkHandshake(t, hs, herr, nil)
	})
}

func checkHandshake(t *testing.T, hs *Handshake, herr *HandshakeError, served PathMatcher) {
	t.Helper()
	if (hs == nil) == (herr == nil) {
		t.Fatalf("handshake %v and error %v: want exactly one", hs, herr)
	}
	if herr != nil {
		switch herr.Status {
		case http.StatusBadRequest, http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusUpgradeRequired:
		default:
			t.Fatalf("unexpected status %d (%s)", herr.Status, herr.Reason)
		}
		if herr.Reason == "" {
			t.Fatalf("status %d without reason", herr.Status)
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(AppendReject(nil, herr.Status, herr.Reason))), nil)
		if err != nil || resp.StatusCode != herr.Status {
			t.Fatalf("refusal reply does not parse: %v", err)
		}
		return
	}
	if len(hs.Key) != 24 {
		t.Fatalf("accepted key %q of %d chars", hs.Key, len(hs.Key))
	}
	if k, err := base64.StdEncoding.DecodeString(hs.Key); err != nil || len(k) != 16 {
		t.Fatalf("accepted key %q decodes to %d bytes, %v", hs.Key, len(k), err)
	}
	r := hs.Request
	if r == nil || r.Method != http.MethodGet || !r.ProtoAtLeast(1, 1) || r.ProtoMajor != 1 || r.Host == "" {
		t.Fatalf("accepted request %+v", r)
	}
	if served != nil && !served(r.URL.Path) {
		t.Fatalf("accepted path %q that is not served", r.URL.Path)
	}
	for _, p := range hs.Protocols {
		if p == "" || strings.ContainsAny(p, ", \t") {
			t.Fatalf("subprotocol %q", p)
		}
	}
	reply := AppendAccept(nil, hs.Key, "")
	if HeaderEnd(reply) != len(reply) {
		t.Fatalf("101 reply is not one head: %q", reply)
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(reply)), nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != AcceptKey(hs.Key) {
		t.Fatalf("101 reply does not parse: %v %q", err, reply)
	}
}

// refValidCloseCode is RFC 6455 section 7.4 with the IANA registry.
func refValidCloseCode(c int) bool {
	switch {
	case c < 1000 || c > 4999:
		return false
	case c >= 3000:
		return true
	case c == 1004 || c == 1005 || c == 1006:
		return false
	}
	return c <= 1014
}

func FuzzParseClose(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x03})
	f.Add([]byte{0x03, 0xe8})
	f.Add([]byte("\x03\xe8normal"))
	f.Add([]byte("\x03\xedbye"))
	f.Add([]byte{0x03, 0xf4})
	f.Add([]byte{0x0f, 0xa0})
	f.Add([]byte("\x03\xe8\xff"))
	f.Add([]byte("\x03\xe8caf\xc3\xa9"))
	f.Add(append([]byte{0x03, 0xf0}, strings.Repeat("\u20ac", 50)...))
	f.Fuzz(func(t *testing.T, p []byte) {
		code, perr := ParseClose(p)
		switch {
		case len(p) == 0:
			if perr != nil || code != CloseNoStatus {
				t.Fatalf("empty payload: %d %v", code, perr)
			}
			return
		case len(p) == 1:
			if perr == nil || perr.Code != CloseProtocolError {
				t.Fatalf("one byte: %d %v", code, perr)
			}
			return
		}
		wire := int(binary.BigEndian.Uint16(p))
		switch {
		case !refValidCloseCode(wire):
			if perr == nil || perr.Code != CloseProtocolError {
				t.Fatalf("code %d: %d %v, want 1002", wire, code, perr)
			}
		case !utf8.Valid(p[2:]):
			if perr == nil || perr.Code != CloseInvalidPayload {
				t.Fatalf("bad UTF-8 reason: %d %v, want 1007", code, perr)
			}
		default:
			if perr != nil || code != wire {
				t.Fatalf("valid close %d: %d %v", wire, code, perr)
			}
		}
		if ValidCloseCode(wire) != refValidCloseCode(wire) {
			t.Fatalf("ValidCloseCode(%d) = %v", wire, ValidCloseCode(wire))
		}
		// Echoing the code with the same reason gives a valid close frame.
		if !refValidCloseCode(wire) {
			return
		}
		reason := string(p[2:])
		frame := AppendClose(nil, wire, reason)
		if len(frame) < 4 || frame[0] != 0x88 || int(frame[1]) != len(frame)-2 || frame[1] > 125 {
			t.Fatalf("AppendClose frame %x", frame)
		}
		sent := string(frame[4:])
		if !strings.HasPrefix(reason, sent) {
			t.Fatalf("sent reason %q is not a prefix of %q", sent, reason)
		}
		if len(reason) <= 123 && sent != reason {
			t.Fatalf("reason of %d bytes cut to %d", len(reason), len(sent))
		}
		if utf8.ValidString(reason) {
			if !utf8.ValidString(sent) {
				t.Fatalf("truncation broke UTF-8: %q", sent)
			}
			if len(reason) > 123 && len(sent) < 120 {
				t.Fatalf("cut too much: %d of %d bytes kept", len(sent), len(reason))
			}
			if c2, err2 := ParseClose(frame[2:]); err2 != nil || c2 != wire {
				t.Fatalf("own frame does not parse: %d %v", c2, err2)
			}
		}
	})
}
