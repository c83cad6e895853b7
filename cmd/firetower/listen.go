package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/firetower-go/firetower"
)

// listenFlags are serve's flags for where and how it listens besides the
// two-address pair: --addr (everything on one port) and --tls-cert /
// --tls-key (https and wss).
type listenFlags struct {
	addr, tlsCert, tlsKey *string
	wsSet, httpSet        bool // --ws-addr / --http-addr given explicitly
}

func addListenFlags(fs *flag.FlagSet) *listenFlags {
	return &listenFlags{
		addr:    fs.String("addr", "", "one listen address for everything: websocket (/ws), demo, dashboard, metrics and API (instead of --ws-addr and --http-addr)"),
		tlsCert: fs.String("tls-cert", "", "TLS certificate file (PEM): serve https and wss (with --tls-key)"),
		tlsKey:  fs.String("tls-key", "", "TLS key file (PEM) of --tls-cert"),
	}
}

// check validates the combination once the flags are parsed, and records
// which address flags were given.
func (lf *listenFlags) check(fs *flag.FlagSet) error {
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "ws-addr":
			lf.wsSet = true
		case "http-addr":
			lf.httpSet = true
		}
	})
	if *lf.addr != "" && (lf.wsSet || lf.httpSet) {
		return errors.New("give --addr, or --ws-addr and --http-addr, not both")
	}
	if (*lf.tlsCert == "") != (*lf.tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	return nil
}

// onePort reports whether everything is served on --addr.
func (lf *listenFlags) onePort() bool { return *lf.addr != "" }

// tls reports whether https and wss are served.
func (lf *listenFlags) tls() bool { return *lf.tlsCert != "" }

// towerAddr is the Tower's own listen address: none when the websocket is
// served by an HTTP server (one port, or TLS, which gnet cannot do).
func (lf *listenFlags) towerAddr(wsAddr string) string {
	if lf.onePort() || lf.tls() {
		return ""
	}
	return wsAddr
}

// tlsConfig loads the certificate. HTTP/1.1 only: a websocket upgrade
// needs it (websockets over HTTP/2 are not supported).
func (lf *listenFlags) tlsConfig() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(*lf.tlsCert, *lf.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12}, nil
}

// wrap applies TLS to a bound listener when it is on.
func wrapTLS(ln net.Listener, cfg *tls.Config) net.Listener {
	if cfg == nil {
		return ln
	}
	return tls.NewListener(ln, cfg)
}

// schemes are the printed URLs' schemes.
func schemes(cfg *tls.Config) (ws, web string) {
	if cfg != nil {
		return "wss", "https"
	}
	return "ws", "http"
}

// withTower serves the Tower's upgrade path on h's server, ahead of h (the
// Tower applies its own origin check and limits, as on its own listener).
func withTower(t *firetower.Tower, h http.Handler) http.Handler {
	path := t.Path()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == path {
			t.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// serveTowerOn serves the Tower alone on ln (a TLS websocket address
// beside the HTTP address) until the returned stop is called.
func serveTowerOn(t *firetower.Tower, ln net.Listener, to httpTimeouts, log *slog.Logger) (stop func(context.Context)) {
	hs := newHTTPServer(t, to)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("websocket server", "err", err)
		}
	}()
	return func(ctx context.Context) {
		if err := hs.Shutdown(ctx); err != nil {
			log.Error("websocket server shutdown", "err", err)
		}
		<-done
	}
}
