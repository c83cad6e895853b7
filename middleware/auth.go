package middleware

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/firetower-go/firetower"
)

// TokenVerifier checks a token and returns the user id it stands for. An
// error refuses the connection: a *firetower.Error is passed on as it is
// (firetower.ErrForbidden gives HTTP 403, say); any other error gives HTTP
// 401. So does an empty user id. (*JWTVerifier).Verify is one.
type TokenVerifier func(ctx context.Context, token string) (userID string, err error)

// TokenSource finds a token in an upgrade request; "" means none there.
type TokenSource func(r *http.Request) string

// TokenFromQuery takes the token from the query parameter name
// (?token=...). Query strings end up in access logs: prefer the other
// sources, or short-lived tokens.
func TokenFromQuery(name string) TokenSource {
	return func(r *http.Request) string {
		if r.URL == nil {
			return ""
		}
		return r.URL.Query().Get(name)
	}
}

// TokenFromBearer takes the token from "Authorization: Bearer <token>" (the
// scheme is matched without regard to case). Browsers cannot set this header
// on a websocket; other clients can.
func TokenFromBearer() TokenSource {
	return func(r *http.Request) string {
		scheme, token, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return ""
		}
		return strings.TrimSpace(token)
	}
}

// TokenFromHeader takes the whole value of header name as the token.
func TokenFromHeader(name string) TokenSource {
	return func(r *http.Request) string { return strings.TrimSpace(r.Header.Get(name)) }
}

// TokenFromCookie takes the token from the cookie name. A browser sends the
// cookies of the websocket's host with the upgrade.
func TokenFromCookie(name string) TokenSource {
	return func(r *http.Request) string {
		c, err := r.Cookie(name)
		if err != nil {
			return ""
		}
		return c.Value
	}
}

// TokenFromProtocol takes the token from a Sec-WebSocket-Protocol entry
// prefix+token, e.g. "token.<jwt>" for prefix "token.". It is the one place
// a browser's WebSocket API can carry a token without putting it in the URL:
//
//	new WebSocket(url, ["firetower.v1.json", "token." + jwt])
//
// The server echoes only a firetower.v1.* protocol, never the token entry,
// and a browser fails a handshake that offered protocols and got none
// back: always offer firetower.v1.json (or firetower.v1.msgpack) with it.
func TokenFromProtocol(prefix string) TokenSource {
	return func(r *http.Request) string {
		for _, v := range r.Header.Values("Sec-Websocket-Protocol") {
			for p := range strings.SplitSeq(v, ",") {
				if t, ok := strings.CutPrefix(strings.TrimSpace(p), prefix); ok && t != "" {
					return t
				}
			}
		}
		return ""
	}
}

// DefaultTokenSources are where Auth looks when given no source, in this
// order: the query parameter "token", "Authorization: Bearer", the cookie
// "token", and a Sec-WebSocket-Protocol entry "token.<token>".
func DefaultTokenSources() []TokenSource {
	return []TokenSource{
		TokenFromQuery("token"),
		TokenFromBearer(),
		TokenFromCookie("token"),
		TokenFromProtocol("token."),
	}
}

var (
	errNoToken      = &firetower.Error{Code: firetower.ErrUnauthorized.Code, Message: "no token"}
	errInvalidToken = &firetower.Error{Code: firetower.ErrUnauthorized.Code, Message: "invalid token"}
	errNoVerifier   = &firetower.Error{Code: firetower.CodeInternal, Message: "middleware.Auth has no TokenVerifier"}
)

// Auth authenticates clients in OnConnect. It takes the token from the first
// of sources that has one (DefaultTokenSources when none are given), checks
// it with verify, and sets the connection's user id to what verify returns.
// A missing or refused token refuses the upgrade with HTTP 401 (the error
// matches firetower.ErrUnauthorized; the reason logged by a Logger outside
// Auth wraps verify's error, the client is told only "no token" or
// "invalid token"). Only the first token found is tried.
//
// Register it on OnConnect, or with firetower.Use: it lets every other hook
// pass. A nil verify refuses every client with HTTP 500.
func Auth(verify TokenVerifier, sources ...TokenSource) firetower.Middleware {
	if len(sources) == 0 {
		sources = DefaultTokenSources()
	}
	return func(next firetower.Handler) firetower.Handler {
		return func(c *firetower.Context) error {
			if c.Hook() != firetower.HookConnect {
				return next(c)
			}
			if verify == nil {
				return errNoVerifier
			}
			var r *http.Request
			if conn := c.Conn(); conn != nil {
				r = conn.Request()
			}
			if r == nil {
				return errNoToken
			}
			token := ""
			for _, src := range sources {
				if token = src(r); token != "" {
					break
				}
			}
			if token == "" {
				return errNoToken
			}
			user, err := verify(c.Context(), token)
			if err != nil {
				if fe := (*firetower.Error)(nil); errors.As(err, &fe) {
					return err
				}
				return fmt.Errorf("%w: %w", errInvalidToken, err)
			}
			if user == "" {
				return fmt.Errorf("%w: the verifier returned no user id", errInvalidToken)
			}
			c.Conn().SetUserID(user)
			return next(c)
		}
	}
}
