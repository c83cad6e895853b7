//go:build linux

package bench

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// subscriptionMemory is BenchmarkIdleMemory's subscriptions row: the
// firetower server in a process of its own, conns connections each
// subscribed to topics topics of 32 bytes that no other connection has;
// the server's VmRSS once every subscription is acknowledged, minus its
// VmRSS with the same connections open before any subscription, per
// subscription. Both readings follow a collection that returns free memory
// to the OS ("gc" to the server process), so garbage left by subscribing
// is not counted. Firetower only: it is the memory a client can make the
// server spend (issue 11 asks for at most 256 B per subscription).
func subscriptionMemory(b *testing.B) {
	conns, topics := size(1000, 100), size(1000, 100)
	b.Run(fmt.Sprintf("subscriptions=%dx%d", conns, topics), func(b *testing.B) {
		if !slices.Contains(kinds(), "firetower") {
			b.Skip("firetower is not among BENCH_SERVERS")
		}
		b.Run("firetower", func(b *testing.B) {
			sp, err := startServerProc("firetower")
			if err != nil {
				b.Fatal(err)
			}
			defer sp.stop()
			cs := make([]*subClient, conns)
			defer func() {
				for _, c := range cs {
					if c != nil {
						c.nc.Close()
					}
				}
			}()
			for i := range cs {
				if cs[i], err = dialSubClient(sp.addr, sp.path); err != nil {
					b.Fatalf("connection %d: %v", i, err)
				}
			}
			base, err := sp.rssAfterGC()
			if err != nil {
				b.Fatal(err)
			}
			// Each connection on a goroutine of its own: it sends its
			// subscriptions, reads its acks, then answers pings until the
			// end, so none goes idle while the others subscribe.
			var wg sync.WaitGroup
			errs := make([]error, conns)
			acked := make(chan int, conns)
			failed := make(chan int, conns)
			for i, c := range cs {
				wg.Go(func() {
					if errs[i] = c.run(i, topics, acked); errs[i] != nil {
						failed <- i
					}
				})
			}
			timeout := time.NewTimer(5 * time.Minute)
			defer timeout.Stop()
			for range conns {
				select {
				case <-acked:
				case i := <-failed:
					b.Fatalf("connection %d: %v", i, errs[i])
				case <-timeout.C:
					b.Fatal("subscriptions not acknowledged in 5 minutes")
				}
			}
			after, err := sp.rssAfterGC()
			if err != nil {
				b.Fatal(err)
			}
			for _, c := range cs {
				c.nc.Close()
			}
			wg.Wait()
			cs = nil
			for i, err := range errs {
				if err != nil && !errors.Is(err, net.ErrClosed) {
					b.Fatalf("connection %d: %v", i, err)
				}
			}
			b.ReportMetric(float64(after-base)/float64(conns*topics), "bytes/sub")
			b.ReportMetric(float64(after)/(1<<20), "rss-MiB")
			b.ReportMetric(0, "ns/op")
		})
	})
}

// rssAfterGC has the server process collect garbage and return free memory
// to the OS, then reads its VmRSS.
func (s *serverProc) rssAfterGC() (int64, error) {
	if err := s.p.send("gc"); err != nil {
		return 0, err
	}
	l, err := s.p.recv(time.Minute)
	if err == nil && l != "ok" {
		err = fmt.Errorf("server child: %q to gc", l)
	}
	if err != nil {
		return 0, err
	}
	return s.rss()
}

// subClient is a minimal blocking websocket client of the firetower JSON
// protocol.
type subClient struct {
	nc net.Conn
	br *bufio.Reader
	mu sync.Mutex // writes
}

func dialSubClient(addr, path string) (*subClient, error) {
	nc, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return nil, err
	}
	c := &subClient{nc: nc, br: bufio.NewReaderSize(nc, 4096)}
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" +
		"\r\nSec-WebSocket-Version: 13\r\n\r\n"
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(nc, req); err != nil {
		nc.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err == nil && resp.StatusCode != http.StatusSwitchingProtocols {
		err = fmt.Errorf("upgrade refused: %s", resp.Status)
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

func (c *subClient) write(op byte, p []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.nc.Write(appendClientFrame(nil, op, p))
	return err
}

// run subscribes connection i to its topics, 100 to a request, reports on
// acked once every ack is in, then answers pings until the connection is
// closed.
func (c *subClient) run(i, topics int, acked chan<- int) error {
	const perReq = 100
	reqs := 0
	for j := 0; j < topics; j += perReq {
		req := []byte(`{"type":"subscribe","id":` + strconv.Itoa(j) + `,"topics":[`)
		for x := j; x < min(j+perReq, topics); x++ {
			if x > j {
				req = append(req, ',')
			}
			req = strconv.AppendQuote(req, subTopic(i, x))
		}
		req = append(req, "]}"...)
		if err := c.write(0x1, req); err != nil {
			return err
		}
		reqs++
	}
	var hdr [8]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(c.br, hdr[:2]); err != nil {
			return err
		}
		b0, b1 := hdr[0], hdr[1]
		n := uint64(b1 & 0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(c.br, hdr[:2]); err != nil {
				return err
			}
			n = uint64(binary.BigEndian.Uint16(hdr[:2]))
		case 127:
			if _, err := io.ReadFull(c.br, hdr[:8]); err != nil {
				return err
			}
			n = binary.BigEndian.Uint64(hdr[:8])
		}
		if b1&0x80 != 0 || n > 1<<20 {
			return fmt.Errorf("bad server frame header %x %x (length %d)", b0, b1, n)
		}
		buf = slices.Grow(buf[:0], int(n))[:n]
		if _, err := io.ReadFull(c.br, buf); err != nil {
			return err
		}
		switch b0 & 0x0f {
		case 0x9:
			if err := c.write(0xA, buf); err != nil {
				return err
			}
		case 0x1:
			if !strings.HasPrefix(string(buf), `{"type":"ack"`) {
				return fmt.Errorf("want an ack, got %.200s", buf)
			}
			if reqs--; reqs == 0 {
				acked <- i
			}
		case 0x8:
			return fmt.Errorf("server closed the connection: %q", buf)
		}
	}
}

// subTopic is topic j of connection i: 32 bytes, unique.
func subTopic(i, j int) string {
	s := fmt.Sprintf("sub/c%07d/t%07d/", i, j)
	return s + strings.Repeat("x", 32-len(s))
}
