package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/firetower-go/firetower/manager"
	"github.com/firetower-go/firetower/manager/natsmanager"
)

// Cluster security flags, shared by serve and manager: the secret that
// authenticates gateways and managers to each other, TLS on the manager
// links, and (serve only) the credentials for NATS.

const (
	clusterSecretEnv = "FIRETOWER_CLUSTER_SECRET" //nolint:gosec // G101: the name of an environment variable, not a credential
	natsTokenEnv     = "FIRETOWER_NATS_TOKEN"     //nolint:gosec // G101: the name of an environment variable, not a credential
	natsPasswordEnv  = "FIRETOWER_NATS_PASSWORD"  //nolint:gosec // G101: the name of an environment variable, not a credential
	// minSecretLen is the length below which a secret is only warned about.
	minSecretLen = 16
)

type clusterFlags struct {
	secret                 string
	tlsCert, tlsKey, tlsCA string
	// serve only
	natsToken, natsUser, natsPassword, natsCreds string
}

// addClusterFlags registers the flags on fs; gateway adds the NATS ones.
// Secrets are read from the environment after parsing (see resolve), so
// that they never show in --help.
func addClusterFlags(fs *flag.FlagSet, gateway bool) *clusterFlags {
	f := &clusterFlags{}
	fs.StringVar(&f.secret, "cluster-secret", "", "shared secret of the cluster's gateways and managers (env "+clusterSecretEnv+"); required when a cluster address is not loopback")
	fs.StringVar(&f.tlsCert, "cluster-tls-cert", "", "TLS certificate file for the cluster links (manager: its server certificate; gateway: a client certificate)")
	fs.StringVar(&f.tlsKey, "cluster-tls-key", "", "TLS key file of --cluster-tls-cert")
	fs.StringVar(&f.tlsCA, "cluster-tls-ca", "", "CA file (manager: client certificates must be signed by it; gateway: the manager's or NATS server's certificate must be)")
	if gateway {
		fs.StringVar(&f.natsToken, "nats-token", "", "NATS server token (env "+natsTokenEnv+")")
		fs.StringVar(&f.natsUser, "nats-user", "", "NATS user name")
		fs.StringVar(&f.natsPassword, "nats-password", "", "NATS password of --nats-user (env "+natsPasswordEnv+")")
		fs.StringVar(&f.natsCreds, "nats-creds", "", "NATS credentials file (user JWT and NKey seed)")
	}
	return f
}

// resolve fills what the flags left empty from the environment.
func (f *clusterFlags) resolve() {
	if f.secret == "" {
		f.secret = os.Getenv(clusterSecretEnv)
	}
	if f.natsToken == "" {
		f.natsToken = os.Getenv(natsTokenEnv)
	}
	if f.natsPassword == "" {
		f.natsPassword = os.Getenv(natsPasswordEnv)
	}
}

func (f *clusterFlags) tlsSet() bool { return f.tlsCert != "" || f.tlsKey != "" || f.tlsCA != "" }

// warnWeakSecret logs when the secret is short enough to guess offline
// from one recorded handshake.
func (f *clusterFlags) warnWeakSecret(log *slog.Logger) {
	if f.secret != "" && len(f.secret) < minSecretLen {
		log.Warn("--cluster-secret is short: use at least 16 random characters (e.g. openssl rand -base64 32)", "length", len(f.secret))
	}
}

func loadCA(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file) //nolint:gosec // G304: a file the operator names on the command line
	if err != nil {
		return nil, fmt.Errorf("--cluster-tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--cluster-tls-ca: no PEM certificate in %s", file)
	}
	return pool, nil
}

func (f *clusterFlags) loadCert() ([]tls.Certificate, error) {
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return nil, errors.New("give --cluster-tls-cert and --cluster-tls-key together")
	}
	if f.tlsCert == "" {
		return nil, nil
	}
	c, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("--cluster-tls-cert/--cluster-tls-key: %w", err)
	}
	return []tls.Certificate{c}, nil
}

// serverTLS is the manager's TLS configuration: nil without the flags; with
// --cluster-tls-ca, client certificates are required (mutual TLS).
func (f *clusterFlags) serverTLS() (*tls.Config, error) {
	if !f.tlsSet() {
		return nil, nil
	}
	certs, err := f.loadCert()
	if err != nil {
		return nil, err
	}
	if certs == nil {
		return nil, errors.New("TLS on the manager port needs --cluster-tls-cert and --cluster-tls-key")
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: certs}
	if f.tlsCA != "" {
		if c.ClientCAs, err = loadCA(f.tlsCA); err != nil {
			return nil, err
		}
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// clientTLS is a gateway's TLS configuration for its cluster links: nil
// without the flags; --cluster-tls-ca replaces the system roots, the
// certificate is presented to the server.
func (f *clusterFlags) clientTLS() (*tls.Config, error) {
	if !f.tlsSet() {
		return nil, nil
	}
	certs, err := f.loadCert()
	if err != nil {
		return nil, err
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: certs}
	if f.tlsCA != "" {
		if c.RootCAs, err = loadCA(f.tlsCA); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// checkManagerAddr refuses a manager listen address that is not loopback
// when no secret is set.
func (f *clusterFlags) checkManagerAddr(addr string) error {
	if f.secret == "" && !isLoopback(addr) {
		return fmt.Errorf("--addr %s is not a loopback address: set --cluster-secret (or %s) so that only your gateways can join", addr, clusterSecretEnv)
	}
	return nil
}

// managerServerConfig is the manager node's configuration.
func (f *clusterFlags) managerServerConfig(addr string, log *slog.Logger) (manager.ServerConfig, error) {
	if err := f.checkManagerAddr(addr); err != nil {
		return manager.ServerConfig{}, err
	}
	tc, err := f.serverTLS()
	if err != nil {
		return manager.ServerConfig{}, err
	}
	f.warnWeakSecret(log)
	return manager.ServerConfig{Addr: addr, Logger: log, Secret: []byte(f.secret), TLS: tc}, nil
}

// managerClientConfig is a gateway's configuration for its managers.
func (f *clusterFlags) managerClientConfig(addrs []string, log *slog.Logger) (manager.ClientConfig, error) {
	if f.secret == "" {
		var open []string
		for _, a := range addrs {
			if !isLoopback(a) {
				open = append(open, a)
			}
		}
		if len(open) > 0 {
			return manager.ClientConfig{}, fmt.Errorf("--manager %s is not a loopback address: set --cluster-secret (or %s), the secret the managers have", strings.Join(open, ","), clusterSecretEnv)
		}
	}
	tc, err := f.clientTLS()
	if err != nil {
		return manager.ClientConfig{}, err
	}
	f.warnWeakSecret(log)
	return manager.ClientConfig{Addrs: addrs, Logger: log, Secret: []byte(f.secret), TLS: tc}, nil
}

// natsConfig is a gateway's configuration for NATS. NATS has its own
// credentials: --cluster-secret does not apply to it.
func (f *clusterFlags) natsConfig(urls []string, log *slog.Logger) (natsmanager.Config, error) {
	cfg := natsmanager.Config{URLs: urls, Logger: log, Token: f.natsToken, User: f.natsUser, Password: f.natsPassword, CredsFile: f.natsCreds}
	tc, err := f.clientTLS()
	if err != nil {
		return cfg, err
	}
	cfg.TLS = tc
	// natsmanager.New refuses a URL that is not loopback without a
	// credential; check here to name the flags.
	probe := cfg
	probe.Logger = nil
	if _, err := natsmanager.New(probe); errors.Is(err, natsmanager.ErrInsecureURL) {
		return cfg, fmt.Errorf("--nats has an address that is not loopback: set a NATS credential: --nats-token, --nats-user and --nats-password, --nats-creds, or a client certificate with --cluster-tls-cert and --cluster-tls-key (--cluster-secret is for the topic-manager nodes, not NATS)\n(%w)", err)
	}
	return cfg, nil
}
