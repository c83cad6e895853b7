package firetower

import (
	"testing"
	"unsafe"
)

// TestConnSize guards idle memory per connection (bench IdleMemory, issue
// 3's target of at most 2 KiB): every connection holds one Conn, and 176
// bytes is its allocation size class (the flags share one word).
func TestConnSize(t *testing.T) {
	if n := unsafe.Sizeof(Conn{}); n > 176 {
		t.Errorf("firetower.Conn is %d bytes, want at most 176 (the size class every connection pays)", n)
	}
}
