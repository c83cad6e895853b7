package transport

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// burstHandler answers a message by queueing burst frames of size bytes for
// the connection from the event loop, all in one loop turn: what a loop that
// runs late gathers for a client that does not read.
type burstHandler struct {
	echoHandler
	burst, size int
}

func (h *burstHandler) Message(c *Conn, _ ws.OpCode, payload []byte) int {
	h.s.PutBuffer(payload)
	body := bytes.Repeat([]byte{'x'}, h.size)
	for range h.burst {
		f := h.s.NewMessageFrame(ws.OpBinary, body)
		c.Send(f)
		f.Release()
	}
	return 0
}

// TestSlowCloseBoundsOneTurnsBatch: a connection that does not read is closed
// as a slow consumer before its outbound buffer takes more than the limit
// plus one frame, even when one loop turn queues far more than the limit for
// it. Before the check moved ahead of the batch, the whole turn's batch (here
// 64 MiB against a 256 KiB limit) was handed to gnet's buffer first. Frames
// held under a write delay count toward the limit the same way.
func TestSlowCloseBoundsOneTurnsBatch(t *testing.T) {
	t.Run("delay=0", func(t *testing.T) { testSlowCloseBoundsOneTurnsBatch(t, 0) })
	t.Run("delay=1h", func(t *testing.T) { testSlowCloseBoundsOneTurnsBatch(t, time.Hour) })
}

func testSlowCloseBoundsOneTurnsBatch(t *testing.T, delay time.Duration) {
	const burst, size, limit = 1024, 64 << 10, 256 << 10
	h := &burstHandler{echoHandler: *newEchoHandler(), burst: burst, size: size}
	h.s = newTestServer(Config{OutboundLimit: limit, MaxMessageSize: 1 << 20, WriteDelay: delay}, h)
	startServer(t, h.s)
	c := dial(t, h.s)
	c.write(clientFrame(true, 0, ws.OpBinary, []byte("go")))

	// Read nothing until the server has decided to close the connection.
	deadline := time.Now().Add(ioLimit)
	for h.s.Stats().SlowClosed == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the connection was not closed as a slow consumer")
		}
		time.Sleep(time.Millisecond) // polling interval
	}

	frames := 0
	for {
		_, op, p := c.readFrame()
		if op == ws.OpClose {
			if code := int(binary.BigEndian.Uint16(p)); code != h.s.cfg.SlowCloseCode {
				t.Fatalf("close code %d, want %d", code, h.s.cfg.SlowCloseCode)
			}
			break
		}
		if len(p) != size {
			t.Fatalf("frame %d has %d bytes, want %d", frames, len(p), size)
		}
		frames++
	}
	if _, err := c.br.ReadByte(); err != io.EOF {
		t.Errorf("after the close frame: %v, want EOF", err)
	}
	st := h.s.Stats()
	t.Logf("%d of %d frames written before the close (the rest is what the kernels' buffers took); discarded %d", frames, burst, st.Discarded)
	// What reached the client is the kernels' socket buffers (a few MiB on
	// loopback) plus at most the limit and one frame; far from all 64 MiB.
	if frames > burst/2 {
		t.Errorf("%d of %d frames were written: the batch went past the outbound limit", frames, burst)
	}
	if got := st.Discarded; got != uint64(burst-frames) {
		t.Errorf("discarded %d, want %d (every frame not sent is counted)", got, burst-frames)
	}
}
