// Package middleware holds ready-made firetower middleware. Each value here
// is a firetower.Middleware, or a function returning one, to register on a
// hook (firetower.OnRead(...)) or around every hook (firetower.Use(...)).
package middleware

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/firetower-go/firetower"
)

// Recover turns a panic in the rest of the chain into an error with code
// "internal", so the middleware outside it (a Logger, say) sees an ordinary
// error and the client gets an error message. The Tower would survive the
// panic anyway; this makes it visible inside the chain.
func Recover(next firetower.Handler) firetower.Handler {
	return func(c *firetower.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = &firetower.Error{Code: firetower.CodeInternal, Message: fmt.Sprintf("hook %s panicked: %v", c.Hook(), r)}
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
