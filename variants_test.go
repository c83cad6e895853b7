package firetower_test

// Listener variants: the ways a client reaches a Tower. The RFC 6455 table
// (rfc6455_test.go) and the protocol tests (protocol_test.go) run one test
// body against each of them. Adding a variant is one entry in wsVariants:
// a name, the server options it adds, how the Tower is served, and how a
// client dials it.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/firetower-go/firetower"
)

// wsMount is how a test serves its Tower.
type wsMount uint8

const (
	wsNative wsMount = iota // the Tower's own listener (WithAddr)
	wsHTTP                  // mounted in a net/http server: hijacked into the event loops
	wsHTTPS                 // mounted in a net/http server with TLS: the proxied transport
)

// wsVariant is one way of reaching a Tower.
type wsVariant struct {
	name  string
	opts  []firetower.Option // added to every server the test starts
	mount wsMount
	// dial opens a raw connection to s (TLS done, if any) and a reader on
	// it; the websocket handshake is the caller's.
	dial func(t testing.TB, s *wsServer) (net.Conn, *bufio.Reader)
	// header is added to every handshake of the RFC 6455 suite (e.g. a
	// Sec-WebSocket-Extensions offer); nil for none.
	header http.Header
	// dialer adjusts the protocol tests' gorilla/websocket Dialer (e.g.
	// EnableCompression); nil for none.
	dialer func(d *websocket.Dialer)
	// deflate: the connection negotiates permessage-deflate; the RFC 6455
	// suite reads the server's frames inflated (czInflating) and checks the
	// 101 for the extension instead of its absence.
	deflate bool
}

// wsVariants lists the variants the conformance tests run against.
func wsVariants() []wsVariant {
	return []wsVariant{
		{name: "native", mount: wsNative, dial: wsDialTCP},
		{name: "mounted", mount: wsHTTP, dial: wsDialTCP},
		{name: "tls", mount: wsHTTPS, dial: wsDialTLS},
		// permessage-deflate negotiated on the native listener; every server
		// message of 1 byte or more is compressed (minSize 1)
		{name: "compressed", mount: wsNative, dial: wsDialTCP, deflate: true,
			opts:   []firetower.Option{firetower.WithCompression(1, 1)},
			header: http.Header{"Sec-WebSocket-Extensions": {czOffer}},
			dialer: func(d *websocket.Dialer) { d.EnableCompression = true }},
	}
}

// wsEach runs body once per variant, as a subtest named after it.
func wsEach(t *testing.T, body func(t *testing.T, v wsVariant)) {
	for _, v := range wsVariants() {
		t.Run(v.name, func(t *testing.T) { body(t, v) })
	}
}

// wsMountedHeaderTimeout is the mounted servers' ReadHeaderTimeout: net/http
// reads a mounted request's head, so its timeout is the handshake timeout
// there (the cases that stall a handshake set WithHandshakeTimeout(300ms)
// and want the connection closed within 3s). net/http also bounds the TLS
// handshake with it: long enough for one under -race on a busy machine.
const wsMountedHeaderTimeout = 1500 * time.Millisecond

// wsServer is a running Tower as a variant serves it.
type wsServer struct {
	v      wsVariant
	tw     *firetower.Tower
	addr   string      // "host:port" clients dial
	scheme string      // "ws" or "wss"
	tls    *tls.Config // for clients of a wss server (trusts its certificate)
	hs     *http.Server
}

// url is the websocket URL of path "/ws" with an optional raw query.
func (s *wsServer) url(query string) string {
	u := s.scheme + "://" + s.addr + "/ws"
	if query != "" {
		u += "?" + query
	}
	return u
}

// wsStart starts a Tower with opts (after the variant's own) and serves it
// as the variant says, until the end of the test. The Tower is shut down
// before the HTTP server that mounts it.
func wsStart(t testing.TB, v wsVariant, lg *slog.Logger, opts ...firetower.Option) *wsServer {
	t.Helper()
	addr := "127.0.0.1:0"
	if v.mount != wsNative {
		addr = ""
	}
	all := append([]firetower.Option{firetower.WithAddr(addr)}, v.opts...)
	if lg != nil {
		all = append(all, firetower.WithLogger(lg))
	}
	tw, err := firetower.New(append(all, opts...)...)
	if err != nil {
		t.Fatalf("firetower.New: %v", err)
	}
	if err := tw.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	s := &wsServer{v: v, tw: tw, addr: tw.Addr(), scheme: "ws"}
	if v.mount != wsNative {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		s.addr = ln.Addr().String()
		mux := http.NewServeMux()
		mux.Handle("/", tw) // every path: the Tower's own path rule decides
		s.hs = &http.Server{Handler: mux, ReadHeaderTimeout: wsMountedHeaderTimeout, ErrorLog: log.New(io.Discard, "", 0)}
		if v.mount == wsHTTPS {
			cert, pool := wsCert(t)
			s.hs.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}
			s.tls = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
			s.scheme = "wss"
			ln = tls.NewListener(ln, s.hs.TLSConfig)
		}
		served := make(chan error, 1)
		go func() { served <- s.hs.Serve(ln) }()
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := s.hs.Shutdown(ctx); err != nil {
				t.Errorf("http.Server.Shutdown: %v", err)
			}
			if err := <-served; !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("http.Server.Serve: %v", err)
			}
		})
	}
	// Registered after the HTTP server's: cleanups run last first.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tw.Shutdown(ctx); err != nil && !errors.Is(err, firetower.ErrClosed) {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return s
}

func wsDialTCP(t testing.TB, s *wsServer) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", s.addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, bufio.NewReaderSize(conn, 64<<10)
}

func wsDialTLS(t testing.TB, s *wsServer) (net.Conn, *bufio.Reader) {
	t.Helper()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: s.tls}
	conn, err := d.DialContext(context.Background(), "tcp", s.addr)
	if err != nil {
		t.Fatalf("dial %s over TLS: %v", s.addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, bufio.NewReaderSize(conn, 64<<10)
}

// wsCert makes a self-signed certificate for 127.0.0.1 and a pool that
// trusts it.
func wsCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "firetower test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
