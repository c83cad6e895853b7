package firetower

import (
	"testing"

	"github.com/firetower-go/firetower/transport"
)

// TestDefaultCompressionMinSize: the root package's default is spelled as a
// number (go doc of the root package names no transport identifier) and
// must stay the transport's.
func TestDefaultCompressionMinSize(t *testing.T) {
	if DefaultCompressionMinSize != transport.DefaultMinSize {
		t.Fatalf("DefaultCompressionMinSize %d, transport.DefaultMinSize %d", DefaultCompressionMinSize, transport.DefaultMinSize)
	}
}
