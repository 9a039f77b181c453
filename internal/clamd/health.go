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
// Calling Start again does nothing.
func (c *Client) Start(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.stop != nil {
		return
	}
	ctx, c.stop = context.WithCancel(ctx)
	c.done = make(chan struct{})
	go c.healthLoop(ctx, c.done)
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
// does not delay the news about the others.
func (c *Client) checkAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range c.servers {
		wg.Go(func() { c.check(ctx, s) })
	}
	wg.Wait()
}

// check pings s and asks its version, and records what it saw.
func (c *Client) check(ctx context.Context, s *server) {
	defer func() {
		// A bug here must not take the daemon down with it.
		if p := recover(); p != nil {
			c.markDown(s, fmt.Errorf("health check panicked: %v", p))
		}
	}()
	err := c.ping(ctx, s)
	var v Version
	if err == nil {
		v, err = c.version(ctx, s)
	}
	if ctx.Err() != nil {
		return // shutting down: what was seen is not about the server
	}
	if err != nil {
		c.markDown(s, err)
		return
	}
	s.mu.Lock()
	s.status.Version = v
	s.mu.Unlock()
	c.markUp(s)
}

// markUp records that s answered, logging when it comes back.
func (c *Client) markUp(s *server) {
	s.mu.Lock()
	was := s.status.Up
	s.status.Up, s.status.LastError, s.status.Checked = true, "", time.Now()
	s.mu.Unlock()
	if !was {
		c.opts.Log.Info("clamd is up again", "server", s.name)
	}
}

// markDown records that a health check found s failing, logging when
// it goes down; a server already down is logged at debug level only, to
// keep a long outage from filling the log.
func (c *Client) markDown(s *server, err error) {
	if c.setDown(s, err) {
		c.opts.Log.Warn("clamd is down", "server", s.name, "err", err)
	} else {
		c.opts.Log.Debug("clamd is still down", "server", s.name, "err", err)
	}
}

// setDown records that s failed and reports whether it was up. A scan
// calls it directly, having logged the failure itself.
func (c *Client) setDown(s *server, err error) (wasUp bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	wasUp = s.status.Up
	s.status.Up, s.status.LastError, s.status.Checked = false, err.Error(), time.Now()
	return wasUp
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
