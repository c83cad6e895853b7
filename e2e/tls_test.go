package e2e

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// tlsCertFiles writes a self-signed certificate for 127.0.0.1 and its key
// as PEM files in a temporary directory, and returns a pool trusting it.
func tlsCertFiles(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "firetower e2e"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(leaf)
	return certFile, keyFile, pool
}

var (
	wssLineRE   = regexp.MustCompile(`^websocket listening on (wss://\S+)$`)
	httpsLineRE = regexp.MustCompile(`^http listening on (https://\S+)$`)
)

// TestChatOverTLSOnePort: `firetower serve --addr --tls-cert --tls-key`
// serves the chat demo over https and its websocket over wss on one port;
// two Chromium pages (certificate errors ignored: the certificate is made
// here) load it and chat.
func TestChatOverTLSOnePort(t *testing.T) {
	chrome := chromiumPath()
	if chrome == "" {
		t.Skip("chromium not installed: apt-get install chromium")
	}
	bin := buildServer(t)
	cert, key, pool := tlsCertFiles(t)

	cmd := exec.Command(bin, "serve", "--addr", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key, "--log-level", "warn")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	done := make(chan error, 1)
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default: // nobody reads any more: drop
			}
		}
		done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("server stderr:\n%s", stderr.String())
		}
	})
	var wssURL, httpsURL string
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	for wssURL == "" || httpsURL == "" {
		select {
		case l := <-lines:
			if m := wssLineRE.FindStringSubmatch(l); m != nil {
				wssURL = m[1]
			}
			if m := httpsLineRE.FindStringSubmatch(l); m != nil {
				httpsURL = m[1]
			}
		case <-timer.C:
			t.Fatalf("no `websocket listening on wss://…` and `http listening on https://…` lines within 30s (got %q, %q)", wssURL, httpsURL)
		}
	}
	wsU, _ := url.Parse(wssURL)
	webU, _ := url.Parse(httpsURL)
	if wsU == nil || webU == nil || wsU.Host != webU.Host || wsU.Path != "/ws" {
		t.Fatalf("printed %s and %s: want one host:port, path /ws", wssURL, httpsURL)
	}

	// Go's side first: https with the certificate trusted.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := hc.Get(httpsURL + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz over https: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /healthz: %d", resp.StatusCode)
	}
	count := func(topic string) int {
		t.Helper()
		resp, err := hc.Get(httpsURL + "/api/v1/topics/" + url.PathEscape(topic))
		if err != nil {
			t.Fatalf("GET /api/v1/topics: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var r struct{ Count int }
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("GET /api/v1/topics: %q: %v", b, err)
		}
		return r.Count
	}

	browser := newBrowser(t, chromedp.Flag("ignore-certificate-errors", true))

	stamp := strconv.FormatInt(time.Now().UnixNano(), 36)
	alice := openPage(t, browser, "A", httpsURL)
	bob := openPage(t, browser, "B", httpsURL)
	alice.setName(t, "alice")
	bob.setName(t, "bob")
	for _, p := range []*page{alice, bob} {
		p.joined(t, defaultRoom)
	}
	// The pages' sockets are wss to the page's own port.
	alice.waitJS(t, "the page's websocket is wss on its own host and port",
		`location.protocol === 'https:' && window.chatClient && window.chatClient._ws &&
		 window.chatClient._ws.url === 'wss://' + location.host + '/ws'`)
	for _, p := range []*page{alice, bob} {
		p.waitText(t, "online", "2")
	}
	if n := count(defaultRoom); n != 2 {
		t.Fatalf("subscribers of %s: %d, want 2", defaultRoom, n)
	}
	hello := "hello over tls " + stamp
	alice.say(t, hello, false)
	bob.waitMessage(t, "alice", hello)
	alice.waitMessage(t, "alice", hello)
	reply := "tls reply " + stamp
	bob.say(t, reply, true)
	alice.waitMessage(t, "bob", reply)
}
