package firetower_test

// Helpers for running raw-frame tests over a connection that negotiated
// permessage-deflate (RFC 7692). They let the RFC 6455 and protocol tests
// get a "compressed" variant: czDial upgrades a raw TCP connection with a
// permessage-deflate offer and returns a reader on which every compressed
// server message reads as the plain frame it stands for, so a test that
// parses server frames byte by byte reads them unchanged; czFrame builds
// compressed client frames.
//
// To run the raw-frame cases of rfc6455_test.go compressed, make their
// client from czDial's connection and reader (rfcClient{t: t, conn: nc, br:
// br}) instead of rfcUpgrade; the compressed variant's 101 carries
// Sec-WebSocket-Extensions, which check101 refuses for the plain ones. The
// client may send its frames plain (a compressing connection takes both)
// or compressed with czFrame / czFragments.
//
// Tried before the merge by patching rfc6455_test.go (WithCompression(1, 1)
// in rfcStartServer; rfcUpgrade offering "permessage-deflate;
// client_max_window_bits", wrapping c.br with czInflating, check101 not
// refusing the extension): 97 of TestRFC6455's cases passed, and two differed
// as they must on a compressed connection: permessage_deflate_declined (it
// is accepted) and rsv1_is_1002 (RSV1 is then allowed: its payload, not
// deflate data, fails with 1007). protocol_test.go with WithCompression(1,
// 1) in ptServer and EnableCompression plus EnableWriteCompression(true) in
// ptDialRaw passed whole.
//
// Helpers here are prefixed "cz" so they cannot clash with other test files.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/flate"
)

// czWait bounds every wait of the compression tests (a deadline, never a
// synchronisation).
const czWait = 10 * time.Second

// czOffer is the permessage-deflate offer of czDial, as browsers send it.
const czOffer = "permessage-deflate; client_max_window_bits"

// czDial opens a TCP connection to addr and upgrades it at path offering
// extensions (czOffer when ""), with the extra request headers in h. It
// checks the 101 and that the server accepted permessage-deflate with
// server_no_context_takeover, and returns the connection and a reader of
// the server's frames with compressed messages inflated (czInflating). The
// connection is closed at the end of the test.
func czDial(t testing.TB, addr, path, extensions string, h http.Header) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, resp, br, err := czUpgrade(addr, path, extensions, h)
	if err != nil {
		t.Fatal(err)
	}
	zr := czInflating(br)
	// Closing both ends the inflating goroutine, whether it waits on the
	// socket or on the test.
	t.Cleanup(func() { nc.Close(); zr.Close() })
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade offering %q: %s, want 101", extensions, resp.Status)
	}
	ext := resp.Header.Get("Sec-WebSocket-Extensions")
	if !czHasParam(ext, "permessage-deflate") || !czHasParam(ext, "server_no_context_takeover") {
		t.Fatalf("Sec-WebSocket-Extensions = %q, want permessage-deflate with server_no_context_takeover", ext)
	}
	return nc, bufio.NewReaderSize(zr, 64<<10)
}

// czUpgrade sends an upgrade request offering extensions (czOffer when "";
// "-" for no offer) and reads the response. The returned reader holds what
// follows the response (raw server frames).
func czUpgrade(addr, path, extensions string, h http.Header) (net.Conn, *http.Response, *bufio.Reader, error) {
	nc, err := net.DialTimeout("tcp", addr, czWait)
	if err != nil {
		return nil, nil, nil, err
	}
	var key [16]byte
	_, _ = rand.Read(key[:])
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", path, addr)
	fmt.Fprintf(&b, "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n", base64.StdEncoding.EncodeToString(key[:]))
	switch extensions {
	case "":
		fmt.Fprintf(&b, "Sec-WebSocket-Extensions: %s\r\n", czOffer)
	case "-":
	default:
		fmt.Fprintf(&b, "Sec-WebSocket-Extensions: %s\r\n", extensions)
	}
	for k, vs := range h {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	_ = nc.SetDeadline(time.Now().Add(czWait))
	if _, err := io.WriteString(nc, b.String()); err != nil {
		nc.Close()
		return nil, nil, nil, err
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		nc.Close()
		return nil, nil, nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return nc, resp, br, nil
}

// czHasParam reports whether an extension header value holds name as a
// permessage-deflate token or parameter.
func czHasParam(ext, name string) bool {
	for _, p := range strings.FieldsFunc(ext, func(r rune) bool { return r == ';' || r == ',' }) {
		if strings.EqualFold(strings.TrimSpace(p), name) {
			return true
		}
	}
	return false
}

// czInflating returns a reader of the server frames read from r in which a
// compressed message (RSV1 on its first frame) reads as one plain final
// frame of the same opcode with the inflated payload. Control frames that
// arrive between the fragments of a compressed message come out before it.
// A frame that cannot be inflated comes out as it is (RSV1 still set), so a
// test that checks RSV bits sees it. Its goroutine ends when r fails (the
// connection closed) or the returned reader is closed.
func czInflating(r io.Reader) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(czTranslate(bufio.NewReader(r), pw))
	}()
	return pr
}

// czServerFrame is a frame as the server sent it.
type czServerFrame struct {
	fin     bool
	rsv     byte // the three RSV bits, RSV1 highest (0b100)
	op      byte
	head    []byte
	payload []byte
}

// czReadServerFrame reads one unmasked server frame (a masked one is read
// as it is, for the caller to judge).
func czReadServerFrame(br *bufio.Reader) (czServerFrame, error) {
	var f czServerFrame
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return f, err
	}
	f.fin, f.rsv, f.op = h[0]&0x80 != 0, (h[0]>>4)&7, h[0]&0x0f
	f.head = append(f.head, h[:]...)
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var e [2]byte
		if _, err := io.ReadFull(br, e[:]); err != nil {
			return f, err
		}
		f.head = append(f.head, e[:]...)
		n = uint64(binary.BigEndian.Uint16(e[:]))
	case 127:
		var e [8]byte
		if _, err := io.ReadFull(br, e[:]); err != nil {
			return f, err
		}
		f.head = append(f.head, e[:]...)
		n = binary.BigEndian.Uint64(e[:])
	}
	if h[1]&0x80 != 0 {
		var k [4]byte
		if _, err := io.ReadFull(br, k[:]); err != nil {
			return f, err
		}
		f.head = append(f.head, k[:]...)
	}
	if n > 16<<20 {
		return f, fmt.Errorf("server frame declares %d bytes", n)
	}
	f.payload = make([]byte, n)
	_, err := io.ReadFull(br, f.payload)
	return f, err
}

func czTranslate(br *bufio.Reader, w io.Writer) error {
	var msgOp byte
	var z []byte // the compressed message being gathered
	gathering := false
	for {
		f, err := czReadServerFrame(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return io.EOF
			}
			return err
		}
		switch {
		case f.op >= 8 || (!gathering && f.rsv&4 == 0):
			// control frames and plain messages pass unchanged
			if _, err := w.Write(append(f.head, f.payload...)); err != nil {
				return err
			}
			continue
		case !gathering:
			gathering, msgOp, z = true, f.op, append(z[:0], f.payload...)
		default:
			z = append(z, f.payload...)
		}
		if !f.fin {
			continue
		}
		gathering = false
		plain, err := czInflate(z)
		if err != nil {
			// not inflatable: hand on the compressed message as it is
			if _, err := w.Write(czAppendFrame(nil, true, 4, msgOp, z, false)); err != nil {
				return err
			}
			continue
		}
		if _, err := w.Write(czAppendFrame(nil, true, 0, msgOp, plain, false)); err != nil {
			return err
		}
	}
}

// czInflate inflates one permessage-deflate message payload.
func czInflate(z []byte) ([]byte, error) {
	r := flate.NewReader(io.MultiReader(bytes.NewReader(z), bytes.NewReader([]byte{0, 0, 0xff, 0xff})))
	defer r.Close()
	var out bytes.Buffer
	_, err := io.Copy(&out, r)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, err
	}
	return out.Bytes(), nil
}

// czDeflate compresses p as one permessage-deflate message payload (no
// context taken over).
func czDeflate(p []byte) []byte {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestSpeed)
	_, _ = w.Write(p)
	_ = w.Flush()
	out := b.Bytes()
	return out[:len(out)-4] // without 00 00 ff ff
}

// czAppendFrame appends a frame: rsv holds the three RSV bits (0b100 is
// RSV1), masked frames are masked with a random key (client frames).
func czAppendFrame(dst []byte, fin bool, rsv, op byte, payload []byte, masked bool) []byte {
	b0 := op&0x0f | (rsv&7)<<4
	if fin {
		b0 |= 0x80
	}
	var m byte
	if masked {
		m = 0x80
	}
	n := len(payload)
	switch {
	case n <= 125:
		dst = append(dst, b0, m|byte(n))
	case n <= 0xffff:
		dst = append(dst, b0, m|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, b0, m|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	if !masked {
		return append(dst, payload...)
	}
	var k [4]byte
	_, _ = rand.Read(k[:])
	dst = append(dst, k[:]...)
	for i, c := range payload {
		dst = append(dst, c^k[i&3])
	}
	return dst
}

// czFrame is a masked client frame carrying a whole compressed message of
// opcode op (RSV1 set).
func czFrame(op byte, msg []byte) []byte {
	return czAppendFrame(nil, true, 4, op, czDeflate(msg), true)
}

// czFragments is a compressed message of opcode op sent as n frames: RSV1
// on the first only, as RFC 7692 section 6.1 says.
func czFragments(op byte, msg []byte, n int) []byte {
	z := czDeflate(msg)
	var out []byte
	step := (len(z) + n - 1) / n
	for i := 0; i < n; i++ {
		lo, hi := min(i*step, len(z)), min((i+1)*step, len(z))
		fop, rsv := byte(0), byte(0)
		if i == 0 {
			fop, rsv = op, 4
		}
		out = czAppendFrame(out, i == n-1, rsv, fop, z[lo:hi], true)
	}
	return out
}
