package web

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"mailwarden/internal/account"
	"mailwarden/internal/events"
	"mailwarden/internal/store"
)

// sessionUser is who made a request, as the user store says now.
type sessionUser struct {
	Name string
	Role string
}

// IsAdmin reports whether the user may change things.
func (u *sessionUser) IsAdmin() bool { return u != nil && u.Role == store.RoleAdmin }

// userHandler serves a request of a logged-in user.
type userHandler func(w http.ResponseWriter, r *http.Request, u *sessionUser)

// current returns the user r's session belongs to, or nil. The user is
// read from the store on every request: a deleted user loses access at
// once, a changed role applies at once, and a changed password ends the
// sessions opened with the old one.
func (s *Server) current(r *http.Request) (*sessionUser, error) {
	tok := s.sessionToken(r)
	if tok == "" {
		return nil, nil
	}
	sess, ok := s.sessions.get(tok, s.now())
	if !ok {
		return nil, nil
	}
	u, err := s.users.GetUser(r.Context(), sess.name)
	if errors.Is(err, store.ErrNotFound) {
		s.sessions.delete(tok)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading user %s: %w", sess.name, err)
	}
	if sum := sha256.Sum256(u.Hash); subtle.ConstantTimeCompare(sum[:], sess.hashSum[:]) != 1 {
		s.sessions.delete(tok)
		return nil, nil
	}
	role := store.RoleViewer
	if u.Role == store.RoleAdmin {
		role = store.RoleAdmin
	}
	return &sessionUser{Name: u.Name, Role: role}, nil
}

// optionalUser returns the logged-in user or nil, for pages anyone may
// see (errors); a store failure counts as not logged in.
func (s *Server) optionalUser(w http.ResponseWriter, r *http.Request) *sessionUser {
	u, err := s.current(r)
	if err != nil {
		s.log.Error("web: reading the session's user failed", "err", err)
		return nil
	}
	return u
}

// gate reads the session's user and runs h for a user allowed in;
// otherwise it answers: a store failure with 500, no session with
// anonymous, a viewer at an adminOnly handler with 403.
func (s *Server) gate(anonymous http.HandlerFunc, adminOnly bool, h userHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := s.current(r)
		switch {
		case err != nil:
			s.serverError(w, r, nil, "reading the user store", err)
		case u == nil:
			anonymous(w, r)
		case adminOnly && !u.IsAdmin():
			s.forbidden(w, r, u)
		default:
			h(w, r, u)
		}
	})
}

// page wraps a page: an anonymous visitor is sent to the login page,
// which sends them back afterwards.
func (s *Server) page(h userHandler) http.Handler {
	return s.gate(func(w http.ResponseWriter, r *http.Request) {
		redirect(w, "/login?next="+url.QueryEscape(r.URL.RequestURI()))
	}, false, h)
}

// adminPage wraps a page only admins may see, such as the first step of
// a change (a purge's dry run): anonymous visitors go to the login page,
// viewers are refused.
func (s *Server) adminPage(h userHandler) http.Handler {
	return s.gate(func(w http.ResponseWriter, r *http.Request) {
		redirect(w, "/login?next="+url.QueryEscape(r.URL.RequestURI()))
	}, true, h)
}

// data wraps what scripts and programs fetch (the JSON API, CSV, the
// hosts table's rows): a redirect to a login form would only confuse
// them, so an anonymous request gets 401.
func (s *Server) data(h userHandler) http.Handler {
	return s.gate(s.unauthorized, false, h)
}

// action wraps a form that changes something: admins only, with a
// bounded, parsed form.
func (s *Server) action(h userHandler) http.Handler {
	return s.gate(s.unauthorized, true, func(w http.ResponseWriter, r *http.Request, u *sessionUser) {
		if s.parseForm(w, r, u) {
			// The audit entry the action records says it came from
			// the dashboard, and from which address.
			h(w, r.WithContext(events.WithFrom(r.Context(), "dashboard "+clientIP(r))), u)
		}
	})
}

// apiChange wraps the JSON API's changes: admins only.
func (s *Server) apiChange(h userHandler) http.Handler {
	return s.gate(s.unauthorized, true, h)
}

// parseForm reads a form body of at most maxFormBytes; on an error it
// answers 400 and returns false.
func (s *Server) parseForm(w http.ResponseWriter, r *http.Request, u *sessionUser) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		msg := "The form could not be read: " + err.Error()
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			msg = fmt.Sprintf("The form is larger than %d bytes.", mbe.Limit)
		}
		s.errorPage(w, r, u, http.StatusBadRequest, "Bad request", msg)
		return false
	}
	return true
}

// safeNext returns next if it is a path on this site, else "/". "//x"
// and "/\x" are other hosts to a browser, and browsers drop tabs and
// newlines from URLs, so "/\t/x" is one too.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") ||
		strings.ContainsFunc(next, func(r rune) bool { return r < ' ' || r == 0x7f || r == '\\' }) {
		return "/"
	}
	return next
}

// redirect answers 303 See Other to a local path.
func redirect(w http.ResponseWriter, to string) {
	w.Header().Set("Location", to)
	w.WriteHeader(http.StatusSeeOther)
}

// loginView is the login page's data.
type loginView struct {
	Next     string
	Username string
	Error    string
	NoUsers  bool
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	s.renderLogin(w, r, http.StatusOK, loginView{Next: safeNext(r.URL.Query().Get("next"))})
}

func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, status int, v loginView) {
	us, err := s.users.ListUsers(r.Context())
	if err != nil {
		s.log.Error("web: listing users failed", "err", err)
	}
	v.NoUsers = err == nil && len(us) == 0
	s.render(w, r, status, "login.html", "Log in", "", nil, v)
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, r, nil, http.StatusBadRequest, "Bad request", "The login form could not be read.")
		return
	}
	name := strings.TrimSpace(r.PostForm.Get("username"))
	pw := r.PostForm.Get("password")
	v := loginView{Next: safeNext(r.PostForm.Get("next")), Username: name}
	now, wc, ip := s.now(), s.webConfig(), clientIP(r)
	lim := limits{max: wc.LoginMaxFailures, lockout: wc.LoginLockout.D()}
	key := strings.ToLower(name)

	// The attempt is counted as a failure before its password is looked
	// at, and a locked name or address is refused without looking, so a
	// guesser learns nothing even from a right guess and attempts sent
	// together cannot outrun the count.
	ok, last := s.throttle.reserve(key, ip, now, lim)
	if !ok {
		v.Error = "Too many failed logins. Try again later."
		s.refuseLogin(w, r, arrived, http.StatusTooManyRequests, v)
		return
	}
	if !s.checks.admit() {
		s.throttle.refund(key, ip)
		w.Header().Set("Retry-After", "5")
		v.Error = "Too many logins at once. Try again in a moment."
		s.refuseLogin(w, r, arrived, http.StatusTooManyRequests, v)
		return
	}
	var u store.User
	var storeErr error
	err := s.checks.run(r.Context(), func() error {
		err := store.ErrNotFound
		if account.ValidName(name) == nil {
			u, err = s.users.GetUser(r.Context(), name)
		}
		switch {
		case errors.Is(err, store.ErrNotFound):
			// Unknown name: spend a password check's time anyway, so
			// timing does not tell which names exist.
			return account.CheckMissing(pw)
		case err != nil:
			storeErr = err
			return err
		}
		return account.Check(u.Hash, pw)
	})
	switch {
	case r.Context().Err() != nil:
		// The client went away while waiting; nothing was compared.
		s.throttle.refund(key, ip)
		return
	case storeErr != nil:
		s.throttle.refund(key, ip)
		s.serverError(w, r, nil, "reading the user store", storeErr)
		return
	case err != nil:
		if last {
			s.audit(r.Context(), events.Admin{Action: "web login locked", Who: "web:" + auditName(name), Client: ip, From: "dashboard " + ip,
				Reason: fmt.Sprintf("%d failed logins; logins for this name or from this address refused for %s",
					lim.max, lim.lockout)})
			v.Error = "Too many failed logins. Try again later."
			s.refuseLogin(w, r, arrived, http.StatusTooManyRequests, v)
			return
		}
		v.Error = "Wrong user name or password."
		s.refuseLogin(w, r, arrived, http.StatusUnauthorized, v)
		return
	}
	s.throttle.succeed(key, ip)
	// A new token at every login: a token planted before the login
	// (session fixation) never becomes a logged-in one.
	if old := s.sessionToken(r); old != "" {
		s.sessions.delete(old)
	}
	ttl := wc.SessionTTL.D()
	tok := s.sessions.create(u.Name, u.Hash, now, ttl)
	s.setCookie(w, "mw_session", tok, int(ttl/time.Second))
	s.audit(r.Context(), events.Admin{Action: "web login", Who: "web:" + u.Name, Client: ip, From: "dashboard " + ip,
		Reason: "logged in to the dashboard as " + u.Role})
	redirect(w, v.Next)
}

// refuseLogin answers a refused login once the fail delay has passed
// since it arrived. The page does not look up whether any user exists:
// a refusal is the cheapest answer a flood can get.
func (s *Server) refuseLogin(w http.ResponseWriter, r *http.Request, arrived time.Time, status int, v loginView) {
	s.delay.wait(r.Context(), arrived)
	s.render(w, r, status, "login.html", "Log in", "", nil, v)
}

// auditName is a login name fit for the audit log: the name if it is a
// valid one, since an attacker chooses it.
func auditName(name string) string {
	if account.ValidName(name) != nil {
		return "(invalid name)"
	}
	return name
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	u, _ := s.current(r)
	if tok := s.sessionToken(r); tok != "" {
		s.sessions.delete(tok)
	}
	s.setCookie(w, "mw_session", "", -1)
	if u != nil {
		s.audit(r.Context(), events.Admin{Action: "web logout", Who: who(u), Client: clientIP(r), From: "dashboard " + clientIP(r),
			Reason: "logged out of the dashboard"})
	}
	redirect(w, "/login")
}
