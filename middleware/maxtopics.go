package middleware

import (
	"fmt"

	"github.com/firetower-go/firetower"
)

// MaxTopics refuses, in OnBeforeSubscribe, a subscribe that would bring the
// connection over n topics: the client gets an error with code
// too_many_topics and none of the request's topics. Topics it already has
// and topics named twice count once. The check is made before the rest of
// the chain and again after it, on the topics the chain ended with (it may
// have rewritten them with SetTopics). Every other hook passes, so
// firetower.Use(middleware.MaxTopics(n)) works. n < 1 refuses every
// subscribe.
//
// The Tower has its own limit for every connection (firetower.WithMaxTopics,
// 1,024 by default); MaxTopics is for a lower one, or one per user chosen by
// a middleware of your own around it.
func MaxTopics(n int) firetower.Middleware {
	return func(next firetower.Handler) firetower.Handler {
		return func(c *firetower.Context) error {
			if c.Hook() != firetower.HookBeforeSubscribe {
				return next(c)
			}
			if err := checkMaxTopics(c, n); err != nil {
				return err
			}
			if err := next(c); err != nil {
				return err
			}
			return checkMaxTopics(c, n)
		}
	}
}

func checkMaxTopics(c *firetower.Context, n int) error {
	var have []string
	if conn := c.Conn(); conn != nil {
		have = conn.Topics()
	}
	seen := make(map[string]struct{}, len(have)+len(c.Topics()))
	for _, t := range have {
		seen[t] = struct{}{}
	}
	for _, t := range c.Topics() {
		seen[t] = struct{}{}
	}
	if len(seen) > n {
		return &firetower.Error{
			Code:    firetower.CodeTooManyTopics,
			Message: fmt.Sprintf("a connection may subscribe to at most %d topics: it has %d, this request would make %d", max(n, 0), len(have), len(seen)),
		}
	}
	return nil
}
