// Command echo is a websocket echo server over package transport, for
// conformance runs such as Autobahn|Testsuite's fuzzingclient (see
// internal/autobahn/run.sh). Every message comes back as it came, with the
// same opcode, answered on the event loop through Conn.Send as firetower
// answers the requests it handles inline.
//
//	go run ./internal/cmd/echo -addr 127.0.0.1:9001 -max-message 16777216
//
// With -compression it negotiates permessage-deflate (for Autobahn's 12.*
// and 13.* cases; the server always answers server_no_context_takeover and
// client_no_context_takeover, so the cases that need other parameters see
// their offers declined).
//
// It prints "listening on ADDR" once it accepts connections and stops on
// SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"github.com/firetower-go/firetower/transport"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9001", "listen address")
	maxMsg := flag.Int("max-message", 16<<20, "largest message accepted, in bytes (Autobahn's 9.* cases send up to 16 MiB)")
	loops := flag.Int("loops", 0, "event loops (0: one per core)")
	verbose := flag.Bool("v", false, "log the transport's debug messages")
	compress := flag.Bool("compression", false, "permessage-deflate (level 1, every message of 1 byte or more)")
	flag.Parse()
	if err := run(*addr, *maxMsg, *loops, *verbose, *compress); err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}

func run(addr string, maxMsg, loops int, verbose, compress bool) error {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	h := &echo{}
	h.s = transport.New(transport.Config{
		Addr:           addr,
		EventLoops:     loops,
		MaxMessageSize: maxMsg,
		// A 16 MiB echo must not count as a slow consumer.
		OutboundLimit: 4*maxMsg + 4<<20,
		Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
		Compression:   transport.Compression{Enabled: compress, Level: 1, MinSize: 1},
	}, h)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := h.s.Start(ctx); err != nil {
		return err
	}
	fmt.Println("listening on", h.s.Addr())
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return h.s.Shutdown(sctx)
}

// echo is the transport.Handler: it sends every message back.
type echo struct{ s *transport.Server }

func (*echo) Handshake(*transport.Conn, *transport.Handshake) transport.Decision {
	return transport.Decision{}
}

func (e *echo) Message(c *transport.Conn, op ws.OpCode, payload []byte) int {
	f := e.s.NewMessageFrame(op, payload)
	c.Send(f)
	f.Release()
	e.s.PutBuffer(payload)
	return 0
}

func (e *echo) Overflow(_ *transport.Conn, _ ws.OpCode, payload []byte) { e.s.PutBuffer(payload) }
func (*echo) Dropped(*transport.Conn, int)                              {}
func (*echo) Closed(*transport.Conn, int, error)                        {}
