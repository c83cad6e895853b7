package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The cluster's trust flags: a manager or gateway with a cluster address
// that is not loopback and no --cluster-secret refuses to start (exit 2,
// naming the flag); with the secret and the TLS flags the cluster forms,
// and a gateway with another secret stays out.

// openClusterArgs are command lines with a cluster address that is not
// loopback and no credential. The refusal comes before anything binds, so
// the other addresses are left at their defaults.
var openClusterArgs = []struct {
	args []string
	flag string // named in the message
}{
	{[]string{"manager", "--addr", "0.0.0.0:0", "--http-addr", "127.0.0.1:0"}, "--cluster-secret"},
	{[]string{"manager", "--addr", ":0", "--http-addr", "127.0.0.1:0"}, "--cluster-secret"},
	{[]string{"manager", "--addr", "192.0.2.1:6666", "--http-addr", "127.0.0.1:0"}, "--cluster-secret"},
	{[]string{"serve", "--manager", "192.0.2.1:6666"}, "--cluster-secret"},
	{[]string{"serve", "--manager", "127.0.0.1:6666,manager.example.com:6666"}, "--cluster-secret"},
	{[]string{"serve", "--nats", "nats://192.0.2.1:4222"}, "--nats-token"},
	{[]string{"serve", "--nats", "nats://192.0.2.1:4222", "--cluster-secret", "not-for-nats-0123456789"}, "--nats-token"},
}

func TestClusterRefusesOpenAddressWithoutSecret(t *testing.T) {
	t.Setenv(clusterSecretEnv, "")
	t.Setenv(natsTokenEnv, "")
	for _, c := range openClusterArgs {
		var stderr bytes.Buffer
		code := run(context.Background(), c.args, &bytes.Buffer{}, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), c.flag) {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and a message naming %s", c.args, code, stderr.String(), c.flag)
		}
		if c.flag == "--nats-token" && !strings.Contains(stderr.String(), "--cluster-secret") {
			t.Errorf("%q: %q does not say that --cluster-secret is not the NATS credential", c.args, stderr.String())
		}
	}
}

// TestClusterSecretAllowsOpenAddress: with the secret, from the flag or
// from the environment, a manager binds a non-loopback address.
func TestClusterSecretAllowsOpenAddress(t *testing.T) {
	for _, fromEnv := range []bool{false, true} {
		args := []string{"manager", "--addr", "0.0.0.0:0", "--http-addr", "127.0.0.1:0", "--log-level", "error"}
		if fromEnv {
			t.Setenv(clusterSecretEnv, "a-secret-from-the-environment")
		} else {
			t.Setenv(clusterSecretEnv, "")
			args = append(args, "--cluster-secret", "a-secret-from-the-flag-0123")
		}
		lines, stop := mtRun(t, args...)
		addr := mtLine(t, lines, "manager listening on ")
		if isLoopback(addr) {
			t.Errorf("manager bound %s, want all interfaces", addr)
		}
		if code := stop(); code != 0 {
			t.Fatalf("exit code %d", code)
		}
	}
}

// TestClusterBinaryRefusesOpenAddress runs the built binary: exit status 2
// and a message on stderr naming --cluster-secret.
func TestClusterBinaryRefusesOpenAddress(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the firetower binary")
	}
	bin := buildBinary(t)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, clusterSecretEnv+"=") {
			env = append(env, kv)
		}
	}
	for _, c := range openClusterArgs[:4] {
		cmd := exec.Command(bin, c.args...)
		cmd.Env = env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(stderr.String(), c.flag) {
			t.Errorf("%q: %v, stderr %q; want exit status 2 and a message naming %s", c.args, err, stderr.String(), c.flag)
		}
	}
}

// writePKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, each with its key, as PEM files in dir, and returns their
// paths.
func writePKI(t *testing.T, dir string) (ca, serverCert, serverKey, clientCert, clientKey string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "firetower test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		k := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".crt", "CERTIFICATE", der), write(name+".key", "PRIVATE KEY", kder)
	}
	ca = write("ca.crt", "CERTIFICATE", caDER)
	serverCert, serverKey = leaf("manager", 2, x509.ExtKeyUsageServerAuth)
	clientCert, clientKey = leaf("gateway", 3, x509.ExtKeyUsageClientAuth)
	return
}

// TestClusterSecretAndTLSFlags: a manager and a gateway started with the
// same --cluster-secret over mutual TLS form a cluster; a gateway with
// another secret does not join it; the manager's HTTP publish refuses
// system topics.
func TestClusterSecretAndTLSFlags(t *testing.T) {
	t.Setenv(clusterSecretEnv, "")
	const secret = "the-cluster-secret-0123456789abcdef"
	ca, scert, skey, ccert, ckey := writePKI(t, t.TempDir())
	mlines, mstop := mtRun(t, "manager", "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "error",
		"--cluster-secret", secret, "--cluster-tls-cert", scert, "--cluster-tls-key", skey, "--cluster-tls-ca", ca)
	maddr := mtLine(t, mlines, "manager listening on ")
	mhttp := "http://" + mtLine(t, mlines, "http listening on http://")
	defer func() {
		if code := mstop(); code != 0 {
			t.Errorf("manager exit code %d", code)
		}
	}()
	gateway := func(node, secret string) func() int {
		lines, stop := mtRun(t, "serve", "--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "error",
			"--node-id", node, "--manager", maddr,
			"--cluster-secret", secret, "--cluster-tls-cert", ccert, "--cluster-tls-key", ckey, "--cluster-tls-ca", ca)
		// the gateway prints its lines once its first attempt to join
		// each manager is over
		mtLine(t, lines, "websocket listening on ")
		return stop
	}
	nodes := func() []int {
		t.Helper()
		status, body := mtGet(t, "GET", mhttp+"/api/v1/nodes", "")
		var v struct {
			Nodes []struct {
				Node int `json:"node"`
			} `json:"nodes"`
		}
		if status != 200 || json.Unmarshal([]byte(body), &v) != nil {
			t.Fatalf("GET /api/v1/nodes: %d %q", status, body)
		}
		var out []int
		for _, n := range v.Nodes {
			out = append(out, n.Node)
		}
		return out
	}
	stop1 := gateway("1", secret)
	defer stop1()
	if got := nodes(); len(got) != 1 || got[0] != 1 {
		t.Fatalf("nodes %v, want [1]: the gateway with the secret and a certificate did not join", got)
	}
	stop2 := gateway("2", "another-secret-0123456789abcdef")
	defer stop2()
	if got := nodes(); len(got) != 1 || got[0] != 1 {
		t.Fatalf("nodes %v, want [1]: a gateway with another secret joined", got)
	}
	for _, topic := range []string{"$firetower/control", "$firetower/node/1"} {
		status, body := mtGet(t, "POST", mhttp+"/api/v1/publish", `{"topic":"`+topic+`","data":{"op":"disconnect_user","user":"u"}}`)
		if status != 403 || !strings.Contains(body, `"code":"forbidden"`) {
			t.Errorf("manager HTTP publish to %s: %d %q, want 403 forbidden", topic, status, body)
		}
	}
}
