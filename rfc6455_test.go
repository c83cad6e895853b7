package firetower_test

// RFC 6455 conformance suite: raw bytes over TCP against a real firetower server.
//
// Every case starts its own server, speaks the websocket protocol by hand (the
// client side is written here so that it can send what no library would: unmasked
// frames, reserved opcodes, bad close codes, lengths of 2^62, ...), and checks one
// expected outcome: an HTTP status for a handshake, a close code from the server, or
// the reply frames. Every read has a deadline, so a broken server fails a case
// instead of hanging it.
//
//	go test -race -run 'RFC' -count=1 .
//
// Set RFC_LOG=1 to see the server's log on stderr.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/firetower-go/firetower"
)

const (
	rfcWait = 5 * time.Second // the longest any single read may wait
	rfcGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

	rfcOpCont   byte = 0x0
	rfcOpText   byte = 0x1
	rfcOpBinary byte = 0x2
	rfcOpClose  byte = 0x8
	rfcOpPing   byte = 0x9
	rfcOpPong   byte = 0xA

	rfcRSV1 byte = 4
	rfcRSV2 byte = 2
	rfcRSV3 byte = 1

	rfcNoStatus = 1005 // a close frame with an empty body
)

// ---------------------------------------------------------------------------
// server

type rfcServer struct {
	*wsServer
	v    wsVariant
	shut atomic.Bool // the test shut the server down itself
}

func (s *rfcServer) shutdown(ctx context.Context) error {
	s.shut.Store(true)
	return s.tw.Shutdown(ctx)
}

// newReq is a valid handshake for s, with the variant's extra headers.
func (s *rfcServer) newReq() *rfcReq {
	r := rfcNewReq(s.addr)
	for k, vs := range s.v.header {
		for _, v := range vs {
			r.add(k, v)
		}
	}
	return r
}

// rfcStartServer starts a Tower with opts, served as v says (see
// variants_test.go); the Tower is shut down at the end of the test.
func rfcStartServer(t *testing.T, v wsVariant, opts ...firetower.Option) *rfcServer {
	t.Helper()
	h := slog.DiscardHandler
	if os.Getenv("RFC_LOG") != "" {
		h = slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})
	}
	s := &rfcServer{v: v, wsServer: wsStart(t, v, slog.New(h), opts...)}
	if s.addr == "" {
		t.Fatalf("Addr() is empty after Start")
	}
	return s
}

// ---------------------------------------------------------------------------
// handshake request

type rfcHdr struct{ k, v string }

type rfcReq struct {
	method, target, proto string
	key                   string
	hdr                   []rfcHdr
}

// rfcNewReq is a valid RFC 6455 opening handshake for addr.
func rfcNewReq(addr string) *rfcReq {
	var k [16]byte
	for i := range k {
		k[i] = byte(rand.IntN(256))
	}
	key := base64.StdEncoding.EncodeToString(k[:])
	return &rfcReq{
		method: "GET", target: "/ws", proto: "HTTP/1.1", key: key,
		hdr: []rfcHdr{
			{"Host", addr},
			{"Upgrade", "websocket"},
			{"Connection", "Upgrade"},
			{"Sec-WebSocket-Key", key},
			{"Sec-WebSocket-Version", "13"},
		},
	}
}

func (r *rfcReq) set(k, v string) *rfcReq {
	for i := range r.hdr {
		if strings.EqualFold(r.hdr[i].k, k) {
			r.hdr[i].v = v
			if strings.EqualFold(k, "Sec-WebSocket-Key") {
				r.key = v
			}
			return r
		}
	}
	return r.add(k, v)
}

func (r *rfcReq) add(k, v string) *rfcReq {
	r.hdr = append(r.hdr, rfcHdr{k, v})
	return r
}

func (r *rfcReq) del(k string) *rfcReq {
	out := r.hdr[:0]
	for _, h := range r.hdr {
		if !strings.EqualFold(h.k, k) {
			out = append(out, h)
		}
	}
	r.hdr = out
	return r
}

func (r *rfcReq) bytes() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s %s\r\n", r.method, r.target, r.proto)
	for _, h := range r.hdr {
		fmt.Fprintf(&b, "%s: %s\r\n", h.k, h.v)
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

func rfcAccept(key string) string {
	s := sha1.Sum([]byte(key + rfcGUID))
	return base64.StdEncoding.EncodeToString(s[:])
}

// ---------------------------------------------------------------------------
// frames

// rfcF is a client frame. It is masked unless unmasked is set; hdrOnly sends only the
// header, declaring length instead of len(payload).
type rfcF struct {
	fin      bool
	rsv      byte // rfcRSV1|rfcRSV2|rfcRSV3
	op       byte
	payload  []byte
	unmasked bool
	hdrOnly  bool
	length   uint64
}

func (f rfcF) bytes() []byte {
	b0 := f.op&0x0f | (f.rsv&7)<<4
	if f.fin {
		b0 |= 0x80
	}
	n := uint64(len(f.payload))
	if f.hdrOnly {
		n = f.length
	}
	var b []byte
	b = append(b, b0)
	var m byte
	if !f.unmasked {
		m = 0x80
	}
	switch {
	case n <= 125:
		b = append(b, m|byte(n))
	case n <= 0xffff:
		b = append(b, m|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, m|127)
		b = binary.BigEndian.AppendUint64(b, n)
	}
	if f.hdrOnly {
		if !f.unmasked {
			b = append(b, 0x37, 0xfa, 0x21, 0x3d)
		}
		return b
	}
	if f.unmasked {
		return append(b, f.payload...)
	}
	key := rand.Uint32() | 1 // never the all-zero key
	var k [4]byte
	binary.BigEndian.PutUint32(k[:], key)
	b = append(b, k[:]...)
	for i, c := range f.payload {
		b = append(b, c^k[i&3])
	}
	return b
}

func rfcFrame(fin bool, op byte, payload []byte) rfcF {
	return rfcF{fin: fin, op: op, payload: payload}
}

func rfcText(s string) rfcF           { return rfcFrame(true, rfcOpText, []byte(s)) }
func rfcBinary(b []byte) rfcF         { return rfcFrame(true, rfcOpBinary, b) }
func rfcPing(p string) rfcF           { return rfcFrame(true, rfcOpPing, []byte(p)) }
func rfcPong(p string) rfcF           { return rfcFrame(true, rfcOpPong, []byte(p)) }
func rfcTextFrag(s string) rfcF       { return rfcFrame(false, rfcOpText, []byte(s)) }
func rfcCont(fin bool, s string) rfcF { return rfcFrame(fin, rfcOpCont, []byte(s)) }

func rfcClosePayload(code int, reason string) []byte {
	if code < 0 {
		return nil
	}
	b := binary.BigEndian.AppendUint16(nil, uint16(code))
	return append(b, reason...)
}

// rfcClose is a close frame; code < 0 means an empty body.
func rfcClose(code int, reason string) rfcF {
	return rfcFrame(true, rfcOpClose, rfcClosePayload(code, reason))
}

func rfcJoin(fs ...rfcF) []byte {
	var b []byte
	for _, f := range fs {
		b = append(b, f.bytes()...)
	}
	return b
}

// rfcIn is a frame read from the server.
type rfcIn struct {
	fin     bool
	rsv     byte
	op      byte
	masked  bool
	payload []byte
}

func (f rfcIn) String() string {
	p := f.payload
	suffix := ""
	if len(p) > 80 {
		p, suffix = p[:80], fmt.Sprintf("...(%d bytes)", len(f.payload))
	}
	switch f.op {
	case rfcOpClose:
		code, reason, ok := rfcParseClose(f.payload)
		if !ok {
			return fmt.Sprintf("close frame with %d-byte body %q", len(f.payload), f.payload)
		}
		return fmt.Sprintf("close %d %q", code, reason)
	case rfcOpText:
		return fmt.Sprintf("text %q%s", p, suffix)
	}
	return fmt.Sprintf("frame op=%#x fin=%v %q%s", f.op, f.fin, p, suffix)
}

func rfcParseClose(p []byte) (code int, reason string, ok bool) {
	switch len(p) {
	case 0:
		return rfcNoStatus, "", true
	case 1:
		return 0, "", false
	}
	return int(binary.BigEndian.Uint16(p)), string(p[2:]), true
}

// ---------------------------------------------------------------------------
// client

type rfcClient struct {
	t    *testing.T
	v    wsVariant
	conn net.Conn
	br   *bufio.Reader
	req  *rfcReq
	resp *http.Response
	body []byte
}

func rfcDial(t *testing.T, s *rfcServer) *rfcClient {
	t.Helper()
	conn, br := s.v.dial(t, s.wsServer)
	return &rfcClient{t: t, v: s.v, conn: conn, br: br}
}

func (c *rfcClient) write(b []byte) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(rfcWait))
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *rfcClient) send(fs ...rfcF) { c.t.Helper(); c.write(rfcJoin(fs...)) }

// readResponse reads the server's HTTP answer to a handshake.
func (c *rfcClient) readResponse() error {
	c.conn.SetReadDeadline(time.Now().Add(rfcWait))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return fmt.Errorf("reading the handshake response: %w", err)
	}
	c.resp = resp
	if resp.StatusCode == http.StatusSwitchingProtocols && c.v.deflate && resp.Header.Get("Sec-WebSocket-Extensions") != "" {
		// from here on, compressed server messages read as the plain
		// frames they stand for
		zr := czInflating(c.br)
		c.t.Cleanup(func() { c.conn.Close(); zr.Close() })
		c.br = bufio.NewReader(zr)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, err := io.ReadAll(resp.Body)
		c.body = body
		if err != nil {
			return fmt.Errorf("reading the body of the %d response: %w (a response needs a Content-Length or must close the connection)", resp.StatusCode, err)
		}
	}
	return nil
}

// handshake sends r and reads the response.
func (c *rfcClient) handshake(r *rfcReq) error {
	c.req = r
	c.write(r.bytes())
	return c.readResponse()
}

// check101 verifies a successful upgrade response.
func (c *rfcClient) check101() {
	c.t.Helper()
	r := c.resp
	if r.StatusCode != http.StatusSwitchingProtocols {
		c.t.Fatalf("handshake: got %s (body %q), want 101 Switching Protocols", r.Status, c.body)
	}
	if got, want := r.Header.Get("Sec-WebSocket-Accept"), rfcAccept(c.req.key); got != want {
		c.t.Errorf("Sec-WebSocket-Accept = %q, want %q (RFC 6455 4.2.2)", got, want)
	}
	if got := r.Header.Get("Upgrade"); !strings.EqualFold(got, "websocket") {
		c.t.Errorf("Upgrade = %q, want websocket (RFC 6455 4.2.2)", got)
	}
	if !rfcHasToken(r.Header.Values("Connection"), "upgrade") {
		c.t.Errorf("Connection = %q, want the Upgrade token (RFC 6455 4.2.2)", r.Header.Values("Connection"))
	}
	ext := r.Header.Values("Sec-WebSocket-Extensions")
	switch {
	case c.v.deflate:
		if e := strings.Join(ext, ", "); !czHasParam(e, "permessage-deflate") || !czHasParam(e, "server_no_context_takeover") {
			c.t.Errorf("Sec-WebSocket-Extensions = %q in the 101, want permessage-deflate with server_no_context_takeover", ext)
		}
	case len(ext) > 0:
		c.t.Errorf("Sec-WebSocket-Extensions = %q in the 101, want none (no extension is negotiated)", ext)
	}
}

func rfcHasToken(values []string, tok string) bool {
	for _, v := range values {
		for _, p := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(p), tok) {
				return true
			}
		}
	}
	return false
}

// rfcUpgrade dials and completes a handshake (mod may change the request).
func rfcUpgrade(t *testing.T, s *rfcServer, mod func(*rfcReq)) *rfcClient {
	t.Helper()
	c := rfcDial(t, s)
	r := s.newReq()
	if mod != nil {
		mod(r)
	}
	if err := c.handshake(r); err != nil {
		t.Fatal(err)
	}
	c.check101()
	return c
}

func rfcIsClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func rfcIsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// read reads one frame from the server, with a deadline. Violations of the rules for
// server frames (RFC 6455 5.1, 5.2, 5.5) are reported as errors of the test.
func (c *rfcClient) read(d time.Duration) (rfcIn, error) {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(d))
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return rfcIn{}, err
	}
	f := rfcIn{fin: h[0]&0x80 != 0, rsv: (h[0] >> 4) & 7, op: h[0] & 0x0f, masked: h[1]&0x80 != 0}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var e [2]byte
		if _, err := io.ReadFull(c.br, e[:]); err != nil {
			return f, err
		}
		n = uint64(binary.BigEndian.Uint16(e[:]))
	case 127:
		var e [8]byte
		if _, err := io.ReadFull(c.br, e[:]); err != nil {
			return f, err
		}
		n = binary.BigEndian.Uint64(e[:])
	}
	if n > 16<<20 {
		return f, fmt.Errorf("server frame declares %d bytes", n)
	}
	var key [4]byte
	if f.masked {
		if _, err := io.ReadFull(c.br, key[:]); err != nil {
			return f, err
		}
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(c.br, f.payload); err != nil {
		return f, err
	}
	if f.masked {
		for i := range f.payload {
			f.payload[i] ^= key[i&3]
		}
		c.t.Errorf("server sent a masked frame (%v): RFC 6455 5.1 says a server MUST NOT mask", f)
	}
	if f.rsv != 0 {
		c.t.Errorf("server sent RSV bits %03b with no extension negotiated (%v)", f.rsv, f)
	}
	switch f.op {
	case rfcOpCont, rfcOpText, rfcOpBinary:
	case rfcOpClose, rfcOpPing, rfcOpPong:
		if !f.fin || len(f.payload) > 125 {
			c.t.Errorf("server sent an invalid control frame (fin=%v, %d bytes): RFC 6455 5.5", f.fin, len(f.payload))
		}
	default:
		c.t.Errorf("server sent reserved opcode %#x", f.op)
	}
	if f.op == rfcOpClose {
		code, reason, ok := rfcParseClose(f.payload)
		if !ok {
			c.t.Errorf("server sent a close frame with a 1-byte body")
		} else if !utf8.ValidString(reason) {
			c.t.Errorf("server close reason is not UTF-8: %q", reason)
		} else if code != rfcNoStatus && !rfcValidCloseCode(code) {
			c.t.Errorf("server sent close code %d, which may not be sent on the wire (RFC 6455 7.4)", code)
		}
	}
	if f.op == rfcOpText && f.fin && !utf8.Valid(f.payload) {
		c.t.Errorf("server sent a text frame that is not UTF-8: %q", f.payload)
	}
	return f, nil
}

func rfcValidCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// next returns the next frame that is not a server ping (pings are answered).
func (c *rfcClient) next(d time.Duration) (rfcIn, error) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		f, err := c.read(time.Until(deadline))
		if err != nil || f.op != rfcOpPing {
			return f, err
		}
		c.conn.SetWriteDeadline(time.Now().Add(rfcWait))
		c.conn.Write(rfcFrame(true, rfcOpPong, f.payload).bytes())
	}
}

// rfcWant is an expected reply frame: op, and either the exact payload or (for
// JSON) a subset of fields that must be present with these values.
type rfcWant struct {
	op      byte
	payload []byte
	json    string // fields that must match in a JSON text reply
	has     string // bytes the payload must contain (msgpack replies)
}

func rfcWantPong(p string) rfcWant { return rfcWant{op: rfcOpPong, payload: []byte(p)} }
func rfcWantJSON(j string) rfcWant { return rfcWant{op: rfcOpText, json: j} }
func rfcWantAppPong(id string) rfcWant {
	b, _ := json.Marshal(id)
	return rfcWantJSON(`{"type":"pong","id":` + string(b) + `}`)
}

func (w rfcWant) String() string {
	switch {
	case w.json != "":
		return "text " + rfcShort(w.json)
	case w.has != "":
		return fmt.Sprintf("op %#x containing %q", w.op, w.has)
	}
	return fmt.Sprintf("op %#x payload %q", w.op, rfcShort(string(w.payload)))
}

// rfcShort keeps failure messages readable.
func rfcShort(s string) string {
	if len(s) <= 100 {
		return s
	}
	return fmt.Sprintf("%s...(%d bytes)", s[:100], len(s))
}

func (w rfcWant) match(f rfcIn) error {
	if f.op != w.op {
		return fmt.Errorf("got %v, want %v", f, w)
	}
	switch {
	case w.json != "":
		if err := rfcJSONSubset(w.json, f.payload); err != nil {
			return fmt.Errorf("got %v, want %v: %v", f, w, err)
		}
	case w.has != "":
		if !bytes.Contains(f.payload, []byte(w.has)) {
			return fmt.Errorf("got %v, want %v", f, w)
		}
	default:
		if !bytes.Equal(f.payload, w.payload) {
			return fmt.Errorf("got %v, want %v", f, w)
		}
	}
	return nil
}

func rfcJSONSubset(want string, got []byte) error {
	var w, g map[string]any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		panic("bad want JSON " + want)
	}
	if err := json.Unmarshal(got, &g); err != nil {
		return fmt.Errorf("reply is not a JSON object: %v", err)
	}
	for k, v := range w {
		if !reflect.DeepEqual(g[k], v) {
			return fmt.Errorf("field %q = %s, want %s", k, rfcShort(fmt.Sprint(g[k])), rfcShort(fmt.Sprint(v)))
		}
	}
	return nil
}

// expect reads the wanted frames, in order.
func (c *rfcClient) expect(wants ...rfcWant) {
	c.t.Helper()
	for i, w := range wants {
		f, err := c.next(rfcWait)
		if err != nil {
			c.t.Fatalf("reply %d: want %v, got error %v", i, w, c.describeErr(err))
		}
		if err := w.match(f); err != nil {
			c.t.Fatalf("reply %d: %v", i, err)
		}
	}
}

// expectAnyOrder reads len(wants) frames, each matching a different one of
// wants: a control frame (pong) carries no ordering with data frames.
func (c *rfcClient) expectAnyOrder(wants ...rfcWant) {
	c.t.Helper()
	left := append([]rfcWant(nil), wants...)
	for i := range wants {
		f, err := c.next(rfcWait)
		if err != nil {
			c.t.Fatalf("reply %d: want one of %v, got error %v", i, left, c.describeErr(err))
		}
		found := -1
		var errs []string
		for j, w := range left {
			if err := w.match(f); err == nil {
				found = j
				break
			} else {
				errs = append(errs, err.Error())
			}
		}
		if found < 0 {
			c.t.Fatalf("reply %d matches none of the replies still expected: %s", i, strings.Join(errs, "; "))
		}
		left = append(left[:found], left[found+1:]...)
	}
}

func (c *rfcClient) describeErr(err error) string {
	switch {
	case rfcIsTimeout(err):
		return "nothing within the deadline"
	case rfcIsClosed(err):
		return "TCP connection closed by the server (" + err.Error() + ")"
	}
	return err.Error()
}

// expectClose reads until the server's close frame, checks its code is one of codes,
// answers it (unless the client already sent a close) and checks the server then
// closes the TCP connection.
func (c *rfcClient) expectClose(codes []int, clientSentClose bool) {
	c.t.Helper()
	deadline := time.Now().Add(rfcWait)
	var skipped []string
	for {
		f, err := c.next(time.Until(deadline))
		if err != nil {
			c.t.Fatalf("want close %v from the server, got %s (frames before: %v)", codes, c.describeErr(err), skipped)
		}
		if f.op != rfcOpClose {
			skipped = append(skipped, f.String())
			if len(skipped) > 1000 {
				c.t.Fatalf("want close %v, server keeps sending frames", codes)
			}
			continue
		}
		code, reason, _ := rfcParseClose(f.payload)
		ok := false
		for _, want := range codes {
			ok = ok || code == want
		}
		if !ok {
			c.t.Errorf("server closed with %d %q, want %v", code, reason, codes)
		}
		if len(skipped) > 0 {
			c.t.Logf("frames before the close: %v", skipped)
		}
		if !clientSentClose {
			c.conn.SetWriteDeadline(time.Now().Add(rfcWait))
			c.conn.Write(rfcFrame(true, rfcOpClose, f.payload[:min(2, len(f.payload))]).bytes())
		}
		c.expectEOF("after the close handshake")
		return
	}
}

// expectEOF checks the server closes the TCP connection, sending no further frame.
func (c *rfcClient) expectEOF(when string) {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(rfcWait))
	b, err := io.ReadAll(c.br)
	if len(b) > 0 {
		c.t.Errorf("server sent %d more bytes %s: %q", len(b), when, b[:min(len(b), 80)])
	}
	if err != nil && !rfcIsClosed(err) {
		if rfcIsTimeout(err) {
			c.t.Errorf("server did not close the TCP connection within %v %s (RFC 6455 7.1.1)", rfcWait, when)
			return
		}
		c.t.Errorf("reading %s: %v", when, err)
	}
}

// alive checks the connection still works: a websocket ping and an application ping.
func (c *rfcClient) alive(proto string) {
	c.t.Helper()
	switch proto {
	case "msgpack":
		c.send(rfcPing("alive"), rfcBinary(rfcMsgpackPing("alive")))
		c.expect(rfcWantPong("alive"), rfcWant{op: rfcOpBinary, has: "pong"})
	default:
		c.send(rfcPing("alive"), rfcText(`{"type":"ping","id":"alive"}`))
		c.expect(rfcWantPong("alive"), rfcWantAppPong("alive"))
	}
}

// rfcMsgpackPing is {"type":"ping","id":id} as a msgpack map (id < 32 bytes).
func rfcMsgpackPing(id string) []byte {
	b := []byte{0x82, 0xa4, 't', 'y', 'p', 'e', 0xa4, 'p', 'i', 'n', 'g', 0xa2, 'i', 'd'}
	b = append(b, 0xa0|byte(len(id)))
	return append(b, id...)
}

// rfcPingJSON is an application ping whose encoding is exactly n bytes long.
func rfcPingJSON(n int) string {
	const empty = `{"type":"ping","id":""}`
	return `{"type":"ping","id":"` + strings.Repeat("x", n-len(empty)) + `"}`
}

// ---------------------------------------------------------------------------
// the table

type rfcStep struct {
	send []rfcF
	want []rfcWant
}

type rfcCase struct {
	name string
	opts []firetower.Option
	v    wsVariant // how the server is reached (set by TestRFC6455)

	// Handshake case: the valid request modified by hs is sent; the response must
	// have status, the headers in header ("" = must be absent), a non-empty body
	// when reason is set, and after a 101 the connection must work (alive: the
	// protocol to speak, "json" when empty).
	hs     func(r *rfcReq)
	status int
	header map[string]string
	reason bool
	alive  string

	// Frame case: after a valid upgrade, each step's frames go out in one write and
	// its replies must follow in order; then the server must close with one of close.
	steps []rfcStep
	close []int

	// Custom case; want describes its expected outcome.
	run  func(t *testing.T, tc rfcCase)
	want string
}

func rfcCloseEcho(code int) rfcCase {
	return rfcCase{
		name:  fmt.Sprintf("close_%d_echoed", code),
		steps: []rfcStep{{send: []rfcF{rfcClose(code, "")}}},
		close: []int{code},
	}
}

func rfcCloseInvalid(code int) rfcCase {
	return rfcCase{
		name:  fmt.Sprintf("close_invalid_code_%d_is_1002", code),
		steps: []rfcStep{{send: []rfcF{rfcClose(code, "")}}},
		close: []int{1002},
	}
}

func rfcProtoErr(name string, fs ...rfcF) rfcCase {
	return rfcCase{name: name, steps: []rfcStep{{send: fs}}, close: []int{1002}}
}

func rfcReservedOp(op byte) rfcCase {
	return rfcProtoErr(fmt.Sprintf("reserved_opcode_%#x_is_1002", op), rfcFrame(true, op, []byte("x")))
}

func rfcCases() []rfcCase {
	small := []firetower.Option{firetower.WithMaxMessageSize(1024)}
	keepalive := []firetower.Option{
		firetower.WithPingInterval(100 * time.Millisecond),
		firetower.WithIdleTimeout(600 * time.Millisecond),
	}
	hsTimeout := []firetower.Option{firetower.WithHandshakeTimeout(300 * time.Millisecond)}

	bad := func(name string, mod func(r *rfcReq)) rfcCase {
		return rfcCase{name: name, hs: mod, status: 400, reason: true}
	}
	version := func(name string, mod func(r *rfcReq)) rfcCase {
		return rfcCase{name: name, hs: mod, status: 426, header: map[string]string{"Sec-WebSocket-Version": "13"}}
	}
	ok := func(name string, mod func(r *rfcReq), header map[string]string, alive string) rfcCase {
		return rfcCase{name: name, hs: mod, status: 101, header: header, alive: alive}
	}
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xab}, n)) }
	noProto := map[string]string{"Sec-WebSocket-Protocol": ""}

	// a subscribe split in two fragments with a ping between them
	interleaved := rfcCase{
		name: "ping_between_fragments_answered_then_message_processed",
		steps: []rfcStep{
			{send: []rfcF{rfcTextFrag(`{"type":"subscribe",`), rfcPing("mid")}, want: []rfcWant{rfcWantPong("mid")}},
			{send: []rfcF{rfcCont(true, `"topic":"rfc.frag","id":7}`)}, want: []rfcWant{rfcWantJSON(`{"type":"ack","id":7,"topics":["rfc.frag"]}`)}},
		},
	}

	// valid UTF-8 split inside 2- and 4-byte sequences over three fragments
	multi := `{"type":"ping","id":"κόσμε😀"}`
	i1 := strings.Index(multi, "ό") + 1
	i2 := strings.Index(multi, "😀") + 1
	validSplit := rfcCase{
		name: "utf8_valid_multibyte_split_across_fragments_accepted",
		steps: []rfcStep{{
			send: []rfcF{rfcTextFrag(multi[:i1]), rfcCont(false, multi[i1:i2]), rfcCont(true, multi[i2:])},
			want: []rfcWant{rfcWantAppPong("κόσμε😀")},
		}},
	}

	long := strings.Repeat("y", 300)
	huge := strings.Repeat("z", 70000)

	return []rfcCase{
		// ---- opening handshake (RFC 6455 4.1, 4.2)
		ok("handshake_valid_101_with_accept", nil, map[string]string{"Sec-WebSocket-Protocol": ""}, "json"),
		ok("handshake_header_tokens_case_insensitive", func(r *rfcReq) {
			r.set("Upgrade", "WebSocket").set("Connection", "keep-alive, upgrade")
		}, nil, "json"),
		ok("handshake_path_with_query_string", func(r *rfcReq) { r.target = "/ws?token=abc" }, nil, "json"),
		bad("handshake_missing_Upgrade_400", func(r *rfcReq) { r.del("Upgrade") }),
		bad("handshake_bad_Upgrade_400", func(r *rfcReq) { r.set("Upgrade", "h2c") }),
		bad("handshake_missing_Connection_400", func(r *rfcReq) { r.del("Connection") }),
		bad("handshake_Connection_without_upgrade_token_400", func(r *rfcReq) { r.set("Connection", "keep-alive") }),
		bad("handshake_missing_Key_400", func(r *rfcReq) { r.del("Sec-WebSocket-Key") }),
		bad("handshake_Key_not_base64_400", func(r *rfcReq) { r.set("Sec-WebSocket-Key", "not base64 at all!!") }),
		bad("handshake_Key_15_bytes_400", func(r *rfcReq) { r.set("Sec-WebSocket-Key", b64(15)) }),
		bad("handshake_Key_17_bytes_400", func(r *rfcReq) { r.set("Sec-WebSocket-Key", b64(17)) }),
		bad("handshake_Key_empty_400", func(r *rfcReq) { r.set("Sec-WebSocket-Key", "") }),
		bad("handshake_missing_Host_400", func(r *rfcReq) { r.del("Host") }),
		bad("handshake_HTTP_1_0_400", func(r *rfcReq) { r.proto = "HTTP/1.0" }),
		version("handshake_missing_Version_426", func(r *rfcReq) { r.del("Sec-WebSocket-Version") }),
		version("handshake_Version_8_426", func(r *rfcReq) { r.set("Sec-WebSocket-Version", "8") }),
		version("handshake_Version_14_426", func(r *rfcReq) { r.set("Sec-WebSocket-Version", "14") }),
		{name: "handshake_POST_405", hs: func(r *rfcReq) { r.method = "POST" }, status: 405, header: map[string]string{"Allow": "GET"}},
		{name: "handshake_wrong_path_404", hs: func(r *rfcReq) { r.target = "/nope" }, status: 404},
		{name: "handshake_oversized_header_431", run: rfcRunOversizedHeader, want: "431 Request Header Fields Too Large"},
		ok("subprotocol_json_echoed", func(r *rfcReq) { r.set("Sec-WebSocket-Protocol", "firetower.v1.json") },
			map[string]string{"Sec-WebSocket-Protocol": "firetower.v1.json"}, "json"),
		ok("subprotocol_msgpack_echoed", func(r *rfcReq) { r.set("Sec-WebSocket-Protocol", "firetower.v1.msgpack") },
			map[string]string{"Sec-WebSocket-Protocol": "firetower.v1.msgpack"}, "msgpack"),
		ok("subprotocol_msgpack_chosen_from_list", func(r *rfcReq) { r.set("Sec-WebSocket-Protocol", "chat, firetower.v1.msgpack") },
			map[string]string{"Sec-WebSocket-Protocol": "firetower.v1.msgpack"}, "msgpack"),
		ok("subprotocol_unknown_only_accepted_without_header", func(r *rfcReq) { r.set("Sec-WebSocket-Protocol", "chat, superchat") },
			noProto, "json"),
		ok("permessage_deflate_declined_and_connection_works", func(r *rfcReq) {
			r.set("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")
		}, map[string]string{"Sec-WebSocket-Extensions": ""}, "json"),
		{name: "handshake_one_byte_at_a_time_upgrades", run: rfcRunByteAtATime, want: "101, then replies"},
		{name: "frames_pipelined_with_handshake_answered", run: rfcRunPipelinedHandshake, want: "101, pong, app pong"},
		{name: "handshake_never_completed_tcp_closed", opts: hsTimeout, run: rfcRunHandshakeStalled, want: "TCP closed within the handshake timeout"},
		{name: "handshake_nothing_sent_tcp_closed", opts: hsTimeout, run: rfcRunHandshakeSilent, want: "TCP closed within the handshake timeout"},
		{name: "handshake_trickled_slowloris_tcp_closed", opts: hsTimeout, run: rfcRunHandshakeTrickle, want: "TCP closed within the handshake timeout"},

		// ---- framing (RFC 6455 5.1-5.4)
		rfcProtoErr("unmasked_text_frame_is_1002", rfcF{fin: true, op: rfcOpText, payload: []byte(`{"type":"ping","id":"u"}`), unmasked: true}),
		rfcProtoErr("unmasked_ping_frame_is_1002", rfcF{fin: true, op: rfcOpPing, payload: []byte("u"), unmasked: true}),
		rfcProtoErr("rsv1_is_1002", rfcF{fin: true, rsv: rfcRSV1, op: rfcOpText, payload: []byte(`{"type":"ping","id":"r"}`)}),
		rfcProtoErr("rsv2_is_1002", rfcF{fin: true, rsv: rfcRSV2, op: rfcOpText, payload: []byte(`{"type":"ping","id":"r"}`)}),
		rfcProtoErr("rsv3_is_1002", rfcF{fin: true, rsv: rfcRSV3, op: rfcOpText, payload: []byte(`{"type":"ping","id":"r"}`)}),
		rfcProtoErr("rsv1_on_ping_is_1002", rfcF{fin: true, rsv: rfcRSV1, op: rfcOpPing, payload: []byte("r")}),
		rfcReservedOp(0x3), rfcReservedOp(0x4), rfcReservedOp(0x5), rfcReservedOp(0x6), rfcReservedOp(0x7),
		rfcReservedOp(0xB), rfcReservedOp(0xC), rfcReservedOp(0xD), rfcReservedOp(0xE), rfcReservedOp(0xF),
		rfcProtoErr("continuation_without_start_is_1002", rfcCont(true, `{"type":"ping"}`)),
		rfcProtoErr("text_while_fragmented_message_open_is_1002", rfcTextFrag(`{"type":`), rfcText(`{"type":"ping"}`)),
		rfcProtoErr("ping_payload_126_is_1002", rfcPing(strings.Repeat("p", 126))),
		rfcProtoErr("close_payload_126_is_1002", rfcClose(1000, strings.Repeat("c", 124))),
		rfcProtoErr("fragmented_ping_is_1002", rfcFrame(false, rfcOpPing, []byte("a")), rfcCont(true, "b")),
		rfcProtoErr("fragmented_pong_is_1002", rfcFrame(false, rfcOpPong, []byte("a")), rfcCont(true, "b")),
		{
			name:  "length_msb_set_is_1002_or_1009",
			steps: []rfcStep{{send: []rfcF{{fin: true, op: rfcOpText, hdrOnly: true, length: 1 << 63}}}},
			close: []int{1002, 1009},
		},
		{
			name:  "ping_answered_with_pong_echoing_payload",
			steps: []rfcStep{{send: []rfcF{rfcPing("hello \x00\xff bytes")}, want: []rfcWant{rfcWantPong("hello \x00\xff bytes")}}},
		},
		{
			name:  "empty_ping_and_125_byte_ping_answered",
			steps: []rfcStep{{send: []rfcF{rfcPing(""), rfcPing(strings.Repeat("q", 125))}, want: []rfcWant{rfcWantPong(""), rfcWantPong(strings.Repeat("q", 125))}}},
		},
		{
			name:  "unsolicited_pong_ignored",
			steps: []rfcStep{{send: []rfcF{rfcPong("unsolicited"), rfcText(`{"type":"ping","id":"after-pong"}`)}, want: []rfcWant{rfcWantAppPong("after-pong")}}},
		},
		interleaved,
		{
			name:  "fragmented_message_reassembled",
			steps: []rfcStep{{send: []rfcF{rfcTextFrag(`{"type":`), rfcCont(false, ``), rfcCont(false, `"ping",`), rfcCont(true, `"id":"frag"}`)}, want: []rfcWant{rfcWantAppPong("frag")}}},
		},
		{
			name:  "length_16bit_accepted",
			steps: []rfcStep{{send: []rfcF{rfcText(`{"type":"ping","id":"` + long + `"}`)}, want: []rfcWant{rfcWantAppPong(long)}}},
		},
		{
			name:  "length_64bit_accepted",
			opts:  []firetower.Option{firetower.WithMaxMessageSize(1 << 20)},
			steps: []rfcStep{{send: []rfcF{rfcText(`{"type":"ping","id":"` + huge + `"}`)}, want: []rfcWant{rfcWantAppPong(huge)}}},
		},
		{
			name: "frame_one_byte_at_a_time_answered",
			run:  rfcRunFrameByteAtATime,
			want: "pong for a text frame written one byte per write",
		},
		{
			name:  "invalid_json_is_error_bad_request_and_stays_open",
			steps: []rfcStep{{send: []rfcF{rfcText(`{"type":`), rfcText(`{"type":"ping","id":"still"}`)}, want: []rfcWant{rfcWantJSON(`{"type":"error","code":"bad_request"}`), rfcWantAppPong("still")}}},
		},
		{
			name:  "binary_on_json_connection_is_1003",
			steps: []rfcStep{{send: []rfcF{rfcBinary([]byte(`{"type":"ping","id":"b"}`))}}},
			close: []int{1003},
		},

		// ---- size limits (1009)
		{
			name:  "message_of_exactly_the_limit_accepted",
			opts:  small,
			steps: []rfcStep{{send: []rfcF{rfcText(rfcPingJSON(1024))}, want: []rfcWant{rfcWantAppPong(strings.Repeat("x", 1024-len(`{"type":"ping","id":""}`)))}}},
		},
		{
			name:  "single_frame_over_limit_is_1009",
			opts:  small,
			steps: []rfcStep{{send: []rfcF{rfcText(rfcPingJSON(2000))}}},
			close: []int{1009},
		},
		{
			name:  "declared_length_2_pow_62_is_1009_without_payload",
			opts:  small,
			steps: []rfcStep{{send: []rfcF{{fin: true, op: rfcOpText, hdrOnly: true, length: 1 << 62}}}},
			close: []int{1009},
		},
		{
			name:  "fragmented_message_over_limit_is_1009",
			opts:  small,
			steps: []rfcStep{{send: []rfcF{rfcTextFrag(strings.Repeat("a", 600)), rfcCont(false, strings.Repeat("b", 600)), rfcCont(true, strings.Repeat("c", 600))}}},
			close: []int{1009},
		},
		{
			name:  "open_fragmented_message_over_limit_is_1009_before_fin",
			opts:  small,
			steps: []rfcStep{{send: []rfcF{rfcTextFrag(strings.Repeat("a", 600)), rfcCont(false, strings.Repeat("b", 600))}}},
			close: []int{1009},
		},

		// ---- UTF-8 (1007)
		rfcUTF8Case("utf8_invalid_byte_ff_is_1007", rfcText(`{"type":"ping","id":"`+"\xff"+`"}`)),
		rfcUTF8Case("utf8_surrogate_is_1007", rfcText(`{"type":"ping","id":"`+"\xed\xa0\x80"+`"}`)),
		rfcUTF8Case("utf8_overlong_is_1007", rfcText(`{"type":"ping","id":"`+"\xc0\xaf"+`"}`)),
		rfcUTF8Case("utf8_truncated_at_end_is_1007", rfcText(`{"type":"ping","id":"x"}`+"\xce")),
		rfcUTF8Case("utf8_invalid_split_across_fragments_is_1007",
			rfcTextFrag(`{"type":"ping","id":"`+"\xed"), rfcCont(true, "\xa0\x80"+`"}`)),
		rfcUTF8Case("utf8_invalid_in_continuation_is_1007",
			rfcTextFrag(`{"type":"ping",`), rfcCont(true, `"id":"`+"\xce\xff"+`"}`)),
		validSplit,

		// ---- closing handshake (RFC 6455 5.5.1, 7.4)
		{
			name:  "close_empty_echoed",
			steps: []rfcStep{{send: []rfcF{rfcClose(-1, "")}}},
			close: []int{1000, rfcNoStatus},
		},
		rfcCloseEcho(1000), rfcCloseEcho(1001), rfcCloseEcho(3000), rfcCloseEcho(4999),
		rfcCloseEcho(1012), rfcCloseEcho(1013), rfcCloseEcho(1014),
		{
			name:  "close_1000_with_reason_echoed",
			steps: []rfcStep{{send: []rfcF{rfcClose(1000, "bye κόσμε")}}},
			close: []int{1000},
		},
		rfcCloseInvalid(0), rfcCloseInvalid(999), rfcCloseInvalid(1004), rfcCloseInvalid(1005),
		rfcCloseInvalid(1006), rfcCloseInvalid(1015), rfcCloseInvalid(1016), rfcCloseInvalid(2999),
		rfcCloseInvalid(5000),
		rfcProtoErr("close_1_byte_payload_is_1002", rfcFrame(true, rfcOpClose, []byte{0x03})),
		{
			name:  "close_reason_invalid_utf8_is_1007",
			steps: []rfcStep{{send: []rfcF{rfcClose(1000, "\xff\xfe")}}},
			close: []int{1007},
		},

		// ---- throughput, keepalive, shutdown
		{name: "pipelined_200_frames_replies_in_order",
			run: rfcRunPipelined200, want: "an ack or pong for every id, in order, and every delivery"},
		{name: "idle_client_pinged_then_closed_1001", opts: keepalive, run: rfcRunIdle, want: "server pings, then close 1001 (or TCP close)"},
		{name: "client_answering_pings_stays_open", opts: keepalive, run: rfcRunAnswersPings, want: "open after many ping rounds past the idle timeout"},
		{name: "shutdown_closes_every_client_1001", run: rfcRunShutdown, want: "close 1001 on every connection, then TCP close"},
	}
}

func rfcUTF8Case(name string, fs ...rfcF) rfcCase {
	return rfcCase{name: name, steps: []rfcStep{{send: fs}}, close: []int{1007}}
}

// rfcTimeBound are the cases that wait out a server timeout (the handshake
// timeout, the ping interval): seconds each. Unless FIRETOWER_FULL_TESTS=1
// (harness_test.go) they run on the native variant only; every other case
// runs on every variant either way.
func rfcTimeBound(name string) bool {
	switch name {
	case "handshake_trickled_slowloris_tcp_closed",
		"handshake_nothing_sent_tcp_closed",
		"handshake_never_completed_tcp_closed",
		"client_answering_pings_stays_open",
		"idle_client_pinged_then_closed_1001":
		return true
	}
	return false
}

func TestRFC6455(t *testing.T) {
	cases := rfcCases()
	if len(cases) < 45 {
		t.Fatalf("only %d cases", len(cases))
	}
	seen := map[string]bool{}
	bound := 0
	for _, tc := range cases {
		if rfcTimeBound(tc.name) {
			bound++
		}
	}
	if bound != 5 {
		t.Fatalf("rfcTimeBound names %d cases, want 5 (a case was renamed?)", bound)
	}
	for _, tc := range cases {
		if seen[tc.name] {
			t.Fatalf("duplicate case %s", tc.name)
		}
		seen[tc.name] = true
	}
	// One table, one body, every listener variant.
	wsEach(t, func(t *testing.T, v wsVariant) {
		for _, tc := range cases {
			tc.v = v
			t.Run(tc.name, func(t *testing.T) {
				if v.name != "native" && rfcTimeBound(tc.name) && !fullTests() {
					t.Skip("time-bound case: runs on the native variant only, on every variant with " + fullTestsEnv + "=1")
				}
				if v.deflate && (tc.name == "permessage_deflate_declined_and_connection_works" || tc.name == "rsv1_is_1002") {
					// RSV1 and the extension are the compressed variant's own
					// rules: TestCompressionNegotiation, TestCompressionProtocolErrors
					t.Skip("permessage-deflate is negotiated on this variant")
				}
				switch {
				case tc.run != nil:
					tc.run(t, tc)
				case tc.hs != nil:
					rfcRunHandshake(t, tc)
				default:
					rfcRunFrames(t, tc)
				}
			})
		}
	})
}

func rfcRunHandshake(t *testing.T, tc rfcCase) {
	s := rfcStartServer(t, tc.v, tc.opts...)
	c := rfcDial(t, s)
	r := s.newReq()
	tc.hs(r)
	if err := c.handshake(r); err != nil {
		t.Fatal(err)
	}
	if c.resp.StatusCode != tc.status {
		t.Fatalf("got %s (body %q), want %d", c.resp.Status, c.body, tc.status)
	}
	for k, want := range tc.header {
		got, present := c.resp.Header[http.CanonicalHeaderKey(k)]
		switch {
		case want == "" && present:
			t.Errorf("response has %s: %q, want no such header", k, got)
		case want != "" && k == "Allow" && !rfcHasToken(got, want):
			t.Errorf("response Allow = %q, want it to list %s (RFC 9110 15.5.6: a 405 MUST carry Allow)", got, want)
		case want != "" && k != "Allow" && (!present || strings.Join(got, ", ") != want):
			t.Errorf("response %s = %q, want %q", k, got, want)
		}
	}
	if tc.reason && len(bytes.TrimSpace(c.body)) == 0 {
		t.Errorf("%s has an empty body, want a reason for the refusal", c.resp.Status)
	}
	if tc.status == http.StatusSwitchingProtocols {
		c.check101()
		c.alive(tc.alive)
	}
}

func rfcRunFrames(t *testing.T, tc rfcCase) {
	s := rfcStartServer(t, tc.v, tc.opts...)
	c := rfcUpgrade(t, s, nil)
	sentClose := false
	for _, st := range tc.steps {
		for _, f := range st.send {
			sentClose = sentClose || f.op == rfcOpClose
		}
		c.send(st.send...)
		c.expect(st.want...)
	}
	if len(tc.close) > 0 {
		c.expectClose(tc.close, sentClose)
		return
	}
	// no close expected: the connection must still work
	c.alive("json")
}

// ---------------------------------------------------------------------------
// custom cases

func rfcRunOversizedHeader(t *testing.T, tc rfcCase) {
	s := rfcStartServer(t, tc.v, tc.opts...)
	c := rfcDial(t, s)
	r := s.newReq()
	for i := range 32 {
		r.add(fmt.Sprintf("X-Filler-%d", i), strings.Repeat("f", 8<<10))
	}
	c.req = r
	// the server may refuse before reading it all: write concurrently
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.conn.SetWriteDeadline(time.Now().Add(rfcWait))
		c.conn.Write(r.bytes())
	}()
	err := c.readResponse()
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if c.resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("256 KiB of headers: got %s, want 431", c.resp.Status)
	}
}

func rfcRunByteAtATime(t *testing.T, tc rfcCase) {
	s := rfcStartServer(t, tc.v, tc.opts...)
	c := rfcDial(t, s)
	r := s.newReq()
	c.req = r
	for _, b := range r.bytes() {
		c.write([]byte{b})
		time.Sleep(100 * time.Microsecond) // pacing, so the server sees partial reads
	}
	if err := c.readResponse(); err != nil {
		t.Fatal(err)
	}
	c.check101()
	c.alive("json")
}

func rfcRunFrameByteAtATime(t *testing.T, tc rfcCase) {
	s := rfcStartServer(t, tc.v, tc.opts...)
	c := rfcUpgrade(t, s, nil)
	data := rfcJoin(rfcText(`{"type":"ping","id":"slow"}`), rfcPing("slow"))
	for i, b := range data {
		c.conn.SetWriteDeadline(time.Now().Add(rfcWait))
		if _, err := c.conn.Write([]byte{b}); err != nil {
			// the server gave up on the connection: show what it sent
			f, rerr := c.next(rfcWait)
			t.Fatalf("write of byte %d/%d: %v; the server had sent: %v %v", i+1, len(data), err, f, rerr)
		}
		time.Sleep(100 * time.Microsecond) // pacing, so the server sees partial reads
	}
	// the ping's pong may overtake the answer to the text message (which a
	// hook worker may make): RFC 6455 orders data frames, not control frames
	c.expectAnyOrder(rfcWantAppPong("slow"), rfcWantPong("slow"))
}

func rfcRunPipelinedHandshake(t *testing.T, tc rfcCase) {
	s := rfcStartServer(t, tc.v, tc.opts...)
	c := rfcDial(t, s)
	r := s.newReq()
	c.req = r
	c.write(append(r.bytes(), rfcJoin(rfcPing("pipelined"), rfcText(`{"type":"ping","id":"pipelined"}`))...))
	if err := c.readResponse(); err != nil {
		t.Fatal(err)
	}
	c.check101()
	c.expect(rfcWantPong("pipelined"), rfcWantAppPong("pipelined"))
}

// rfcExpectTCPClose waits for the server to close a connection that never upgraded.
func rfcExpectTCPClose(t *testing.T, c *rfcClient, start time.Time) {
	t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(c.br)
	if bytes.Contains(b, []byte(" 101 ")) {
		t.Fatalf("server upgraded an incomplete handshake: %q", b)
	}
	if err != nil && !rfcIsClosed(err) {
		if rfcIsTimeout(err) {
			t.Fatalf("connection still open %v after an incomplete handshake (handshake timeout 300ms); read %q", time.Since(start).Round(time.Millisecond), b)
		}
		t.Fatalf("read: %v", err)
	}
	t.Logf("closed after %v (got %q)", time.Since(start).Round(time.Millisecond), b)
}

func rfcRunHandshakeStalled(t *testing.T, tc rfcCase) {
	s := rfcStartServer(t, tc.v, tc.opts...)
	c := rfcDial(t, s)
	start := time.Now()
	c.write([]byte("GET /ws HTTP/1.1\r\nHost: " + s.addr + "\r\nUpgrade: websocket\r\n"))
	rfcExpectTCPClose(t, c, start)
}

func rfcRunHandshakeSilent(t *testing.T, tc rfcCase) {
	s := rfcStartServer(t, tc.v, tc.opts...)
	c := rfcDial(t, s)
	rfcExpectTCPClose(t, c, time.Now())
}

func rfcRunHandshakeTrickle(t *testing.T, tc rfcCase) {
	s := rfcStartServer(t, tc.v, tc.opts...)
	c := rfcDial(t, s)
	req := s.newReq().bytes()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond) // 150+ bytes: never done within 300ms
		defer tick.Stop()
		for _, b := range req {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			c.conn.SetWriteDeadline(time.Now().Add(rfcWait))
			if _, err := c.conn.Write([]byte{b}); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-done }()
	rfcExpectTCPClose(t, c, time.Now())
}

func rfcRunPipelined200(t *testing.T, tc rfcCase) {
	s := rfcStartServer(t, tc.v, tc.opts...)
	c := rfcUpgrade(t, s, nil)
	const n = 200
	kinds := make([]string, n)
	var frames []rfcF
	var published []int
	for i := range n {
		var msg string
		switch {
		case i == 0:
			kinds[i] = "ack"
			msg = `{"type":"subscribe","topic":"rfc.pipe","id":0}`
		case i%3 == 0:
			kinds[i] = "pong"
			msg = fmt.Sprintf(`{"type":"ping","id":%d}`, i)
		case i%3 == 1:
			kinds[i] = "ack"
			msg = fmt.Sprintf(`{"type":"publish","topic":"rfc.pipe","data":{"n":%d},"id":%d}`, i, i)
			published = append(published, i)
		default:
			kinds[i] = "ack"
			msg = fmt.Sprintf(`{"type":"subscribe","topic":"rfc.pipe.%d","id":%d}`, i, i)
		}
		frames = append(frames, rfcText(msg))
	}
	c.send(frames...)

	nextID, nextPub := 0, 0
	deadline := time.Now().Add(15 * time.Second)
	for nextID < n || nextPub < len(published) {
		f, err := c.next(time.Until(deadline))
		if err != nil {
			t.Fatalf("after %d/%d replies and %d/%d deliveries: %s", nextID, n, nextPub, len(published), c.describeErr(err))
		}
		if f.op != rfcOpText {
			t.Fatalf("after %d replies: got %v, want text", nextID, f)
		}
		var m struct {
			Type string          `json:"type"`
			ID   *int            `json:"id"`
			Data json.RawMessage `json:"data"`
			Code string          `json:"code"`
		}
		if err := json.Unmarshal(f.payload, &m); err != nil {
			t.Fatalf("reply %q: %v", f.payload, err)
		}
		if m.Type == "publish" {
			if nextPub >= len(published) {
				t.Fatalf("unexpected delivery %q", f.payload)
			}
			want := fmt.Sprintf(`{"n":%d}`, published[nextPub])
			if string(m.Data) != want {
				t.Fatalf("delivery %d: got %q, want data %s (in publish order)", nextPub, f.payload, want)
			}
			nextPub++
			continue
		}
		if m.ID == nil {
			t.Fatalf("after %d replies: got %q without an id", nextID, f.payload)
		}
		if *m.ID != nextID || m.Type != kinds[nextID] {
			t.Fatalf("reply %d: got %q, want type %q id %d (replies must come in request order)", nextID, f.payload, kinds[nextID], nextID)
		}
		nextID++
	}
	c.alive("json")
}

func rfcRunIdle(t *testing.T, tc rfcCase) {
	s := rfcStartServer(t, tc.v, tc.opts...)
	c := rfcUpgrade(t, s, nil)
	start := time.Now()
	pings := 0
	for {
		f, err := c.read(rfcWait) // pings are not answered: the client is idle
		if err != nil {
			if rfcIsClosed(err) {
				t.Logf("TCP closed (1006) after %v and %d pings", time.Since(start).Round(time.Millisecond), pings)
				break
			}
			t.Fatalf("idle client after %v and %d pings: %s, want pings then close 1001", time.Since(start).Round(time.Millisecond), pings, c.describeErr(err))
		}
		if f.op == rfcOpPing {
			pings++
			continue
		}
		if f.op != rfcOpClose {
			t.Fatalf("idle client got %v", f)
		}
		code, reason, _ := rfcParseClose(f.payload)
		if code != 1001 {
			t.Errorf("idle client closed with %d %q, want 1001", code, reason)
		}
		t.Logf("close %d after %v and %d pings", code, time.Since(start).Round(time.Millisecond), pings)
		c.conn.SetWriteDeadline(time.Now().Add(rfcWait))
		c.conn.Write(rfcClose(code, "").bytes())
		c.expectEOF("after the close handshake")
		break
	}
	if pings == 0 {
		t.Errorf("no websocket ping before the idle close (ping interval 100ms, idle timeout 600ms)")
	}
	if el := time.Since(start); el < 450*time.Millisecond {
		t.Errorf("closed after %v, before the idle timeout of 600ms", el)
	}
}

func rfcRunAnswersPings(t *testing.T, tc rfcCase) {
	const idle = 600 * time.Millisecond
	s := rfcStartServer(t, tc.v, tc.opts...)
	c := rfcUpgrade(t, s, nil)
	start := time.Now()
	rounds := 0
	for rounds < 5 || time.Since(start) < 3*idle {
		if rounds > 200 {
			t.Fatalf("%d pings in %v: pinging far faster than the 100ms interval", rounds, time.Since(start))
		}
		f, err := c.read(rfcWait)
		if err != nil {
			t.Fatalf("after %d ping rounds (%v): %s", rounds, time.Since(start).Round(time.Millisecond), c.describeErr(err))
		}
		if f.op != rfcOpPing {
			t.Fatalf("after %d ping rounds (%v): got %v, want only pings", rounds, time.Since(start).Round(time.Millisecond), f)
		}
		c.send(rfcFrame(true, rfcOpPong, f.payload))
		rounds++
	}
	t.Logf("%d ping rounds in %v", rounds, time.Since(start).Round(time.Millisecond))
	c.send(rfcText(`{"type":"ping","id":"still-open"}`))
	c.expect(rfcWantAppPong("still-open"))
}

func rfcRunShutdown(t *testing.T, tc rfcCase) {
	s := rfcStartServer(t, tc.v, tc.opts...)
	clients := make([]*rfcClient, 5)
	for i := range clients {
		c := rfcUpgrade(t, s, nil)
		c.send(rfcText(fmt.Sprintf(`{"type":"subscribe","topic":"rfc.shutdown","id":%d}`, i)))
		c.expect(rfcWantJSON(fmt.Sprintf(`{"type":"ack","id":%d}`, i)))
		clients[i] = c
	}
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		errc <- s.shutdown(ctx)
	}()
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(rfcWait)
			for {
				c.conn.SetReadDeadline(deadline)
				f, err := c.read(time.Until(deadline))
				if err != nil {
					t.Errorf("client %d: want close 1001 on shutdown, got %s", i, c.describeErr(err))
					return
				}
				if f.op != rfcOpClose {
					continue
				}
				if code, reason, _ := rfcParseClose(f.payload); code != 1001 {
					t.Errorf("client %d: shutdown closed with %d %q, want 1001", i, code, reason)
				}
				c.conn.SetWriteDeadline(time.Now().Add(rfcWait))
				c.conn.Write(rfcClose(1001, "").bytes())
				c.expectEOF("after the close handshake")
				return
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("Shutdown did not return")
	}
	// no longer accepting (a mounted Tower's HTTP server still accepts: it
	// must refuse the upgrade)
	var conn net.Conn
	var err error
	if tc.v.mount == wsNative {
		conn, err = net.DialTimeout("tcp", s.addr, rfcWait)
	} else {
		conn, _ = tc.v.dial(t, s.wsServer)
	}
	if err == nil {
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(rfcWait))
		conn.Write(s.newReq().bytes())
		b, err := io.ReadAll(conn)
		if bytes.Contains(b, []byte(" 101 ")) {
			t.Errorf("server upgraded a new connection after Shutdown")
		} else if rfcIsTimeout(err) {
			t.Errorf("connection after Shutdown accepted and left open")
		}
	}
}
