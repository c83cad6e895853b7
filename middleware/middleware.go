// Package middleware holds ready-made firetower middleware. Each is a
// firetower.Middleware, or has a Middleware method, to register on a hook
// (firetower.OnRead(...)) or around every hook (firetower.Use(...)). Each
// acts only in the hooks it is meant for and lets the others pass, so
// registering any of them with Use is always right.
//
//   - Recover turns a panic into an error with code internal.
//   - Logger logs hook calls with log/slog.
//   - Auth authenticates a client in OnConnect from a token in the query, a
//     header, a cookie or Sec-WebSocket-Protocol, checked by a function of
//     yours or as an HS256 JWT (JWTVerifier), and sets the user id.
//   - RateLimit limits publishes and subscribes per connection and per user
//     (token buckets); its state goes with OnDisconnect.
//   - TopicACL allows or denies topics per operation, by patterns that may
//     name the user ("/user/{user}/**").
//   - MaxTopics caps the topics of one connection.
//
// A typical stack, outermost first (the first middleware listed runs first,
// and Use runs outside each hook's own chain):
//
//	jwt, err := middleware.NewJWTVerifier(middleware.JWTConfig{Key: key})
//	rl, err := middleware.RateLimit(middleware.RateLimitConfig{
//		ConnPublish: middleware.Rate{PerSecond: 10, Burst: 20},
//	})
//	acl, err := middleware.TopicACL(middleware.ACLConfig{Rules: []middleware.Rule{
//		middleware.Allow(middleware.OpAll, "/user/{user}/**"),
//		middleware.Allow(middleware.OpSubscribe, "/news/*"),
//	}})
//	t, err := firetower.New(
//		firetower.Use(middleware.Logger(log), middleware.Recover, rl.Middleware),
//		firetower.OnConnect(middleware.Auth(jwt.Verify)),
//		firetower.OnBeforeSubscribe(acl.Middleware, middleware.MaxTopics(100)),
//		firetower.OnRead(acl.Middleware),
//	)
package middleware

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/firetower-go/firetower"
)

// Recover turns a panic in the rest of the chain into an error with code
// "internal", so the middleware outside it (a Logger, say) sees an ordinary
// error and the client gets an error message. The client is told only
// "internal error"; the panic value stays in the error chain for logs. The
// Tower would survive the panic anyway; this makes it visible in the chain.
func Recover(next firetower.Handler) firetower.Handler {
	return func(c *firetower.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("hook %s panicked: %v: %w", c.Hook(), r,
					&firetower.Error{Code: firetower.CodeInternal, Message: "internal error"})
			}
		}()
		return next(c)
	}
}

// Logger logs every hook call at debug level, and at warn level when it
// returns an error, with the connection, user, topics and duration.
func Logger(l *slog.Logger) firetower.Middleware {
	return func(next firetower.Handler) firetower.Handler {
		return func(c *firetower.Context) error {
			start := time.Now()
			err := next(c)
			attrs := []any{"hook", string(c.Hook()), "took", time.Since(start)}
			if conn := c.Conn(); conn != nil {
				attrs = append(attrs, "conn", conn.ID(), "user", conn.UserID())
			}
			if topics := c.Topics(); len(topics) > 0 {
				attrs = append(attrs, "topics", topics)
			}
			if m := c.Message(); m != nil {
				attrs = append(attrs, "topic", m.Topic, "bytes", len(m.Data))
			}
			if err != nil {
				l.Warn("firetower hook failed", append(attrs, "err", err)...)
			} else {
				l.Debug("firetower hook", attrs...)
			}
			return err
		}
	}
}
