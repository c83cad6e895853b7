//go:build linux

package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/http"
	"time"

	"github.com/firetower-go/firetower"
)

// firetowerMounted is firetower served by a net/http server (issue 14):
// the Tower has no listener of its own (WithAddr("")) and is the
// http.Server's handler. Over plain TCP an upgrade is hijacked into the
// event loops; with TLS each connection is relayed to them by a goroutine
// pair.
type firetowerMounted struct {
	firetowerServer
	ln   net.Listener
	srv  *http.Server
	done chan error
	tls  bool
}

func newFiretowerMounted(tc *tls.Config) (*firetowerMounted, error) {
	t, err := firetower.New(
		firetower.WithAddr(""),
		firetower.WithPublishPolicy(firetower.PublishAny),
	)
	if err != nil {
		return nil, err
	}
	if err := t.Start(context.Background()); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = t.Shutdown(context.Background())
		return nil, err
	}
	s := &firetowerMounted{firetowerServer: firetowerServer{t: t}, ln: ln, done: make(chan error, 1), tls: tc != nil}
	s.srv = &http.Server{Handler: t, ReadHeaderTimeout: 10 * time.Second}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

func (s *firetowerMounted) Addr() string { return hostPort(s.ln.Addr()) }

func (s *firetowerMounted) Flavour() string {
	if s.tls {
		return flavourTLS
	}
	return flavourFiretower
}

func (s *firetowerMounted) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if e := <-s.done; !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	if e := s.t.Shutdown(ctx); e != nil && err == nil {
		err = e
	}
	return err
}

// gorillaTLS is the gorilla hub served over TLS.
type gorillaTLS struct{ *gorillaHub }

func (gorillaTLS) Flavour() string { return flavourTLS }

// benchTLS is a server TLS configuration with a self-signed certificate
// made now (the TLS load generator does not verify it). HTTP/1.1 only.
func benchTLS() (*tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "firetower bench"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, NextProtos: []string{"http/1.1"}}, nil
}
