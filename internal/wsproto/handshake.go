// Package wsproto holds the pure, allocation-light pieces of RFC 6455 that the
// transport needs: framing of the HTTP upgrade request on buffered bytes, its
// validation, the 101 reply, frame header parsing and frame building.
//
// Nothing here reads from a connection: every function works on bytes that are
// already in memory, so an event loop can call them without ever blocking.
package wsproto

import (
	"bufio"
	"bytes"
	"crypto/sha1" //nolint:gosec // G505: RFC 6455 defines Sec-WebSocket-Accept with SHA-1; not used for security
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
)

// HandshakeError is a refused upgrade: the HTTP status to answer with and a
// reason for humans, sent as the response body.
type HandshakeError struct {
	Status int
	Reason string
}

func (e *HandshakeError) Error() string {
	return "websocket handshake: " + strconv.Itoa(e.Status) + " " + e.Reason
}

// HeaderEnd returns the length of the HTTP request head in b, up to and
// including the blank line that ends it, or -1 if b does not hold a whole head.
func HeaderEnd(b []byte) int {
	i := bytes.Index(b, []byte("\r\n\r\n"))
	if i < 0 {
		return -1
	}
	return i + 4
}

// Handshake is a validated websocket upgrade request.
type Handshake struct {
	Request   *http.Request
	Key       string   // Sec-WebSocket-Key
	Protocols []string // offered subprotocols, in the client's order
}

// PathMatcher decides whether an upgrade path is served.
type PathMatcher func(path string) bool

// ParseHandshake parses a complete request head (as delimited by HeaderEnd)
// and checks it is a valid RFC 6455 upgrade. served says which request paths
// are upgraded; nil serves every path.
func ParseHandshake(head []byte, served PathMatcher) (*Handshake, *HandshakeError) {
	var p HandshakeParser
	return p.Parse(head, served)
}

// HandshakeParser is ParseHandshake with readers kept for the next request:
// one per goroutine that parses (an event loop), so that a handshake leaves
// no reader behind as garbage. The zero value is ready.
type HandshakeParser struct {
	rd bytes.Reader
	br *bufio.Reader
}

// handshakeReadBuf is HandshakeParser's buffer: a longer header line is
// still read whole (textproto joins the pieces).
const handshakeReadBuf = 4 << 10

// Parse is ParseHandshake. The request it returns refers to nothing of the
// parser's: its Body is http.NoBody (an upgrade request's bytes past the
// head are websocket frames, not a body).
func (p *HandshakeParser) Parse(head []byte, served PathMatcher) (*Handshake, *HandshakeError) {
	p.rd.Reset(head)
	if p.br == nil {
		p.br = bufio.NewReaderSize(&p.rd, handshakeReadBuf)
	} else {
		p.br.Reset(&p.rd)
	}
	req, err := http.ReadRequest(p.br)
	p.br.Reset(nil)
	p.rd.Reset(nil)
	if err != nil {
		return nil, &HandshakeError{http.StatusBadRequest, "malformed HTTP request"}
	}
	req.Body = http.NoBody
	if req.ProtoMajor != 1 || req.ProtoMinor < 1 {
		return nil, &HandshakeError{http.StatusBadRequest, "websocket needs HTTP/1.1 or later"}
	}
	if req.Method != http.MethodGet {
		return nil, &HandshakeError{http.StatusMethodNotAllowed, "websocket upgrade must use GET"}
	}
	if served != nil && !served(req.URL.Path) {
		return nil, &HandshakeError{http.StatusNotFound, "no websocket endpoint at this path"}
	}
	if req.Host == "" {
		return nil, &HandshakeError{http.StatusBadRequest, "missing Host header"}
	}
	if !headerHasToken(req.Header, "Upgrade", "websocket") {
		return nil, &HandshakeError{http.StatusBadRequest, "missing or wrong Upgrade header (want websocket)"}
	}
	if !headerHasToken(req.Header, "Connection", "upgrade") {
		return nil, &HandshakeError{http.StatusBadRequest, "missing or wrong Connection header (want Upgrade)"}
	}
	if v := req.Header.Values("Sec-Websocket-Version"); len(v) != 1 || strings.TrimSpace(v[0]) != "13" {
		return nil, &HandshakeError{http.StatusUpgradeRequired, "unsupported Sec-WebSocket-Version (want 13)"}
	}
	keys := req.Header.Values("Sec-Websocket-Key")
	if len(keys) != 1 || !validKey(strings.TrimSpace(keys[0])) {
		return nil, &HandshakeError{http.StatusBadRequest, "missing or invalid Sec-WebSocket-Key"}
	}
	hs := &Handshake{Request: req, Key: strings.TrimSpace(keys[0])}
	for _, v := range req.Header.Values("Sec-Websocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				hs.Protocols = append(hs.Protocols, p)
			}
		}
	}
	return hs, nil
}

func validKey(k string) bool {
	if len(k) != 24 {
		return false
	}
	var dst [18]byte
	n, err := base64.StdEncoding.Decode(dst[:], []byte(k))
	return err == nil && n == 16
}

// headerHasToken reports whether one of the comma-separated values of header
// name equals token, ignoring case.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// AcceptKey computes Sec-WebSocket-Accept for a client's Sec-WebSocket-Key.
func AcceptKey(key string) string {
	h := sha1.New() //nolint:gosec // G401: RFC 6455 defines Sec-WebSocket-Accept with SHA-1; not used for security
	h.Write([]byte(key))
	h.Write([]byte(acceptGUID))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// AppendAccept appends the 101 Switching Protocols reply to dst. protocol is
// the chosen subprotocol, or "" for none. No extension is accepted.
func AppendAccept(dst []byte, key, protocol string) []byte {
	return AppendAcceptExt(dst, key, protocol, "")
}

// AppendAcceptExt is AppendAccept with the accepted extensions (the
// Sec-WebSocket-Extensions value, "" for none; see DeflateResponse).
func AppendAcceptExt(dst []byte, key, protocol, extensions string) []byte {
	dst = append(dst, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	dst = append(dst, AcceptKey(key)...)
	if protocol != "" {
		dst = append(dst, "\r\nSec-WebSocket-Protocol: "...)
		dst = append(dst, protocol...)
	}
	if extensions != "" {
		dst = append(dst, "\r\nSec-WebSocket-Extensions: "...)
		dst = append(dst, extensions...)
	}
	return append(dst, "\r\n\r\n"...)
}

// AppendReject appends a plain-text HTTP error reply that closes the
// connection. A 426 also names the supported websocket version.
func AppendReject(dst []byte, status int, reason string) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, http.StatusText(status)...)
	dst = append(dst, "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"...)
	switch status {
	case http.StatusUpgradeRequired:
		dst = append(dst, "Sec-WebSocket-Version: 13\r\n"...)
	case http.StatusMethodNotAllowed:
		dst = append(dst, "Allow: GET\r\n"...)
	}
	dst = append(dst, "Content-Length: "...)
	dst = strconv.AppendInt(dst, int64(len(reason)+1), 10)
	dst = append(dst, "\r\n\r\n"...)
	dst = append(dst, reason...)
	return append(dst, '\n')
}
