package wsproto

import (
	"net/http"
	"strings"
)

// DeflateResponse is the Sec-WebSocket-Extensions value the server answers
// an accepted permessage-deflate offer with (RFC 7692). It always carries
// server_no_context_takeover, so the compressed bytes of a message depend
// only on the message (a publish is compressed once for every subscriber),
// and client_no_context_takeover, which RFC 7692 section 7.1.1.2 lets a
// server add to any response: the client then compresses each message on
// its own, and the server keeps no inflate window between messages.
const DeflateResponse = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

// AcceptDeflate reports whether the upgrade request h offers a
// permessage-deflate configuration the server can accept with
// DeflateResponse. Offers are tried in the client's order; an offer is
// declined (and the next one tried) when it has an unknown or repeated
// parameter, a parameter with a bad value, or asks for a server window
// smaller than 2^15 (server_max_window_bits < 15: the compressor uses the
// full 32 KiB window). client_max_window_bits, with or without a value, is
// accepted: the client then uses at most that window within one message,
// which the server's inflater (32 KiB) always covers.
func AcceptDeflate(h http.Header) bool {
	for _, v := range h.Values("Sec-Websocket-Extensions") {
		for _, offer := range splitOutsideQuotes(v, ',') {
			if deflateOfferOK(offer) {
				return true
			}
		}
	}
	return false
}

func deflateOfferOK(offer string) bool {
	parts := splitOutsideQuotes(offer, ';')
	if len(parts) == 0 || !strings.EqualFold(strings.TrimSpace(parts[0]), "permessage-deflate") {
		return false
	}
	var seen [4]bool
	for _, p := range parts[1:] {
		name, value, hasValue := strings.Cut(strings.TrimSpace(p), "=")
		name = strings.ToLower(strings.TrimSpace(name))
		value = strings.Trim(strings.TrimSpace(value), `"`)
		var i int
		switch name {
		case "server_no_context_takeover":
			i = 0
		case "client_no_context_takeover":
			i = 1
		case "server_max_window_bits":
			i = 2
		case "client_max_window_bits":
			i = 3
		default:
			return false
		}
		if seen[i] {
			return false
		}
		seen[i] = true
		switch i {
		case 0, 1:
			if hasValue {
				return false
			}
		case 2:
			// Only a full window can be promised: the compressor's
			// back-references reach up to 32 KiB.
			if !hasValue || windowBits(value) != 15 {
				return false
			}
		case 3:
			if hasValue && windowBits(value) == 0 {
				return false
			}
		}
	}
	return true
}

// windowBits parses a window size parameter (8..15); 0 when invalid.
func windowBits(v string) int {
	if len(v) == 1 && v[0] >= '8' && v[0] <= '9' {
		return int(v[0] - '0')
	}
	if len(v) == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5' {
		return 10 + int(v[1]-'0')
	}
	return 0
}

// splitOutsideQuotes splits s at sep, except inside double quotes, and
// drops empty elements.
func splitOutsideQuotes(s string, sep byte) []string {
	var out []string
	quoted := false
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) {
			switch s[i] {
			case '"':
				quoted = !quoted
				continue
			case sep:
				if quoted {
					continue
				}
			default:
				continue
			}
		}
		if e := strings.TrimSpace(s[start:i]); e != "" {
			out = append(out, e)
		}
		start = i + 1
	}
	return out
}
