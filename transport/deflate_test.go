package transport

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/gobwas/ws"
	"github.com/klauspost/compress/flate"

	"github.com/firetower-go/firetower/internal/wsproto"
)

// deflateRaw compresses p as a permessage-deflate payload.
func deflateRaw(t *testing.T, p []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestCompression)
	_, _ = w.Write(p)
	_ = w.Flush()
	return bytes.TrimSuffix(b.Bytes(), []byte{0, 0, 0xff, 0xff})
}

func inflateRaw(t *testing.T, z []byte) []byte {
	t.Helper()
	r := flate.NewReader(io.MultiReader(bytes.NewReader(z), bytes.NewReader([]byte{0, 0, 0xff, 0xff})))
	out, err := io.ReadAll(r)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("inflate: %v", err)
	}
	return out
}

// TestInflateStopsAtLimit: a zip bomb fails once the output passes the
// limit, long before its input is consumed, and the output buffer never
// grows past limit+1.
func TestInflateStopsAtLimit(t *testing.T) {
	s := New(Config{Compression: Compression{Enabled: true}}, nil)
	l := &loop{s: s}
	const limit = 64 << 10
	bomb := deflateRaw(t, bytes.Repeat([]byte("firetower "), 10<<20)) // 100 MiB
	_, err := l.inflate(bomb, limit)
	if !errors.Is(err, errInflateLimit) {
		t.Fatalf("inflate of a 100 MiB bomb: %v, want errInflateLimit", err)
	}
	// the reader was reset after the failure; what it consumed is gone,
	// so check with a fresh run how far a limit-sized read gets.
	in := &tailReader{p: bomb}
	r := flate.NewReader(in)
	buf := make([]byte, limit+1)
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatal(err)
	}
	if in.off >= len(bomb)/2 {
		t.Fatalf("reading %d bytes consumed %d of %d compressed bytes", limit+1, in.off, len(bomb))
	}

	// messages at the limit pass, one byte over fails
	for _, n := range []int{0, 1, limit - 1, limit} {
		msg := bytes.Repeat([]byte{'z'}, n)
		out, err := l.inflate(deflateRaw(t, msg), limit)
		if err != nil || !bytes.Equal(out, msg) {
			t.Fatalf("%d bytes: %d bytes out, %v", n, len(out), err)
		}
		s.PutBuffer(out)
	}
	if _, err := l.inflate(deflateRaw(t, make([]byte, limit+1)), limit); !errors.Is(err, errInflateLimit) {
		t.Fatalf("limit+1 bytes: %v, want errInflateLimit", err)
	}
	if _, err := l.inflate([]byte{0xff, 0xfe, 0x00, 0x12}, limit); err == nil || errors.Is(err, errInflateLimit) {
		t.Fatalf("garbage: %v, want a flate error", err)
	}
	// the loop's inflater is reused after a failure
	out, err := l.inflate(deflateRaw(t, []byte("again")), limit)
	if err != nil || string(out) != "again" {
		t.Fatalf("after a failure: %q, %v", out, err)
	}
}

// TestFrameCompressedOnce: a frame is compressed once, whichever loops ask,
// and every caller gets the same bytes; frames under MinSize, control
// frames and incompressible frames stay plain.
func TestFrameCompressedOnce(t *testing.T) {
	s := New(Config{Compression: Compression{Enabled: true, MinSize: 100}}, nil)
	loops := []*loop{{s: s}, {s: s}, {s: s}, {s: s}}
	msg := bytes.Repeat([]byte(`{"symbol":"EURUSD","bid":1.0812},`), 60)
	f := s.NewMessageFrame(ws.OpText, msg)
	var wg sync.WaitGroup
	got := make([][]byte, len(loops))
	for i, l := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = f.compressed(l)
		}()
	}
	wg.Wait()
	var n uint64
	for i, l := range loops {
		n += l.zMsgs
		if &got[i][0] != &got[0][0] {
			t.Fatal("loops got different compressed buffers")
		}
	}
	if n != 1 {
		t.Fatalf("compressed %d times, want once", n)
	}
	z := got[0]
	if z[0] != 0x80|wsproto.Rsv1|byte(ws.OpText) {
		t.Fatalf("first byte %#x, want FIN|RSV1|text", z[0])
	}
	zn := int(z[1] & 0x7f)
	off := 2
	if zn == 126 {
		zn, off = int(z[2])<<8|int(z[3]), 4
	}
	if zn != len(z)-off {
		t.Fatalf("header says %d bytes, frame holds %d", zn, len(z)-off)
	}
	if plain := inflateRaw(t, z[off:]); !bytes.Equal(plain, msg) {
		t.Fatalf("inflated %q, want %q", plain, msg)
	}
	f.Release()

	// reused from the pool: compressed afresh
	f2 := s.NewMessageFrame(ws.OpBinary, bytes.Repeat([]byte{7}, 500))
	z2 := f2.compressed(loops[0])
	if z2 == nil || z2[0] != 0x80|wsproto.Rsv1|byte(ws.OpBinary) {
		t.Fatalf("second frame: %x", z2)
	}
	f2.Release()

	for name, b := range map[string][]byte{
		"under MinSize":  wsproto.AppendFrame(nil, ws.OpText, bytes.Repeat([]byte{'a'}, 99)),
		"control frame":  wsproto.AppendFrame(nil, ws.OpPing, bytes.Repeat([]byte{'a'}, 120)),
		"not final":      append([]byte{0x01, 120}, bytes.Repeat([]byte{'a'}, 120)...),
		"incompressible": wsproto.AppendFrame(nil, ws.OpBinary, randomBytes(400)),
		"wrong length":   append(wsproto.AppendHeader(nil, ws.OpText, 300), bytes.Repeat([]byte{'a'}, 200)...),
	} {
		f := s.NewFrame(len(b))
		f.B = append(f.B, b...)
		if z := f.compressed(loops[1]); z != nil {
			t.Errorf("%s: compressed to %d bytes, want plain", name, len(z))
		}
		f.Release()
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// FuzzInflate: any bytes, taken as a compressed message, inflate without a
// panic to at most the limit or fail; the same bytes taken as a message,
// compressed, inflate back to themselves (or fail with errInflateLimit when
// larger than the limit).
func FuzzInflate(f *testing.F) {
	const limit = 4096
	f.Add([]byte{})
	f.Add([]byte("hello"))
	f.Add(bytes.Repeat([]byte("ab"), 3000))
	f.Add([]byte{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}) // "Hello" compressed
	f.Add([]byte{0x00, 0x00, 0x00, 0xff, 0xff})
	s := New(Config{Compression: Compression{Enabled: true}}, nil)
	l := &loop{s: s}
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := l.inflate(b, limit)
		if err == nil {
			if len(out) > limit {
				t.Fatalf("%d bytes out, limit %d", len(out), limit)
			}
			s.PutBuffer(out)
		}
		var z bytes.Buffer
		w, _ := flate.NewWriter(&z, 1)
		_, _ = w.Write(b)
		_ = w.Flush()
		zb := bytes.TrimSuffix(z.Bytes(), []byte{0, 0, 0xff, 0xff})
		out, err = l.inflate(zb, limit)
		switch {
		case len(b) > limit:
			if !errors.Is(err, errInflateLimit) {
				t.Fatalf("%d bytes: %v, want errInflateLimit", len(b), err)
			}
		case err != nil:
			t.Fatalf("%d bytes: %v", len(b), err)
		case !bytes.Equal(out, b):
			t.Fatalf("round trip of %d bytes gave %d different bytes", len(b), len(out))
		default:
			s.PutBuffer(out)
		}
	})
}
