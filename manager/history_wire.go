package manager

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/firetower-go/firetower/internal/mpcheck"
)

// HistItem is one topic of a MsgHistory or MsgRecover (a query) or of a
// MsgHistoryReply (a result), carried in the message's Data.
type HistItem struct {
	_msgpack struct{} `msgpack:",as_array"` //nolint:unused // read through its tag: msgpack encodes the struct as an array

	Topic string
	// A query: Since says whether Offset and Epoch are a position to
	// recover from; Limit is how many publications at most (0: none
	// without Since, all with it).
	// A result: Offset and Epoch are the stream's top, Recovered as in
	// firetower.HistoryResult, Pubs oldest first.
	Since     bool
	Offset    uint64
	Epoch     string
	Limit     int64
	Recovered bool
	Pubs      []HistPub
}

// HistPub is one publication of a result.
type HistPub struct {
	_msgpack struct{} `msgpack:",as_array"` //nolint:unused // read through its tag: msgpack encodes the struct as an array

	Offset uint64
	Data   []byte
}

// MaxHistItems bounds the topics of one history query or result.
const MaxHistItems = 4096

// AppendHistItems appends the encoding of items (a Data of MsgHistory,
// MsgRecover or MsgHistoryReply).
func AppendHistItems(dst []byte, items []HistItem) ([]byte, error) {
	w := appendWriter{b: dst}
	enc := msgpack.NewEncoder(&w)
	enc.UseCompactInts(true)
	if err := enc.Encode(items); err != nil {
		return dst, err
	}
	return w.b, nil
}

// DecodeHistItems decodes a Data of MsgHistory, MsgRecover or
// MsgHistoryReply: at most MaxHistItems items. Like DecodeLimited, it checks
// every declared length against the payload first and allocates nothing
// from a declared count: slices grow with what is decoded.
func DecodeHistItems(p []byte) ([]HistItem, error) {
	if err := mpcheck.Check(p); err != nil {
		return nil, fmt.Errorf("manager: bad history items: %w", err)
	}
	d := msgpack.NewDecoder(bytes.NewReader(p))
	n, err := d.DecodeArrayLen()
	if err != nil {
		return nil, fmt.Errorf("manager: bad history items: %w", err)
	}
	if n > MaxHistItems {
		return nil, fmt.Errorf("manager: %d history items (limit %d)", n, MaxHistItems)
	}
	out := make([]HistItem, 0, min(max(n, 0), 16))
	for range max(n, 0) {
		var it HistItem
		if err := decodeHistItem(d, &it); err != nil {
			return nil, fmt.Errorf("manager: bad history item: %w", err)
		}
		out = append(out, it)
	}
	return out, nil
}

func decodeHistItem(d *msgpack.Decoder, it *HistItem) error {
	k, err := d.DecodeArrayLen()
	if err != nil {
		return err
	}
	if k < 0 {
		return errors.New("a history item is nil")
	}
	for j := range k {
		switch j {
		case 0:
			it.Topic, err = d.DecodeString()
		case 1:
			it.Since, err = d.DecodeBool()
		case 2:
			it.Offset, err = d.DecodeUint64()
		case 3:
			it.Epoch, err = d.DecodeString()
		case 4:
			it.Limit, err = d.DecodeInt64()
		case 5:
			it.Recovered, err = d.DecodeBool()
		case 6:
			it.Pubs, err = decodeHistPubs(d)
		default:
			err = d.Skip()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func decodeHistPubs(d *msgpack.Decoder) ([]HistPub, error) {
	n, err := d.DecodeArrayLen()
	if err != nil || n <= 0 {
		return nil, err
	}
	out := make([]HistPub, 0, min(n, 64))
	for range n {
		k, err := d.DecodeArrayLen()
		if err != nil {
			return nil, err
		}
		if k < 0 {
			return nil, errors.New("a publication is nil")
		}
		var p HistPub
		for j := range k {
			switch j {
			case 0:
				p.Offset, err = d.DecodeUint64()
			case 1:
				p.Data, err = d.DecodeBytes()
			default:
				err = d.Skip()
			}
			if err != nil {
				return nil, err
			}
		}
		if p.Data == nil {
			p.Data = []byte{}
		}
		out = append(out, p)
	}
	return out, nil
}

// formatTTL and parseTTL carry a stream's TTL in a message's Text, in
// milliseconds.
func formatTTL(d time.Duration) string { return strconv.FormatInt(max(d.Milliseconds(), 1), 10) }

func parseTTL(s string) (time.Duration, error) {
	if len(s) > 19 {
		return 0, fmt.Errorf("history TTL %.24q out of range", s)
	}
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ms <= 0 || ms > int64(maxTTLMillis) {
		return 0, fmt.Errorf("history TTL %.24q is not a number of milliseconds > 0", s)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// maxTTLMillis keeps a TTL in milliseconds within a time.Duration.
const maxTTLMillis = int64(1<<63-1) / int64(time.Millisecond)
