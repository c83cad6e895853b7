package wsproto

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// rfcKey and rfcAccept are the example of RFC 6455 section 1.3 (the RFC's
// value; base64(SHA-1(key + GUID)) computed by openssl agrees).
const (
	rfcKey    = "dGhlIHNhbXBsZSBub25jZQ=="
	rfcAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
)

// upgradeRequest builds a request head from a request line and header lines.
func upgradeRequest(line string, headers ...string) []byte {
	var b strings.Builder
	b.WriteString(line)
	b.WriteString("\r\n")
	for _, h := range headers {
		b.WriteString(h)
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// stdHeaders returns the headers of a valid upgrade, minus those named in
// drop (by prefix, case-insensitive), plus extra.
func stdHeaders(drop []string, extra ...string) []string {
	base := []string{
		"Host: example.com",
		"Upgrade: websocket",
		"Connection: Upgrade",
		"Sec-WebSocket-Key: " + rfcKey,
		"Sec-WebSocket-Version: 13",
	}
	var out []string
next:
	for _, h := range base {
		for _, d := range drop {
			if strings.HasPrefix(strings.ToLower(h), strings.ToLower(d)+":") {
				continue next
			}
		}
		out = append(out, h)
	}
	return append(out, extra...)
}

func onlyWS(path string) bool { return path == "/ws" }

func TestHeaderEnd(t *testing.T) {
	full := upgradeRequest("GET /ws HTTP/1.1", stdHeaders(nil)...)
	tests := []struct {
		name string
		in   []byte
		want int
	}{
		{"empty", nil, -1},
		{"request line only", []byte("GET /ws HTTP/1.1\r\n"), -1},
		{"one CRLF short", full[:len(full)-2], -1},
		{"one byte short", full[:len(full)-1], -1},
		{"whole head", full, len(full)},
		{"head followed by frame bytes", append(append([]byte{}, full...), 0x81, 0x85, 1, 2, 3, 4), len(full)},
		{"bare LF is not an end", []byte("GET / HTTP/1.1\nHost: x\n\n"), -1},
		{"blank line only", []byte("\r\n\r\n"), 4},
		{"first of two heads", []byte("A\r\n\r\nB\r\n\r\n"), 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := HeaderEnd(tt.in); got != tt.want {
				t.Fatalf("HeaderEnd = %d, want %d", got, tt.want)
			}
		})
	}
	// Every strict prefix of a head is incomplete.
	for i := range full {
		if got := HeaderEnd(full[:i]); got != -1 {
			t.Fatalf("HeaderEnd(prefix %d) = %d, want -1", i, got)
		}
	}
}

func TestParseHandshakeAccepted(t *testing.T) {
	tests := []struct {
		name      string
		head      []byte
		served    PathMatcher
		protocols []string
		path      string
	}{
		{
			name: "minimal",
			head: upgradeRequest("GET /ws HTTP/1.1", stdHeaders(nil)...),
			path: "/ws",
		},
		{
			name:   "served path with query",
			head:   upgradeRequest("GET /ws?token=abc HTTP/1.1", stdHeaders(nil)...),
			served: onlyWS,
			path:   "/ws",
		},
		{
			name: "nil matcher serves any path",
			head: upgradeRequest("GET /any/where HTTP/1.1", stdHeaders(nil)...),
			path: "/any/where",
		},
		{
			name: "browser style headers",
			head: upgradeRequest("GET /ws HTTP/1.1", stdHeaders([]string{"Connection", "Upgrade"},
				"Connection: keep-alive, Upgrade",
				"Upgrade: WebSocket",
				"Origin: http://example.com",
				"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
				"User-Agent: test")...),
			served: onlyWS,
			path:   "/ws",
		},
		{
			name:   "header names in any case",
			head:   upgradeRequest("GET /ws HTTP/1.1", "host: example.com", "UPGRADE: websocket", "connection: UPGRADE", "sec-websocket-key: "+rfcKey, "SEC-WEBSOCKET-VERSION: 13"),
			served: onlyWS,
			path:   "/ws",
		},
		{
			name:   "Upgrade listing several protocols",
			head:   upgradeRequest("GET /ws HTTP/1.1", stdHeaders([]string{"Upgrade"}, "Upgrade: h2c, websocket")...),
			served: onlyWS,
			path:   "/ws",
		},
		{
			name:      "subprotocols in order across header lines",
			head:      upgradeRequest("GET /ws HTTP/1.1", stdHeaders(nil, "Sec-WebSocket-Protocol: firetower.v1.msgpack, chat", "Sec-WebSocket-Protocol:  firetower.v1.json ,, ")...),
			served:    onlyWS,
			protocols: []string{"firetower.v1.msgpack", "chat", "firetower.v1.json"},
			path:      "/ws",
		},
		{
			name:   "absolute-form request target",
			head:   upgradeRequest("GET http://example.com/ws HTTP/1.1", stdHeaders(nil)...),
			served: onlyWS,
			path:   "/ws",
		},
		{
			name: "absolute-form request target without Host header",
			head: upgradeRequest("GET http://example.com/ws HTTP/1.1", stdHeaders([]string{"Host"})...),
			path: "/ws",
		},
		{
			name: "version with spaces around",
			head: upgradeRequest("GET /ws HTTP/1.1", stdHeaders([]string{"Sec-WebSocket-Version"}, "Sec-WebSocket-Version:   13   ")...),
			path: "/ws",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs, herr := ParseHandshake(tt.head, tt.served)
			if herr != nil {
				t.Fatalf("refused: %v", herr)
			}
			if hs == nil || hs.Request == nil {
				t.Fatalf("nil handshake or request")
			}
			if hs.Key != rfcKey {
				t.Errorf("Key = %q, want %q", hs.Key, rfcKey)
			}
			if !reflect.DeepEqual(hs.Protocols, tt.protocols) {
				t.Errorf("Protocols = %q, want %q", hs.Protocols, tt.protocols)
			}
			if hs.Request.URL.Path != tt.path {
				t.Errorf("path = %q, want %q", hs.Request.URL.Path, tt.path)
			}
			if hs.Request.Method != http.MethodGet {
				t.Errorf("method = %q", hs.Request.Method)
			}
		})
	}
}

func TestParseHandshakeRefused(t *testing.T) {
	tests := []struct {
		name   string
		head   []byte
		status int
	}{
		{"garbage", []byte("\x00\x01\x02 nonsense\r\n\r\n"), http.StatusBadRequest},
		{"empty head", []byte("\r\n\r\n"), http.StatusBadRequest},
		{"no HTTP version", upgradeRequest("GET /ws", stdHeaders(nil)...), http.StatusBadRequest},
		{"bad HTTP version", upgradeRequest("GET /ws HTTP/x.y", stdHeaders(nil)...), http.StatusBadRequest},
		{"malformed header line", upgradeRequest("GET /ws HTTP/1.1", stdHeaders(nil, "this is not a header")...), http.StatusBadRequest},
		{"HTTP/1.0", upgradeRequest("GET /ws HTTP/1.0", stdHeaders(nil)...), http.StatusBadRequest},
		{"POST", upgradeRequest("POST /ws HTTP/1.1", stdHeaders(nil)...), http.StatusMethodNotAllowed},
		{"HEAD", upgradeRequest("HEAD /ws HTTP/1.1", stdHeaders(nil)...), http.StatusMethodNotAllowed},
		{"lower-case get", upgradeRequest("get /ws HTTP/1.1", stdHeaders(nil)...), http.StatusMethodNotAllowed},
		{"path not served", upgradeRequest("GET /other HTTP/1.1", stdHeaders(nil)...), http.StatusNotFound},
		{"sub path not served", upgradeRequest("GET /ws/x HTTP/1.1", stdHeaders(nil)...), http.StatusNotFound},
		{"missing Host", upgradeRequest("GET /ws HTTP/1.1", stdHeaders([]string{"Host"})...), http.StatusBadRequest},
		{"empty Host", upgradeRequest("GET /ws HTTP/1.1", stdHeaders([]string{"Host"}, "Host: ")...), http.StatusBadRequest},
		{"missing Upgrade", upgradeRequest("GET /ws HTTP/1.1", stdHeaders([]string{"Upgrade"})...), http.StatusBadRequest},
		{"wrong Upgrade", upgradeRequest("GET /ws HTTP/1.1", stdHeaders([]string{"Upgrade"}, "Upgrade: h2c")...), http.StatusBadRequest},
		{"Upgrade token is not a prefix match", upgradeRequest("GET /ws HTTP/1.1", stdHeaders([]string{"Upgrade"}, "Upgrade: websocketx")...), http.StatusBadRequest},
		{"missing Connection", upgradeRequest("GET /ws HTTP/1.1", stdHeaders([]string{"Connection"})...), http.StatusBadRequest},
		{"Connection close", upgradeRequest("GET /ws HTTP/1.1", stdHeaders([]string{"Connection"}, "Connection: close")...), http.StatusBadRequest},
		{"Connection upgrade as substring only", upgradeRequest("GET /ws HTTP/1.1", stdHeaders([]string{"Connection"}, "Connection: keep-alive upgrade")...), http.StatusBadRequest},
		{"missing version", upgradeRequest("GET /ws HTTP/1.1", stdHeaders([]string{"Sec-WebSocket-Version"})...), http.StatusUpgradeRequired},
		{"version 8", upgradeRequest("GET /ws HTTP/1.1", stdHeaders([]string{"Sec-WebSocket-Version"}, "Sec-WebSocket-Version: 8")...), http.StatusUpgradeRequired},
		{"version list", upgradeRequest("GET /ws HTTP/1.1", stdHeaders([]string{"Sec-WebSocket-Version"}, "Sec-WebSocket-Version: 13, 8")...), http.StatusUpgradeRequired},
		{"two version headers", upgradeRequest("GET /ws HTTP/1.1", stdHeaders(nil, "Sec-WebSocket-Version: 13")...), http.StatusUpgradeRequired},
		{"missing key", upgradeRequest("GET /ws HTTP/1.1", stdHeaders([]string{"Sec-WebSocket-Key"})...), http.StatusBadRequest},
		{"empty key", upgradeRequest("GET /ws HTTP/1.1", stdHeaders([]string{"Sec-WebSocket-Key"}, "Sec-WebSocket-Key: ")...), http.StatusBadRequest},
		{"short key", upgradeRequest("GET /ws HTTP/1.1", stdHeaders([]string{"Sec-WebSocket-Key"}, "Sec-WebSocket-Key: dGhlIHNhbXBsZQ==")...), http.StatusBadRequest},
		{"key decoding to 18 bytes", upgradeRequest("GET /ws HTTP/1.1", stdHeaders([]string{"Sec-WebSocket-Key"}, "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAAA")...), http.StatusBadRequest},
		{"key not base64", upgradeRequest("GET /ws HTTP/1.1", stdHeaders([]string{"Sec-WebSocket-Key"}, "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==")...), http.StatusBadRequest},
		{"key in URL alphabet", upgradeRequest("GET /ws HTTP/1.1", stdHeaders([]string{"Sec-WebSocket-Key"}, "Sec-WebSocket-Key: -_-_-_-_-_-_-_-_-_-_-w==")...), http.StatusBadRequest},
		{"two keys", upgradeRequest("GET /ws HTTP/1.1", stdHeaders(nil, "Sec-WebSocket-Key: "+rfcKey)...), http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs, herr := ParseHandshake(tt.head, onlyWS)
			if herr == nil {
				t.Fatalf("accepted (%+v), want status %d", hs, tt.status)
			}
			if hs != nil {
				t.Errorf("refusal also returned a handshake")
			}
			if herr.Status != tt.status {
				t.Errorf("status = %d (%s), want %d", herr.Status, herr.Reason, tt.status)
			}
			if herr.Reason == "" {
				t.Errorf("empty reason")
			}
			want := "websocket handshake: " + strconv.Itoa(tt.status) + " " + herr.Reason
			if herr.Error() != want {
				t.Errorf("Error() = %q, want %q", herr.Error(), want)
			}
		})
	}
}

// Checks run in a fixed order: a request that is wrong in several ways gets the
// status of the first check it fails.
func TestParseHandshakeCheckOrder(t *testing.T) {
	head := upgradeRequest("POST /other HTTP/1.1", "Host: x")
	_, herr := ParseHandshake(head, onlyWS)
	if herr == nil || herr.Status != http.StatusMethodNotAllowed {
		t.Fatalf("got %v, want 405 first", herr)
	}
	head = upgradeRequest("GET /other HTTP/1.1", "Host: x")
	_, herr = ParseHandshake(head, onlyWS)
	if herr == nil || herr.Status != http.StatusNotFound {
		t.Fatalf("got %v, want 404 before header checks", herr)
	}
}

func TestAcceptKey(t *testing.T) {
	if got := AcceptKey(rfcKey); got != rfcAccept {
		t.Fatalf("AcceptKey(%q) = %q, want %q", rfcKey, got, rfcAccept)
	}
	if AcceptKey("AQIDBAUGBwgJCgsMDQ4PEA==") == rfcAccept {
		t.Fatalf("different keys give the same accept value")
	}
	// Against a direct computation of the RFC's definition.
	for _, key := range []string{rfcKey, "AQIDBAUGBwgJCgsMDQ4PEA==", "x3JJHMbDL1EzLkh9GBhXDw==", ""} {
		sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		if want := base64.StdEncoding.EncodeToString(sum[:]); AcceptKey(key) != want {
			t.Errorf("AcceptKey(%q) = %q, want %q", key, AcceptKey(key), want)
		}
	}
}

func TestAppendAccept(t *testing.T) {
	for _, proto := range []string{"", "firetower.v1.msgpack"} {
		prefix := []byte("prefix")
		out := AppendAccept(append([]byte{}, prefix...), rfcKey, proto)
		if !bytes.HasPrefix(out, prefix) {
			t.Fatalf("dst prefix lost: %q", out)
		}
		raw := out[len(prefix):]
		if HeaderEnd(raw) != len(raw) {
			t.Fatalf("reply is not exactly one head: %q", raw)
		}
		want := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + rfcAccept + "\r\n"
		if proto != "" {
			want += "Sec-WebSocket-Protocol: " + proto + "\r\n"
		}
		want += "\r\n"
		if string(raw) != want {
			t.Fatalf("AppendAccept(%q) =\n%q\nwant\n%q", proto, raw, want)
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
		if err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Errorf("status %d", resp.StatusCode)
		}
		if got := resp.Header.Get("Sec-WebSocket-Accept"); got != rfcAccept {
			t.Errorf("accept %q", got)
		}
		if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != proto {
			t.Errorf("protocol %q, want %q", got, proto)
		}
		if resp.Header.Get("Sec-WebSocket-Extensions") != "" {
			t.Errorf("an extension was accepted")
		}
	}
}

func TestAppendReject(t *testing.T) {
	tests := []struct {
		status int
		reason string
	}{
		{http.StatusBadRequest, "missing or invalid Sec-WebSocket-Key"},
		{http.StatusMethodNotAllowed, "websocket upgrade must use GET"},
		{http.StatusNotFound, "no websocket endpoint at this path"},
		{http.StatusUpgradeRequired, "unsupported Sec-WebSocket-Version (want 13)"},
		{http.StatusBadRequest, ""},
		{http.StatusBadRequest, "caf\u00e9 \u2713"},
	}
	for _, tt := range tests {
		out := AppendReject([]byte("x"), tt.status, tt.reason)
		if out[0] != 'x' {
			t.Fatalf("dst prefix lost")
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out[1:])), nil)
		if err != nil {
			t.Fatalf("%d: reply does not parse: %v\n%q", tt.status, err, out)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%d: body: %v", tt.status, err)
		}
		if resp.StatusCode != tt.status {
			t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
		}
		if string(body) != tt.reason+"\n" {
			t.Errorf("body %q, want %q", body, tt.reason+"\n")
		}
		if resp.ContentLength != int64(len(tt.reason)+1) {
			t.Errorf("Content-Length %d, want %d", resp.ContentLength, len(tt.reason)+1)
		}
		if !resp.Close {
			t.Errorf("reply does not close the connection")
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("Content-Type %q", ct)
		}
		v := resp.Header.Get("Sec-WebSocket-Version")
		if tt.status == http.StatusUpgradeRequired && v != "13" {
			t.Errorf("426 without Sec-WebSocket-Version: 13 (got %q)", v)
		}
		if tt.status != http.StatusUpgradeRequired && v != "" {
			t.Errorf("%d carries Sec-WebSocket-Version", tt.status)
		}
		// The whole reply is consumed: nothing after the body.
		if n := len(out[1:]) - HeaderEnd(out[1:]); n != len(tt.reason)+1 {
			t.Errorf("bytes after head %d, want %d", n, len(tt.reason)+1)
		}
	}
}

// A refusal built from ParseHandshake's error is a well-formed reply.
func TestRefusalRoundTrip(t *testing.T) {
	head := upgradeRequest("GET /ws HTTP/1.1", stdHeaders([]string{"Sec-WebSocket-Version"}, "Sec-WebSocket-Version: 7")...)
	_, herr := ParseHandshake(head, nil)
	if herr == nil {
		t.Fatal("accepted")
	}
	out := AppendReject(nil, herr.Status, herr.Reason)
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusUpgradeRequired || resp.Header.Get("Sec-WebSocket-Version") != "13" {
		t.Fatalf("got %d %q", resp.StatusCode, resp.Header.Get("Sec-WebSocket-Version"))
	}
}

// TestHandshakeParserReuse: one parser, two requests; the first request
// keeps its own values after the second parse, and neither refers to the
// parser's reader (its Body is http.NoBody even with a Content-Length).
func TestHandshakeParserReuse(t *testing.T) {
	req := func(path, key, extra string) []byte {
		return []byte("GET " + path + " HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + "\r\nX-Long: " + strings.Repeat("v", 5000) + "\r\n" + extra + "\r\n")
	}
	var p HandshakeParser
	a, err := p.Parse(req("/ws?a=1", "dGhlIHNhbXBsZSBub25jZQ==", "Content-Length: 5\r\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Parse(req("/other", "AQIDBAUGBwgJCgsMDQ4PEA==", ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.Request.URL.Path != "/ws" || a.Request.URL.RawQuery != "a=1" || a.Key != "dGhlIHNhbXBsZSBub25jZQ==" || len(a.Request.Header.Get("X-Long")) != 5000 {
		t.Errorf("first request changed by the second parse: %s %q key %q", a.Request.URL, a.Request.URL.RawQuery, a.Key)
	}
	if b.Request.URL.Path != "/other" || b.Key != "AQIDBAUGBwgJCgsMDQ4PEA==" {
		t.Errorf("second request: %s key %q", b.Request.URL, b.Key)
	}
	if a.Request.Body != http.NoBody || b.Request.Body != http.NoBody {
		t.Error("a parsed request's Body is not http.NoBody")
	}
}
