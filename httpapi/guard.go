package httpapi

import (
	"crypto/subtle"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// GuardConfig configures a Guard.
type GuardConfig struct {
	// APIKey, when set, is the key requests must present (see
	// Guard.RequireKey). Without one, the Guard checks the Host header
	// instead, against DNS rebinding.
	APIKey string
	// AllowedHosts are the host names a request may name in its Host
	// header when no APIKey is set, besides IP addresses, "localhost" and
	// names under ".localhost", which are always accepted. An entry is a
	// name ("firetower.internal"), a name with a leading wildcard
	// ("*.internal": its subdomains), or "*" (any host: no check).
	AllowedHosts []string
	// AllowedOrigins are browser origins, besides the request's own host,
	// whose pages may send POSTs (and other unsafe methods). Entries as for
	// firetower.WithAllowedOrigins: a host name, "*.example.com", or a full
	// origin "https://example.com:8443". A lone "*" is ignored here: it
	// would hand the API to every web page.
	AllowedOrigins []string
	// FailedKeyBurst is how many wrong keys a client address may present
	// in a row before it is answered 429. Default 10.
	FailedKeyBurst int
	// FailedKeyEvery is how often a limited client earns one more try.
	// Default 1s.
	FailedKeyEvery time.Duration
	// MaxClients bounds the client addresses whose failures are
	// remembered. Default 10,000.
	MaxClients int
	// Logger receives failed key attempts. Default: none.
	Logger *slog.Logger
	// Now is the clock (tests). Default time.Now.
	Now func() time.Time
}

// Guard holds the defences firetower's HTTP handlers share against web
// pages and key guessing:
//
//   - Without an API key, a request whose Host header names anything but an
//     IP address, localhost or an allowed host is refused with 421: a page
//     of evil.example whose name was rebound to 127.0.0.1 (DNS rebinding)
//     reaches nothing.
//   - A request with an unsafe method (POST, PUT, PATCH, DELETE) that a
//     browser marks as coming from another site is refused with 403: its
//     Origin header names another host than the request's Host (and no
//     allowed origin), or is "null", or, without an Origin, its
//     Sec-Fetch-Site is "cross-site" or "same-site". This is what stops a
//     cross-site form or a fetch with a text/plain body (a CORS "simple"
//     request, sent without asking). Programs such as curl send neither
//     header and are not concerned, whatever their Content-Type; a request
//     that carries X-API-Key or "Authorization: Bearer" cannot come from
//     another site's page either (a browser asks first, and firetower
//     never says yes), so it skips the check. (Basic credentials do not:
//     a browser adds them by itself.)
//   - Wrong keys are counted per client address (an IPv6 address by its
//     /64): past FailedKeyBurst in a row, the address gets 429 until it has
//     earned a new try, whatever key it presents, and each failure is
//     logged while the address is not limited.
//
// A Guard is safe for concurrent use and starts no goroutine: the
// remembered addresses are pruned when the table is full.
type Guard struct {
	key     []byte
	anyHost bool
	hosts   []string // lower case; "*.x" entries keep their "*."
	origins []string // lower case
	log     *slog.Logger
	limiter *limiter
}

// NewGuard returns a Guard configured by cfg.
func NewGuard(cfg GuardConfig) *Guard {
	g := &Guard{key: []byte(cfg.APIKey), log: cfg.Logger}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	for _, h := range cfg.AllowedHosts {
		h = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
		switch h {
		case "":
		case "*":
			g.anyHost = true
		default:
			g.hosts = append(g.hosts, h)
		}
	}
	for _, o := range cfg.AllowedOrigins {
		o = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(o)), "/")
		if o != "" && o != "*" {
			g.origins = append(g.origins, o)
		}
	}
	burst := cfg.FailedKeyBurst
	if burst <= 0 {
		burst = 10
	}
	every := cfg.FailedKeyEvery
	if every <= 0 {
		every = time.Second
	}
	maxClients := cfg.MaxClients
	if maxClients <= 0 {
		maxClients = 10000
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	g.limiter = newLimiter(burst, every, maxClients, now)
	return g
}

// HasKey reports whether the Guard has an API key.
func (g *Guard) HasKey() bool { return len(g.key) > 0 }

// Protect wraps h with the Host and cross-site checks (not the key: see
// RequireKey).
func (g *Guard) Protect(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.Check(w, r) {
			h.ServeHTTP(w, r)
		}
	})
}

// Check applies the Host and cross-site checks to r. When r fails one, it
// writes the answer (421 or 403, a JSON error) and returns false.
func (g *Guard) Check(w http.ResponseWriter, r *http.Request) bool {
	if !g.HasKey() && !g.HostAllowed(r.Host) {
		Error(w, http.StatusMisdirectedRequest, "misdirected_request",
			"this server does not answer for host "+strconv.Quote(r.Host)+" (add it to the allowed hosts, or set an API key)")
		return false
	}
	if why := g.crossSite(r); why != "" {
		Error(w, http.StatusForbidden, "cross_site", "refused a cross-site browser request: "+why)
		return false
	}
	return true
}

// HostAllowed reports whether a Host header value passes the check made
// without an API key. An empty Host (HTTP/1.0) passes: no browser sends
// one.
func (g *Guard) HostAllowed(hostport string) bool {
	if g.anyHost || hostport == "" {
		return true
	}
	host := strings.TrimSuffix(strings.ToLower(hostOnly(hostport)), ".")
	if host == "" {
		return false
	}
	// An address literal cannot be rebound: the browser connected to the
	// very address the page came from.
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	for _, h := range g.hosts {
		if h == host || strings.HasPrefix(h, "*.") && strings.HasSuffix(host, h[1:]) {
			return true
		}
	}
	return false
}

// hostOnly strips the port and the IPv6 brackets of a Host header value.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions || m == http.MethodTrace
}

// crossSite says why r is a browser's cross-site request with an unsafe
// method, or "" when it is not one.
func (g *Guard) crossSite(r *http.Request) string {
	if safeMethod(r.Method) {
		return ""
	}
	// A key in a header: no page of another site can send one without
	// asking first (Bearer, unlike Basic, is never added by the browser).
	if PresentedKey(r) != "" {
		return ""
	}
	if vals := r.Header.Values("Origin"); len(vals) > 0 {
		if g.originAllowed(vals[0], r.Host) {
			return ""
		}
		return "Origin " + strconv.Quote(vals[0]) + " is not this server"
	}
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "cross-site", "same-site":
		return "Sec-Fetch-Site is " + site
	}
	return ""
}

// originAllowed reports whether a browser's Origin is the host the
// request was sent to (the same host and port), or an allowed origin.
func (g *Guard) originAllowed(origin, hostport string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false // "null" among others
	}
	oHost, oPort := strings.ToLower(u.Hostname()), u.Port()
	def := "80"
	if u.Scheme == "https" {
		def = "443"
	}
	if oPort == "" {
		oPort = def
	}
	rHost, rPort := hostport, ""
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		rHost, rPort = h, p
	}
	rHost = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(rHost, "["), "]"))
	if rPort == "" {
		rPort = def
	}
	if rHost != "" && oHost == rHost && oPort == rPort {
		return true
	}
	full := strings.ToLower(u.Scheme + "://" + u.Host)
	for _, o := range g.origins {
		switch {
		case strings.Contains(o, "://"):
			if o == full {
				return true
			}
		case strings.HasPrefix(o, "*."):
			if strings.HasSuffix(oHost, o[1:]) {
				return true
			}
		case o == oHost:
			return true
		}
	}
	return false
}

// PresentedKey is the key r carries in X-API-Key or as
// "Authorization: Bearer KEY" ("" when none).
func PresentedKey(r *http.Request) string {
	if k := r.Header.Get("X-API-Key"); k != "" {
		return k
	}
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// Verify checks a key presented by r's client against the API key. When
// the client's address has had too many wrong keys, it returns false and
// how long the client should wait, without looking at the key (so a
// limited client learns nothing, even from the right key). A wrong key is
// counted and logged; no key at all is refused without being counted.
// Without an API key, every key passes.
func (g *Guard) Verify(r *http.Request, got string) (ok bool, retryAfter time.Duration) {
	if !g.HasKey() {
		return true, 0
	}
	if got == "" {
		return false, 0 // no guess: not counted
	}
	return g.Attempt(r.RemoteAddr, r.Method+" "+r.URL.Path, func() bool {
		return subtle.ConstantTimeCompare([]byte(got), g.key) == 1
	})
}

// Attempt runs check, a credential check of the client at remoteAddr
// ("host:port"), under the Guard's limit on failures: when the client's
// address has failed too often it returns false and how long to wait,
// without running check; otherwise check's answer, a failure being
// counted and logged with what (the request, for the log). Other servers
// (the gRPC API) use it to share the HTTP API's limit.
func (g *Guard) Attempt(remoteAddr, what string, check func() bool) (ok bool, retryAfter time.Duration) {
	client := clientOf(remoteAddr)
	allowed, wait, first := g.limiter.take(client)
	if !allowed {
		if first {
			g.log.Warn("too many wrong API keys: client limited", "client", client, "request", what, "retry_after", wait)
		}
		return false, wait
	}
	if check() {
		g.limiter.refund(client)
		return true, 0
	}
	g.log.Warn("wrong API key", "client", client, "request", what)
	return false, 0
}

// RequireKey wraps h so that, when the Guard has an API key, a request
// must present it (X-API-Key or "Authorization: Bearer KEY"): 401
// without it or with a wrong one, 429 (with Retry-After) once its address
// is limited.
func (g *Guard) RequireKey(h http.Handler) http.Handler {
	if !g.HasKey() {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok, wait := g.Verify(r, PresentedKey(r))
		if !ok {
			g.Refuse(w, wait)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Refuse writes the JSON answer to a refused key: 429 with Retry-After
// when retryAfter > 0 (the client is limited), else 401.
func (g *Guard) Refuse(w http.ResponseWriter, retryAfter time.Duration) {
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(retryAfter.Seconds()))))
		Error(w, http.StatusTooManyRequests, "too_many_attempts", "too many wrong API keys from this address: try again later")
		return
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="firetower"`)
	Error(w, http.StatusUnauthorized, "unauthorized", "missing or wrong API key")
}

// clientOf is the address a client's failures are counted under: its IP,
// or the /64 of an IPv6 address (one host commonly holds a whole /64).
func clientOf(remoteAddr string) string {
	host := hostOnly(remoteAddr)
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host // not an IP (a unix socket, a test): as it is
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// limiter is a token bucket per client address, each holding up to burst
// tries and earning one back every interval. The table is bounded: when it
// is full, buckets that have filled up again (they hold nothing worth
// remembering) are dropped, at most once per interval; failing that, an
// arbitrary one is.
type limiter struct {
	mu        sync.Mutex
	burst     float64
	every     time.Duration
	max       int
	now       func() time.Time
	clients   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens  float64
	at      time.Time
	limited bool // logged as limited, until it has a try again
}

func newLimiter(burst int, every time.Duration, maxClients int, now func() time.Time) *limiter {
	return &limiter{burst: float64(burst), every: every, max: maxClients, now: now, clients: make(map[string]*bucket)}
}

func (l *limiter) refill(b *bucket, now time.Time) {
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(l.burst, b.tokens+float64(d)/float64(l.every))
	}
	b.at = now
}

// take spends one try of client. When there is none, it says how long
// until there is, and whether this is the first refusal since the client
// last had a try.
func (l *limiter) take(client string) (ok bool, wait time.Duration, first bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.clients[client]
	if b == nil {
		l.makeRoom(now)
		b = &bucket{tokens: l.burst, at: now}
		l.clients[client] = b
	}
	l.refill(b, now)
	if b.tokens >= 1 {
		b.tokens--
		b.limited = false
		return true, 0, false
	}
	wait = time.Duration((1 - b.tokens) * float64(l.every))
	first = !b.limited
	b.limited = true
	return false, max(wait, time.Millisecond), first
}

// refund gives back the try of an attempt that succeeded.
func (l *limiter) refund(client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.clients[client]; b != nil {
		b.tokens = min(l.burst, b.tokens+1)
		if b.tokens >= l.burst {
			delete(l.clients, client)
		}
	}
}

// makeRoom drops buckets until a new one fits; l.mu is held.
func (l *limiter) makeRoom(now time.Time) {
	if len(l.clients) < l.max {
		return
	}
	if now.Sub(l.lastSweep) >= l.every {
		l.lastSweep = now
		for c, b := range l.clients {
			l.refill(b, now)
			if b.tokens >= l.burst {
				delete(l.clients, c)
			}
		}
	}
	for c := range l.clients {
		if len(l.clients) < l.max {
			break
		}
		delete(l.clients, c)
	}
}

// size is the number of remembered client addresses (tests).
func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}
