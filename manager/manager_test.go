package manager_test

import (
	"context"
	"crypto/tls"
	"testing"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/manager"
	"github.com/firetower-go/firetower/managertest"
)

// startManagers starts n manager nodes on free ports with the security
// settings of base (Secret, TLS).
func startManagers(t *testing.T, n int, base manager.ServerConfig) []*manager.Server {
	t.Helper()
	var out []*manager.Server
	for range n {
		cfg := base
		cfg.Addr = "127.0.0.1:0"
		s, err := manager.NewServer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
		out = append(out, s)
	}
	return out
}

// nodeCluster is the conformance cluster on topic-manager nodes. The
// gateways and managers share a cluster secret, so the suite runs over
// authenticated sessions; with mtls, over mutual TLS as well.
func nodeCluster(managers int, mtls bool) managertest.Cluster {
	return managertest.Cluster{
		Name:  "node",
		Exact: true,
		Managers: func(t *testing.T, n int) []firetower.Manager {
			scfg := manager.ServerConfig{Secret: trustSecret}
			var clientTLS *tls.Config
			if mtls {
				pki := newTrustPKI(t)
				scfg.TLS = &tls.Config{Certificates: []tls.Certificate{pki.server}, ClientCAs: pki.pool,
					ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
				clientTLS = &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{pki.client}, MinVersion: tls.VersionTLS12}
			}
			var addrs []string
			for _, s := range startManagers(t, managers, scfg) {
				addrs = append(addrs, s.Addr())
			}
			out := make([]firetower.Manager, n)
			for i := range out {
				c, err := manager.NewClient(manager.ClientConfig{Addrs: addrs, Secret: trustSecret, TLS: clientTLS})
				if err != nil {
					t.Fatal(err)
				}
				out[i] = c
			}
			return out
		},
	}
}

func TestOneManagerConformance(t *testing.T)  { managertest.Run(t, nodeCluster(1, false)) }
func TestTwoManagersConformance(t *testing.T) { managertest.Run(t, nodeCluster(2, true)) }
