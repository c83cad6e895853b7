package mpcheck

import (
	"bytes"
	"errors"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestCheckAcceptsWhatTheEncoderWrites(t *testing.T) {
	values := []any{
		nil, true, false, 0, 1, -1, 127, 128, -33, 1 << 20, int64(-1 << 40), uint64(1 << 63), 3.5, float32(1.5),
		"", "x", string(bytes.Repeat([]byte("s"), 40)), string(bytes.Repeat([]byte("s"), 300)), string(bytes.Repeat([]byte("s"), 70000)),
		[]byte{}, []byte("bin"), bytes.Repeat([]byte{1}, 300), bytes.Repeat([]byte{1}, 70000),
		[]any{}, []any{1, "a", []any{nil}}, make([]any, 20), make([]any, 70000),
		map[string]any{}, map[string]any{"a": 1, "b": map[string]any{"c": []any{1, 2}}},
	}
	for _, v := range values {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := Check(b); err != nil {
			t.Errorf("Check(%T of %d bytes): %v", v, len(b), err)
		}
	}
}

func TestCheckRefusesLies(t *testing.T) {
	for name, p := range map[string][]byte{
		"array32 of 4G":      {0xdd, 0xff, 0xff, 0xff, 0xff},
		"map32 of 4G":        {0xdf, 0xff, 0xff, 0xff, 0xff, 0x01},
		"str32 of 4G":        {0xdb, 0xff, 0xff, 0xff, 0xff, 'a'},
		"bin32 of 2G":        {0xc6, 0x80, 0, 0, 0, 1, 2, 3},
		"ext32":              {0xc9, 0x10, 0, 0, 0, 1},
		"fixarray short":     {0x93, 1, 2},
		"fixstr short":       {0xa5, 'a'},
		"truncated uint64":   {0xcf, 1, 2},
		"unused 0xc1":        {0xc1},
		"trailing":           {0x01, 0x02},
		"empty":              {},
		"sync lie (manager)": {0x98, 0x03, 0x00, 0x00, 0x00, 0xa0, 0xc0, 0xa0, 0xdd, 0xff, 0xff, 0xff, 0xff},
		"deep":               bytes.Repeat([]byte{0x91}, MaxDepth+2),
	} {
		if err := Check(p); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Check = %v, want ErrInvalid", name, err)
		}
	}
	ok := append(bytes.Repeat([]byte{0x91}, MaxDepth), 0x01)
	if err := Check(ok); err != nil {
		t.Errorf("nesting of exactly MaxDepth: %v", err)
	}
}

// FuzzCheck: Check never panics, and whatever it accepts decodes without
// allocating much more than the input.
func FuzzCheck(f *testing.F) {
	for _, v := range []any{map[string]any{"type": "subscribe", "topics": []string{"a"}, "id": 1}, []any{1, "x", nil}} {
		b, _ := msgpack.Marshal(v)
		f.Add(b)
	}
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, p []byte) {
		if Check(p) != nil {
			return
		}
		var v any
		_ = msgpack.Unmarshal(p, &v)
	})
}
