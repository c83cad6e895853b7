package client_test

import (
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/firetower-go/firetower/client"
)

// TestTLS: the client connects over wss to a Tower mounted in an HTTPS
// server, trusting its certificate through WithTLSConfig; without it the
// unknown certificate is refused.
func TestTLS(t *testing.T) {
	tw := startTower(t, "") // no listener of its own: served by the HTTPS server
	srv := httptest.NewUnstartedServer(tw)
	srv.EnableHTTP2 = false
	srv.StartTLS()
	defer srv.Close()
	url := "wss://" + strings.TrimPrefix(srv.URL, "https://") + "/ws"
	pool := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs

	ctx := tctx(t)
	if c, err := client.Dial(ctx, url, client.WithReconnect(false)); err == nil {
		c.Close()
		t.Fatalf("Dial without trusting the test certificate succeeded")
	}
	rec := newRecorder()
	c, err := client.Dial(ctx, url, append(rec.options(), client.WithTLSConfig(&tls.Config{RootCAs: pool}))...)
	if err != nil {
		t.Fatalf("Dial over TLS: %v", err)
	}
	if err := c.Subscribe(ctx, "news"); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	if err := tw.Publish(ctx, "news", []byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	if d := rec.next(t); d != (delivery{"news", `{"n":1}`}) {
		t.Fatalf("got %+v", d)
	}
	if st := tw.Stats().Transport; st.Proxied != 1 {
		t.Errorf("Stats.Transport.Proxied = %d, want 1 (the TLS connection)", st.Proxied)
	}
	if err := c.Close(); err != nil && !errors.Is(err, client.ErrClosed) {
		t.Fatal(err)
	}
}
