// Package manager is firetower's topic-manager node: a small server that
// gateways (firetower Towers) connect to so they form a cluster without any
// other infrastructure, and the gateway-side client that implements
// firetower.Manager against one or several such nodes.
//
// The protocol is TCP with length-prefixed msgpack frames. A gateway says
// HELLO (node id, boot id), then SYNCs its whole interest (topic -> local
// subscriber count) and afterwards sends SUB updates with absolute counts,
// so every message is idempotent and a reconnect simply resyncs. The
// manager routes each PUB to the other nodes with interest in its topic as
// DELIVER, answers COUNT with the cluster-wide sum, and answers PING with
// PONG; since a session is processed in order, a PONG also confirms every
// SUB sent before its PING. GOAWAY carries the reason a session is refused
// or ended. State is keyed by node id, never by remote address.
package manager

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/vmihailenco/msgpack/v5"
)

// Message types.
const (
	MsgHello      uint8 = iota + 1 // gateway: Node, Text = boot id
	MsgWelcome                     // manager: accepted
	MsgSync                        // gateway: Topics = whole interest
	MsgSub                         // gateway: Topic, Count (absolute; 0 = none)
	MsgPub                         // gateway: Topic, Data
	MsgDeliver                     // manager: Topic, Data, Node = origin
	MsgCount                       // gateway: Seq, Topic
	MsgCountReply                  // manager: Seq, Count
	MsgPing                        // either: Seq
	MsgPong                        // either: Seq
	MsgGoAway                      // either: Text = reason
	msgMax
)

// DefaultMaxFrame is the largest frame accepted by default (a SYNC of many
// topics is the largest message).
const DefaultMaxFrame = 16 << 20

// Msg is one protocol message; the fields used depend on Type.
type Msg struct {
	_msgpack struct{} `msgpack:",as_array"`

	Type   uint8
	Node   uint16
	Seq    uint64
	Count  int64
	Topic  string
	Data   []byte
	Text   string
	Topics []TopicCount
}

// TopicCount is one topic of a SYNC.
type TopicCount struct {
	_msgpack struct{} `msgpack:",as_array"`

	Topic string
	Count int64
}

// ErrFrameTooLarge is a frame whose declared length is over the limit.
var ErrFrameTooLarge = errors.New("manager: frame too large")

// AppendFrame appends m as a length-prefixed frame.
func AppendFrame(dst []byte, m *Msg) ([]byte, error) {
	b, err := msgpack.Marshal(m)
	if err != nil {
		return dst, err
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(b)))
	return append(dst, b...), nil
}

// ReadFrame reads one frame's payload. The length is checked against max
// before anything is allocated; buf is reused when large enough.
func ReadFrame(r *bufio.Reader, max int, buf []byte) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return buf, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || int64(n) > int64(max) {
		return buf, fmt.Errorf("%w: %d bytes (limit %d)", ErrFrameTooLarge, n, max)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	_, err := io.ReadFull(r, buf)
	return buf, err
}

// Decode decodes a frame payload and checks the message type.
func Decode(p []byte) (*Msg, error) {
	m := &Msg{}
	if err := msgpack.Unmarshal(p, m); err != nil {
		return nil, fmt.Errorf("manager: bad frame: %w", err)
	}
	if m.Type == 0 || m.Type >= msgMax {
		return nil, fmt.Errorf("manager: unknown message type %d", m.Type)
	}
	return m, nil
}
