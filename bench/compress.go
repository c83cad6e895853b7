//go:build linux

package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/flate"
)

// The compression scenario (compress_test.go) publishes 1 KiB JSON values
// with the redundancy of market data, to subscribers that negotiated
// permessage-deflate:
//
//	[<the 100-byte data string of payload.go>,{"rows":[{"symbol":"EURUSD","bid":...},...]}]
//
// The rows are one of 26 fixed sets (seq % 26), so a subscriber checks the
// whole value byte for byte, as in the other scenarios.

// zDataSize is the size of a compression scenario data value.
const zDataSize = 1024

// deflateOffer is the load generator's permessage-deflate offer: the one
// gorilla/websocket and browsers' no-context-takeover clients send, which
// every server under test accepts.
const deflateOffer = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

// zRows holds the rows part of each data value: zRows[seq%26].
var zRows = func() [26][]byte {
	var out [26][]byte
	for k := range out {
		var b bytes.Buffer
		b.WriteString(`{"rows":[`)
		for i := 0; ; i++ {
			row := fmt.Sprintf(`{"symbol":"%s","bid":1.%04d,"ask":1.%04d,"size":%d,"venue":"XPAR"},`,
				[]string{"EURUSD", "GBPUSD", "USDJPY", "EURCHF"}[(i+k)%4], 800+(i*37+k*11)%200, 802+(i*37+k*11)%200, 100*(1+(i+k)%9))
			if b.Len()+len(row)+2 > zDataSize-dataSize-3 {
				break
			}
			b.WriteString(row)
		}
		b.Truncate(b.Len() - 1)
		b.WriteString("]}")
		for b.Len() < zDataSize-dataSize-3 {
			b.WriteByte(' ') // pad to the exact size (JSON whitespace)
		}
		out[k] = b.Bytes()
	}
	return out
}()

// appendZData appends the compression scenario's data value of message seq
// on topic ti published at ts (zDataSize bytes).
func appendZData(dst []byte, ti int, seq uint64, ts int64) []byte {
	dst = append(dst, '[')
	dst = appendData(dst, ti, seq, ts)
	dst = append(dst, ',')
	dst = append(dst, zRows[seq%26]...)
	return append(dst, ']')
}

// checkZMessage is checkMessage for the compression scenario's deliveries.
func checkZMessage(m []byte, env *envelope, ti int) (dataInfo, error) {
	p, s := len(env.prefix), len(env.suffix)
	if len(m) != p+zDataSize+s || !bytes.Equal(m[:p], env.prefix) || !bytes.Equal(m[p+zDataSize:], env.suffix) {
		return dataInfo{}, errEnvelope
	}
	d := m[p : p+zDataSize]
	if d[0] != '[' || d[1+dataSize] != ',' || d[zDataSize-1] != ']' {
		return dataInfo{}, errData
	}
	info, err := checkData(d[1:1+dataSize], ti)
	if err != nil {
		return info, err
	}
	if !bytes.Equal(d[2+dataSize:zDataSize-1], zRows[info.seq%26]) {
		return dataInfo{}, errData
	}
	return info, nil
}

// inflater inflates permessage-deflate messages (no context takeover).
type inflater struct {
	r     io.ReadCloser
	src   bytes.Reader
	zin   []byte            // the message being inflated, with its tail
	cache map[string][]byte // compressed -> inflated (cached)
}

var deflateTail = []byte{0, 0, 0xff, 0xff}

func newInflater() *inflater {
	z := &inflater{cache: make(map[string][]byte)}
	z.r = flate.NewReader(&z.src)
	return z
}

// cached inflates z, or returns what the same compressed bytes inflated to
// before; the result must not be modified. The servers send one publish's
// compressed bytes to every subscriber, so the recent messages are
// remembered (up to zCacheSize): the load generator shares the machine with
// the server, and inflating every copy would measure the client. Every
// delivery is still checked in full.
func (in *inflater) cached(z []byte) ([]byte, error) {
	if out, ok := in.cache[string(z)]; ok {
		return out, nil
	}
	out, err := in.inflate(nil, z)
	if err != nil {
		return nil, err
	}
	if len(in.cache) >= zCacheSize {
		clear(in.cache)
	}
	in.cache[string(z)] = out
	return out, nil
}

// zCacheSize bounds inflater.cached's memory.
const zCacheSize = 256

// inflate appends the inflated message z to dst.
func (in *inflater) inflate(dst, z []byte) ([]byte, error) {
	in.zin = append(append(in.zin[:0], z...), deflateTail...)
	in.src.Reset(in.zin)
	if err := in.r.(flate.Resetter).Reset(&in.src, nil); err != nil {
		return nil, err
	}
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := in.r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if err == io.EOF || (err == io.ErrUnexpectedEOF && in.src.Len() == 0) {
			return dst, nil
		}
		if err != nil {
			return nil, err
		}
		if len(dst) > 1<<20 {
			return nil, errors.New("inflated message over 1 MiB")
		}
	}
}

// zKinds are the servers of the compression scenario: each with
// compression on, firetower without it (its CPU reference), and the floor
// compressing each publish once (the ceiling of this machine and rig).
var zKinds = []string{"firetower", "firetower-plain", "gorilla", "centrifuge", "floor"}

// newZServer starts a server of the compression scenario: compression at
// level 1 for messages of 128 bytes and more, the way each server offers it.
func newZServer(kind string) (server, error) {
	switch kind {
	case "firetower":
		return newFiretowerServerOpts(firetowerCompression(1, 128))
	case "firetower-plain":
		return newFiretowerServerOpts()
	case "gorilla":
		return newGorillaHubCompressed(1)
	case "centrifuge":
		return newCentrifugeServerCompressed(1, 128)
	case "floor":
		return newFloorServerDeflate()
	}
	return nil, fmt.Errorf("bench: unknown compression server %q", kind)
}

func zKindsSelected() []string {
	return filterKinds(zKinds)
}
