//go:build linux

package bench

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/centrifugal/centrifuge"
)

// centrifugeServer is github.com/centrifugal/centrifuge with its default
// in-memory broker and its websocket handler, every option at its default.
// Any client may connect (anonymous), subscribe to any channel and publish
// to any channel.
type centrifugeServer struct {
	node *centrifuge.Node
	ln   net.Listener
	srv  *http.Server
}

func newCentrifugeServer() (*centrifugeServer, error) {
	return newCentrifugeServerConfig(centrifuge.WebsocketConfig{}, 0)
}

// newCentrifugeServerDelay is centrifuge with its per-connection WriteDelay
// (ConnectReply.WriteDelay): its writer collects what is queued for a
// connection for up to d before it writes, every other option at its default.
func newCentrifugeServerDelay(d time.Duration) (*centrifugeServer, error) {
	return newCentrifugeServerConfig(centrifuge.WebsocketConfig{}, d)
}

// newCentrifugeServerCompressed is centrifuge with permessage-deflate at
// level for messages of minSize bytes and more, and its cache of prepared
// (compressed once) messages for broadcasts.
func newCentrifugeServerCompressed(level, minSize int) (*centrifugeServer, error) {
	return newCentrifugeServerConfig(centrifuge.WebsocketConfig{
		Compression: true, CompressionLevel: level, CompressionMinSize: minSize,
		CompressionPreparedMessageCacheSize: 16 << 20,
	}, 0)
}

func newCentrifugeServerConfig(wcfg centrifuge.WebsocketConfig, writeDelay time.Duration) (*centrifugeServer, error) {
	node, err := centrifuge.New(centrifuge.Config{LogLevel: centrifuge.LogLevelNone})
	if err != nil {
		return nil, err
	}
	node.OnConnecting(func(context.Context, centrifuge.ConnectEvent) (centrifuge.ConnectReply, error) {
		return centrifuge.ConnectReply{Credentials: &centrifuge.Credentials{}, WriteDelay: writeDelay}, nil
	})
	node.OnConnect(func(c *centrifuge.Client) {
		c.OnSubscribe(func(_ centrifuge.SubscribeEvent, cb centrifuge.SubscribeCallback) {
			cb(centrifuge.SubscribeReply{}, nil)
		})
		// A client may publish to any channel through its protocol's
		// publish command (Ingest, Chat); no client info is attached, so a
		// delivery looks the same as a server-side publish's.
		c.OnPublish(func(_ centrifuge.PublishEvent, cb centrifuge.PublishCallback) {
			cb(centrifuge.PublishReply{}, nil)
		})
	})
	if err := node.Run(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = node.Shutdown(context.Background())
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/connection/websocket", centrifuge.NewWebsocketHandler(node, wcfg))
	s := &centrifugeServer{node: node, ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *centrifugeServer) Addr() string    { return hostPort(s.ln.Addr()) }
func (s *centrifugeServer) Path() string    { return "/connection/websocket" }
func (s *centrifugeServer) Flavour() string { return flavourCentrifuge }

func (s *centrifugeServer) Publish(topic string, data []byte) error {
	_, err := s.node.Publish(topic, data)
	return err
}

func (s *centrifugeServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.node.Shutdown(ctx)
	_ = s.srv.Close()
	return err
}
