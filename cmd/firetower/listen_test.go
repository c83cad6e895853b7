package main

import (
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
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// ltCert writes a self-signed certificate for 127.0.0.1 and its key as PEM
// files, and returns them with a pool that trusts the certificate.
func ltCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "firetower test"},
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
	ltWSLine   = regexp.MustCompile(`^websocket listening on (wss?)://(\S+)/ws$`)
	ltHTTPLine = regexp.MustCompile(`^http listening on (https?)://(\S+)$`)
)

// ltServe runs serve with args and returns the schemes and addresses of
// its two printed lines.
func ltServe(t *testing.T, args ...string) (wsScheme, wsAddr, webScheme, webAddr string, stop func() int) {
	t.Helper()
	lines, stop := mtRun(t, append([]string{"serve", "--log-level", "error"}, args...)...)
	ws := ltWSLine.FindStringSubmatch("websocket listening on " + mtLine(t, lines, "websocket listening on "))
	web := ltHTTPLine.FindStringSubmatch("http listening on " + mtLine(t, lines, "http listening on "))
	if ws == nil || web == nil {
		t.Fatalf("printed lines do not follow the contract: %v %v", ws, web)
	}
	return ws[1], ws[2], web[1], web[2], stop
}

// ltChat subscribes over the websocket, publishes through the HTTP API and
// expects the delivery.
func ltChat(t *testing.T, wsURL, apiBase string, tc *tls.Config) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, TLSClientConfig: tc}
	ws, _, err := d.Dial(wsURL, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", wsURL, err)
	}
	defer ws.Close()
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := ws.WriteJSON(map[string]any{"type": "subscribe", "topic": "room", "id": 1}); err != nil {
		t.Fatal(err)
	}
	var ack map[string]any
	if err := ws.ReadJSON(&ack); err != nil || ack["type"] != "ack" {
		t.Fatalf("subscribe ack: %v %v", ack, err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 10 * time.Second}
	resp, err := hc.Post(apiBase+"/api/v1/publish", "application/json", strings.NewReader(`{"topic":"room","data":{"hi":1}}`))
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("publish: %d %s", resp.StatusCode, b)
	}
	var del map[string]any
	if err := ws.ReadJSON(&del); err != nil || del["type"] != "publish" || del["topic"] != "room" {
		t.Fatalf("delivery: %v %v", del, err)
	}
	// The dashboard's websocket: the page's own port (the Tower is mounted
	// there too when it has no listener of its own), the same scheme.
	resp, err = hc.Get(apiBase + "/dashboard/token")
	if err != nil {
		t.Fatalf("GET /dashboard/token: %v", err)
	}
	tb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var tok struct{ URL string }
	_ = json.Unmarshal(tb, &tok)
	webHost := apiBase[strings.Index(apiBase, "://")+3:]
	wsScheme := wsURL[:strings.Index(wsURL, "://")]
	if want := wsScheme + "://" + webHost + "/ws?system_token="; resp.StatusCode != 200 || !strings.HasPrefix(tok.URL, want) {
		t.Errorf("GET /dashboard/token: %d %s, want a url starting %s", resp.StatusCode, tb, want)
	} else {
		dws, _, err := (&websocket.Dialer{TLSClientConfig: tc}).Dial(tok.URL, nil)
		if err != nil {
			t.Errorf("the dashboard's websocket URL %s: %v", tok.URL, err)
		} else {
			dws.Close()
		}
	}
	for _, path := range []string{"/healthz", "/", "/firetower.js"} {
		resp, err := hc.Get(apiBase + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %d, want 200", path, resp.StatusCode)
		}
	}
}

// TestServeOnePort: --addr serves the websocket and the HTTP side on one
// port, and prints both lines with it.
func TestServeOnePort(t *testing.T) {
	wss, wsAddr, webs, webAddr, stop := ltServe(t, "--addr", "127.0.0.1:0")
	if wss != "ws" || webs != "http" || wsAddr != webAddr {
		t.Fatalf("lines: %s://%s and %s://%s, want ws and http on one address", wss, wsAddr, webs, webAddr)
	}
	ltChat(t, "ws://"+wsAddr+"/ws", "http://"+webAddr, nil)
	if code := stop(); code != 0 {
		t.Fatalf("exit status %d", code)
	}
}

// TestServeTLS: --tls-cert/--tls-key serve https and wss, on one port with
// --addr and on the two addresses without it.
func TestServeTLS(t *testing.T) {
	cert, key, pool := ltCert(t)
	tc := &tls.Config{RootCAs: pool}
	t.Run("one port", func(t *testing.T) {
		wss, wsAddr, webs, webAddr, stop := ltServe(t, "--addr", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key)
		if wss != "wss" || webs != "https" || wsAddr != webAddr {
			t.Fatalf("lines: %s://%s and %s://%s, want wss and https on one address", wss, wsAddr, webs, webAddr)
		}
		ltChat(t, "wss://"+wsAddr+"/ws", "https://"+webAddr, tc)
		if code := stop(); code != 0 {
			t.Fatalf("exit status %d", code)
		}
	})
	t.Run("two addresses", func(t *testing.T) {
		wss, wsAddr, webs, webAddr, stop := ltServe(t, "--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key)
		if wss != "wss" || webs != "https" || wsAddr == webAddr {
			t.Fatalf("lines: %s://%s and %s://%s, want wss and https on two addresses", wss, wsAddr, webs, webAddr)
		}
		ltChat(t, "wss://"+wsAddr+"/ws", "https://"+webAddr, tc)
		if code := stop(); code != 0 {
			t.Fatalf("exit status %d", code)
		}
	})
	t.Run("bad flags", func(t *testing.T) {
		for _, args := range [][]string{
			{"serve", "--tls-cert", cert},
			{"serve", "--addr", "127.0.0.1:0", "--ws-addr", "127.0.0.1:0"},
			{"serve", "--addr", "127.0.0.1:0", "--tls-cert", key, "--tls-key", cert},
		} {
			if code := run(t.Context(), args, io.Discard, io.Discard); code != 2 {
				t.Errorf("%v: exit status %d, want 2", args, code)
			}
		}
	})
}
