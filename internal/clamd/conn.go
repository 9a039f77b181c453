package clamd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// Pool limits. clamd closes a session idle for its IdleTimeout (30 s by
// default, clamd.conf(5)); dropping ours well before that keeps the
// client from picking a connection that clamd is about to close. The
// liveness check catches a server configured with a shorter timeout.
const (
	maxIdlePerServer = 16
	maxIdleTime      = 10 * time.Second
)

// aLongTimeAgo is a deadline in the past, to unblock a read or write at
// once when the caller's context ends.
var aLongTimeAgo = time.Unix(1, 0)

// conn is one connection to a clamd, in IDSESSION mode when session is
// set, else good for a single command.
type conn struct {
	nc        net.Conn
	br        *bufio.Reader
	session   bool
	lastID    int // the id of the last command sent in the session
	idleSince time.Time
}

// server is one configured clamd: its address, its idle session
// connections, what the health checks last saw and its breaker.
type server struct {
	endpoint
	mu     sync.Mutex
	idle   []*conn
	closed bool
	status ServerStatus
	brk    breaker
}

// dial connects to s within timeout and ctx. With session set it opens
// an IDSESSION, which clamd does not answer (clamd(8) "IDSESSION, END").
func (s *server) dial(ctx context.Context, timeout time.Duration, session bool) (*conn, error) {
	d := net.Dialer{Timeout: timeout}
	nc, err := d.DialContext(ctx, s.network, s.address)
	if err != nil {
		return nil, fmt.Errorf("connecting: %w", err)
	}
	c := &conn{nc: nc, br: bufio.NewReaderSize(nc, 512), session: session}
	if session {
		nc.SetWriteDeadline(time.Now().Add(timeout))
		if _, err := nc.Write([]byte("zIDSESSION\x00")); err != nil {
			nc.Close()
			return nil, fmt.Errorf("starting a session: %w", err)
		}
		nc.SetWriteDeadline(time.Time{})
	}
	return c, nil
}

// get returns an idle session connection that still looks alive, or
// nil. Connections that clamd closed or that sat too long are dropped.
func (s *server) get(now time.Time) *conn {
	var dead []*conn
	defer func() {
		for _, c := range dead {
			c.end()
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.idle) > 0 {
		// The most recently used connection is the likeliest alive.
		c := s.idle[len(s.idle)-1]
		s.idle = s.idle[:len(s.idle)-1]
		if now.Sub(c.idleSince) < maxIdleTime && alive(c.nc) {
			return c
		}
		dead = append(dead, c)
	}
	return nil
}

// put keeps c for reuse, or ends it when the pool is full or closed.
func (s *server) put(c *conn, now time.Time) {
	s.mu.Lock()
	if !s.closed && len(s.idle) < maxIdlePerServer {
		c.idleSince = now
		s.idle = append(s.idle, c)
		c = nil
	}
	s.mu.Unlock()
	if c != nil {
		c.end()
	}
}

// closeIdle ends every idle connection and stops pooling.
func (s *server) closeIdle() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.dropIdle()
}

// dropIdle ends every idle connection; pooling goes on.
func (s *server) dropIdle() {
	s.mu.Lock()
	idle := s.idle
	s.idle = nil
	s.mu.Unlock()
	for _, c := range idle {
		c.end()
	}
}

// idleCount reports how many connections wait in the pool.
func (s *server) idleCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.idle)
}

// end closes c, saying END first in a session so clamd frees it at once.
func (c *conn) end() {
	if c.session {
		c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		c.nc.Write([]byte("zEND\x00"))
	}
	c.nc.Close()
}

// arm bounds the next exchange on c by timeout and by ctx: a deadline
// for every read and write, moved to the past if ctx ends first. The
// returned disarm reports false when ctx ended and c is unusable.
func (c *conn) arm(ctx context.Context, timeout time.Duration) (disarm func() bool) {
	d := time.Now().Add(timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(d) {
		d = dl
	}
	c.nc.SetDeadline(d)
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(aLongTimeAgo) })
	return func() bool {
		if !stop() {
			return false
		}
		c.nc.SetDeadline(time.Time{})
		return true
	}
}

// command numbers the next command in a session and returns it with its
// z prefix and NUL terminator.
func (c *conn) command(name string) string {
	if c.session {
		c.lastID++
	}
	return "z" + name + "\x00"
}

// reply reads the answer to the last command, without a session id.
func (c *conn) reply() (string, error) {
	r, err := readReply(c.br)
	if err != nil || !c.session {
		return r, err
	}
	return stripID(r, c.lastID)
}

// roundTrip sends a command that takes no data and reads its answer.
func (c *conn) roundTrip(name string) (string, error) {
	if _, err := c.nc.Write([]byte(c.command(name))); err != nil {
		return "", err
	}
	return c.reply()
}

// describe turns a failed exchange into the error a log line and the
// caller see: a timeout names the limit that passed, and a cancelled
// context wins over the deadline it caused.
func describe(ctx context.Context, err error, timeout time.Duration) error {
	switch {
	case ctx.Err() != nil && errors.Is(err, os.ErrDeadlineExceeded):
		return context.Cause(ctx)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("no answer within %v: %w", timeout, err)
	}
	return err
}
