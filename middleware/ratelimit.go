package middleware

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/firetower-go/firetower"
)

// Rate is a token bucket: it holds at most Burst tokens, gains PerSecond
// tokens a second, and each operation takes one. The zero Rate is no limit.
type Rate struct {
	PerSecond float64 // sustained operations per second; > 0 to limit
	Burst     int     // operations allowed at once; >= 1 when PerSecond > 0
}

func (r Rate) on() bool { return r.PerSecond > 0 }

// RateLimitConfig configures a RateLimiter. Each Rate left zero is not
// limited; at least one must be set.
type RateLimitConfig struct {
	// ConnPublish and ConnSubscribe limit each connection.
	ConnPublish, ConnSubscribe Rate
	// UserPublish and UserSubscribe limit each user id over all of its
	// connections, and across reconnects (see RateLimiter). Connections
	// without a user id have only the per-connection limits.
	UserPublish, UserSubscribe Rate
	// Now is the clock the buckets fill by. Default time.Now.
	Now func() time.Time
}

// RateLimiter limits how often clients publish and subscribe, with one token
// bucket per connection and one per user id for each. A publish takes one
// token for each of its topics (the Tower runs OnRead once per topic); a
// subscribe request takes one token, however many topics it names. An
// operation passes only if every bucket that applies to it has a token, and
// takes one from each only then; otherwise the client gets an error with
// code rate_limited and a hint of when to retry.
//
// Its Middleware acts on the hook it runs in: OnRead is a publish,
// OnBeforeSubscribe a subscribe, and OnDisconnect forgets the connection;
// every other hook passes. Register it where it sees disconnects too, or its
// state grows with every connection that ever published:
//
//	firetower.Use(rl.Middleware) // every hook: simplest
//
// or
//
//	firetower.OnRead(rl.Middleware),
//	firetower.OnBeforeSubscribe(rl.Middleware),
//	firetower.OnDisconnect(rl.Middleware),
//
// A connection's state goes at its disconnect. A user's state is kept while
// the user has connections and until its buckets would be full again after
// the last one goes (Burst/PerSecond at most), so reconnecting does not
// reset a user's limit; it is dropped lazily by a later call. Len reports
// both.
//
// A RateLimiter is safe for concurrent use; one instance belongs to one
// Tower.
type RateLimiter struct {
	connPub, connSub, userPub, userSub limit
	now                                func() time.Time
	keep                               time.Duration // how long an idle user's state matters

	mu    sync.Mutex
	conns map[*firetower.Conn]*connLimits
	users map[string]*userLimits
	idle  []idleUser // users with no connection, oldest first
	head  int        // idle[:head] are done
}

type connLimits struct {
	user     string // the user counted for this connection, "" for none
	pub, sub bucket
}

type userLimits struct {
	refs     int    // connections counting this user
	idleGen  uint64 // bumped each time refs drops to 0
	pub, sub bucket
}

type idleUser struct {
	user string
	gen  uint64
	at   time.Time
}

// RateLimit returns a RateLimiter for cfg. It fails on a negative, infinite
// or NaN rate, a Burst below 1 with a rate, a Burst without a rate, or a
// config with no rate at all.
func RateLimit(cfg RateLimitConfig) (*RateLimiter, error) {
	var errs []error
	set := false
	for _, r := range []struct {
		name string
		r    Rate
	}{{"ConnPublish", cfg.ConnPublish}, {"ConnSubscribe", cfg.ConnSubscribe}, {"UserPublish", cfg.UserPublish}, {"UserSubscribe", cfg.UserSubscribe}} {
		switch {
		case math.IsNaN(r.r.PerSecond) || math.IsInf(r.r.PerSecond, 0) || r.r.PerSecond < 0:
			errs = append(errs, fmt.Errorf("%s.PerSecond is %v, want a finite number >= 0", r.name, r.r.PerSecond))
		case r.r.PerSecond > 0 && r.r.Burst < 1:
			errs = append(errs, fmt.Errorf("%s.Burst is %d, want >= 1", r.name, r.r.Burst))
		case r.r.PerSecond == 0 && r.r.Burst != 0:
			errs = append(errs, fmt.Errorf("%s.Burst is %d with no PerSecond", r.name, r.r.Burst))
		}
		set = set || r.r.on()
	}
	if len(errs) == 0 && !set {
		errs = append(errs, errors.New("no rate set"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: middleware.RateLimit: %w", firetower.ErrBadOption, errors.Join(errs...))
	}
	l := &RateLimiter{
		connPub: cfg.ConnPublish.limit(), connSub: cfg.ConnSubscribe.limit(),
		userPub: cfg.UserPublish.limit(), userSub: cfg.UserSubscribe.limit(),
		now:   cfg.Now,
		conns: make(map[*firetower.Conn]*connLimits),
		users: make(map[string]*userLimits),
	}
	if l.now == nil {
		l.now = time.Now
	}
	l.keep = max(l.userPub.burst, l.userSub.burst)
	return l, nil
}

// Middleware is the firetower.Middleware; see RateLimiter for where to
// register it.
func (l *RateLimiter) Middleware(next firetower.Handler) firetower.Handler {
	return func(c *firetower.Context) error {
		conn := c.Conn()
		if conn == nil {
			return next(c)
		}
		switch c.Hook() {
		case firetower.HookRead:
			if err := l.take(conn, true); err != nil {
				return err
			}
		case firetower.HookBeforeSubscribe:
			if err := l.take(conn, false); err != nil {
				return err
			}
		case firetower.HookDisconnect:
			l.Forget(conn)
		}
		return next(c)
	}
}

// Forget drops the state of conn, as the Middleware does in OnDisconnect.
// Call it yourself if the Middleware does not run there.
func (l *RateLimiter) Forget(conn *firetower.Conn) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if cl, ok := l.conns[conn]; ok {
		delete(l.conns, conn)
		l.release(cl.user, now)
	}
	l.sweep(now)
}

// Len is the number of connections and of users the limiter holds state
// for. It drops the idle users whose buckets are full again first.
func (l *RateLimiter) Len() (conns, users int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	return len(l.conns), len(l.users)
}

// take takes a token for a publish (pub) or a subscribe by conn, or returns
// a rate_limited error.
func (l *RateLimiter) take(conn *firetower.Conn, pub bool) error {
	user := conn.UserID()
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)

	cl := l.conns[conn]
	if cl == nil {
		cl = &connLimits{}
		l.conns[conn] = cl
		l.acquire(user, now)
		cl.user = user
	} else if cl.user != user { // the user id changed after the connect
		l.acquire(user, now)
		l.release(cl.user, now)
		cl.user = user
	}
	what, connRate, userRate := "subscribe", l.connSub, l.userSub
	cb := &cl.sub
	if pub {
		what, connRate, userRate = "publish", l.connPub, l.userPub
		cb = &cl.pub
	}
	var ub *bucket
	if ul := l.users[user]; ul != nil && userRate.on() {
		ub = &ul.sub
		if pub {
			ub = &ul.pub
		}
	}

	var wait time.Duration
	var who string
	if connRate.on() {
		if w := cb.wait(connRate, now); w > 0 {
			wait, who = w, "connection"
		}
	}
	if ub != nil {
		if w := ub.wait(userRate, now); w > wait {
			wait, who = w, "user"
		}
	}
	if wait > 0 {
		return &firetower.Error{
			Code:    firetower.CodeRateLimited,
			Message: fmt.Sprintf("%s rate limit of this %s exceeded: retry in %v", what, who, (wait + time.Millisecond - 1).Truncate(time.Millisecond)),
		}
	}
	if connRate.on() {
		cb.take(connRate, now)
	}
	if ub != nil {
		ub.take(userRate, now)
	}
	return nil
}

// acquire counts one more connection of user; l.mu is held.
func (l *RateLimiter) acquire(user string, now time.Time) {
	if user == "" || !l.userPub.on() && !l.userSub.on() {
		return
	}
	ul := l.users[user]
	if ul == nil {
		ul = &userLimits{}
		l.users[user] = ul
	}
	ul.refs++
}

// release counts one connection of user less; l.mu is held. A user left
// with no connection is dropped at once if its buckets are full, later by
// sweep otherwise.
func (l *RateLimiter) release(user string, now time.Time) {
	ul := l.users[user]
	if ul == nil {
		return
	}
	ul.refs--
	if ul.refs > 0 {
		return
	}
	if ul.pub.full(now) && ul.sub.full(now) {
		delete(l.users, user)
		return
	}
	ul.idleGen++
	l.idle = append(l.idle, idleUser{user: user, gen: ul.idleGen, at: now})
}

// sweep drops the users idle for longer than l.keep; l.mu is held.
func (l *RateLimiter) sweep(now time.Time) {
	for l.head < len(l.idle) {
		e := l.idle[l.head]
		if now.Sub(e.at) < l.keep {
			break
		}
		if ul := l.users[e.user]; ul != nil && ul.refs == 0 && ul.idleGen == e.gen {
			delete(l.users, e.user)
		}
		l.idle[l.head] = idleUser{}
		l.head++
	}
	if l.head == len(l.idle) {
		l.idle, l.head = l.idle[:0], 0
	} else if l.head > 32 && l.head*2 >= len(l.idle) {
		n := copy(l.idle, l.idle[l.head:])
		clear(l.idle[n:])
		l.idle, l.head = l.idle[:n], 0
	}
}

// limit is a Rate as the buckets use it: one token every interval, at most
// burst tokens (burst*interval of credit). Integer durations keep the
// arithmetic exact.
type limit struct {
	interval time.Duration
	burst    time.Duration // Burst * interval
}

func (r Rate) limit() limit {
	if !r.on() {
		return limit{}
	}
	iv := max(time.Duration(math.Round(1e9/r.PerSecond)), 1)
	return limit{interval: iv, burst: iv * time.Duration(r.Burst)}
}

func (g limit) on() bool { return g.interval > 0 }

// bucket is a token bucket kept as the time at which it will have given out
// everything it has been asked for (the generic cell rate algorithm): it is
// full when that time is not in the future. The zero bucket is full.
type bucket struct{ tat time.Time }

// wait returns 0 if the bucket has a token at now, or how long until it has
// one.
func (b *bucket) wait(g limit, now time.Time) time.Duration {
	t := b.tat
	if t.Before(now) {
		t = now
	}
	return max(t.Add(g.interval).Sub(now)-g.burst, 0)
}

// take takes a token; wait must have returned 0.
func (b *bucket) take(g limit, now time.Time) {
	t := b.tat
	if t.Before(now) {
		t = now
	}
	b.tat = t.Add(g.interval)
}

// full reports whether the bucket holds all its tokens at now.
func (b *bucket) full(now time.Time) bool { return !b.tat.After(now) }
