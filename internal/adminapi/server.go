package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/user"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"mailwarden/internal/config"
	"mailwarden/internal/events"
	"mailwarden/internal/hosts"
	"mailwarden/internal/logx"
	"mailwarden/internal/store"
)

// maxBodyBytes caps a request body; the largest legitimate one is a note.
const maxBodyBytes = 64 << 10

// Backend is the state the admin API reads and changes.
type Backend interface {
	store.Latches
	store.Freezes
	store.Events
}

// Options configure a Server.
type Options struct {
	Backend Backend
	Log     *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Events is the event log every change is audited in; nil makes one
	// over Backend with the default settings (tests).
	Events *events.Log

	// Version and Started describe the daemon in GET /v1/status.
	Version string
	Started time.Time
	// Antivirus, if set, is asked for clamd's state by each GET
	// /v1/status; nil reports antivirus disabled.
	Antivirus func() AntivirusState
	// Store, if set, is asked whether the store can write by each GET
	// /v1/status; nil leaves the store out of the answer.
	Store func() StoreStatus
	// Hosts, if set, answers /v1/hosts and /v1/timeline; nil answers
	// them with 503.
	Hosts *hosts.Registry
	// Scan, if set, runs the scans POST /v1/scan asks for; nil answers
	// it with 503.
	Scan ScanFunc
	// Greylist, if set, is where POST /v1/greylist/allow lets triplets
	// through.
	Greylist store.Greylist
	// Config returns the configuration in force; settings are read from
	// it per request, so a reload applies at once (greylist.ipv4_prefix,
	// passed_lifetime). Nil means the defaults.
	Config func() config.Config
	// Queue connects GET /v1/queue and POST /v1/queue/purge to the MTA
	// queue; without it they answer 503.
	Queue QueueOptions
	// Mailboxes, if set, finds the mailboxes created since the last
	// snapshot for GET /v1/incident; nil says the daemon does not read
	// the mailbox files.
	Mailboxes func(ctx context.Context, now time.Time) MailboxNews
	// Alerts, if set, lists the open alerts for GET /v1/incident; nil
	// says alerts are not configured.
	Alerts AlertSource
}

// Server is the admin API.
type Server struct {
	be        Backend
	log       *slog.Logger
	now       func() time.Time
	events    *events.Log
	version   string
	started   time.Time
	antivirus func() AntivirusState
	store     func() StoreStatus
	hosts     *hosts.Registry
	scan      ScanFunc
	greylist  store.Greylist

	config    func() config.Config
	queue     QueueOptions
	mailboxes func(ctx context.Context, now time.Time) MailboxNews
	alerts    AlertSource

	routes  []string // every pattern served, for the audit test
	handler http.Handler
	http    *http.Server
	// owners is who may use the socket once Listen has made it.
	owners atomic.Pointer[socketOwners]
}

// NewServer returns a server for o; it serves once Serve is called.
func NewServer(o Options) *Server {
	s := &Server{be: o.Backend, log: o.Log, now: o.Now, events: o.Events,
		version: o.Version, started: o.Started, antivirus: o.Antivirus,
		store: o.Store, hosts: o.Hosts, scan: o.Scan, greylist: o.Greylist, config: o.Config, queue: o.Queue,
		mailboxes: o.Mailboxes, alerts: o.Alerts}
	if s.config == nil {
		def := config.Default()
		s.config = func() config.Config { return def }
	}
	s.log = logx.Or(s.log)
	if s.now == nil {
		s.now = time.Now
	}
	if s.events == nil {
		s.events = events.NewLog(events.LogOptions{Store: o.Backend, Now: s.now, Log: s.log})
	}
	mux := http.NewServeMux()
	handle := func(pattern string, h http.HandlerFunc) {
		s.routes = append(s.routes, pattern)
		mux.HandleFunc(pattern, h)
	}
	handle("GET /v1/latches", s.listLatches)
	handle("GET /v1/latches/{id}", s.getLatch)
	handle("POST /v1/latches/{id}/clear", s.clearLatch)
	handle("GET /v1/freezes", s.listFreezes)
	handle("POST /v1/freezes", s.setFreeze)
	handle("DELETE /v1/freezes", s.liftFreeze)
	handle("GET /v1/events", s.listEvents)
	handle("GET /v1/status", s.status)
	handle("GET /v1/hosts", s.listHosts)
	handle("GET /v1/hosts/{ip}", s.getHost)
	handle("POST /v1/hosts/{ip}/note", s.noteHost)
	handle("POST /v1/hosts/{ip}/disinfect", s.disinfectHost)
	handle("GET /v1/timeline", s.timeline)
	handle("POST /v1/scan", s.runScan)
	handle("POST /v1/greylist/allow", s.allowTriplet)
	handle("GET /v1/queue", s.queueStatus)
	handle("POST /v1/queue/purge", s.purgeQueue)
	handle("GET /v1/incident", s.incident)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if allow := AllowedMethods(mux, r); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", ")))
			return
		}
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	s.handler = s.guard(mux)
	s.http = &http.Server{
		// The CLI sends small requests at once; a client that dawdles is
		// broken or hostile and must not hold a connection.
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		Handler:           s.peerGate(s.handler),
		ConnContext:       withPeer,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	return s
}

// Routes lists every route pattern the API serves, such as
// "POST /v1/freezes".
func (s *Server) Routes() []string { return slices.Clone(s.routes) }

// Handler returns the API's handler, for the web dashboard to serve
// under its own authentication (see WithUser).
func (s *Server) Handler() http.Handler { return s.handler }

// Serve answers requests on ln until Shutdown; it returns nil after a
// Shutdown and the listener's error otherwise.
func (s *Server) Serve(ln net.Listener) error {
	err := s.http.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("adminapi: serving: %w", err)
}

// Shutdown stops accepting connections, waits for requests in flight
// until ctx is done and closes the listener (which removes the socket).
func (s *Server) Shutdown(ctx context.Context) error {
	return s.http.Shutdown(ctx)
}

// guard caps request bodies and turns a panic in a handler into a 500,
// so one bad request cannot take the daemon down.
func (s *Server) guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("admin API handler panicked", "method", r.Method, "path", r.URL.Path,
					"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				writeError(w, http.StatusInternalServerError, "internal error (logged by the daemon)")
			}
		}()
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		h.ServeHTTP(w, r.WithContext(events.WithFrom(r.Context(), from(r))))
	})
}

// peerKey is the context key of a connection's peer credentials.
type peerKey struct{}

// peer is who is on the other end of a connection.
type peer struct {
	uid, gid int
	err      error
}

// withPeer records the connecting process's uid and gid (SO_PEERCRED)
// in the connection's context: the kernel's word, not the client's.
func withPeer(ctx context.Context, c net.Conn) context.Context {
	uid, gid, err := peerCred(c)
	return context.WithValue(ctx, peerKey{}, peer{uid: uid, gid: gid, err: err})
}

// who names the administrator behind r: "web:NAME" for a dashboard user
// (WithUser), else the user name of the peer's uid, "uid N" when it has
// no name, or "unknown" if the kernel did not say.
func (s *Server) who(r *http.Request) string {
	if name, ok := r.Context().Value(userKey{}).(string); ok {
		return "web:" + name
	}
	p, ok := r.Context().Value(peerKey{}).(peer)
	if !ok || p.err != nil {
		s.log.Warn("admin API: peer credentials unavailable", "err", p.err)
		return "unknown"
	}
	if u, err := user.LookupId(strconv.Itoa(p.uid)); err == nil && u.Username != "" {
		return u.Username
	}
	return "uid " + strconv.Itoa(p.uid)
}

// from says where r came from, for the audit log: the dashboard and
// its user's address (WithRemote), or the admin socket.
func from(r *http.Request) string {
	if remote, _ := r.Context().Value(remoteKey{}).(string); remote != "" {
		return "dashboard " + remote
	}
	if _, ok := r.Context().Value(userKey{}).(string); ok {
		return "dashboard"
	}
	return "admin socket"
}

// decode reads a JSON body into v, refusing unknown fields and trailing
// data so a misspelt field is an error rather than silently ignored.
// serveReport serves a read-only route whose answer is one report.
func serveReport[T any](w http.ResponseWriter, r *http.Request, get func(context.Context) (T, error)) {
	out, err := get(r.Context())
	if err != nil {
		writeActionError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// serveAction serves a state-changing route: it decodes the JSON body
// into a Req, runs do and writes its result, or do's error as actions
// report them.
func serveAction[Req, Res any](w http.ResponseWriter, r *http.Request, do func(Req) (Res, error)) {
	var req Req
	if err := decode(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	out, err := do(req)
	if err != nil {
		writeActionError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("request body larger than %d bytes", mbe.Limit)
		}
		if errors.Is(err, io.EOF) {
			return errors.New("request body is empty; want a JSON object")
		}
		return fmt.Errorf("bad JSON body: %w", err)
	}
	if dec.More() {
		return errors.New("bad JSON body: data after the object")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeList answers 200 with xs, each as show makes it; no items is []
// rather than null.
func writeList[S, T any](w http.ResponseWriter, xs []S, show func(S) T) {
	out := make([]T, 0, len(xs))
	for _, x := range xs {
		out = append(out, show(x))
	}
	writeJSON(w, http.StatusOK, out)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}

// storeError answers a backend failure. The caller is an administrator,
// so the store's own message is passed on as well as logged.
func (s *Server) storeError(w http.ResponseWriter, what string, err error) {
	writeActionError(w, s.failed(what, err))
}
