package middleware_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/middleware"
)

// authTower runs Auth in OnConnect and reports the user id of every subscribe.
func authTower(t *testing.T, auth firetower.Middleware) (*firetower.Tower, <-chan string) {
	t.Helper()
	users := make(chan string, 16)
	tw := newTower(t, firetower.OnConnect(auth), firetower.OnBeforeSubscribe(signal(users)))
	return tw, users
}

// userOf subscribes c and returns the user id the server has for it.
func userOf(t *testing.T, c *client, users <-chan string) string {
	t.Helper()
	wantAck(t, c.sub(t, "who"))
	return recv(t, users, "the user id")
}

func TestAuthTokenSources(t *testing.T) {
	tw, users := authTower(t, middleware.Auth(userFromToken))
	cases := []struct {
		name      string
		query     string
		header    http.Header
		protocols []string
		wantProto string
	}{
		{name: "query", query: "token=good-q"},
		{name: "bearer", header: http.Header{"Authorization": {"Bearer good-b"}}},
		{name: "bearer, other case", header: http.Header{"Authorization": {"bearer   good-b"}}},
		{name: "cookie", header: http.Header{"Cookie": {"other=1; token=good-c"}}},
		{name: "protocol with json", protocols: []string{"firetower.v1.json", "token.good-p"}, wantProto: "firetower.v1.json"},
		{name: "protocol first", protocols: []string{"token.good-p", "firetower.v1.json"}, wantProto: "firetower.v1.json"},
		// the query comes first: the bad bearer token is never looked at
		{name: "first source wins", query: "token=good-q", header: http.Header{"Authorization": {"Bearer bad"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, resp, err := dialRaw(tw, tc.query, tc.header, tc.protocols...)
			if err != nil {
				t.Fatalf("dial: %v (%s)", err, status(resp))
			}
			defer c.close()
			if got := c.ws.Subprotocol(); got != tc.wantProto {
				t.Fatalf("negotiated subprotocol %q, want %q", got, tc.wantProto)
			}
			want := "q"
			if tc.query == "" {
				want = map[string]string{"bearer": "b", "bearer, other case": "b", "cookie": "c"}[tc.name]
				if want == "" {
					want = "p"
				}
			}
			if got := userOf(t, c, users); got != want {
				t.Fatalf("user id %q, want %q", got, want)
			}
		})
	}
}

func TestAuthRefusals(t *testing.T) {
	tw, _ := authTower(t, middleware.Auth(userFromToken))
	cases := []struct {
		name      string
		query     string
		header    http.Header
		protocols []string
		body      string
	}{
		{name: "no token", body: "no token"},
		{name: "empty query token", query: "token=", body: "no token"},
		{name: "bad query token", query: "token=bad", body: "invalid token"},
		{name: "bad bearer", header: http.Header{"Authorization": {"Bearer bad"}}, body: "invalid token"},
		{name: "basic auth is not a bearer", header: http.Header{"Authorization": {"Basic Z29vZC14Og=="}}, body: "no token"},
		{name: "bad cookie", header: http.Header{"Cookie": {"token=bad"}}, body: "invalid token"},
		{name: "bad protocol token", protocols: []string{"firetower.v1.json", "token.bad"}, body: "invalid token"},
		{name: "protocol without prefix", protocols: []string{"firetower.v1.json", "good-x"}, body: "no token"},
		{name: "another parameter", query: "access_token=good-x", body: "no token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := dialRefused(t, tw, tc.query, tc.header, http.StatusUnauthorized, tc.protocols...)
			if !strings.Contains(body, tc.body) {
				t.Fatalf("body %q, want it to say %q", body, tc.body)
			}
			if strings.Contains(body, "unknown token") {
				t.Fatalf("body %q tells the client the verifier's reason", body)
			}
		})
	}
}

func TestAuthVerifierErrors(t *testing.T) {
	verify := func(_ context.Context, token string) (string, error) {
		switch token {
		case "banned":
			return "", &firetower.Error{Code: firetower.CodeForbidden, Message: "banned"}
		case "wrapped-unauthorized":
			return "", errors.Join(errors.New("expired session"), firetower.ErrUnauthorized)
		case "no-user":
			return "", nil
		case "broken":
			return "", &firetower.Error{Code: firetower.CodeInternal, Message: "session store down"}
		}
		return "", errors.New("unknown")
	}
	tw, _ := authTower(t, middleware.Auth(verify))
	for token, want := range map[string]int{
		"banned":               http.StatusForbidden,
		"wrapped-unauthorized": http.StatusUnauthorized,
		"no-user":              http.StatusUnauthorized,
		"broken":               http.StatusInternalServerError,
		"other":                http.StatusUnauthorized,
	} {
		t.Run(token, func(t *testing.T) {
			dialRefused(t, tw, "token="+token, nil, want)
		})
	}

	t.Run("nil verifier", func(t *testing.T) {
		tw, _ := authTower(t, middleware.Auth(nil))
		dialRefused(t, tw, "token=good-x", nil, http.StatusInternalServerError)
	})
}

func TestAuthCustomSources(t *testing.T) {
	tw, users := authTower(t, middleware.Auth(userFromToken,
		middleware.TokenFromHeader("X-Token"),
		middleware.TokenFromQuery("access_token"),
		middleware.TokenFromProtocol("auth-"),
	))
	c, resp, err := dialRaw(tw, "", http.Header{"X-Token": {"good-h"}})
	if err != nil {
		t.Fatalf("dial: %v (%s)", err, status(resp))
	}
	defer c.close()
	if got := userOf(t, c, users); got != "h" {
		t.Fatalf("user %q, want h", got)
	}
	c2 := dial(t, tw, "access_token=good-a")
	if got := userOf(t, c2, users); got != "a" {
		t.Fatalf("user %q, want a", got)
	}
	c3, resp, err := dialRaw(tw, "", nil, "auth-good-p", "firetower.v1.msgpack")
	if err != nil {
		t.Fatalf("dial: %v (%s)", err, status(resp))
	}
	c3.close()
	if c3.ws.Subprotocol() != "firetower.v1.msgpack" {
		t.Fatalf("subprotocol %q", c3.ws.Subprotocol())
	}
	// the default sources are not used when others are given
	dialRefused(t, tw, "token=good-q", nil, http.StatusUnauthorized)
}

// Auth lets every hook but OnConnect pass, so it can be registered with Use.
func TestAuthWithUse(t *testing.T) {
	users := make(chan string, 4)
	tw := newTower(t, firetower.Use(middleware.Auth(userFromToken)), firetower.OnBeforeSubscribe(signal(users)))
	c := dial(t, tw, "token=good-u")
	if got := userOf(t, c, users); got != "u" {
		t.Fatalf("user %q", got)
	}
	wantAck(t, c.pub(t, "who", 1))
	c.expectDelivery(t, "who", "1")
	dialRefused(t, tw, "", nil, http.StatusUnauthorized)
}

// An HS256 JWT checked by a JWTVerifier, from each kind of source, through a real Tower.
func TestAuthJWT(t *testing.T) {
	clock := newFakeClock()
	v, err := middleware.NewJWTVerifier(middleware.JWTConfig{Key: jwtKey, Audience: "firetower", Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	tw, users := authTower(t, middleware.Auth(v.Verify))
	now := clock.Now()
	sign := func(key []byte, c middleware.JWTClaims) string {
		token, err := middleware.SignJWT(key, c)
		if err != nil {
			t.Fatal(err)
		}
		return token
	}
	good := sign(jwtKey, middleware.JWTClaims{Subject: "alice", Audience: []string{"firetower"}, ExpiresAt: now.Add(time.Minute)})

	c, resp, err := dialRaw(tw, "", nil, "firetower.v1.json", "token."+good)
	if err != nil {
		t.Fatalf("dial: %v (%s)", err, status(resp))
	}
	defer c.close()
	if got := userOf(t, c, users); got != "alice" {
		t.Fatalf("user %q, want alice", got)
	}
	c2, resp, err := dialRaw(tw, "", http.Header{"Authorization": {"Bearer " + good}})
	if err != nil {
		t.Fatalf("dial: %v (%s)", err, status(resp))
	}
	defer c2.close()
	if got := userOf(t, c2, users); got != "alice" {
		t.Fatalf("user %q, want alice", got)
	}

	payload := `{"sub":"alice","aud":"firetower","exp":` + strconv.FormatInt(now.Add(time.Minute).Unix(), 10) + `}`
	refused := map[string]string{
		"alg none":        craft(`{"alg":"none","typ":"JWT"}`, payload, jwtKey),
		"alg none bare":   strings.Join(strings.Split(craft(`{"alg":"none"}`, payload, jwtKey), ".")[:2], ".") + ".",
		"wrong signature": sign(otherKey, middleware.JWTClaims{Subject: "alice", Audience: []string{"firetower"}, ExpiresAt: now.Add(time.Minute)}),
		"expired":         sign(jwtKey, middleware.JWTClaims{Subject: "alice", Audience: []string{"firetower"}, ExpiresAt: now.Add(-time.Second)}),
		"wrong audience":  sign(jwtKey, middleware.JWTClaims{Subject: "alice", Audience: []string{"other"}, ExpiresAt: now.Add(time.Minute)}),
		"not a JWT":       "good-alice",
	}
	for name, token := range refused {
		t.Run(name, func(t *testing.T) {
			dialRefused(t, tw, "token="+token, nil, http.StatusUnauthorized)
			dialRefused(t, tw, "", nil, http.StatusUnauthorized, "firetower.v1.json", "token."+token)
		})
	}

	// the same good token, once the injected clock has passed its expiry
	clock.Advance(time.Minute)
	dialRefused(t, tw, "token="+good, nil, http.StatusUnauthorized)
}
