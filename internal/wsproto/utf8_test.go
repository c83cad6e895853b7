package wsproto

import (
	"testing"
	"unicode/utf8"
)

// refPrefix is the definition UTF8Prefix implements: some bytes appended to
// p make it valid. At most 3 bytes are ever missing, and these endings
// cover every lead byte's allowed second byte.
func refPrefix(p []byte) bool {
	for _, end := range []string{"", "\x80", "\x80\x80", "\x80\x80\x80", "\x90", "\x90\x80", "\x90\x80\x80", "\xa0", "\xa0\x80", "\xa0\x80\x80"} {
		if utf8.Valid(append(p[:len(p):len(p)], end...)) {
			return true
		}
	}
	return false
}

var utf8Cases = []struct {
	in   string
	ok   bool
	tail int
}{
	{"", true, 0},
	{"hello", true, 0},
	{"κόσμε", true, 0},
	{"\xce", true, 1},                 // first byte of κ
	{"hello\xe2\x82", true, 2},        // € less its last byte
	{"\xf0\x9f\x98", true, 3},         // 😀 less its last byte
	{"\xf4\x8f\xbf", true, 3},         // U+10FFFF less its last byte
	{"\xff", false, 0},                // never in UTF-8
	{"hello\xff", false, 0},           // never in UTF-8
	{"\xc0", false, 0},                // overlong lead
	{"\xe0\x80", false, 0},            // overlong 3-byte form
	{"\xed\xa0", false, 0},            // surrogate
	{"\xf4\x90", false, 0},            // past U+10FFFF
	{"\xf5", false, 0},                // past U+10FFFF
	{"\x80", false, 0},                // lone continuation
	{"\xce\xba\x80", false, 0},        // continuation after a whole code point
	{"\xe2\x82a", false, 0},           // sequence cut short by ASCII
	{"\xffab", false, 0},              // error before a complete ending
	{"\xce\xba\xe2\x82\xac", true, 0}, // κ€
}

func TestUTF8Prefix(t *testing.T) {
	for _, tc := range utf8Cases {
		tail, ok := UTF8Prefix([]byte(tc.in))
		if ok != tc.ok || tail != tc.tail {
			t.Errorf("UTF8Prefix(%q) = %d, %v; want %d, %v", tc.in, tail, ok, tc.tail, tc.ok)
		}
		if ok != refPrefix([]byte(tc.in)) {
			t.Errorf("UTF8Prefix(%q) = %v disagrees with the reference", tc.in, ok)
		}
	}
}

// checkSplits feeds b to a UTF8 in two pieces at every split and checks the
// verdicts against the definitions.
func checkSplits(t *testing.T, b []byte) {
	t.Helper()
	for i := 0; i <= len(b); i++ {
		var v UTF8
		if got, want := v.Write(b[:i]), refPrefix(b[:i]); got != want {
			t.Fatalf("%q: Write(%q) = %v, want %v", b, b[:i], got, want)
		} else if !got {
			continue
		}
		ok := v.Write(b[i:])
		if want := refPrefix(b); ok != want {
			t.Fatalf("%q split at %d: second Write = %v, want %v", b, i, ok, want)
		}
		if whole := ok && v.Complete(); whole != utf8.Valid(b) {
			t.Fatalf("%q split at %d: valid = %v, want %v", b, i, whole, utf8.Valid(b))
		}
	}
	// One byte at a time: the first false comes exactly where the prefix
	// stops being one.
	var v UTF8
	for i := range b {
		if got, want := v.Write(b[i:i+1]), refPrefix(b[:i+1]); got != want {
			t.Fatalf("%q byte by byte: Write at %d = %v, want %v", b, i, got, want)
		} else if !got {
			return
		}
	}
	if v.Complete() != utf8.Valid(b) {
		t.Fatalf("%q byte by byte: Complete = %v, want %v", b, v.Complete(), utf8.Valid(b))
	}
}

func TestUTF8Pieces(t *testing.T) {
	for _, tc := range utf8Cases {
		checkSplits(t, []byte(tc.in))
	}
	checkSplits(t, []byte("a\xf0\x9f\x98\x80b\xe2\x82\xacc\xce\xbad"))
	checkSplits(t, []byte("\xce\xba\xf0\x9f\x98\xed\xa0\x80"))
}

func FuzzUTF8(f *testing.F) {
	for _, tc := range utf8Cases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 64 {
			b = b[:64]
		}
		tail, ok := UTF8Prefix(b)
		if ok != refPrefix(b) {
			t.Fatalf("UTF8Prefix(%q) = %v, want %v", b, ok, !ok)
		}
		if ok && !utf8.Valid(b[:len(b)-tail]) {
			t.Fatalf("UTF8Prefix(%q): tail %d leaves invalid text", b, tail)
		}
		checkSplits(t, b)
	})
}
