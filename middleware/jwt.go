package middleware

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// Errors of JWT verification. A verifier's error wraps one of them; Auth
// turns any of them into HTTP 401 without telling the client which.
var (
	ErrTokenMalformed   = errors.New("firetower: malformed token")
	ErrTokenAlgorithm   = errors.New("firetower: token algorithm not accepted")
	ErrTokenSignature   = errors.New("firetower: token signature does not verify")
	ErrTokenExpired     = errors.New("firetower: token expired")
	ErrTokenNotYetValid = errors.New("firetower: token not valid yet")
	ErrTokenClaims      = errors.New("firetower: token claims not accepted")
)

// MaxJWTSize is the longest token a JWTVerifier looks at, in bytes; a
// longer one is malformed.
const MaxJWTSize = 8 << 10

// MinJWTKeySize is the shortest HMAC key NewJWTVerifier and SignJWT accept:
// the size of the SHA-256 output, as RFC 7518 section 3.2 requires.
const MinJWTKeySize = 32

// JWTConfig configures a JWTVerifier.
type JWTConfig struct {
	// Key is the HMAC-SHA256 secret, at least MinJWTKeySize bytes. It is
	// copied.
	Key []byte
	// Issuer, when set, must equal the token's "iss" claim.
	Issuer string
	// Audience, when set, must be the token's "aud" claim or one of its
	// entries.
	Audience string
	// Leeway is the clock skew tolerated on "exp" and "nbf". Default 0.
	Leeway time.Duration
	// AllowNoExpiry accepts tokens without an "exp" claim. Default false: a
	// token that never expires is refused.
	AllowNoExpiry bool
	// Now is the clock "exp" and "nbf" are checked against. Default
	// time.Now.
	Now func() time.Time
}

// JWTClaims are the registered claims of a token. Zero times mean the claim
// is absent.
type JWTClaims struct {
	Subject   string    // "sub": the user id Auth sets
	Issuer    string    // "iss"
	Audience  []string  // "aud", a string or an array of strings in the token
	ExpiresAt time.Time // "exp"
	NotBefore time.Time // "nbf"
	IssuedAt  time.Time // "iat"
	// Raw is the token's payload, a JSON object, to read private claims from.
	// SignJWT ignores it.
	Raw json.RawMessage
}

// JWTVerifier verifies JSON Web Tokens signed with HMAC-SHA256 (JWS compact
// serialization, "alg":"HS256"). Every other algorithm, "none" included, is
// refused, and so is a header with "crit". The signature is compared in
// constant time and checked before the claims are parsed. It is safe for
// concurrent use.
type JWTVerifier struct {
	key      []byte
	issuer   string
	audience string
	leeway   time.Duration
	noExp    bool
	now      func() time.Time
}

// NewJWTVerifier returns a verifier for cfg; it fails on a key shorter than
// MinJWTKeySize or a negative Leeway.
func NewJWTVerifier(cfg JWTConfig) (*JWTVerifier, error) {
	if len(cfg.Key) < MinJWTKeySize {
		return nil, fmt.Errorf("firetower: JWT key of %d bytes, want at least %d", len(cfg.Key), MinJWTKeySize)
	}
	if cfg.Leeway < 0 {
		return nil, fmt.Errorf("firetower: negative JWT leeway %v", cfg.Leeway)
	}
	v := &JWTVerifier{
		key:      slices.Clone(cfg.Key),
		issuer:   cfg.Issuer,
		audience: cfg.Audience,
		leeway:   cfg.Leeway,
		noExp:    cfg.AllowNoExpiry,
		now:      cfg.Now,
	}
	if v.now == nil {
		v.now = time.Now
	}
	return v, nil
}

// Verify checks token and returns its subject; it is a TokenVerifier for
// Auth:
//
//	middleware.Auth(v.Verify)
func (v *JWTVerifier) Verify(_ context.Context, token string) (userID string, err error) {
	c, err := v.Parse(token)
	if err != nil {
		return "", err
	}
	return c.Subject, nil
}

var b64 = base64.RawURLEncoding.Strict()

// Parse checks token (algorithm, signature, "exp", "nbf", the issuer and
// audience configured, a non-empty "sub") and returns its claims.
func (v *JWTVerifier) Parse(token string) (*JWTClaims, error) {
	if len(token) > MaxJWTSize {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrTokenMalformed, MaxJWTSize)
	}
	h, rest, ok1 := strings.Cut(token, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(s, ".") {
		return nil, fmt.Errorf("%w: want three dot-separated parts", ErrTokenMalformed)
	}

	// The header: only HS256.
	header, err := decodeObject(h)
	if err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrTokenMalformed, err)
	}
	var alg string
	if raw, ok := header["alg"]; !ok || json.Unmarshal(raw, &alg) != nil {
		return nil, fmt.Errorf("%w: header has no alg string", ErrTokenMalformed)
	}
	if alg != "HS256" {
		return nil, fmt.Errorf("%w: %q (only HS256)", ErrTokenAlgorithm, alg)
	}
	if _, ok := header["crit"]; ok {
		return nil, fmt.Errorf("%w: critical header extensions are not supported", ErrTokenMalformed)
	}

	// The signature, before anything in the payload is believed.
	sig, err := b64.DecodeString(s)
	if err != nil || len(sig) != sha256.Size {
		return nil, fmt.Errorf("%w: signature is not 32 bytes of base64url", ErrTokenMalformed)
	}
	mac := hmac.New(sha256.New, v.key)
	_, _ = io.WriteString(mac, token[:len(h)+1+len(p)])
	if !hmac.Equal(mac.Sum(nil), sig) {
		return nil, ErrTokenSignature
	}

	payload, err := b64.DecodeString(p)
	if err != nil {
		return nil, fmt.Errorf("%w: payload: %w", ErrTokenMalformed, err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(payload, &fields); err != nil || fields == nil {
		return nil, fmt.Errorf("%w: payload is not a JSON object", ErrTokenMalformed)
	}
	c := &JWTClaims{Raw: payload}
	if err := stringClaim(fields, "sub", &c.Subject); err != nil {
		return nil, err
	}
	if err := stringClaim(fields, "iss", &c.Issuer); err != nil {
		return nil, err
	}
	if raw, ok := fields["aud"]; ok {
		var one string
		if json.Unmarshal(raw, &one) == nil {
			c.Audience = []string{one}
		} else if json.Unmarshal(raw, &c.Audience) != nil {
			return nil, fmt.Errorf("%w: aud is neither a string nor an array of strings", ErrTokenMalformed)
		}
	}
	exp, hasExp, err := dateClaim(fields, "exp")
	if err != nil {
		return nil, err
	}
	nbf, hasNbf, err := dateClaim(fields, "nbf")
	if err != nil {
		return nil, err
	}
	iat, hasIat, err := dateClaim(fields, "iat")
	if err != nil {
		return nil, err
	}

	now := v.now()
	nowSec := float64(now.Unix()) + float64(now.Nanosecond())/1e9
	leeway := v.leeway.Seconds()
	switch {
	case hasExp && nowSec >= exp+leeway:
		return nil, fmt.Errorf("%w at %s", ErrTokenExpired, secondsTime(exp).UTC().Format(time.RFC3339))
	case !hasExp && !v.noExp:
		return nil, fmt.Errorf("%w: no exp", ErrTokenClaims)
	case hasNbf && nowSec+leeway < nbf:
		return nil, fmt.Errorf("%w before %s", ErrTokenNotYetValid, secondsTime(nbf).UTC().Format(time.RFC3339))
	case v.issuer != "" && c.Issuer != v.issuer:
		return nil, fmt.Errorf("%w: issuer %q", ErrTokenClaims, c.Issuer)
	case v.audience != "" && !slices.Contains(c.Audience, v.audience):
		return nil, fmt.Errorf("%w: audience %q does not include %q", ErrTokenClaims, c.Audience, v.audience)
	case c.Subject == "":
		return nil, fmt.Errorf("%w: no sub", ErrTokenClaims)
	}
	if hasExp {
		c.ExpiresAt = secondsTime(exp)
	}
	if hasNbf {
		c.NotBefore = secondsTime(nbf)
	}
	if hasIat {
		c.IssuedAt = secondsTime(iat)
	}
	return c, nil
}

func decodeObject(part string) (map[string]json.RawMessage, error) {
	b, err := b64.DecodeString(part)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("not a JSON object")
	}
	return m, nil
}

func stringClaim(fields map[string]json.RawMessage, name string, dst *string) error {
	raw, ok := fields[name]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("%w: %s is not a string", ErrTokenMalformed, name)
	}
	return nil
}

// dateClaim reads a NumericDate: a JSON number of seconds since the epoch,
// possibly with a fraction. A string is not one.
func dateClaim(fields map[string]json.RawMessage, name string) (sec float64, ok bool, err error) {
	raw, ok := fields[name]
	if !ok {
		return 0, false, nil
	}
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) || json.Unmarshal(raw, &sec) != nil {
		return 0, false, fmt.Errorf("%w: %s is not a number", ErrTokenMalformed, name)
	}
	return sec, true, nil
}

// secondsTime converts seconds since the epoch to a time, clamped to what
// time.Unix can represent without overflow.
func secondsTime(sec float64) time.Time {
	const lim = 1e15 // some 30 million years: far from int64 overflow
	sec = math.Max(-lim, math.Min(lim, sec))
	whole := math.Floor(sec)
	return time.Unix(int64(whole), int64((sec-whole)*1e9))
}

// SignJWT returns an HS256 JSON Web Token carrying c's claims (Raw is
// ignored), for a service that issues the tokens a JWTVerifier accepts, and
// for tests. Times are written as whole seconds; zero times and empty
// strings are left out.
func SignJWT(key []byte, c JWTClaims) (string, error) {
	if len(key) < MinJWTKeySize {
		return "", fmt.Errorf("firetower: JWT key of %d bytes, want at least %d", len(key), MinJWTKeySize)
	}
	claims := map[string]any{}
	if c.Subject != "" {
		claims["sub"] = c.Subject
	}
	if c.Issuer != "" {
		claims["iss"] = c.Issuer
	}
	switch len(c.Audience) {
	case 0:
	case 1:
		claims["aud"] = c.Audience[0]
	default:
		claims["aud"] = c.Audience
	}
	for name, t := range map[string]time.Time{"exp": c.ExpiresAt, "nbf": c.NotBefore, "iat": c.IssuedAt} {
		if !t.IsZero() {
			claims[name] = t.Unix()
		}
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	var sb strings.Builder
	sb.WriteString(b64.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)))
	sb.WriteByte('.')
	sb.WriteString(b64.EncodeToString(payload))
	mac := hmac.New(sha256.New, key)
	_, _ = io.WriteString(mac, sb.String())
	sb.WriteByte('.')
	sb.WriteString(b64.EncodeToString(mac.Sum(nil)))
	return sb.String(), nil
}
