package firetower_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/firetower-go/firetower"
)

type mountUserKey struct{}

// TestMountIdentityFromMiddleware: an HTTP middleware authenticates before
// the upgrade and stores the user in the request context; OnConnect finds
// it (and the client's real address) in c.Conn().Request(), on a mounted
// and on a TLS connection alike.
func TestMountIdentityFromMiddleware(t *testing.T) {
	for _, v := range wsVariants() {
		if v.mount == wsNative {
			continue
		}
		t.Run(v.name, func(t *testing.T) {
			type seen struct{ user, remote, tlsState string }
			got := make(chan seen, 1)
			tw, err := firetower.New(firetower.WithAddr(""),
				firetower.OnConnect(ptHook(func(c *firetower.Context) error {
					r := c.Conn().Request()
					user, _ := r.Context().Value(mountUserKey{}).(string)
					if user == "" {
						return firetower.ErrUnauthorized
					}
					c.Conn().SetUserID(user)
					st := "none"
					if r.TLS != nil {
						st = "tls"
					}
					got <- seen{user, r.RemoteAddr, st}
					return nil
				})))
			if err != nil {
				t.Fatal(err)
			}
			if err := tw.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = tw.Shutdown(context.Background()) })
			auth := func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					user := r.URL.Query().Get("token") // stands for a real check
					if user == "" {
						http.Error(w, "no token", http.StatusUnauthorized)
						return
					}
					next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), mountUserKey{}, user)))
				})
			}
			mux := http.NewServeMux()
			mux.Handle("/ws", auth(tw))
			mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("hello")) })
			srv := httptest.NewUnstartedServer(mux)
			var dialer websocket.Dialer
			scheme := "ws"
			if v.mount == wsHTTPS {
				srv.EnableHTTP2 = false
				srv.StartTLS()
				dialer.TLSClientConfig = &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
				scheme = "wss"
			} else {
				srv.Start()
			}
			defer srv.Close()
			host := strings.TrimPrefix(strings.TrimPrefix(srv.URL, "https://"), "http://")

			// Refused by the middleware: no upgrade, the application's status.
			_, resp, err := dialer.Dial(scheme+"://"+host+"/ws", nil)
			if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("without a token: err %v, resp %v; want 401 from the middleware", err, resp)
			}
			ws, _, err := dialer.Dial(scheme+"://"+host+"/ws?token=alice", nil)
			if err != nil {
				t.Fatalf("with a token: %v", err)
			}
			defer ws.Close()
			s := ptRecv(t, got, "OnConnect")
			if s.user != "alice" {
				t.Errorf("OnConnect saw user %q, want alice", s.user)
			}
			if h, _, err := net.SplitHostPort(s.remote); err != nil || h != "127.0.0.1" {
				t.Errorf("Request().RemoteAddr = %q, want the client's 127.0.0.1:port", s.remote)
			}
			if want := map[wsMount]string{wsHTTP: "none", wsHTTPS: "tls"}[v.mount]; s.tlsState != want {
				t.Errorf("Request().TLS: %s, want %s", s.tlsState, want)
			}
			ws.WriteJSON(map[string]any{"type": "ping", "id": 1})
			var pong map[string]any
			if err := ws.ReadJSON(&pong); err != nil || pong["type"] != "pong" {
				t.Fatalf("ping over the mounted connection: %v %v", pong, err)
			}
			// The other route of the same server still works.
			c := srv.Client()
			r, err := c.Get(srv.URL + "/hello")
			if err != nil || r.StatusCode != 200 {
				t.Fatalf("GET /hello beside the Tower: %v %v", r, err)
			}
			r.Body.Close()
		})
	}
}

// TestMountLimitsAndStats: per-address limits see the real client address,
// and Stats count connections the same whichever way they came in.
func TestMountLimitsAndStats(t *testing.T) {
	wsEach(t, func(t *testing.T, v wsVariant) {
		tw := ptStart(t, v, firetower.WithMaxConnectionsPerIP(2))
		a := ptDial(t, tw, "")
		b := ptDial(t, tw, "")
		_, resp, err := ptDialTo(tw, ptURL(tw, ""))
		if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("third connection from 127.0.0.1 with a limit of 2: err %v, resp %v; want 429", err, resp)
		}
		wantProxied := int64(0)
		if v.mount == wsHTTPS {
			wantProxied = 2 // the refused one's relay ends once its answer is out
		}
		ptWaitStats(t, tw, "two open connections", func(s firetower.Stats) bool {
			return s.Transport.Open == 2 && s.Transport.Upgraded == 2 && s.Transport.Rejected == 1 &&
				s.Transport.Proxied == wantProxied
		})
		st := tw.Stats().Transport
		switch v.mount {
		case wsNative:
			if st.Hijacked != 0 || st.Proxied != 0 {
				t.Errorf("native: Hijacked %d Proxied %d, want 0", st.Hijacked, st.Proxied)
			}
		case wsHTTP:
			if st.Hijacked != 3 || st.Proxied != 0 {
				t.Errorf("mounted: Hijacked %d Proxied %d, want 3 and 0", st.Hijacked, st.Proxied)
			}
		case wsHTTPS:
			if st.Hijacked != 0 || st.Proxied != 2 {
				t.Errorf("tls: Hijacked %d Proxied %d, want 0 and 2 open", st.Hijacked, st.Proxied)
			}
		}
		a.closeHandshake()
		b.close()
		ptWaitStats(t, tw, "every connection gone", func(s firetower.Stats) bool {
			return s.Transport.Open == 0 && s.Transport.Proxied == 0
		})
	})
}

// TestMountNotStarted: a Tower not started (or shut down) answers 503.
func TestMountNotStarted(t *testing.T) {
	tw, err := firetower.New(firetower.WithAddr(""))
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	tw.ServeHTTP(rec, httptest.NewRequest("GET", "/ws", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("before Start: %d, want 503", rec.Code)
	}
}

// mountRelays counts the relay goroutines of proxied (TLS) connections.
func mountRelays() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "transport.(*Server).proxy.func")
}

// TestMountTLSNonReaderEnds: a TLS client that stops reading is closed as
// a slow consumer like any other, and its relay goroutines end although
// the client never takes the bytes they hold (their writes have a
// deadline).
func TestMountTLSNonReaderEnds(t *testing.T) {
	v := wsVariants()[2]
	if v.mount != wsHTTPS {
		t.Fatalf("variant 2 is %s, want tls", v.name)
	}
	s := rfcStartServer(t, v, firetower.WithOutboundLimit(64<<10),
		firetower.WithPingInterval(100*time.Millisecond), firetower.WithIdleTimeout(500*time.Millisecond))
	c := rfcUpgrade(t, s, nil)
	c.send(rfcText(`{"type":"subscribe","topic":"flood","id":1}`))
	c.expect(rfcWantJSON(`{"type":"ack","id":1}`))
	payload := []byte(`"` + strings.Repeat("x", 32<<10) + `"`)
	deadline := time.Now().Add(20 * time.Second)
	for s.tw.Stats().Transport.SlowClosed == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no slow-consumer close after flooding a client that does not read: %+v", s.tw.Stats().Transport)
		}
		if err := s.tw.Publish(context.Background(), "flood", payload); err != nil {
			t.Fatal(err)
		}
	}
	ptWaitStats(t, s.tw, "the relayed connection gone", func(st firetower.Stats) bool {
		return st.Transport.Open == 0 && st.Transport.Proxied == 0
	})
	for mountRelays() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d relay goroutines left after the connection closed", mountRelays())
		}
		time.Sleep(5 * time.Millisecond) // polling the goroutine list until the deadline
	}
}

// TestMountTLSShutdownLeavesNoRelay: Shutdown closes TLS clients with 1001
// and returns once their relay goroutines are gone, a client that does not
// read included.
func TestMountTLSShutdownLeavesNoRelay(t *testing.T) {
	v := wsVariants()[2]
	s := rfcStartServer(t, v)
	readers := []*rfcClient{rfcUpgrade(t, s, nil), rfcUpgrade(t, s, nil)}
	_ = rfcUpgrade(t, s, nil) // never reads
	ptWaitStats(t, s.tw, "three relayed connections", func(st firetower.Stats) bool { return st.Transport.Proxied == 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	// Shutdown waited for them (a WaitGroup); each may still be returning.
	for deadline := time.Now().Add(5 * time.Second); mountRelays() > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d relay goroutines left after Shutdown returned", mountRelays())
		}
		time.Sleep(5 * time.Millisecond) // polling the goroutine list until the deadline
	}
	for i, c := range readers {
		f, err := c.next(rfcWait)
		if err != nil || f.op != rfcOpClose {
			t.Errorf("client %d: %v %v, want a close frame", i, f, err)
			continue
		}
		if code, _, _ := rfcParseClose(f.payload); code != 1001 {
			t.Errorf("client %d: close %d, want 1001", i, code)
		}
	}
}

// TestMountHTTP2Refused: an HTTP/2 request cannot be taken over: 505.
func TestMountHTTP2Refused(t *testing.T) {
	s := wsStart(t, wsVariants()[1], nil)
	r := httptest.NewRequest("GET", "/ws", nil)
	r.ProtoMajor, r.ProtoMinor, r.Proto = 2, 0, "HTTP/2.0"
	rec := httptest.NewRecorder()
	s.tw.ServeHTTP(rec, r)
	if rec.Code != http.StatusHTTPVersionNotSupported {
		t.Fatalf("HTTP/2 upgrade: %d, want 505", rec.Code)
	}
}
