// Command firetower runs a firetower server: websockets on one address, and
// on another the chat demo, health check and push API.
//
//	firetower                     # same as: firetower serve
//	firetower serve --ws-addr 127.0.0.1:9999 --http-addr 127.0.0.1:9998
//	firetower manager --addr 127.0.0.1:6666   # a topic manager for a cluster
//	firetower help [serve|manager]            # also --help, -h; exits 0
package main

import (
	"context"
	"crypto/tls"
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
	} else if len(args) > 0 && isHelpFlag(args[0]) {
		// firetower --help: the whole usage, not only serve's flags.
		cmd, args = "help", args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, args, stdout, stderr)
	case "manager":
		return runManager(ctx, args, stdout, stderr)
	case "help":
		return help(args, stdout, stderr)
	}
	_, _ = fmt.Fprintf(stderr, "firetower: unknown command %q\n\n", cmd)
	usage(stderr)
	return 2
}

func isHelpFlag(arg string) bool {
	switch arg {
	case "-h", "-help", "--help":
		return true
	}
	return false
}

// subcommands lists what `firetower help` shows, in order; flags
// registers the command's flags on a fresh set, as the command does.
var subcommands = []struct {
	name, synopsis string
	flags          func() *flag.FlagSet
}{
	{"serve", "run a firetower server: websockets, and on the HTTP address the chat demo,\n" +
		"the dashboard, metrics, health and the push API (the default command)",
		func() *flag.FlagSet { fs, _ := newServeFlags(); return fs }},
	{"manager", "run a topic-manager node that gateways (firetower serve --manager) share",
		func() *flag.FlagSet { fs, _ := newManagerFlags(); return fs }},
}

// usage writes the whole usage: every subcommand with its flags.
func usage(w io.Writer) {
	_, _ = fmt.Fprint(w, `firetower is a websocket pub/sub server.

usage:
  firetower [serve] [flags]    a server (with no subcommand, firetower serves)
  firetower manager [flags]    a topic manager for a cluster of servers
  firetower help [command]     this text, or one command's flags

Secrets are best given by environment: FIRETOWER_API_KEY (or --api-key-file),
FIRETOWER_CLUSTER_SECRET, FIRETOWER_NATS_TOKEN, FIRETOWER_NATS_PASSWORD.
`)
	for _, c := range subcommands {
		_, _ = fmt.Fprintln(w)
		commandUsage(w, c.name, c.synopsis, c.flags())
	}
}

// commandUsage writes one subcommand's synopsis and flags.
func commandUsage(w io.Writer, name, synopsis string, fs *flag.FlagSet) {
	_, _ = fmt.Fprintf(w, "firetower %s [flags]: %s\n", name, synopsis)
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// help answers `firetower help [command]`.
func help(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || isHelpFlag(args[0]) {
		usage(stdout)
		return 0
	}
	for _, c := range subcommands {
		if c.name == args[0] {
			commandUsage(stdout, c.name, c.synopsis, c.flags())
			return 0
		}
	}
	_, _ = fmt.Fprintf(stderr, "firetower help: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// parseFlags parses a subcommand's flags. Asked for help, it prints the
// command's usage on stdout; on a mistake it prints the mistake and the
// usage on stderr. ok is false when the command must end with code.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	fs.SetOutput(io.Discard) // the messages are printed below, where they belong
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.SetOutput(stderr)
	if err == nil {
		return 0, true
	}
	for _, c := range subcommands {
		if c.name != fs.Name() {
			continue
		}
		if errors.Is(err, flag.ErrHelp) {
			commandUsage(stdout, c.name, c.synopsis, c.flags())
			return 0, false
		}
		_, _ = fmt.Fprintf(stderr, "firetower %s: %v\n\n", c.name, err)
		commandUsage(stderr, c.name, c.synopsis, c.flags())
		return 2, false
	}
	_, _ = fmt.Fprintf(stderr, "firetower %s: %v\n", fs.Name(), err)
	return 2, false
}

// serveFlags are the values of `firetower serve`'s flags.
type serveFlags struct {
	wsAddr, httpAddr, managers, natsURLs, logLevel, grpcAddr, apiKey *string
	nodeID                                                           *uint
	legacy                                                           *bool
	trust                                                            *trustFlags
	cluster                                                          *clusterFlags
	history                                                          historyFlags
	listen                                                           *listenFlags
	presence                                                         presenceFlags
	wildcards                                                        wildcardFlags
	compression                                                      *bool          // compression.go
	writeDelay                                                       *time.Duration // writedelay.go
}

func newServeFlags() (*flag.FlagSet, *serveFlags) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	f := &serveFlags{
		wsAddr:   fs.String("ws-addr", "127.0.0.1:9999", "websocket listen address"),
		httpAddr: fs.String("http-addr", "127.0.0.1:9998", "HTTP listen address (demo, dashboard, metrics, health, API)"),
		nodeID:   fs.Uint("node-id", 1, "node id, unique in a cluster (at most 65535)"),
		managers: fs.String("manager", "", "topic-manager addresses, host:port[,host:port...] (default: the embedded manager)"),
		natsURLs: fs.String("nats", "", "NATS URLs, nats://host:port[,...], instead of --manager"),
		legacy:   fs.Bool("legacy-delivery", false, "deliver raw data bytes with no envelope (firetower v0.4 clients)"),
		logLevel: fs.String("log-level", "info", "debug, info, warn or error"),
		grpcAddr: fs.String("grpc-addr", "", "gRPC push API listen address, e.g. 127.0.0.1:9997 (off when empty)"),
		// The default is read from the environment after parsing
		// (trustFlags.loadKey), so that the key never shows in --help.
		apiKey: fs.String("api-key", "", "key required by the push API (env FIRETOWER_API_KEY); required when --http-addr is not loopback"),
	}
	f.trust = addTrustFlags(fs, true) // --api-key-file, --allowed-hosts, --allowed-origins, --http-read-timeout (trust.go)
	f.cluster = addClusterFlags(fs, true)
	f.history = addHistoryFlags(fs) // history.go
	f.listen = addListenFlags(fs)   // --addr, --tls-cert, --tls-key (listen.go)
	f.presence = addPresenceFlags(fs)
	f.wildcards = addWildcardFlags(fs)
	f.compression = addCompressionFlags(fs)
	f.writeDelay = addWriteDelayFlag(fs)
	return fs, f
}

// managerFlags are the values of `firetower manager`'s flags.
type managerFlags struct {
	addr, httpAddr, apiKey, logLevel *string
	trust                            *trustFlags
	cluster                          *clusterFlags
	history                          managerHistoryFlags // history.go
}

func newManagerFlags() (*flag.FlagSet, *managerFlags) {
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	f := &managerFlags{
		addr:     fs.String("addr", "127.0.0.1:6666", "manager listen address (gateways connect here)"),
		httpAddr: fs.String("http-addr", "127.0.0.1:6660", "HTTP address (health, cluster view, push API)"),
		apiKey:   fs.String("api-key", "", "key required by the HTTP API (env FIRETOWER_API_KEY); required when --http-addr is not loopback"),
		logLevel: fs.String("log-level", "info", "debug, info, warn or error"),
	}
	f.trust = addTrustFlags(fs, false) // --api-key-file, --allowed-hosts, --http-read-timeout (trust.go)
	f.cluster = addClusterFlags(fs, false)
	f.history = addManagerHistoryFlags(fs)
	return fs, f
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, f := newServeFlags()
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	wsAddr, httpAddr, nodeID, managers, natsURLs := f.wsAddr, f.httpAddr, f.nodeID, f.managers, f.natsURLs
	legacy, logLevel, grpcAddr, apiKey, trust, cluster := f.legacy, f.logLevel, f.grpcAddr, f.apiKey, f.trust, f.cluster
	history, lf := f.history, f.listen
	cluster.resolve()
	if err := trust.loadKey(fs, apiKey); err != nil {
		_, _ = fmt.Fprintln(stderr, "firetower serve:", err)
		return 2
	}
	if err := lf.check(fs); err != nil {
		_, _ = fmt.Fprintln(stderr, "firetower serve:", err)
		return 2
	}
	if lf.onePort() {
		wsAddr, httpAddr = lf.addr, lf.addr
	}
	var tlsCfg *tls.Config
	if lf.tls() {
		var err error
		if tlsCfg, err = lf.tlsConfig(); err != nil {
			_, _ = fmt.Fprintln(stderr, "firetower serve:", err)
			return 2
		}
	}
	if *apiKey == "" && !isLoopback(*httpAddr) {
		_, _ = fmt.Fprintln(stderr, "firetower serve: --http-addr is not a loopback address: set --api-key (or FIRETOWER_API_KEY) to protect the push API")
		return 2
	}
	if *apiKey == "" && *grpcAddr != "" && !isLoopback(*grpcAddr) {
		_, _ = fmt.Fprintln(stderr, "firetower serve: --grpc-addr is not a loopback address: set --api-key (or FIRETOWER_API_KEY) to protect the push API")
		return 2
	}
	if *natsURLs != "" && *managers != "" {
		_, _ = fmt.Fprintln(stderr, "firetower serve: give --manager or --nats, not both")
		return 2
	}
	if *nodeID > 65535 {
		_, _ = fmt.Fprintln(stderr, "firetower serve: --node-id must be at most 65535")
		return 2
	}
	log, err := newLogger(*logLevel, stderr)
	if err != nil {
		_, _ = fmt.Fprintln(stderr, "firetower serve:", err)
		return 2
	}
	hc := trust.httpConfig(*apiKey, log)

	opts := trust.towerOptions(*wsAddr, *httpAddr)
	hopts, err := history.options(*natsURLs != "" || *managers != "") // history.go
	if err != nil {
		_, _ = fmt.Fprintln(stderr, "firetower serve:", err)
		return 2
	}
	opts = append(opts, hopts...)
	opts = append(opts, f.presence.options()...) // presence.go
	opts = append(opts, f.wildcards.options()...)
	opts = append(opts, compressionOptions(*f.compression)...)
	wopts, err := writeDelayOptions(*f.writeDelay)
	if err != nil {
		_, _ = fmt.Fprintln(stderr, "firetower serve:", err)
		return 2
	}
	opts = append(opts, wopts...)
	if *natsURLs != "" {
		ncfg, err := cluster.natsConfig(splitList(*natsURLs), log)
		if err != nil {
			_, _ = fmt.Fprintln(stderr, "firetower serve:", err)
			return 2
		}
		nm, err := natsmanager.New(ncfg)
		if err != nil {
			_, _ = fmt.Fprintln(stderr, "firetower serve:", err)
			return 2
		}
		opts = append(opts, firetower.WithManager(nm))
	}
	if *managers != "" {
		mcfg, err := cluster.managerClientConfig(splitList(*managers), log)
		if err != nil {
			_, _ = fmt.Fprintln(stderr, "firetower serve:", err)
			return 2
		}
		mc, err := manager.NewClient(mcfg)
		if err != nil {
			_, _ = fmt.Fprintln(stderr, "firetower serve:", err)
			return 2
		}
		opts = append(opts, firetower.WithManager(mc))
	}
	t, err := firetower.New(append(opts,
		firetower.WithAddr(lf.towerAddr(*wsAddr)),
		firetower.WithNodeID(uint16(*nodeID)),
		firetower.WithLegacyDelivery(*legacy),
		firetower.WithLogger(log),
	)...)
	if err != nil {
		_, _ = fmt.Fprintln(stderr, "firetower serve:", err)
		return 2
	}
	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		_, _ = fmt.Fprintln(stderr, "firetower serve:", err)
		return 1
	}
	// With TLS on two addresses, the websocket address is an HTTPS server
	// of its own that serves only the Tower (gnet has no TLS).
	var wln net.Listener
	if tlsCfg != nil && !lf.onePort() {
		if wln, err = net.Listen("tcp", *wsAddr); err != nil {
			_ = ln.Close() // already failing; the first error is the one reported
			_, _ = fmt.Fprintln(stderr, "firetower serve:", err)
			return 1
		}
	}
	var gln net.Listener
	if *grpcAddr != "" {
		if gln, err = net.Listen("tcp", *grpcAddr); err != nil {
			_ = ln.Close() // already failing; the first error is the one reported
			if wln != nil {
				_ = wln.Close() // already failing; the first error is the one reported
			}
			_, _ = fmt.Fprintln(stderr, "firetower serve:", err)
			return 1
		}
	}
	if err := t.Start(ctx); err != nil {
		_ = ln.Close() // already failing; the first error is the one reported
		if wln != nil {
			_ = wln.Close() // already failing; the first error is the one reported
		}
		if gln != nil {
			_ = gln.Close() // already failing; the first error is the one reported
		}
		_, _ = fmt.Fprintln(stderr, "firetower serve:", err)
		return 1
	}
	wsScheme, webScheme := schemes(tlsCfg)
	h := newHTTPHandler(t, hc)
	shutdown := t.Shutdown
	if t.Addr() == "" {
		// No listener of its own: the HTTP address upgrades too (the demo
		// connects to the port it was loaded from).
		h = withTower(t, h)
	}
	switch {
	case lf.onePort():
		_, _ = fmt.Fprintf(stdout, "websocket listening on %s://%s%s\n", wsScheme, ln.Addr(), t.Path())
	case wln != nil:
		stopWS := serveTowerOn(t, wrapTLS(wln, tlsCfg), trust.timeouts(), log)
		shutdown = func(ctx context.Context) error {
			stopWS(ctx)
			return t.Shutdown(ctx)
		}
		_, _ = fmt.Fprintf(stdout, "websocket listening on %s://%s%s\n", wsScheme, wln.Addr(), t.Path())
	default:
		_, _ = fmt.Fprintf(stdout, "websocket listening on %s://%s%s\n", wsScheme, t.Addr(), t.Path())
	}
	_, _ = fmt.Fprintf(stdout, "http listening on %s://%s\n", webScheme, ln.Addr())
	if gln != nil {
		gs := grpcapi.New(t, grpcapi.Config{APIKey: *apiKey, Guard: hc.shared}).NewGRPCServer()
		_, _ = fmt.Fprintf(stdout, "grpc listening on %s\n", gln.Addr())
		grpcDone := make(chan struct{})
		go func() {
			defer close(grpcDone)
			if err := gs.Serve(gln); err != nil {
				log.Error("grpc server", "err", err)
			}
		}()
		towerDown := shutdown
		shutdown = func(ctx context.Context) error {
			stopGRPC(ctx, gs)
			<-grpcDone
			return towerDown(ctx)
		}
	}
	return runUntilDone(ctx, log, wrapTLS(ln, tlsCfg), h, trust.timeouts(), shutdown)
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
	fs, f := newManagerFlags()
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	addr, httpAddr, apiKey, logLevel, trust, cluster := f.addr, f.httpAddr, f.apiKey, f.logLevel, f.trust, f.cluster
	cluster.resolve()
	if err := trust.loadKey(fs, apiKey); err != nil {
		_, _ = fmt.Fprintln(stderr, "firetower manager:", err)
		return 2
	}
	log, err := newLogger(*logLevel, stderr)
	if err != nil {
		_, _ = fmt.Fprintln(stderr, "firetower manager:", err)
		return 2
	}
	if *apiKey == "" && !isLoopback(*httpAddr) {
		_, _ = fmt.Fprintln(stderr, "firetower manager: --http-addr is not a loopback address: set --api-key (or FIRETOWER_API_KEY)")
		return 2
	}
	mcfg, err := cluster.managerServerConfig(*addr, log)
	if err != nil {
		_, _ = fmt.Fprintln(stderr, "firetower manager:", err)
		return 2
	}
	if err := f.history.apply(&mcfg); err != nil {
		_, _ = fmt.Fprintln(stderr, "firetower manager:", err)
		return 2
	}
	srv, err := manager.NewServer(mcfg)
	if err != nil {
		_, _ = fmt.Fprintln(stderr, "firetower manager:", err)
		return 2
	}
	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		_, _ = fmt.Fprintln(stderr, "firetower manager:", err)
		return 1
	}
	if err := srv.Start(ctx); err != nil {
		_ = ln.Close() // already failing; the first error is the one reported
		_, _ = fmt.Fprintln(stderr, "firetower manager:", err)
		return 1
	}
	_, _ = fmt.Fprintf(stdout, "manager listening on %s\n", srv.Addr())
	_, _ = fmt.Fprintf(stdout, "http listening on http://%s\n", ln.Addr())
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
