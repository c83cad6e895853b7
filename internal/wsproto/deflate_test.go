package wsproto

import (
	"net/http"
	"strings"
	"testing"
)

func TestAcceptDeflate(t *testing.T) {
	cases := map[string]bool{
		"":                   false,
		"permessage-deflate": true,
		"PerMessage-Deflate": true,
		"permessage-deflate; client_max_window_bits":                                                true,
		"permessage-deflate; client_max_window_bits=8":                                              true,
		"permessage-deflate; client_max_window_bits=\"12\"":                                         true,
		"permessage-deflate; client_max_window_bits=7":                                              false,
		"permessage-deflate; client_max_window_bits=16":                                             false,
		"permessage-deflate; server_max_window_bits=15":                                             true,
		"permessage-deflate; server_max_window_bits":                                                false,
		"permessage-deflate; server_max_window_bits=12":                                             false,
		"permessage-deflate; server_no_context_takeover; client_no_context_takeover":                true,
		"permessage-deflate; server_no_context_takeover=1":                                          false,
		"permessage-deflate; server_no_context_takeover; server_no_context_takeover":                false,
		"permessage-deflate; bogus":                                                                 false,
		"x-webkit-deflate-frame":                                                                    false,
		"x-webkit-deflate-frame, permessage-deflate":                                                true,
		"permessage-deflate; server_max_window_bits=10, permessage-deflate; client_max_window_bits": true,
	}
	for offer, want := range cases {
		h := http.Header{}
		if offer != "" {
			h.Set("Sec-WebSocket-Extensions", offer)
		}
		if got := AcceptDeflate(h); got != want {
			t.Errorf("AcceptDeflate(%q) = %v, want %v", offer, got, want)
		}
	}
	// offers split over several header lines
	h := http.Header{}
	h.Add("Sec-WebSocket-Extensions", "foo")
	h.Add("Sec-WebSocket-Extensions", "permessage-deflate")
	if !AcceptDeflate(h) {
		t.Error("an offer on the second header line was not found")
	}
}

func TestParseHeaderExtRSV(t *testing.T) {
	frame := func(b0 byte) []byte { return []byte{b0, 0x80 | 3, 1, 2, 3, 4, 'a', 'b', 'c'} }
	cases := []struct {
		name    string
		b0      byte
		deflate bool
		ok      bool
	}{
		{"plain text", 0x81, true, true},
		{"compressed text", 0xc1, true, true},
		{"compressed binary, not final", 0x42, true, true},
		{"compressed text without negotiation", 0xc1, false, false},
		{"compressed continuation", 0xc0, true, false},
		{"compressed ping", 0xc9, true, false},
		{"compressed close", 0xc8, true, false},
		{"RSV2", 0xa1, true, false},
		{"RSV3", 0x91, true, false},
		{"RSV1 and RSV2", 0xe1, true, false},
	}
	for _, c := range cases {
		h, n, err := ParseHeaderExt(frame(c.b0), c.deflate)
		if ok := err == nil && n > 0; ok != c.ok {
			t.Errorf("%s: n=%d err=%v, want ok=%v", c.name, n, err, c.ok)
			continue
		}
		if err != nil && err.Code != CloseProtocolError {
			t.Errorf("%s: close code %d, want 1002", c.name, err.Code)
		}
		if c.ok && (h.Rsv&Rsv1 != 0) != (c.b0&0x40 != 0) {
			t.Errorf("%s: Rsv %#x", c.name, h.Rsv)
		}
	}
	if _, _, err := ParseHeader(frame(0xc1)); err == nil {
		t.Error("ParseHeader accepted RSV1")
	}
}

func TestAppendAcceptExt(t *testing.T) {
	got := string(AppendAcceptExt(nil, "dGhlIHNhbXBsZSBub25jZQ==", "", DeflateResponse))
	want := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Extensions: " + DeflateResponse + "\r\n\r\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// FuzzAcceptDeflate: any extension header is parsed without a panic, and
// only an offer naming permessage-deflate is accepted.
func FuzzAcceptDeflate(f *testing.F) {
	f.Add("permessage-deflate; client_max_window_bits")
	f.Add(`permessage-deflate; client_max_window_bits="15", x-webkit-deflate-frame`)
	f.Add("permessage-deflate; server_max_window_bits=10, permessage-deflate")
	f.Add(`"`)
	f.Fuzz(func(t *testing.T, v string) {
		h := http.Header{"Sec-Websocket-Extensions": {v}}
		if AcceptDeflate(h) && !strings.Contains(strings.ToLower(v), "permessage-deflate") {
			t.Fatalf("accepted %q", v)
		}
	})
}
