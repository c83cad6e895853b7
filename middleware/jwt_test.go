package middleware_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/firetower-go/firetower/middleware"
)

var (
	jwtKey   = []byte("0123456789abcdef0123456789abcdef") // 32 bytes
	otherKey = []byte("fedcba9876543210fedcba9876543210")
	jwtNow   = time.Unix(1_900_000_000, 0) // the verifier's clock in these tests
)

// craft builds a token from a raw header and payload (JSON text), signed with key by
// HMAC-SHA256, independently of SignJWT.
func craft(header, payload string, key []byte) string {
	enc := base64.RawURLEncoding
	in := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(in))
	return in + "." + enc.EncodeToString(mac.Sum(nil))
}

const hs256 = `{"alg":"HS256","typ":"JWT"}`

func newVerifier(t testing.TB, cfg middleware.JWTConfig) *middleware.JWTVerifier {
	t.Helper()
	if cfg.Key == nil {
		cfg.Key = jwtKey
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return jwtNow }
	}
	v, err := middleware.NewJWTVerifier(cfg)
	if err != nil {
		t.Fatalf("NewJWTVerifier: %v", err)
	}
	return v
}

func TestJWTVerify(t *testing.T) {
	v := newVerifier(t, middleware.JWTConfig{})
	exp := `"exp":1900000060`
	b64 := base64.RawURLEncoding.EncodeToString
	good := craft(hs256, `{"sub":"alice",`+exp+`}`, jwtKey)
	goodParts := strings.Split(good, ".")

	cases := []struct {
		name  string
		token string
		want  error // nil: accepted as alice
	}{
		{"valid", good, nil},
		{"no typ", craft(`{"alg":"HS256"}`, `{"sub":"alice",`+exp+`}`, jwtKey), nil},
		{"fractional exp", craft(hs256, `{"sub":"alice","exp":1900000000.5}`, jwtKey), nil},
		{"nbf and iat in the past", craft(hs256, `{"sub":"alice",`+exp+`,"nbf":1899999999,"iat":1899999999}`, jwtKey), nil},
		{"nbf now", craft(hs256, `{"sub":"alice",`+exp+`,"nbf":1900000000}`, jwtKey), nil},
		{"private claims ignored", craft(hs256, `{"sub":"alice",`+exp+`,"role":"admin","SUB":"root"}`, jwtKey), nil},

		{"alg none, no signature", b64([]byte(`{"alg":"none"}`)) + "." + goodParts[1] + ".", middleware.ErrTokenAlgorithm},
		{"alg none, signed", craft(`{"alg":"none"}`, `{"sub":"alice",`+exp+`}`, jwtKey), middleware.ErrTokenAlgorithm},
		{"alg None", craft(`{"alg":"None"}`, `{"sub":"alice",`+exp+`}`, jwtKey), middleware.ErrTokenAlgorithm},
		{"alg hs256", craft(`{"alg":"hs256"}`, `{"sub":"alice",`+exp+`}`, jwtKey), middleware.ErrTokenAlgorithm},
		{"alg HS512", craft(`{"alg":"HS512"}`, `{"sub":"alice",`+exp+`}`, jwtKey), middleware.ErrTokenAlgorithm},
		{"alg RS256", craft(`{"alg":"RS256"}`, `{"sub":"alice",`+exp+`}`, jwtKey), middleware.ErrTokenAlgorithm},
		{"alg not a string", craft(`{"alg":256}`, `{"sub":"alice",`+exp+`}`, jwtKey), middleware.ErrTokenMalformed},
		{"no alg", craft(`{"typ":"JWT"}`, `{"sub":"alice",`+exp+`}`, jwtKey), middleware.ErrTokenMalformed},
		{"ALG in capitals", craft(`{"ALG":"HS256"}`, `{"sub":"alice",`+exp+`}`, jwtKey), middleware.ErrTokenMalformed},
		{"crit header", craft(`{"alg":"HS256","crit":["b64"],"b64":false}`, `{"sub":"alice",`+exp+`}`, jwtKey), middleware.ErrTokenMalformed},

		{"wrong key", craft(hs256, `{"sub":"alice",`+exp+`}`, otherKey), middleware.ErrTokenSignature},
		{"payload swapped", goodParts[0] + "." + b64([]byte(`{"sub":"root",`+exp+`}`)) + "." + goodParts[2], middleware.ErrTokenSignature},
		{"header swapped", b64([]byte(`{"alg":"HS256","kid":"x"}`)) + "." + goodParts[1] + "." + goodParts[2], middleware.ErrTokenSignature},
		{"signature flipped", goodParts[0] + "." + goodParts[1] + "." + flip(goodParts[2]), middleware.ErrTokenSignature},
		{"signature truncated", goodParts[0] + "." + goodParts[1] + "." + goodParts[2][:40], middleware.ErrTokenMalformed},
		{"signature empty", goodParts[0] + "." + goodParts[1] + ".", middleware.ErrTokenMalformed},
		{"signature padded", good + "=", middleware.ErrTokenMalformed},
		{"standard base64 signature", goodParts[0] + "." + goodParts[1] + "." + base64.RawStdEncoding.EncodeToString(mustDecode(t, goodParts[2])) + "+/", middleware.ErrTokenMalformed},

		{"expired", craft(hs256, `{"sub":"alice","exp":1899999999}`, jwtKey), middleware.ErrTokenExpired},
		{"expires now", craft(hs256, `{"sub":"alice","exp":1900000000}`, jwtKey), middleware.ErrTokenExpired},
		{"not yet valid", craft(hs256, `{"sub":"alice",`+exp+`,"nbf":1900000001}`, jwtKey), middleware.ErrTokenNotYetValid},
		{"no exp", craft(hs256, `{"sub":"alice"}`, jwtKey), middleware.ErrTokenClaims},
		{"exp a string", craft(hs256, `{"sub":"alice","exp":"1900000060"}`, jwtKey), middleware.ErrTokenMalformed},
		{"exp null", craft(hs256, `{"sub":"alice","exp":null}`, jwtKey), middleware.ErrTokenMalformed},
		{"no sub", craft(hs256, `{`+exp+`}`, jwtKey), middleware.ErrTokenClaims},
		{"empty sub", craft(hs256, `{"sub":"",`+exp+`}`, jwtKey), middleware.ErrTokenClaims},
		{"sub not a string", craft(hs256, `{"sub":42,`+exp+`}`, jwtKey), middleware.ErrTokenMalformed},
		{"payload an array", craft(hs256, `["alice"]`, jwtKey), middleware.ErrTokenMalformed},
		{"payload null", craft(hs256, `null`, jwtKey), middleware.ErrTokenMalformed},
		{"payload not JSON", craft(hs256, `sub=alice`, jwtKey), middleware.ErrTokenMalformed},
		{"header not JSON", craft(`alg=HS256`, `{"sub":"alice",`+exp+`}`, jwtKey), middleware.ErrTokenMalformed},

		{"empty", "", middleware.ErrTokenMalformed},
		{"two parts", goodParts[0] + "." + goodParts[1], middleware.ErrTokenMalformed},
		{"four parts", good + ".x", middleware.ErrTokenMalformed},
		{"oversized", craft(hs256, `{"sub":"alice",`+exp+`,"pad":"`+strings.Repeat("x", middleware.MaxJWTSize)+`"}`, jwtKey), middleware.ErrTokenMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			user, err := v.Verify(t.Context(), tc.token)
			if tc.want == nil {
				if err != nil || user != "alice" {
					t.Fatalf("Verify = %q, %v; want alice", user, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Verify accepted it as %q, want %v", user, tc.want)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify error %v, want %v", err, tc.want)
			}
			if user != "" {
				t.Fatalf("Verify returned user %q with an error", user)
			}
		})
	}
}

func flip(s string) string {
	b := []byte(s)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}

func mustDecode(t testing.TB, s string) []byte {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestJWTClaimsChecks(t *testing.T) {
	exp := `"exp":1900000060`
	tok := func(extra string) string { return craft(hs256, `{"sub":"alice",`+exp+extra+`}`, jwtKey) }
	cases := []struct {
		name  string
		cfg   middleware.JWTConfig
		token string
		want  error
	}{
		{"issuer matches", middleware.JWTConfig{Issuer: "auth.example"}, tok(`,"iss":"auth.example"`), nil},
		{"issuer differs", middleware.JWTConfig{Issuer: "auth.example"}, tok(`,"iss":"evil.example"`), middleware.ErrTokenClaims},
		{"issuer missing", middleware.JWTConfig{Issuer: "auth.example"}, tok(``), middleware.ErrTokenClaims},
		{"issuer not checked", middleware.JWTConfig{}, tok(`,"iss":"anyone"`), nil},
		{"audience string", middleware.JWTConfig{Audience: "firetower"}, tok(`,"aud":"firetower"`), nil},
		{"audience in array", middleware.JWTConfig{Audience: "firetower"}, tok(`,"aud":["api","firetower"]`), nil},
		{"audience differs", middleware.JWTConfig{Audience: "firetower"}, tok(`,"aud":["api"]`), middleware.ErrTokenClaims},
		{"audience missing", middleware.JWTConfig{Audience: "firetower"}, tok(``), middleware.ErrTokenClaims},
		{"audience malformed", middleware.JWTConfig{Audience: "firetower"}, tok(`,"aud":{"x":1}`), middleware.ErrTokenMalformed},
		{"leeway saves an expired token", middleware.JWTConfig{Leeway: 10 * time.Second}, craft(hs256, `{"sub":"alice","exp":1899999995}`, jwtKey), nil},
		{"leeway too short", middleware.JWTConfig{Leeway: 10 * time.Second}, craft(hs256, `{"sub":"alice","exp":1899999990}`, jwtKey), middleware.ErrTokenExpired},
		{"leeway saves an early token", middleware.JWTConfig{Leeway: 10 * time.Second}, tok(`,"nbf":1900000005`), nil},
		{"no exp allowed", middleware.JWTConfig{AllowNoExpiry: true}, craft(hs256, `{"sub":"alice"}`, jwtKey), nil},
		{"no exp allowed, still checked when given", middleware.JWTConfig{AllowNoExpiry: true}, craft(hs256, `{"sub":"alice","exp":1}`, jwtKey), middleware.ErrTokenExpired},
		{"far future", middleware.JWTConfig{}, craft(hs256, `{"sub":"alice","exp":1e300}`, jwtKey), nil},
		{"far past", middleware.JWTConfig{}, craft(hs256, `{"sub":"alice","exp":-1e300}`, jwtKey), middleware.ErrTokenExpired},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newVerifier(t, tc.cfg).Verify(t.Context(), tc.token)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Verify error %v, want %v", err, tc.want)
			}
		})
	}
}

// The clock is the injected one: the same token is valid, then expired.
func TestJWTClock(t *testing.T) {
	now := jwtNow
	v := newVerifier(t, middleware.JWTConfig{Now: func() time.Time { return now }})
	token := craft(hs256, `{"sub":"alice","exp":1900000060}`, jwtKey)
	if _, err := v.Verify(t.Context(), token); err != nil {
		t.Fatal(err)
	}
	now = now.Add(59*time.Second + 999*time.Millisecond)
	if _, err := v.Verify(t.Context(), token); err != nil {
		t.Fatalf("1ms before exp: %v", err)
	}
	now = now.Add(time.Millisecond)
	if _, err := v.Verify(t.Context(), token); !errors.Is(err, middleware.ErrTokenExpired) {
		t.Fatalf("at exp: %v, want ErrTokenExpired", err)
	}
}

func TestJWTParseClaims(t *testing.T) {
	v := newVerifier(t, middleware.JWTConfig{})
	c, err := v.Parse(craft(hs256, `{"sub":"alice","iss":"me","aud":"you","exp":1900000060,"nbf":1899999000,"iat":1899999000.25,"room":"42"}`, jwtKey))
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "alice" || c.Issuer != "me" || len(c.Audience) != 1 || c.Audience[0] != "you" {
		t.Fatalf("claims %+v", c)
	}
	if !c.ExpiresAt.Equal(time.Unix(1900000060, 0)) || !c.NotBefore.Equal(time.Unix(1899999000, 0)) || !c.IssuedAt.Equal(time.Unix(1899999000, 250_000_000)) {
		t.Fatalf("times %v %v %v", c.ExpiresAt, c.NotBefore, c.IssuedAt)
	}
	if !strings.Contains(string(c.Raw), `"room":"42"`) {
		t.Fatalf("Raw %s lacks the private claim", c.Raw)
	}
}

func TestSignJWT(t *testing.T) {
	v := newVerifier(t, middleware.JWTConfig{Issuer: "me", Audience: "b"})
	token, err := middleware.SignJWT(jwtKey, middleware.JWTClaims{
		Subject:   "alice",
		Issuer:    "me",
		Audience:  []string{"a", "b"},
		ExpiresAt: jwtNow.Add(time.Minute),
		IssuedAt:  jwtNow,
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Parse(token)
	if err != nil {
		t.Fatalf("Parse(SignJWT(...)): %v", err)
	}
	if c.Subject != "alice" || !c.ExpiresAt.Equal(jwtNow.Add(time.Minute)) || !c.NotBefore.IsZero() {
		t.Fatalf("claims %+v", c)
	}
	header := strings.SplitN(token, ".", 2)[0]
	if string(mustDecode(t, header)) != hs256 {
		t.Fatalf("header %s", mustDecode(t, header))
	}
	if _, err := middleware.SignJWT([]byte("short"), middleware.JWTClaims{Subject: "a"}); err == nil {
		t.Fatal("SignJWT accepted a 5-byte key")
	}
	// signed with another key: refused
	other, _ := middleware.SignJWT(otherKey, middleware.JWTClaims{Subject: "alice", ExpiresAt: jwtNow.Add(time.Minute)})
	if _, err := v.Verify(t.Context(), other); !errors.Is(err, middleware.ErrTokenSignature) {
		t.Fatalf("token of another key: %v", err)
	}
}

func TestNewJWTVerifierErrors(t *testing.T) {
	for _, cfg := range []middleware.JWTConfig{
		{},
		{Key: []byte("too short")},
		{Key: jwtKey[:31]},
		{Key: jwtKey, Leeway: -time.Second},
	} {
		if v, err := middleware.NewJWTVerifier(cfg); err == nil || v != nil {
			t.Errorf("NewJWTVerifier(%+v) = %v, %v; want an error", cfg, v, err)
		}
	}
	// the key is copied
	key := append([]byte(nil), jwtKey...)
	v, err := middleware.NewJWTVerifier(middleware.JWTConfig{Key: key, Now: func() time.Time { return jwtNow }})
	if err != nil {
		t.Fatal(err)
	}
	key[0] ^= 0xff
	if _, err := v.Verify(t.Context(), craft(hs256, `{"sub":"alice","exp":1900000060}`, jwtKey)); err != nil {
		t.Fatalf("changing the caller's key slice changed the verifier: %v", err)
	}
}

func FuzzJWTParse(f *testing.F) {
	f.Add(craft(hs256, `{"sub":"alice","exp":1900000060}`, jwtKey))
	f.Add(craft(`{"alg":"none"}`, `{"sub":"alice"}`, jwtKey))
	f.Add("a.b.c")
	f.Add("..")
	v := newVerifier(f, middleware.JWTConfig{})
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Parse(token)
		if err == nil && (c == nil || c.Subject == "") {
			t.Fatalf("accepted %q with claims %+v", token, c)
		}
	})
}
