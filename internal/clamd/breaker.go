package clamd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// A clamd that stops answering (stopped with SIGSTOP, stuck reloading
// its database, a host whose packets vanish) would hold every message
// for the whole scan timeout. Each server therefore has a circuit
// breaker with three states:
//
//   - up: scans go to it.
//   - down: it refused a connection, closed one or answered garbage.
//     Scans still try it after the servers that are up, since that
//     costs milliseconds, and a scan or health check that gets an
//     answer brings it back.
//   - hung: down for not answering in time. While the client is
//     started, scans skip it without contacting it (ErrDown), and a
//     probe, a PING and a VERSION given ProbeInterval each, runs every
//     ProbeInterval until it answers; the next scan then goes to it.
//
// A scan that times out on a server that is up probes it before marking
// it hung, so that one message clamd is slow to scan does not take a
// working server out. Every change between up and down is logged once
// and announced on Changed (the avstatus watcher records an event);
// scans that skip a server or fail on it while it is down are counted
// and summarised at most once per summaryEvery, and when it comes back.

// summaryEvery is how often a server that stays down gets a log line
// counting the scans it cost.
const summaryEvery = time.Minute

// breaker is what a server's failures have taught the client. It is
// guarded by server.mu.
type breaker struct {
	hung    bool      // down for not answering in time: skipped while probed
	probing bool      // a probe goroutine runs for the server
	since   time.Time // when the server went down
	lastOK  time.Time // when the server last answered
	// Scans that skipped the server or failed on it while it was down:
	// since the last summary, and since it went down.
	skipped, failed       int
	skippedAll, failedAll int
	summarised            time.Time // when the last summary was logged
}

// isTimeout reports whether err is a server that did not answer in time,
// as opposed to one that refused or closed the connection.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// Changed returns a channel that is closed at the next change of a
// server between up and down. Take it before reading Status, so that a
// change in between is not missed.
func (c *Client) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// notify announces a change on Changed.
func (c *Client) notify() {
	c.mu.Lock()
	defer c.mu.Unlock()
	close(c.changed)
	c.changed = make(chan struct{})
}

// markUp records that s answered, logging when it comes back with what
// the outage cost.
func (c *Client) markUp(s *server) {
	now := time.Now()
	s.mu.Lock()
	was, b := s.status.Up, s.brk
	s.status.Up, s.status.LastError, s.status.Checked = true, "", now
	s.brk = breaker{lastOK: now, probing: b.probing}
	s.mu.Unlock()
	if !was {
		c.opts.Log.Info("clamd is up again", "server", s.name, "down_for", now.Sub(b.since).Round(time.Millisecond),
			"scans_skipped", b.skippedAll, "scans_failed", b.failedAll)
		c.notify()
	}
}

// markDown records that s failed at an attempt begun at start, and
// reports whether s was up until then. A failure older than s's last
// answer says nothing about s now and is ignored (stale). A timeout
// makes s hung: its idle sessions are dropped and a probe started.
func (c *Client) markDown(s *server, err error, start time.Time) (wentDown, stale bool) {
	hung := isTimeout(err)
	now := time.Now()
	s.mu.Lock()
	if s.brk.lastOK.After(start) {
		s.mu.Unlock()
		return false, true
	}
	wentDown = s.status.Up
	s.status.Up, s.status.LastError, s.status.Checked = false, err.Error(), now
	if wentDown {
		s.brk = breaker{lastOK: s.brk.lastOK, probing: s.brk.probing, since: now, summarised: now}
	}
	s.brk.hung = hung
	s.mu.Unlock()
	if hung {
		s.dropIdle()
		c.startProbe(s)
	}
	if wentDown {
		c.notify()
	}
	return wentDown, false
}

// logDown logs s going down, saying how it will come back.
func (c *Client) logDown(s *server, msg string, err error, args ...any) {
	args = append([]any{"server", s.name, "err", err}, args...)
	if c.skipsHung() && isTimeout(err) {
		args = append(args, "then", fmt.Sprintf("skipping it until it answers a probe (every %v)", c.opts.ProbeInterval))
	}
	c.opts.Log.Warn(msg, args...)
}

// skipsHung reports whether scans skip hung servers: only while the
// client is started, since without Start nothing probes them.
func (c *Client) skipsHung() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.probeCtx != nil && !c.closed
}

// startProbe starts probing s if it is hung, the client started and no
// probe runs for it yet.
func (c *Client) startProbe(s *server) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.probeCtx == nil {
		return
	}
	s.mu.Lock()
	start := !s.status.Up && s.brk.hung && !s.brk.probing
	s.brk.probing = s.brk.probing || start
	s.mu.Unlock()
	if start {
		c.probes.Add(1)
		go c.probe(c.probeCtx, s)
	}
}

// keepProbing reports whether s still needs its probe, ending the probe
// in the same step when it does not, so a server that hangs again at
// once is never left without one.
func (s *server) keepProbing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status.Up || !s.brk.hung {
		s.brk.probing = false
		return false
	}
	return true
}

// probe checks the hung server s every ProbeInterval until it answers,
// fails fast instead (then scans and health checks try it themselves),
// or ctx ends.
func (c *Client) probe(ctx context.Context, s *server) {
	defer c.probes.Done()
	defer func() {
		// A bug here must not take the daemon down with it.
		if p := recover(); p != nil {
			c.opts.Log.Error("clamd probe panicked", "server", s.name, "panic", p)
			s.mu.Lock()
			s.brk.probing = false
			s.mu.Unlock()
		}
	}()
	t := time.NewTicker(c.opts.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.mu.Lock()
			s.brk.probing = false
			s.mu.Unlock()
			return
		case <-t.C:
		}
		if !s.keepProbing() {
			return
		}
		start := time.Now()
		v, err := c.checkWithin(ctx, s, c.opts.ProbeInterval)
		switch {
		case ctx.Err() != nil:
			// Shutting down; the loop ends at the select.
		case err != nil:
			c.markDown(s, err, start)
			c.opts.Log.Debug("clamd probe failed", "server", s.name, "err", err)
			c.summarise(s, time.Now())
		default:
			s.mu.Lock()
			s.status.Version = v
			s.mu.Unlock()
			c.markUp(s)
		}
		if ctx.Err() == nil && !s.keepProbing() {
			return
		}
	}
}

// skip records that a scan skipped the hung server s and returns the
// error standing for s in the scan's error.
func (c *Client) skip(s *server, now time.Time) error {
	s.mu.Lock()
	s.brk.skipped++
	s.brk.skippedAll++
	since, last := s.brk.since, s.status.LastError
	s.mu.Unlock()
	c.summarise(s, now)
	return fmt.Errorf("clamd %s: %w (down for %v: %s)", s.name, ErrDown, now.Sub(since).Round(time.Second), last)
}

// failedWhileDown records that a scan failed on s, which was down
// already.
func (c *Client) failedWhileDown(s *server, now time.Time) {
	s.mu.Lock()
	s.brk.failed++
	s.brk.failedAll++
	s.mu.Unlock()
	c.summarise(s, now)
}

// summarise logs how many scans s cost since the last summary, if s is
// still down, there were any, and the last summary is summaryEvery old.
func (c *Client) summarise(s *server, now time.Time) {
	s.mu.Lock()
	b := s.brk
	due := !s.status.Up && b.skipped+b.failed > 0 && now.Sub(b.summarised) >= c.summaryEvery
	if due {
		s.brk.skipped, s.brk.failed, s.brk.summarised = 0, 0, now
	}
	last := s.status.LastError
	s.mu.Unlock()
	if due {
		c.opts.Log.Warn("clamd is still down", "server", s.name, "down_for", now.Sub(b.since).Round(time.Second),
			"scans_skipped", b.skipped, "scans_failed", b.failed, "over", now.Sub(b.summarised).Round(time.Second),
			"err", last)
	}
}
