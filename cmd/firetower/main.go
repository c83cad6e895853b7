// Command firetower runs a firetower server: websockets on one address, and
// on another the chat demo, health check and push API.
//
//	firetower                     # same as: firetower serve
//	firetower serve --ws-addr 127.0.0.1:9999 --http-addr 127.0.0.1:9998
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/grpcapi"
	"github.com/firetower-go/firetower/manager"
	"github.com/firetower-go/firetower/manager/natsmanager"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, args, stdout, stderr)
	case "manager":
		return runManager(ctx, args, stdout, stderr)
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "firetower: unknown command %q\n", cmd)
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  firetower [serve] [--ws-addr 127.0.0.1:9999] [--http-addr 127.0.0.1:9998] [--grpc-addr HOST:PORT] [--node-id 1]
                    [--manager host:port[,...] | --nats nats://host:port[,...]] [--legacy-delivery]
                    [--api-key KEY | --api-key-file FILE] [--allowed-hosts h,*.d] [--allowed-origins a,b]
                    [--http-read-timeout 30s]
  firetower manager [--addr 127.0.0.1:6666] [--http-addr 127.0.0.1:6660]
                    [--api-key KEY | --api-key-file FILE] [--allowed-hosts h,*.d] [--http-read-timeout 30s]
cluster links (serve and manager):
  [--cluster-secret S]  (env FIRETOWER_CLUSTER_SECRET; required when a cluster address is not loopback)
  [--cluster-tls-cert FILE --cluster-tls-key FILE] [--cluster-tls-ca FILE]
  serve with --nats: [--nats-token T | --nats-user U --nats-password P | --nats-creds FILE]
`)
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	wsAddr := fs.String("ws-addr", "127.0.0.1:9999", "websocket listen address")
	httpAddr := fs.String("http-addr", "127.0.0.1:9998", "HTTP listen address (demo, health, API)")
	nodeID := fs.Uint("node-id", 1, "node id, unique in a cluster")
	managers := fs.String("manager", "", "topic-manager addresses, host:port[,host:port...]")
	natsURLs := fs.String("nats", "", "NATS URLs, nats://host:port[,...]")
	legacy := fs.Bool("legacy-delivery", false, "deliver raw data bytes with no envelope (firetower v0.4 clients)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	grpcAddr := fs.String("grpc-addr", "", "gRPC push API listen address, e.g. 127.0.0.1:9997 (off when empty)")
	apiKey := fs.String("api-key", os.Getenv("FIRETOWER_API_KEY"), "key required by the push API (env FIRETOWER_API_KEY); required when --http-addr is not loopback")
	trust := addTrustFlags(fs, true) // --api-key-file, --allowed-hosts, --allowed-origins, --http-read-timeout (trust.go)
	cluster := addClusterFlags(fs, true)
	history := addHistoryFlags(fs) // history.go
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cluster.resolve()
	if err := trust.loadKey(fs, apiKey); err != nil {
		fmt.Fprintln(stderr, "firetower serve:", err)
		return 2
	}
	if *apiKey == "" && !isLoopback(*httpAddr) {
		fmt.Fprintln(stderr, "firetower serve: --http-addr is not a loopback address: set --api-key (or FIRETOWER_API_KEY) to protect the push API")
		return 2
	}
	if *apiKey == "" && *grpcAddr != "" && !isLoopback(*grpcAddr) {
		fmt.Fprintln(stderr, "firetower serve: --grpc-addr is not a loopback address: set --api-key (or FIRETOWER_API_KEY) to protect the push API")
		return 2
	}
	if *natsURLs != "" && *managers != "" {
		fmt.Fprintln(stderr, "firetower serve: give --manager or --nats, not both")
		return 2
	}
	if *nodeID > 65535 {
		fmt.Fprintln(stderr, "firetower serve: --node-id must be at most 65535")
		return 2
	}
	log, err := newLogger(*logLevel, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "firetower serve:", err)
		return 2
	}
	hc := trust.httpConfig(*apiKey, log)

	opts := trust.towerOptions(*wsAddr, *httpAddr)
	hopts, err := history.options(*natsURLs != "" || *managers != "")
	if err != nil {
		fmt.Fprintln(stderr, "firetower serve:", err)
		return 2
	}
	opts = append(opts, hopts...)
	if *natsURLs != "" {
		ncfg, err := cluster.natsConfig(splitList(*natsURLs), log)
		if err != nil {
			fmt.Fprintln(stderr, "firetower serve:", err)
			return 2
		}
		nm, err := natsmanager.New(ncfg)
		if err != nil {
			fmt.Fprintln(stderr, "firetower serve:", err)
			return 2
		}
		opts = append(opts, firetower.WithManager(nm))
	}
	if *managers != "" {
		mcfg, err := cluster.managerClientConfig(splitList(*managers), log)
		if err != nil {
			fmt.Fprintln(stderr, "firetower serve:", err)
			return 2
		}
		mc, err := manager.NewClient(mcfg)
		if err != nil {
			fmt.Fprintln(stderr, "firetower serve:", err)
			return 2
		}
		opts = append(opts, firetower.WithManager(mc))
	}
	t, err := firetower.New(append(opts,
		firetower.WithAddr(*wsAddr),
		firetower.WithNodeID(uint16(*nodeID)),
		firetower.WithLegacyDelivery(*legacy),
		firetower.WithLogger(log),
		firetower.OnSubscribe(presence),
		firetower.OnUnsubscribe(presence),
	)...)
	if err != nil {
		fmt.Fprintln(stderr, "firetower serve:", err)
		return 2
	}
	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		fmt.Fprintln(stderr, "firetower serve:", err)
		return 1
	}
	var gln net.Listener
	if *grpcAddr != "" {
		if gln, err = net.Listen("tcp", *grpcAddr); err != nil {
			ln.Close()
			fmt.Fprintln(stderr, "firetower serve:", err)
			return 1
		}
	}
	if err := t.Start(ctx); err != nil {
		ln.Close()
		if gln != nil {
			gln.Close()
		}
		fmt.Fprintln(stderr, "firetower serve:", err)
		return 1
	}
	fmt.Fprintf(stdout, "websocket listening on ws://%s/ws\n", t.Addr())
	fmt.Fprintf(stdout, "http listening on http://%s\n", ln.Addr())
	shutdown := t.Shutdown
	if gln != nil {
		gs := grpcapi.New(t, grpcapi.Config{APIKey: *apiKey, Guard: hc.shared}).NewGRPCServer()
		fmt.Fprintf(stdout, "grpc listening on %s\n", gln.Addr())
		grpcDone := make(chan struct{})
		go func() {
			defer close(grpcDone)
			if err := gs.Serve(gln); err != nil {
				log.Error("grpc server", "err", err)
			}
		}()
		shutdown = func(ctx context.Context) error {
			stopGRPC(ctx, gs)
			<-grpcDone
			return t.Shutdown(ctx)
		}
	}
	return runUntilDone(ctx, log, ln, newHTTPHandler(t, hc), trust.timeouts(), shutdown)
}

// stopGRPC lets in-flight calls finish, and cuts them off when ctx ends.
func stopGRPC(ctx context.Context, gs *grpc.Server) {
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		gs.Stop()
		<-done
	}
}

// presence publishes a chat room's online count into the room after every
// subscribe and unsubscribe on a topic under /chat/.
func presence(next firetower.Handler) firetower.Handler {
	return func(c *firetower.Context) error {
		err := next(c)
		for _, topic := range c.Topics() {
			if !strings.HasPrefix(topic, "/chat/") {
				continue
			}
			n, cerr := c.Tower().ConnectNum(c.Context(), topic)
			if cerr != nil {
				continue
			}
			_ = c.Tower().Publish(c.Context(), topic, fmt.Appendf(nil, `{"kind":"online","count":%d}`, n))
		}
		return err
	}
}

// isLoopback reports whether a listen address only accepts local clients.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// runManager runs a topic-manager node.
func runManager(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:6666", "manager listen address (gateways connect here)")
	httpAddr := fs.String("http-addr", "127.0.0.1:6660", "HTTP address (health, cluster view, push API)")
	apiKey := fs.String("api-key", os.Getenv("FIRETOWER_API_KEY"), "key required by the HTTP API (env FIRETOWER_API_KEY); required when --http-addr is not loopback")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	trust := addTrustFlags(fs, false) // --api-key-file, --allowed-hosts, --http-read-timeout (trust.go)
	cluster := addClusterFlags(fs, false)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cluster.resolve()
	if err := trust.loadKey(fs, apiKey); err != nil {
		fmt.Fprintln(stderr, "firetower manager:", err)
		return 2
	}
	log, err := newLogger(*logLevel, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "firetower manager:", err)
		return 2
	}
	if *apiKey == "" && !isLoopback(*httpAddr) {
		fmt.Fprintln(stderr, "firetower manager: --http-addr is not a loopback address: set --api-key (or FIRETOWER_API_KEY)")
		return 2
	}
	mcfg, err := cluster.managerServerConfig(*addr, log)
	if err != nil {
		fmt.Fprintln(stderr, "firetower manager:", err)
		return 2
	}
	srv, err := manager.NewServer(mcfg)
	if err != nil {
		fmt.Fprintln(stderr, "firetower manager:", err)
		return 2
	}
	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		fmt.Fprintln(stderr, "firetower manager:", err)
		return 1
	}
	if err := srv.Start(ctx); err != nil {
		ln.Close()
		fmt.Fprintln(stderr, "firetower manager:", err)
		return 1
	}
	fmt.Fprintf(stdout, "manager listening on %s\n", srv.Addr())
	fmt.Fprintf(stdout, "http listening on http://%s\n", ln.Addr())
	return runUntilDone(ctx, log, ln, managerHTTP(srv, trust.httpConfig(*apiKey, log)), trust.timeouts(), srv.Shutdown)
}

// runUntilDone serves h on ln, with the timeouts to, until ctx ends (a
// signal) or the HTTP server fails, then stops the HTTP server and calls
// shutdown, allowing 10 seconds for both. It returns the process exit code.
func runUntilDone(ctx context.Context, log *slog.Logger, ln net.Listener, h http.Handler, to httpTimeouts, shutdown func(context.Context) error) int {
	hs := newHTTPServer(h, to)
	httpDone := make(chan error, 1)
	go func() { httpDone <- hs.Serve(ln) }()
	code := 0
	select {
	case <-ctx.Done():
	case err := <-httpDone:
		log.Error("http server stopped", "err", err)
		code = 1
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		log.Error("http shutdown", "err", err)
		code = 1
	}
	if code == 0 {
		if err := <-httpDone; err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
		}
	}
	if err := shutdown(sctx); err != nil {
		log.Error("shutdown", "err", err)
		code = 1
	}
	return code
}

// newLogger parses a --log-level value.
func newLogger(level string, w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("bad --log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl})), nil
}
