package web

import (
	"context"
	"runtime"
	"sync/atomic"
	"time"
)

// passChecks runs password comparisons through a small bounded pool. A
// bcrypt comparison is tens of milliseconds of CPU; left unbounded, a
// flood of logins takes every core from the milter and the policy server
// (and from clamd's health checks), which defers mail. Attempts beyond a
// short queue are refused at once instead of queueing more work.
type passChecks struct {
	slots    chan struct{} // a token per comparison running
	waiting  atomic.Int64  // attempts admitted and not yet done
	maxQueue int64         // running plus waiting, at most
	compared atomic.Int64  // comparisons made, for tests
}

// newPassChecks returns a pool of workers comparisons at a time with room
// for queue more to wait.
func newPassChecks(workers, queue int) *passChecks {
	return &passChecks{slots: make(chan struct{}, workers), maxQueue: int64(workers + queue)}
}

// defaultPassChecks leaves at least one core to mail: half the CPUs, at
// least one, compare passwords, and four attempts per worker may wait.
func defaultPassChecks() *passChecks {
	w := max(1, runtime.NumCPU()/2)
	return newPassChecks(w, 4*w)
}

// admit reserves a place for one comparison, or reports false when the
// pool and its queue are full. An admitted caller must call run.
func (p *passChecks) admit() bool {
	if p.waiting.Add(1) > p.maxQueue {
		p.waiting.Add(-1)
		return false
	}
	return true
}

// run waits for a worker and runs check, which compares one password. It
// returns ctx's error without running check when ctx ends first (the
// client went away).
func (p *passChecks) run(ctx context.Context, check func() error) error {
	defer p.waiting.Add(-1)
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.slots }()
	p.compared.Add(1)
	return check()
}

// Refused logins are answered no sooner than failDelay after they
// arrived, so a client that waits for each answer, as browsers and most
// scripts do, cannot turn cheap 429s into a flood that takes the CPU from
// mail. A waiting request costs a sleeping goroutine; at most maxDelayed
// wait at once, and beyond that the answer goes at once.
const (
	failDelay  = time.Second
	maxDelayed = 512
)

// delayer holds refused logins back until failDelay has passed.
type delayer struct {
	delay   time.Duration
	waiting atomic.Int64
}

// wait sleeps until delay after start, or until ctx ends.
func (d *delayer) wait(ctx context.Context, start time.Time) {
	left := d.delay - time.Since(start)
	if left <= 0 {
		return
	}
	if d.waiting.Add(1) > maxDelayed {
		d.waiting.Add(-1)
		return
	}
	defer d.waiting.Add(-1)
	t := time.NewTimer(left)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
