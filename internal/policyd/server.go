// Package policyd is the Postfix SMTP access policy delegation server
// (Postfix SMTPD_POLICY_README): it reads name=value requests, turns them
// into policy.Request, runs the check pipeline and answers one action. It
// listens where postgrey does (port 10023) so it can replace it, and Exim
// can ask it from an ACL with ${readsocket}.
package policyd

import (
	"context"
	"log/slog"
	"net"
	"time"

	"mailwarden/internal/accept"
	"mailwarden/internal/defaults"
	"mailwarden/internal/logx"
	"mailwarden/internal/policy"
)

// Defaults for zero Options fields; they match config.Default().
const (
	// DefaultIdleTimeout outlasts Postfix's smtpd_policy_service_max_idle
	// (300s), so Postfix, not the server, normally closes an idle
	// connection and never writes into one that is being closed.
	DefaultIdleTimeout    = 330 * time.Second
	DefaultRequestTimeout = 10 * time.Second
	// DefaultMaxConns and DefaultMaxConnsPerClient leave room for
	// Postfix's smtpd processes (default_process_limit = 100), each
	// holding one connection, all from one address (127.0.0.1 when
	// Postfix runs on the same host, as does any local user). A full
	// server closes the connection idle longest to admit a new one, so
	// idle connections cannot lock Postfix out.
	DefaultMaxConns          = 1000
	DefaultMaxConnsPerClient = 256
)

// readBufferSize is the per-connection read buffer and so the longest
// accepted line. Postfix attribute values are addresses, host names and
// certificate names, far shorter than this.
const readBufferSize = 8 << 10

// Options configures a Server.
type Options struct {
	// Pipeline returns the pipeline to run for a request. It is called
	// once per request, so a config reload takes effect on the next
	// request. Required.
	Pipeline func() *policy.Pipeline
	// Log receives connection-level events; decisions go to the
	// pipeline's mail log. Nil discards.
	Log *slog.Logger
	// IdleTimeout closes a connection that does not start a request in
	// time. Zero means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// RequestTimeout bounds reading a request once its first byte has
	// arrived, and writing the answer; checks get slightly less. Zero
	// means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// MaxRequestBytes bounds one request. Zero means
	// DefaultMaxRequestBytes.
	MaxRequestBytes int
	// MaxConns caps concurrent connections. When it is reached, the
	// connection that has waited longest for its client is closed to
	// admit the new one; when every connection is in the middle of a
	// request the new one is closed. Zero means DefaultMaxConns.
	MaxConns int
	// MaxConnsPerClient caps concurrent connections from one client IP
	// address in the same way, closing that client's connection idle
	// longest. Zero means DefaultMaxConnsPerClient.
	MaxConnsPerClient int
}

// Server answers policy requests on any number of listeners.
type Server struct {
	o       Options
	log     *slog.Logger
	baseCtx context.Context
	cancel  context.CancelFunc

	conns *accept.Tracker
	srv   *accept.Server
	// instances numbers each message's recipients across connections.
	instances instances
}

// NewServer returns a server; call Serve to start it.
func NewServer(o Options) *Server {
	o.Log = logx.Or(o.Log)
	o.IdleTimeout = defaults.Positive(o.IdleTimeout, DefaultIdleTimeout)
	o.RequestTimeout = defaults.Positive(o.RequestTimeout, DefaultRequestTimeout)
	o.MaxRequestBytes = defaults.Positive(o.MaxRequestBytes, DefaultMaxRequestBytes)
	o.MaxConns = defaults.Positive(o.MaxConns, DefaultMaxConns)
	o.MaxConnsPerClient = defaults.Positive(o.MaxConnsPerClient, DefaultMaxConnsPerClient)
	ctx, cancel := context.WithCancel(context.Background())
	conns := accept.NewTracker(accept.TrackerOptions{Name: "policy server", Log: o.Log,
		MaxConns: o.MaxConns, MaxPerClient: o.MaxConnsPerClient, Evict: true})
	return &Server{o: o, log: o.Log, baseCtx: ctx, cancel: cancel, conns: conns, srv: accept.NewServer(conns)}
}

// ConnStats returns the connection counts: open, evicted, refused.
func (s *Server) ConnStats() accept.TrackerStats { return s.conns.Stats() }

// Serve accepts connections on ln until Shutdown, then returns nil. It
// returns an error if accepting fails for another reason. Serve closes ln.
// A connection the tracker finds no room for is closed (it logs that).
func (s *Server) Serve(ln net.Listener) error {
	return s.srv.Serve(ln, s.serveConn, nil)
}

// Shutdown stops accepting, closes idle connections at once, lets
// requests in flight be answered and waits for their connections to
// end: each ends once its answer is written. When ctx ends first it
// closes every connection, cancels running checks and returns
// ctx.Err(). Postfix sends a request whose connection was closed again
// on a new one (SMTPD_POLICY_README), so closing idle ones is safe.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx, func() {
		// A connection is idle while it waits for the first byte of a
		// request; one marked idle after this sees shutting and ends.
		closed := s.conns.CloseIdle()
		if open := s.conns.Stats().Open; open > 0 {
			s.log.Info("policy server: closed idle connections, waiting for requests in flight", "closed", closed, "open", open)
		}
	})
	s.cancel()
	return err
}
