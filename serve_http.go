package firetower

import (
	"net/http"
)

// ServeHTTP makes the Tower an http.Handler: mounted in an existing HTTP
// server (mux.Handle("/ws", t), a chi or gin route...), it upgrades
// websocket requests on that server's port, after the application's own
// middleware has run. Start the Tower first; until it runs, and once it is
// shutting down, requests get 503.
//
// The upgrade is the one the Tower's own listener does: the request goes
// through the same parser, path rule (WithPath / WithAnyPath: the path the
// client asked for, not the route's pattern), origin check, connection
// limits and OnConnect chain, and the connection is then served by the
// event loops like any other: a plain TCP connection is taken from
// net/http (hijacked) into an event loop, at the same speed as the native
// listener; a TLS connection (http.Server.ListenAndServeTLS) is served by
// a pair of goroutines relaying to an event loop. Stats, limits, keepalive
// and Shutdown treat both alike.
//
// Authentication done by HTTP middleware before the upgrade reaches the
// hooks through the request: in OnConnect, c.Conn().Request() is the
// request this handler got, with its context (r.Context() values such as
// a user the middleware stored; the context's cancellation is removed,
// since net/http cancels it when the handler returns), its RemoteAddr and
// TLS state, and its headers as the middleware left them. A typical
// OnConnect reads the user there and calls c.Conn().SetUserID.
//
// To serve only through ServeHTTP, give the Tower no listener of its own:
// WithAddr(""). The handler needs an HTTP/1.1 connection (websockets over
// HTTP/2 are not supported: an HTTP/2 request gets 505).
func (t *Tower) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if t.state.Load() != 1 {
		w.Header().Set("Connection", "close")
		reason := "websocket server not started"
		if t.state.Load() == 2 {
			reason = "server shutting down"
		}
		http.Error(w, reason, http.StatusServiceUnavailable)
		return
	}
	t.srv.ServeHTTP(w, r)
}

// Handler is the Tower as an http.Handler (the Tower itself), for code
// that prefers a function to mount: r.Handle("/ws", t.Handler()).
func (t *Tower) Handler() http.Handler { return t }

var _ http.Handler = (*Tower)(nil)
