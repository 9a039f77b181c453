package clamd

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Start runs health checks in the background until ctx ends or Close is
// called: at once, then every HealthInterval, each server gets a PING
// and a VERSION on a new connection. A server that fails is marked down
// and tried by Scan only after those up; one that passes is marked up.
// A server that does not answer in time is hung: from Start on, scans
// skip it and a probe runs every ProbeInterval instead of the health
// checks (breaker.go). Calling Start again does nothing.
func (c *Client) Start(ctx context.Context) {
	c.mu.Lock()
	if c.closed || c.stop != nil {
		c.mu.Unlock()
		return
	}
	ctx, c.stop = context.WithCancel(ctx)
	c.probeCtx = ctx
	c.done = make(chan struct{})
	go c.healthLoop(ctx, c.done)
	c.mu.Unlock()
	// Servers that hung before Start get their probe now.
	for _, s := range c.servers {
		c.startProbe(s)
	}
}

func (c *Client) healthLoop(ctx context.Context, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(c.opts.HealthInterval)
	defer t.Stop()
	for {
		c.checkAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkAll checks every server at once, so that one that never answers
// does not delay the news about the others. A server being probed is
// left to its probe.
func (c *Client) checkAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range c.servers {
		s.mu.Lock()
		probing := s.brk.probing
		s.mu.Unlock()
		if !probing {
			wg.Go(func() { c.check(ctx, s) })
		}
	}
	wg.Wait()
}

// check pings s and asks its version, and records what it saw.
func (c *Client) check(ctx context.Context, s *server) {
	defer func() {
		// A bug here must not take the daemon down with it.
		if p := recover(); p != nil {
			c.checkFailed(s, fmt.Errorf("health check panicked: %v", p), time.Now())
		}
	}()
	start := time.Now()
	v, err := c.checkWithin(ctx, s, c.opts.ScanTimeout)
	if ctx.Err() != nil {
		return // shutting down: what was seen is not about the server
	}
	if err != nil {
		c.checkFailed(s, err, start)
		return
	}
	s.mu.Lock()
	s.status.Version = v
	s.mu.Unlock()
	c.markUp(s)
}

// checkWithin sends s a PING and a VERSION, each on a new connection
// given timeout to answer, and returns the version.
func (c *Client) checkWithin(ctx context.Context, s *server, timeout time.Duration) (Version, error) {
	if err := c.ping(ctx, s, timeout); err != nil {
		return Version{}, err
	}
	return c.version(ctx, s, timeout)
}

// checkFailed records that a health check begun at start found s
// failing, logging when it goes down; a server already down is logged
// at debug level only, to keep a long outage from filling the log.
func (c *Client) checkFailed(s *server, err error, start time.Time) {
	switch wentDown, stale := c.markDown(s, err, start); {
	case wentDown:
		c.logDown(s, "clamd is down", err)
	case !stale:
		c.opts.Log.Debug("clamd is still down", "server", s.name, "err", err)
	}
}

// Status reports each configured server, in configured order, as the
// health checks and scans last saw it. Before the first check every
// server is up with a zero Checked time.
func (c *Client) Status() []ServerStatus {
	out := make([]ServerStatus, len(c.servers))
	for i, s := range c.servers {
		s.mu.Lock()
		out[i] = s.status
		s.mu.Unlock()
	}
	return out
}
