package main

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"sync"
	"time"
)

// sessionCookie holds a browser's dashboard session.
const sessionCookie = "firetower_session"

// sessions are the dashboard's sign-ins. A session is a cookie value
// "v1.EXPIRES.ID.MAC": its expiry (Unix milliseconds), a random id and an
// HMAC-SHA256 of both under a secret drawn from the API key and a random
// salt of this process. So the cookie holds no key, cannot be forged or
// extended, and dies with its expiry or the process (a restart signs
// everyone out). Signing out revokes the session's id until it expires;
// should the table of revoked ids fill up, every session issued so far is
// revoked instead (never the other way round).
type sessions struct {
	secret []byte
	ttl    time.Duration
	now    func() time.Time
	max    int

	mu        sync.Mutex
	revoked   map[string]int64 // id -> expiry (Unix ms)
	notBefore int64            // sessions issued at or before this (Unix ms) are void
}

// defaultSessionTTL is how long a dashboard sign-in lasts.
const defaultSessionTTL = 12 * time.Hour

func newSessions(key string, ttl time.Duration, now func() time.Time) *sessions {
	if ttl <= 0 {
		ttl = defaultSessionTTL
	}
	if now == nil {
		now = time.Now
	}
	salt := make([]byte, 32)
	_, _ = rand.Read(salt) // never fails (it would crash the program)
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte("firetower dashboard session v1\x00"))
	m.Write(salt)
	return &sessions{secret: m.Sum(nil), ttl: ttl, now: now, max: 10000, revoked: make(map[string]int64), notBefore: -1}
}

func (s *sessions) mac(exp, id string) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte("v1\x00" + exp + "\x00" + id))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// issue starts a session: the cookie value and its expiry.
func (s *sessions) issue() (string, time.Time) {
	expires := s.now().Add(s.ttl)
	raw := make([]byte, 16)
	_, _ = rand.Read(raw)
	exp := strconv.FormatInt(expires.UnixMilli(), 10)
	id := base64.RawURLEncoding.EncodeToString(raw)
	return "v1." + exp + "." + id + "." + s.mac(exp, id), expires
}

// parse checks a cookie value's form and MAC: its id and expiry.
func (s *sessions) parse(v string) (id string, exp int64, ok bool) {
	if len(v) > 200 {
		return "", 0, false
	}
	parts := strings.Split(v, ".")
	if len(parts) != 4 || parts[0] != "v1" {
		return "", 0, false
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || len(parts[2]) == 0 {
		return "", 0, false
	}
	if !hmac.Equal([]byte(parts[3]), []byte(s.mac(parts[1], parts[2]))) {
		return "", 0, false
	}
	return parts[2], exp, true
}

// valid reports whether v is a live session: well formed, not expired,
// not signed out.
func (s *sessions) valid(v string) bool {
	id, exp, ok := s.parse(v)
	if !ok {
		return false
	}
	now := s.now().UnixMilli()
	if exp <= now || exp > now+s.ttl.Milliseconds() {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if exp-s.ttl.Milliseconds() <= s.notBefore {
		return false
	}
	_, gone := s.revoked[id]
	return !gone
}

// revoke signs a session out (a value that is not a session is ignored).
func (s *sessions) revoke(v string) {
	id, exp, ok := s.parse(v)
	if !ok {
		return
	}
	now := s.now().UnixMilli()
	if exp <= now {
		return // expired already
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.revoked) >= s.max {
		for i, e := range s.revoked {
			if e <= now {
				delete(s.revoked, i)
			}
		}
	}
	if len(s.revoked) >= s.max {
		// No room: void every session issued so far, this one included.
		s.notBefore = now
		clear(s.revoked)
		return
	}
	s.revoked[id] = exp
}
