// Package accept is what every listener of the daemon shares: accept
// loops over any number of listeners (connections go to a handler,
// temporary accept errors are retried with backoff, and Close stops every
// loop), and the Tracker, the one place that counts connections, caps
// them in total and per client address and makes room by closing the
// oldest idle one. The policy server, the milter and the worm trap use
// the Tracker; the policy server and the trap use the accept loops
// through Server, which also orders admission against shutdown.
package accept

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

// Listeners is a set of listeners being served. The zero value is not
// usable; set Name and Log.
type Listeners struct {
	// Name labels log lines and errors, e.g. "policy server".
	Name string
	Log  *slog.Logger

	mu     sync.Mutex
	set    map[net.Listener]struct{}
	closed bool
}

// Serve accepts connections on ln and hands each to handle, in the
// accepting goroutine: handle must return quickly (start a goroutine or
// refuse). It returns nil after Close and an error if accepting fails for
// another reason. Serve closes ln.
func (l *Listeners) Serve(ln net.Listener, handle func(net.Conn)) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		ln.Close()
		return nil
	}
	if l.set == nil {
		l.set = map[net.Listener]struct{}{}
	}
	l.set[ln] = struct{}{}
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.set, ln)
		l.mu.Unlock()
		ln.Close()
	}()

	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if l.isClosed() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || temporary(err) {
				// Out of file descriptors and the like: wait and retry
				// rather than end the listener.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				l.Log.Warn(l.Name+" accept failed, retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("%s: accepting connections: %w", l.Name, err)
		}
		backoff = 0
		handle(nc)
	}
}

// Close stops every Serve and makes later ones return at once.
func (l *Listeners) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for ln := range l.set {
		ln.Close()
	}
}

func (l *Listeners) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// temporary reports accept errors worth retrying: descriptor exhaustion
// and connections aborted before accept.
func temporary(err error) bool {
	var se *os.SyscallError
	if !errors.As(err, &se) {
		return false
	}
	type temp interface{ Temporary() bool }
	t, ok := se.Err.(temp)
	return ok && t.Temporary()
}
