package transport

import (
	"context"
	"errors"
	"net"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	gerrors "github.com/panjf2000/gnet/v2/pkg/errors"
)

// The Server accepts connections itself and hands each one to the gnet
// engine (Engine.Register), instead of letting gnet listen: gnet's acceptor
// gives up on any error it does not know, EMFILE and ENFILE included, and
// takes the whole engine down with it, so a burst of connections past the
// process's descriptor limit would end the websocket server for good. Here
// an accept error is counted, logged once per run of errors, and retried
// after a backoff (5 ms doubling to 1 s, as net/http does), and the
// connections already open are served throughout.

const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// acceptLoop runs until the listener is closed (Shutdown). It is the
// Server's own goroutine: Shutdown closes the listener and waits for it.
func (s *Server) acceptLoop(ln net.Listener) {
	defer close(s.acceptDone)
	var backoff time.Duration
	failing := false
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			s.c.acceptErrors.Add(1)
			if !failing {
				failing = true
				s.log.Error("transport: accepting connections failed; retrying with backoff", "err", err, "hint", acceptHint(err))
			}
			backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-s.stopAccept:
				t.Stop()
				return
			}
			continue
		}
		if failing {
			failing = false
			s.log.Info("transport: accepting connections again")
		}
		backoff = 0
		s.register(c)
	}
}

// register hands an accepted connection to an event loop. gnet duplicates
// its descriptor and closes c; a failure (no descriptor left for the
// duplicate, the engine stopping) closes c and is counted.
func (s *Server) register(c net.Conn) {
	ctx := gnet.NewNetConnContext(context.Background(), c)
	if _, err := s.eng.Register(ctx); err != nil {
		s.c.acceptErrors.Add(1)
		_ = c.Close()
		if !errors.Is(err, gerrors.ErrEngineInShutdown) {
			s.log.Warn("transport: cannot hand a connection to an event loop", "err", err)
		}
	}
	// The result arrives on a buffered channel gnet closes; a failure
	// there (EMFILE on the duplicate) has closed the connection already.
}

func acceptHint(err error) string {
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
		return "out of file descriptors: raise ulimit -n, or cap connections with WithMaxConnections"
	}
	return ""
}
