package web

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"sync"
	"time"
)

// maxSessions bounds the session table. Sessions are only made by a
// right password, so this is a guard against a bug, not an attacker; the
// oldest session goes first.
const maxSessions = 10000

// tokenBytes is the size of a session token: 256 random bits.
const tokenBytes = 32

// session is a login, kept in memory only: a restart logs everyone out.
type session struct {
	name    string
	created time.Time
	expires time.Time
	// hashSum is a digest of the user's password hash at login: a
	// password change ends every other session of that user.
	hashSum [32]byte
}

// sessions is the table of live sessions, keyed by token.
type sessions struct {
	mu  sync.Mutex
	max int
	m   map[string]session
}

func newSessions(max int) *sessions {
	return &sessions{max: max, m: make(map[string]session)}
}

// create stores a new session for name and returns its token.
func (ss *sessions) create(name string, hash []byte, now time.Time, ttl time.Duration) string {
	b := make([]byte, tokenBytes)
	rand.Read(b) // crypto/rand.Read never fails (Go 1.24+).
	tok := base64.RawURLEncoding.EncodeToString(b)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for t, s := range ss.m {
		if !now.Before(s.expires) {
			delete(ss.m, t)
		}
	}
	if len(ss.m) >= ss.max {
		oldest, first := "", true
		var at time.Time
		for t, s := range ss.m {
			if first || s.created.Before(at) {
				oldest, at, first = t, s.created, false
			}
		}
		delete(ss.m, oldest)
	}
	ss.m[tok] = session{name: name, created: now, expires: now.Add(ttl), hashSum: sha256.Sum256(hash)}
	return tok
}

// get returns the unexpired session of tok.
func (ss *sessions) get(tok string, now time.Time) (session, bool) {
	if len(tok) != base64.RawURLEncoding.EncodedLen(tokenBytes) {
		return session{}, false
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[tok]
	if ok && !now.Before(s.expires) {
		delete(ss.m, tok)
		return session{}, false
	}
	return s, ok
}

func (ss *sessions) delete(tok string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.m, tok)
}

func (ss *sessions) len() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.m)
}

// cookieName is the session cookie's name. Over TLS the __Host- prefix
// makes the browser refuse a cookie that is not Secure, is scoped to a
// domain or set for another path, so a sibling host cannot plant one.
func (s *Server) cookieName(base string) string {
	if s.secure {
		return "__Host-" + base
	}
	return base
}

// setCookie sets a cookie with the attributes every dashboard cookie
// has; maxAge < 0 deletes it.
func (s *Server) setCookie(w http.ResponseWriter, base, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name:     s.cookieName(base),
		Value:    value,
		Path:     "/",
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   s.secure,
		SameSite: http.SameSiteStrictMode,
	})
}

// sessionToken returns the session token r carries, or "".
func (s *Server) sessionToken(r *http.Request) string {
	c, err := r.Cookie(s.cookieName("mw_session"))
	if err != nil {
		return ""
	}
	return c.Value
}
