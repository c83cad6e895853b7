package transport

import (
	"testing"
	"unsafe"
)

// TestConnSize guards idle memory per connection (bench IdleMemory, issue
// 3's target of at most 2 KiB): every idle connection holds one Conn, and
// 192 bytes is its allocation size class. State that only some connections
// need (write delay, mounting) lives out of line.
func TestConnSize(t *testing.T) {
	if n := unsafe.Sizeof(Conn{}); n > 192 {
		t.Errorf("transport.Conn is %d bytes, want at most 192 (the size class every idle connection pays)", n)
	}
}
