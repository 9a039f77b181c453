// Package web serves mailwarden's HTTP endpoints: health and readiness
// probes, Prometheus metrics, and the dashboard behind a login.
//
// The dashboard is server-rendered (html/template) with its templates and
// static files embedded, so a plain go build ships them. Every page needs
// a session; every change needs the admin role, passes Go's cross-origin
// protection and goes through adminapi's actions, which record the audit
// event.
package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/config"
	"mailwarden/internal/events"
	"mailwarden/internal/hosts"
	"mailwarden/internal/logx"
	"mailwarden/internal/series"
	"mailwarden/internal/store"
)

// maxFormBytes caps a form body: the largest legitimate one is a note.
const maxFormBytes = 64 << 10

// csp allows only the dashboard's own scripts and styles: no inline
// script or style, so injected markup that slipped through escaping
// could still not run.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Options configures the dashboard.
type Options struct {
	Log *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Config returns the live configuration; its web, sites, greylist and
	// events sections are read on every request, so a reload applies at
	// once.
	Config func() config.Config
	Store  store.Store
	// Users keeps the dashboard's users; nil takes them from Store when
	// the store provides them.
	Users store.Users
	// Passes lists auto-whitelisted greylist clients; nil takes them from
	// Store when it provides them, else the greylist page says so.
	Passes store.ClientPassLister
	// Hosts is the suspect-hosts registry; nil: host pages say it is off.
	Hosts *hosts.Registry
	// Admin makes every change and answers the JSON API.
	Admin *adminapi.Server
	// Series feeds the overview's charts; nil: no charts.
	Series *series.Recorder
	// Ops serves /metrics, /-/healthy and /-/ready without a login.
	Ops http.Handler
	// Secure says the dashboard is served over TLS: cookies are Secure
	// and carry the __Host- prefix.
	Secure  bool
	Version string
	// Events is the event log logins are audited in; nil makes one over
	// Store with the default settings (tests).
	Events *events.Log
}

// Server is the dashboard. It is an http.Handler.
type Server struct {
	log     *slog.Logger
	now     func() time.Time
	config  func() config.Config
	store   store.Store
	users   store.Users
	passes  store.ClientPassLister
	hosts   *hosts.Registry
	admin   *adminapi.Server
	series  *series.Recorder
	secure  bool
	version string

	sessions *sessions
	events   *events.Log
	throttle *throttle
	checks   *passChecks
	delay    *delayer
	pages    *pages
	static   *staticFiles

	routes  []string
	handler http.Handler
}

// New returns the dashboard for o.
func New(o Options) (*Server, error) {
	if o.Store == nil || o.Admin == nil || o.Config == nil {
		return nil, errors.New("web: a store, the admin API server and the configuration are required")
	}
	if o.Users == nil {
		u, ok := o.Store.(store.Users)
		if !ok {
			return nil, errors.New("web: a user store is required")
		}
		o.Users = u
	}
	if o.Passes == nil {
		o.Passes, _ = o.Store.(store.ClientPassLister)
	}
	o.Log = logx.Or(o.Log)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Events == nil {
		o.Events = events.NewLog(events.LogOptions{Store: o.Store, Now: o.Now, Log: o.Log,
			Settings: func() config.Events { return o.Config().Events }})
	}
	s := &Server{log: o.Log, now: o.Now, config: o.Config, store: o.Store, users: o.Users, events: o.Events,
		passes: o.Passes, hosts: o.Hosts, admin: o.Admin, series: o.Series, secure: o.Secure,
		version: o.Version, sessions: newSessions(maxSessions), throttle: newThrottle(maxThrottleEntries),
		checks: defaultPassChecks(), delay: &delayer{delay: failDelay}}
	var err error
	if s.pages, err = loadPages(); err != nil {
		return nil, err
	}
	if s.static, err = loadStatic(); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	s.register(mux, o.Ops)

	// Cross-origin protection refuses every non-safe request another
	// site's page makes a browser send, before any handler sees it; with
	// SameSite=Strict cookies this is the CSRF defence.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.log.Warn("web: cross-origin request refused", "method", r.Method, "path", r.URL.Path,
			"origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"))
		s.plainError(w, http.StatusForbidden, "cross-origin request refused")
	}))
	s.handler = s.recoverer(cop.Handler(mux))
	return s, nil
}

// register puts every route on mux; Routes lists them for the access
// test.
func (s *Server) register(mux *http.ServeMux, ops http.Handler) {
	handle := func(pattern string, h http.Handler) {
		s.routes = append(s.routes, pattern)
		mux.Handle(pattern, h)
	}
	if ops == nil {
		ops = http.NotFoundHandler()
	}
	// Public.
	handle("GET /login", http.HandlerFunc(s.loginPage))
	handle("POST /login", http.HandlerFunc(s.login))
	handle("GET /static/", http.HandlerFunc(s.static.serve))
	handle("GET /metrics", ops)
	handle("GET /-/healthy", ops)
	handle("GET /-/ready", ops)

	// Any logged-in user.
	handle("POST /logout", http.HandlerFunc(s.logout))
	handle("GET /{$}", s.page(s.overview))
	handle("GET /hosts", s.page(s.hostsPage))
	handle("GET /hosts/rows", s.data(s.hostRows))
	handle("GET /hosts.csv", s.data(s.hostsCSV))
	handle("GET /hosts/{ip}", s.page(s.hostPage))
	handle("GET /latches", s.page(s.latchesPage))
	handle("GET /latches.csv", s.data(s.latchesCSV))
	handle("GET /greylist", s.page(s.greylistPage))
	handle("GET /events", s.page(s.eventsPage))
	handle("GET /events.csv", s.data(s.eventsCSV))
	handle("GET /freeze", s.page(s.freezePage))
	handle("GET /audit", s.page(s.auditPage))
	handle("GET /incident", s.page(s.incidentPage))
	handle("GET /queue", s.page(s.queuePage))
	handle("GET /api/v1/", s.data(s.api))

	// Admins only.
	handle("GET /queue/purge", s.adminPage(s.queueDryRun))
	handle("POST /queue/purge", s.action(s.purgeQueue))
	handle("POST /hosts/{ip}/note", s.action(s.noteHost))
	handle("POST /hosts/{ip}/disinfect", s.action(s.disinfectHost))
	handle("POST /latches/{id}/clear", s.action(s.clearLatch))
	handle("POST /greylist/allow", s.action(s.allowTriplet))
	handle("POST /freeze", s.action(s.setFreeze))
	handle("POST /freeze/lift", s.action(s.liftFreeze))
	handle("/api/v1/", s.apiChange(s.api))

	// Everything else.
	handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if allow := adminapi.AllowedMethods(mux, r); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			s.errorPage(w, r, s.optionalUser(w, r), http.StatusMethodNotAllowed, "Method not allowed",
				fmt.Sprintf("This address takes %s, not %s.", strings.Join(allow, " or "), r.Method))
			return
		}
		s.notFound(w, r, s.optionalUser(w, r))
	}))
}

// Routes lists every pattern registered on the mux, such as
// "GET /hosts/{ip}".
func (s *Server) Routes() []string { return append([]string(nil), s.routes...) }

// ServeHTTP sets the security headers every response carries and serves
// r.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	if s.secure {
		// Served over TLS: browsers keep to HTTPS for a year, so a
		// network attacker cannot downgrade a later visit to take the
		// session cookie (RFC 6797).
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	if !strings.HasPrefix(r.URL.Path, "/static/") {
		// Pages show who is latched and who logged in: no cache, shared
		// or private, may keep them.
		h.Set("Cache-Control", "no-store")
	}
	s.handler.ServeHTTP(w, s.withClient(r))
}

// recoverer turns a panic in a handler into a logged 500 page, so one bad
// request cannot take the daemon down.
func (s *Server) recoverer(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := &trackingWriter{ResponseWriter: w}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("web: handler panicked", "method", r.Method, "path", r.URL.Path,
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if !rw.wrote {
				s.plainError(rw, http.StatusInternalServerError, "Internal error; the daemon's log has the details.")
			}
		}()
		h.ServeHTTP(rw, r)
	})
}

// trackingWriter notes whether a response has begun, so that a panic
// after the header went out does not write a second one.
type trackingWriter struct {
	http.ResponseWriter
	wrote bool
}

func (t *trackingWriter) WriteHeader(code int) {
	t.wrote = true
	t.ResponseWriter.WriteHeader(code)
}

func (t *trackingWriter) Write(b []byte) (int, error) {
	t.wrote = true
	return t.ResponseWriter.Write(b)
}

func (t *trackingWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }

// api serves the admin JSON API under /api, as the logged-in user.
func (s *Server) api(w http.ResponseWriter, r *http.Request, u *sessionUser) {
	r = r.WithContext(adminapi.WithRemote(adminapi.WithUser(r.Context(), u.Name), clientIP(r)))
	http.StripPrefix("/api", s.admin.Handler()).ServeHTTP(w, r)
}

// webConfig returns the live web section.
func (s *Server) webConfig() config.Web { return s.config().Web }

// who names a dashboard user in the audit log, as the admin API does.
func who(u *sessionUser) string { return "web:" + u.Name }

// audit records a login-related admin event; a failure is only logged,
// since refusing a login because the event log is down would lock the
// administrator out on the day they need in.
func (s *Server) audit(ctx context.Context, a events.Admin) {
	if err := s.events.Audit(ctx, a, nil); err != nil {
		s.log.Error("web: recording admin event failed", "action", a.Action, "err", err)
	}
}
