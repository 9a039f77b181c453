package accept

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
)

// Server is the admission and shutdown of a server that serves each
// connection in its own goroutine, so that the policy server and the trap
// order admission against shutdown in one place. Make it with NewServer.
type Server struct {
	t   *Tracker
	lns Listeners

	// mu orders admitting a connection against Shutdown: a connection
	// admitted under it is counted in wg before Shutdown sets shutting,
	// so Shutdown's Wait always sees it.
	mu       sync.Mutex
	shutting atomic.Bool
	wg       sync.WaitGroup // connection goroutines
}

// NewServer returns a server that admits connections through t and logs
// under t's name and logger, so each server names itself once.
func NewServer(t *Tracker) *Server {
	return &Server{t: t, lns: Listeners{Name: t.o.Name, Log: t.o.Log}}
}

// Serve accepts connections on ln until Shutdown, then returns nil. It
// returns an error if accepting fails for another reason, and closes ln.
// Each admitted connection is served by serve in a new goroutine, which
// Shutdown waits for; serve must recover its own panics. A connection
// the tracker has no room for goes to refuse, in the accepting goroutine
// so a flood never starts a goroutine per connection; nil refuse closes
// it. Connections accepted while shutting down are closed.
func (s *Server) Serve(ln net.Listener, serve func(*Conn), refuse func(net.Conn)) error {
	return s.lns.Serve(ln, func(nc net.Conn) { s.admit(nc, serve, refuse) })
}

func (s *Server) admit(nc net.Conn, serve func(*Conn), refuse func(net.Conn)) {
	s.mu.Lock()
	if s.shutting.Load() {
		s.mu.Unlock()
		nc.Close()
		return
	}
	c, err := s.t.Admit(nc)
	if err != nil {
		s.mu.Unlock()
		if refuse != nil {
			refuse(nc)
		} else {
			nc.Close()
		}
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		serve(c)
	}()
}

// ShuttingDown reports whether Shutdown has been called, so a connection
// can end at its next request rather than wait for one.
func (s *Server) ShuttingDown() bool { return s.shutting.Load() }

// Shutdown stops accepting, then calls drain, if not nil, to hurry the
// connections being served along (close the idle ones, interrupt reads),
// and waits for their goroutines to end. When ctx ends first it closes
// every connection and returns ctx.Err() without waiting further.
func (s *Server) Shutdown(ctx context.Context, drain func()) error {
	s.mu.Lock()
	s.shutting.Store(true)
	s.lns.Close()
	s.mu.Unlock()
	if drain != nil {
		drain()
	}

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.t.Each(func(c *Conn) { c.Close() })
		return ctx.Err()
	}
}
