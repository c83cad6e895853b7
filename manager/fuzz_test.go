package manager_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"runtime"
	"testing"

	"github.com/firetower-go/firetower/manager"
)

const (
	// fuzzMax is the frame limit under fuzzing: small, so that lengths
	// around it are reached.
	fuzzMax = 4096
	// fuzzAllocBound bounds what reading and decoding one frame of at most
	// fuzzMax bytes may allocate. Decoded messages are a small multiple of
	// the frame; a declared length inside the frame (an array, a string, a
	// bin) that the decoder trusts is not.
	fuzzAllocBound = 64 * fuzzMax
)

// fuzzSeeds are valid frames of every message type, a stream of several,
// and broken variants. The files in testdata/fuzz/FuzzReadFrameDecode hold
// the same kinds of input, fixed, plus declared lengths that lie.
func fuzzSeeds(tb testing.TB) [][]byte {
	msgs := []*manager.Msg{
		{Type: manager.MsgHello, Node: 1, Text: "3kq8z0f1x"},
		{Type: manager.MsgWelcome},
		{Type: manager.MsgSync, Topics: []manager.TopicCount{{Topic: "a", Count: 1}, {Topic: "/chat/world", Count: 1 << 40}}},
		{Type: manager.MsgSync},
		{Type: manager.MsgSub, Topic: "a", Count: 3},
		{Type: manager.MsgSub, Topic: "a"},
		{Type: manager.MsgPub, Topic: "a", Data: []byte(`{"k":"v"}`)},
		{Type: manager.MsgDeliver, Node: 65535, Topic: "a", Data: []byte{0, 1, 2, 0xff}},
		{Type: manager.MsgCount, Seq: 1<<64 - 1, Topic: "a"},
		{Type: manager.MsgCountReply, Seq: 7, Topic: "a", Count: -1},
		{Type: manager.MsgPing, Seq: 1},
		{Type: manager.MsgPong, Seq: 1},
		{Type: manager.MsgGoAway, Text: "manager shutting down"},
		{Type: manager.MsgHello, Node: 2, Text: "boot", Data: bytes.Repeat([]byte{7}, 32)},
		{Type: manager.MsgChallenge, Data: bytes.Repeat([]byte{9}, 64)},
		{Type: manager.MsgAuth, Data: bytes.Repeat([]byte{5}, 32)},
		{Type: manager.MsgAppend, Seq: 3, Topic: "h", Data: []byte(`"x"`), Count: 100, Text: "60000"},
		{Type: manager.MsgAppendReply, Seq: 3, Count: 41, Text: "9f3c"},
		{Type: manager.MsgDeliverAt, Node: 2, Seq: 42, Topic: "h", Data: []byte(`"x"`), Text: "9f3c"},
		{Type: manager.MsgRecover, Seq: 4, Count: 100, Text: "60000", Data: histItemsSeed(tb)},
		{Type: manager.MsgRecoverDone, Topics: []manager.TopicCount{{Topic: "h", Count: 1}}},
		{Type: 0},
		{Type: 200},
	}
	var seeds [][]byte
	var stream []byte
	for _, m := range msgs {
		f, err := manager.AppendFrame(nil, m)
		if err != nil {
			tb.Fatal(err)
		}
		seeds = append(seeds, f, f[:len(f)-1], f[:3])
		stream = append(stream, f...)
	}
	return append(seeds, stream, stream[:len(stream)/2],
		[]byte{0xff, 0xff, 0xff, 0xff, 0x98},
		[]byte{0, 0, fuzzMax >> 8, 1}, // fuzzMax+1
		[]byte{0, 0, 0, 0},
	)
}

func allocated() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

// FuzzReadFrameDecode feeds arbitrary bytes through ReadFrame and Decode,
// frame after frame: no panic, no frame over the limit, no allocation out of
// proportion to the frame, and whatever decodes re-encodes to itself.
func FuzzReadFrameDecode(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		// a small bufio buffer so that frames span refills
		r := bufio.NewReaderSize(bytes.NewReader(in), 16)
		var buf []byte
		for range 64 {
			before := allocated()
			p, err := manager.ReadFrame(r, fuzzMax, buf)
			if err != nil {
				if !errors.Is(err, manager.ErrFrameTooLarge) && !errors.Is(err, manager.ErrEmptyFrame) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("ReadFrame: unexpected error %v", err)
				}
				return
			}
			if len(p) == 0 || len(p) > fuzzMax || cap(p) > fuzzMax {
				t.Fatalf("ReadFrame returned len %d cap %d with limit %d", len(p), cap(p), fuzzMax)
			}
			buf = p
			m, err := manager.Decode(p)
			if alloc := allocated() - before; alloc > fuzzAllocBound {
				t.Fatalf("reading and decoding a %d-byte frame allocated %d bytes (bound %d); payload % x",
					len(p), alloc, fuzzAllocBound, p[:min(len(p), 32)])
			}
			if err != nil {
				if m != nil {
					t.Fatalf("Decode returned a message and the error %v", err)
				}
				continue
			}
			if m.Type == 0 || m.Type > manager.MsgRecoverDone {
				t.Fatalf("Decode accepted message type %d", m.Type)
			}
			f1, err := manager.AppendFrame(nil, m)
			if err != nil {
				t.Fatalf("re-encoding %+v: %v", m, err)
			}
			m2, err := manager.Decode(f1[4:])
			if err != nil {
				t.Fatalf("decoding the re-encoded %+v: %v", m, err)
			}
			if !reflect.DeepEqual(m, m2) {
				t.Fatalf("round trip changed the message:\n%+v\n%+v", m, m2)
			}
		}
	})
}
