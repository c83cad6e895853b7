package firetower

import (
	"fmt"

	"github.com/firetower-go/firetower/transport"
)

// Compression defaults (WithCompression).
const (
	// DefaultCompressionLevel is the flate level a level of 0 means: the
	// fastest, which on JSON comes within a few percent of level 6.
	DefaultCompressionLevel = 1
	// DefaultCompressionMinSize is the smallest payload compressed when
	// minSize is 0.
	DefaultCompressionMinSize = 128 // the transport's default too (TestDefaultCompressionMinSize)
)

// WithCompression turns on permessage-deflate (RFC 7692) for the clients
// that offer it (every browser does); it is off by default. level is the
// flate level, 1 (fastest) to 9 (smallest), 0 for DefaultCompressionLevel;
// messages whose payload is under minSize bytes go out uncompressed (0 for
// DefaultCompressionMinSize).
//
// The server's answer always includes server_no_context_takeover (and
// client_no_context_takeover), so a publish is compressed once per codec,
// however many subscribers it has, and the same compressed frame goes to
// every subscriber that negotiated compression, beside the plain frame for
// the others: no compression work per delivery. Answers (acks, errors,
// Conn.Send) follow the same rule. Compressed client messages are inflated
// within the message size limit (WithMaxMessageSize): one that inflates past
// it is closed with 1009 as soon as it does. Stats.Transport.Compression
// counts the bytes before and after.
func WithCompression(level, minSize int) Option {
	return func(c *config) error {
		if level < 0 || level > 9 {
			return fmt.Errorf("%w: compression level must be 0 (default) or 1 to 9, got %d", ErrBadOption, level)
		}
		if minSize < 0 {
			return fmt.Errorf("%w: compression minimum size must not be negative, got %d", ErrBadOption, minSize)
		}
		if level == 0 {
			level = DefaultCompressionLevel
		}
		if minSize == 0 {
			minSize = DefaultCompressionMinSize
		}
		c.compression = transport.Compression{Enabled: true, Level: level, MinSize: minSize}
		return nil
	}
}

// CompressionStats are the permessage-deflate counters (WithCompression).
type CompressionStats struct {
	Conns int64 // connections open now that negotiated permessage-deflate
	// Messages is the messages compressed: once per message, however many
	// subscribers it went to. MessageBytesIn and MessageBytesOut are their
	// payload bytes before and after compression.
	Messages        uint64
	MessageBytesIn  uint64
	MessageBytesOut uint64
	// Frames is the compressed frames queued for connections, one per
	// delivery (or answer) to a compressing connection. FrameBytesIn and
	// FrameBytesOut are their sizes uncompressed and as sent: the bytes
	// compression saved on the wire are FrameBytesIn - FrameBytesOut.
	Frames        uint64
	FrameBytesIn  uint64
	FrameBytesOut uint64
	// Inflated is the compressed client messages decompressed;
	// InflatedBytesIn and InflatedBytesOut are their sizes before and
	// after.
	Inflated         uint64
	InflatedBytesIn  uint64
	InflatedBytesOut uint64
}
