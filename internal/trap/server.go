package trap

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"mailwarden/internal/accept"
	"mailwarden/internal/defaults"
	"mailwarden/internal/logx"
)

// Defaults for zero Options fields.
const (
	DefaultReadTimeout    = 10 * time.Second
	DefaultSessionTimeout = 30 * time.Second
	// DefaultMaxLine is the longest command line including CRLF that
	// RFC 5321 §4.5.3.1.4 requires a server to accept.
	DefaultMaxLine  = 512
	DefaultMaxConns = 256
	DefaultMaxPerIP = 4
)

// rejectTimeout bounds the write of the 421 refusal, which the accept
// loop does itself so a flood never starts a goroutine per connection.
const rejectTimeout = 100 * time.Millisecond

// Options configures a Server.
type Options struct {
	// Hostname is announced in the banner. Empty means the system host
	// name.
	Hostname string
	// ReadTimeout bounds the wait for each command line. Zero means
	// DefaultReadTimeout.
	ReadTimeout time.Duration
	// SessionTimeout bounds a whole conversation. Zero means
	// DefaultSessionTimeout.
	SessionTimeout time.Duration
	// MaxLine is the longest command line accepted, CRLF included. Zero
	// means DefaultMaxLine.
	MaxLine int
	// MaxConns caps concurrent conversations; more are refused with
	// 421. Zero means DefaultMaxConns.
	MaxConns int
	// MaxPerIP caps concurrent conversations from one address. Zero
	// means DefaultMaxPerIP.
	MaxPerIP int
	// Aggregator, if set, receives every hit.
	Aggregator *Aggregator
	// OnHit, if set, is called once per connection when it ends, refused
	// ones included, from the goroutine that served it. It must not
	// block for long: refused connections are recorded by the accept
	// loop.
	OnHit func(Hit)
	// Log receives connection-level events. Nil discards.
	Log *slog.Logger
}

// Server is the trap listener.
type Server struct {
	o   Options
	log *slog.Logger

	// conns caps conversations without eviction: in a worm flood the
	// newest connections are refused (and recorded), never the
	// conversations already under way.
	conns *accept.Tracker
	srv   *accept.Server
}

// NewServer returns a trap server; call Serve to start it.
func NewServer(o Options) *Server {
	o.Log = logx.Or(o.Log)
	if o.Hostname == "" {
		o.Hostname, _ = os.Hostname()
	}
	// The host name goes into a reply line; keep it one printable word.
	o.Hostname = strings.Join(strings.Fields(Clean(o.Hostname)), "")
	if o.Hostname == "" {
		o.Hostname = "localhost"
	}
	o.ReadTimeout = defaults.Positive(o.ReadTimeout, DefaultReadTimeout)
	o.SessionTimeout = defaults.Positive(o.SessionTimeout, DefaultSessionTimeout)
	o.MaxLine = defaults.Positive(o.MaxLine, DefaultMaxLine)
	o.MaxConns = defaults.Positive(o.MaxConns, DefaultMaxConns)
	o.MaxPerIP = defaults.Positive(o.MaxPerIP, DefaultMaxPerIP)
	conns := accept.NewTracker(accept.TrackerOptions{Name: "trap", Log: o.Log,
		MaxConns: o.MaxConns, MaxPerClient: o.MaxPerIP})
	return &Server{o: o, log: o.Log, conns: conns, srv: accept.NewServer(conns)}
}

// ConnStats returns the connection counts: open, refused (none are
// evicted).
func (s *Server) ConnStats() accept.TrackerStats { return s.conns.Stats() }

// Serve accepts connections on ln until Shutdown, then returns nil. It
// returns an error if accepting fails for another reason. Serve closes ln.
// The count of tracked connections is the semaphore that bounds
// goroutines: a connection over a cap is refused inline.
func (s *Server) Serve(ln net.Listener) error {
	return s.srv.Serve(ln, s.serveConn, s.refuse)
}

// refuse answers a connection over a cap with 421 (RFC 5321 §4.2.2:
// service not available, closing) and records it: a flood is evidence.
func (s *Server) refuse(nc net.Conn) {
	client := remoteAddr(nc)
	h := Hit{Client: client, Time: time.Now(), OrigDst: redirectedDst(nc)}
	nc.SetWriteDeadline(time.Now().Add(rejectTimeout))
	nc.Write([]byte("421 4.7.0 Too many connections\r\n"))
	nc.Close()
	s.log.Debug("trap connection refused over cap", "client", client)
	s.record(h)
}

// serveConn runs one conversation and records its hit, whatever happens.
func (s *Server) serveConn(c *accept.Conn) {
	h := Hit{Client: c.Client(), Time: time.Now(), OrigDst: redirectedDst(c.NetConn())}
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("trap connection panicked", "client", h.Client,
				"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
		c.Close()
		s.record(h)
	}()
	s.converse(c, &h)
}

// record hands a hit to the aggregator and the callback. A panicking
// callback must not take the accept loop down with it.
func (s *Server) record(h Hit) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("trap hit callback panicked", "panic", fmt.Sprint(r))
		}
	}()
	s.log.Debug("trap hit", "client", h.Client, "orig_dst", h.OrigDst,
		"helo", h.Helo, "mail_from", h.MailFrom)
	if s.o.Aggregator != nil {
		s.o.Aggregator.Add(h)
	}
	if s.o.OnHit != nil {
		s.o.OnHit(h)
	}
}

// Shutdown stops accepting and ends every conversation with 421 at its
// next read. It waits for them to end; when ctx ends first it closes
// every connection and returns ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	// A session arming its next read after this finds shutting set or
	// its read deadline pinned in the past.
	return s.srv.Shutdown(ctx, func() { s.conns.Each((*accept.Conn).Interrupt) })
}

// remoteAddr returns the client address of nc, or the zero Addr when it
// is not an IP connection.
func remoteAddr(nc net.Conn) netip.Addr {
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// redirectedDst returns the destination the client originally asked for,
// or the zero AddrPort when the connection was not redirected: without a
// NAT mapping the kernel reports the trap's own address, or nothing.
func redirectedDst(nc net.Conn) netip.AddrPort {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return netip.AddrPort{}
	}
	dst, ok := OriginalDst(tc)
	if !ok {
		return netip.AddrPort{}
	}
	if la, ok := tc.LocalAddr().(*net.TCPAddr); ok {
		local := la.AddrPort()
		if dst.Addr().Unmap() == local.Addr().Unmap() && dst.Port() == local.Port() {
			return netip.AddrPort{}
		}
	}
	return netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
}
