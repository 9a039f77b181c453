package mtaqueue

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Watch defaults: the queue is summarised at most once a minute, and a
// listing that takes longer than WatchTimeout is abandoned, so a stuck
// postqueue cannot pile up listings behind it.
const (
	WatchInterval = time.Minute
	WatchTimeout  = 30 * time.Second
	// WatchTop is how many of each count a snapshot keeps.
	WatchTop = 10
)

// Snapshot is the last summary a Watcher computed.
type Snapshot struct {
	// Summary is the queue as last listed; zero when Err is set.
	Summary Summary
	// Time is when the listing began; zero before the first one.
	Time time.Time
	// Took is how long the listing took.
	Took time.Duration
	// Err says why the last attempt failed ("queue not available: …");
	// "" when it succeeded.
	Err string
}

// WatchOptions configure a Watcher.
type WatchOptions struct {
	// Open returns the queue to list; it is called for every summary,
	// so that a config reload or an MTA installed later applies.
	Open func() (Queue, error)
	// Interval is the least time between two summaries; 0 means
	// WatchInterval.
	Interval time.Duration
	// Timeout bounds one listing; 0 means WatchTimeout.
	Timeout time.Duration
	// Top is how many of each count to keep; 0 means WatchTop.
	Top int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	Log *slog.Logger
}

// Watcher keeps a recent summary of the MTA queue for the admin API, the
// dashboard and, later, queue alerts. It lists the queue in the
// background and when a reader finds the summary stale, never on the
// mail path: reading is Latest, which does no work.
type Watcher struct {
	o WatchOptions

	refresh sync.Mutex // one listing at a time
	mu      sync.Mutex
	last    Snapshot
	stale   bool // set by Invalidate: the next Fresh lists again
}

// NewWatcher returns a watcher that has not listed anything yet.
func NewWatcher(o WatchOptions) *Watcher {
	if o.Interval <= 0 {
		o.Interval = WatchInterval
	}
	if o.Timeout <= 0 {
		o.Timeout = WatchTimeout
	}
	if o.Top <= 0 {
		o.Top = WatchTop
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Watcher{o: o}
}

// Latest returns the last snapshot, however old; its Time is zero when
// there has been none.
func (w *Watcher) Latest() Snapshot {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// Interval is the least time between two summaries.
func (w *Watcher) Interval() time.Duration { return w.o.Interval }

// Fresh returns the last snapshot unless it is older than two intervals
// (Run lists every interval, so a reader waits only when Run is not
// running or has fallen behind) or Invalidate was called; then it lists
// the queue first (bounded by the timeout and ctx). Readers that arrive
// while a listing runs wait for it and share it. A dashboard page on a
// 100,000-message queue is thus not held up by each minute's listing.
func (w *Watcher) Fresh(ctx context.Context) Snapshot {
	if s, ok := w.fresh(); ok {
		return s
	}
	w.refresh.Lock()
	defer w.refresh.Unlock()
	if s, ok := w.fresh(); ok {
		return s
	}
	return w.update(ctx)
}

func (w *Watcher) fresh() (Snapshot, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ok := !w.stale && !w.last.Time.IsZero() && w.o.Now().Sub(w.last.Time) < 2*w.o.Interval
	return w.last, ok
}

// Invalidate marks the snapshot stale, so that the next Fresh lists the
// queue again: a purge has just changed it.
func (w *Watcher) Invalidate() {
	w.mu.Lock()
	w.stale = true
	w.mu.Unlock()
}

// Run summarises the queue at once and then every interval until ctx
// ends.
func (w *Watcher) Run(ctx context.Context) {
	t := time.NewTicker(w.o.Interval)
	defer t.Stop()
	for {
		w.refresh.Lock()
		w.update(ctx)
		w.refresh.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// update lists the queue and stores the result; the caller holds
// w.refresh.
func (w *Watcher) update(ctx context.Context) Snapshot {
	start := w.o.Now()
	s := Snapshot{Time: start}
	sum, err := w.summarize(ctx, start)
	if ctx.Err() != nil {
		// The reader or the daemon went away, not the queue: a listing
		// cut short says nothing, and the last summary stands.
		return w.Latest()
	}
	s.Took = w.o.Now().Sub(start)
	if err != nil {
		s.Err = err.Error()
	} else {
		s.Summary = sum
	}
	w.mu.Lock()
	prev := w.last
	w.last, w.stale = s, false
	w.mu.Unlock()
	// The state is logged when it changes, not every minute.
	switch {
	case s.Err != "" && s.Err != prev.Err:
		w.o.Log.Warn("queue summary failed", "err", s.Err)
	case s.Err == "" && (prev.Err != "" || prev.Time.IsZero()):
		w.o.Log.Info("queue summary available", "messages", s.Summary.Messages, "took", s.Took.Round(time.Millisecond))
	}
	return s
}

func (w *Watcher) summarize(ctx context.Context, now time.Time) (Summary, error) {
	q, err := w.o.Open()
	if err != nil {
		return Summary{}, fmt.Errorf("queue not available: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, w.o.Timeout)
	defer cancel()
	s := NewSummarizer(now)
	if err := q.List(ctx, func(m Message) error { s.Add(m); return nil }); err != nil {
		if ctx.Err() != nil {
			return Summary{}, fmt.Errorf("queue not available: listing took longer than %v: %w", w.o.Timeout, err)
		}
		return Summary{}, fmt.Errorf("queue not available: %w", err)
	}
	return s.Summary(w.o.Top), nil
}
