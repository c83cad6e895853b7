//go:build linux

package bench

import (
	"context"
	"time"

	"github.com/firetower-go/firetower"
)

// firetowerServer is firetower as a user would run it: the embedded
// manager, the default JSON protocol, default limits. PublishAny lets a
// client publish too, though the benchmarks publish server-side with
// Tower.Publish.
type firetowerServer struct {
	t *firetower.Tower
}

func newFiretowerServer() (*firetowerServer, error) { return newFiretowerServerOpts() }

// newFiretowerServerOpts is newFiretowerServer with more options.
func newFiretowerServerOpts(opts ...firetower.Option) (*firetowerServer, error) {
	t, err := firetower.New(append([]firetower.Option{
		firetower.WithAddr("127.0.0.1:0"),
		firetower.WithPublishPolicy(firetower.PublishAny),
	}, opts...)...)
	if err != nil {
		return nil, err
	}
	if err := t.Start(context.Background()); err != nil {
		return nil, err
	}
	return &firetowerServer{t: t}, nil
}

func (s *firetowerServer) Addr() string    { return s.t.Addr() }
func (s *firetowerServer) Path() string    { return "/ws" }
func (s *firetowerServer) Flavour() string { return flavourFiretower }

func (s *firetowerServer) Publish(topic string, data []byte) error {
	return s.t.Publish(context.Background(), topic, data)
}

// chatWriteDelay is the firetower-delay server's WithWriteDelay.
const chatWriteDelay = 10 * time.Millisecond

// newFiretowerDelay is firetower as in BenchmarkChat with its writes to a
// client coalesced over up to chatWriteDelay (the firetower-delay kind).
func newFiretowerDelay() (*firetowerServer, error) {
	return newFiretowerServerOpts(firetower.WithWriteDelay(chatWriteDelay))
}

// firetowerCompression is firetower's permessage-deflate option.
func firetowerCompression(level, minSize int) firetower.Option {
	return firetower.WithCompression(level, minSize)
}

// Writes is the number of write calls to client sockets so far.
func (s *firetowerServer) Writes() uint64 { return s.t.Stats().Transport.Writes }

func (s *firetowerServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return s.t.Shutdown(ctx)
}
