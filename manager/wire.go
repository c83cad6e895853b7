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
//
// # Security
//
// The manager port is a door into the cluster: a node receives the traffic
// of every topic it asks for, publishes to every subscriber, and can send
// the Towers' control messages. So:
//
//   - With a shared secret (ServerConfig.Secret, ClientConfig.Secret) the
//     HELLO is followed by a challenge in each direction (CHALLENGE from the
//     manager, AUTH from the gateway; HMAC-SHA256 over fresh nonces, the
//     secret never on the wire, see auth.go). A peer that cannot prove the
//     secret gets a GOAWAY and nothing else: nothing it sent is applied and
//     nothing is routed to it. A gateway does not join a manager that
//     cannot prove the secret either.
//   - NewServer and NewClient refuse an address that is not loopback when
//     nothing authenticates the peers (no Secret, no mutual TLS), unless
//     AllowInsecure is set.
//   - ServerConfig.TLS and ClientConfig.TLS put the links under TLS (mutual
//     TLS with client certificates): the secret authenticates a session
//     when it opens, TLS also keeps it private and intact.
//   - Before a session is open the manager reads frames of at most
//     PreAuthMaxFrame bytes. Every topic in SYNC, SUB, PUB and COUNT must
//     follow the client protocol's rules (firetower.ValidateTopic); a node
//     has interest in at most ServerConfig.MaxTopicsPerNode topics; no
//     count or length a peer sends sizes an allocation (DecodeLimited).
//     A message that breaks these rules ends the session with a GOAWAY.
//   - System topics (firetower.SystemTopicPrefix) are the nodes' own:
//     Server.Publish, the entry point for publishes from outside the
//     cluster, refuses them.
//   - A gateway refused by a manager redials with a delay that keeps
//     growing (ClientConfig.MinBackoff to MaxBackoff) until a session
//     opens.
package manager

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/firetower-go/firetower/internal/mpcheck"
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
	MsgChallenge                   // manager: Data = manager nonce + manager proof
	MsgAuth                        // gateway: Data = gateway proof

	// History (history.go): the manager keeps the streams of history
	// topics and assigns their offsets.
	MsgAppend       // gateway: Seq (0: no reply wanted), Topic, Data, Count = stream size, Text = TTL in ms (decimal)
	MsgAppendReply  // manager: Seq, Count = offset, Text = epoch; Count -1: refused, Text = reason
	MsgDeliverAt    // manager: Topic, Data, Node = origin, Seq = offset, Text = epoch
	MsgHistory      // gateway: Seq, Count = stream size, Text = TTL in ms, Data = queries (AppendHistItems)
	MsgRecover      // gateway: as MsgHistory, and the manager holds the node's deliveries (see history.go)
	MsgHistoryReply // manager: Seq, Data = results (AppendHistItems); Count -1: refused, Text = reason
	MsgRecoverDone  // gateway: Topics = the topics of a MsgRecover whose replay is done
	msgMax
)

// DefaultMaxFrame is the largest frame accepted by default (a SYNC of many
// topics is the largest message).
const DefaultMaxFrame = 16 << 20

// PreAuthMaxFrame is the largest frame a manager accepts from a peer that
// has not yet completed HELLO (and, with a secret, AUTH): those messages
// are a few dozen bytes, so an unauthenticated peer cannot make the manager
// buffer or decode more than this.
const PreAuthMaxFrame = 4 << 10

// DefaultMaxTopicsPerNode is the default bound on the topics one gateway
// may have interest in at a manager (ServerConfig.MaxTopicsPerNode), and the
// most topics Decode accepts in one SYNC.
const DefaultMaxTopicsPerNode = 1 << 20

// Msg is one protocol message; the fields used depend on Type.
type Msg struct {
	_msgpack struct{} `msgpack:",as_array"` //nolint:unused // read through its tag: msgpack encodes the struct as an array

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
	_msgpack struct{} `msgpack:",as_array"` //nolint:unused // read through its tag: msgpack encodes the struct as an array

	Topic string
	Count int64
}

// ErrFrameTooLarge is a frame whose declared length is over the limit.
var ErrFrameTooLarge = errors.New("manager: frame too large")

// ErrEmptyFrame is a frame of length zero.
var ErrEmptyFrame = errors.New("manager: empty frame")

// AppendFrame appends m as a length-prefixed frame (integers in their
// smallest encoding).
func AppendFrame(dst []byte, m *Msg) ([]byte, error) {
	start := len(dst)
	w := appendWriter{b: binary.BigEndian.AppendUint32(dst, 0)}
	enc := msgpack.NewEncoder(&w)
	enc.UseCompactInts(true)
	if err := enc.Encode(m); err != nil {
		return dst, err
	}
	binary.BigEndian.PutUint32(w.b[start:], uint32(len(w.b)-start-4)) //nolint:gosec // G115: an encoded message held in memory, far below 4 GiB
	return w.b, nil
}

type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

// readChunk is how much of a frame is allocated ahead of its bytes.
const readChunk = 64 << 10

// ReadFrame reads one frame's payload. The length is checked against limit
// before anything is read, and memory grows with the bytes that actually
// arrive (a peer that declares 16 MiB and sends 1 byte costs 64 KiB); buf
// is reused when large enough.
func ReadFrame(r *bufio.Reader, limit int, buf []byte) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return buf, err
	}
	n := int64(binary.BigEndian.Uint32(hdr[:]))
	switch {
	case n == 0:
		return buf, ErrEmptyFrame
	case n > int64(limit):
		return buf, fmt.Errorf("%w: %d bytes (limit %d)", ErrFrameTooLarge, n, limit)
	}
	buf = buf[:0]
	for int64(len(buf)) < n {
		want := min(n-int64(len(buf)), readChunk)
		if int64(cap(buf)-len(buf)) < want {
			// Double (append grows large slices by only 1.25x, which
			// would allocate about 5 times a large frame in all).
			nb := make([]byte, len(buf), min(max(2*int64(cap(buf)), int64(len(buf))+want), n))
			copy(nb, buf)
			buf = nb
		}
		m, err := io.ReadFull(r, buf[len(buf):len(buf)+int(want)])
		buf = buf[:len(buf)+m]
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// Decode decodes a frame payload and checks the message type. A SYNC may
// list at most DefaultMaxTopicsPerNode topics; DecodeLimited takes another
// bound.
func Decode(p []byte) (*Msg, error) {
	return DecodeLimited(p, DefaultMaxTopicsPerNode)
}

// DecodeLimited decodes a frame payload, accepting at most maxTopics topics
// in a SYNC. Every length the payload declares is checked against its size
// first (mpcheck), and nothing is allocated from a declared length: the
// topics of a SYNC are appended as they are decoded, so memory follows the
// bytes of the frame, not the numbers in it.
func DecodeLimited(p []byte, maxTopics int) (*Msg, error) {
	if err := mpcheck.Check(p); err != nil {
		return nil, fmt.Errorf("manager: bad frame: %w", err)
	}
	if !mpcheck.IsArray(p) {
		return nil, errors.New("manager: bad frame: a message must be a msgpack array")
	}
	m := &Msg{}
	if err := decodeMsg(msgpack.NewDecoder(bytes.NewReader(p)), m, maxTopics); err != nil {
		return nil, fmt.Errorf("manager: bad frame: %w", err)
	}
	if m.Type == 0 || m.Type >= msgMax {
		return nil, fmt.Errorf("manager: unknown message type %d", m.Type)
	}
	return m, nil
}

// decodeMsg decodes the array form of a Msg field by field (fields after
// the known ones are skipped, so a newer peer may add some).
func decodeMsg(d *msgpack.Decoder, m *Msg, maxTopics int) error {
	n, err := d.DecodeArrayLen()
	if err != nil {
		return err
	}
	for i := range max(n, 0) {
		switch i {
		case 0:
			v, err := decodeUint(d, 0xff, "type")
			if err != nil {
				return err
			}
			m.Type = uint8(v) //nolint:gosec // G115: decodeUint(d, 0xff, ...) checked v <= 0xff
		case 1:
			v, err := decodeUint(d, 0xffff, "node")
			if err != nil {
				return err
			}
			m.Node = uint16(v) //nolint:gosec // G115: decodeUint(d, 0xffff, ...) checked v <= 0xffff
		case 2:
			if m.Seq, err = d.DecodeUint64(); err != nil {
				return err
			}
		case 3:
			if m.Count, err = d.DecodeInt64(); err != nil {
				return err
			}
		case 4:
			if m.Topic, err = d.DecodeString(); err != nil {
				return err
			}
		case 5:
			if m.Data, err = d.DecodeBytes(); err != nil {
				return err
			}
		case 6:
			if m.Text, err = d.DecodeString(); err != nil {
				return err
			}
		case 7:
			if m.Topics, err = decodeTopics(d, maxTopics); err != nil {
				return err
			}
		default:
			if err := d.Skip(); err != nil {
				return err
			}
		}
	}
	return nil
}

func decodeUint(d *msgpack.Decoder, limit uint64, what string) (uint64, error) {
	c, err := d.PeekCode()
	if err != nil {
		return 0, err
	}
	if c >= 0xe0 || c == 0xd0 || c == 0xd1 || c == 0xd2 || c == 0xd3 {
		// a signed encoding: only its non-negative values are accepted
		v, err := d.DecodeInt64()
		if err != nil {
			return 0, err
		}
		if v < 0 || uint64(v) > limit {
			return 0, fmt.Errorf("%s %d out of range", what, v)
		}
		return uint64(v), nil
	}
	v, err := d.DecodeUint64()
	if err != nil {
		return 0, err
	}
	if v > limit {
		return 0, fmt.Errorf("%s %d out of range", what, v)
	}
	return v, nil
}

// decodeTopics decodes a SYNC's topic list. The declared count is checked
// against maxTopics, and the slice grows with the entries actually decoded.
func decodeTopics(d *msgpack.Decoder, maxTopics int) ([]TopicCount, error) {
	n, err := d.DecodeArrayLen()
	if err != nil || n <= 0 {
		return nil, err
	}
	if n > maxTopics {
		return nil, fmt.Errorf("%w: a SYNC of %d topics (limit %d)", ErrTooManyTopics, n, maxTopics)
	}
	out := make([]TopicCount, 0, min(n, 64))
	for range n {
		k, err := d.DecodeArrayLen()
		if err != nil {
			return nil, err
		}
		if k < 0 {
			return nil, errors.New("a SYNC entry is nil")
		}
		var tc TopicCount
		for j := range k {
			switch j {
			case 0:
				tc.Topic, err = d.DecodeString()
			case 1:
				tc.Count, err = d.DecodeInt64()
			default:
				err = d.Skip()
			}
			if err != nil {
				return nil, err
			}
		}
		out = append(out, tc)
	}
	return out, nil
}

// ErrTooManyTopics is a SYNC or SUB that would take a gateway past the
// manager's bound on topics per node.
var ErrTooManyTopics = errors.New("manager: too many topics")
