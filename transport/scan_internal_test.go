package transport

import (
	"errors"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// closingConn is a gnet.Conn whose writes fail the way a reset peer's do:
// gnet closes the connection, and runs OnClose, before Write returns. Only
// the methods a scan uses are implemented.
type closingConn struct {
	gnet.Conn
	s   *Server
	ctx any
}

func (f *closingConn) Context() any          { return f.ctx }
func (f *closingConn) SetContext(v any)      { f.ctx = v }
func (f *closingConn) OutboundBuffered() int { return 0 }
func (f *closingConn) Write([]byte) (int, error) {
	f.s.OnClose(f, errors.New("connection reset by peer"))
	return 0, errors.New("connection reset by peer")
}

// TestScanSurvivesClosesWhilePinging: a ping the scan writes may close its
// connection at once, and OnClose moves the loop's last connection into its
// place. The scan must not walk on into the slot that emptied (it used to
// find nil there and panic) and must leave every other connection alone.
func TestScanSurvivesClosesWhilePinging(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	h := newEchoHandler()
	s := New(Config{Addr: "127.0.0.1:0", EventLoops: 1, PingInterval: time.Second, IdleTimeout: time.Hour,
		Clock: func() time.Time { return now }}, h)
	h.s = s
	l := &loop{s: s, pendingKeys: map[*Conn]string{}, failing: map[*Conn]failure{}}
	const n = 4
	for i := range n {
		gc := &closingConn{s: s}
		c := &Conn{l: l, gc: gc, idx: i, state: stOpen, since: now.UnixNano(), lastRead: now.UnixNano()}
		gc.ctx = c
		l.conns = append(l.conns, c)
		s.c.open.Add(1)
	}
	now = now.Add(2 * time.Second) // every connection is due a ping
	l.scan()
	if len(l.conns) != 0 {
		t.Fatalf("%d connections left; every ping failed and closed its connection", len(l.conns))
	}
	for range n {
		if code := <-h.closed; code != 0 {
			t.Errorf("connection closed with code %d, want 0 (reset)", code)
		}
	}
}
