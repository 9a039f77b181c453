package mtaqueue_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mailwarden/internal/adminapi/adminapitest"
	"mailwarden/internal/mtaqueue"
)

// countingQueue counts the listings of a queue.
type countingQueue struct {
	mtaqueue.Queue
	lists atomic.Int32
	block chan struct{} // when set, List waits on it or on ctx
}

func (c *countingQueue) List(ctx context.Context, fn func(mtaqueue.Message) error) error {
	c.lists.Add(1)
	if c.block != nil {
		select {
		case <-c.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return c.Queue.List(ctx, fn)
}

func TestWatcherCachesAndRefreshes(t *testing.T) {
	now := time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	q := &countingQueue{Queue: (&adminapitest.Queue{}).Add(now, "a@spam.example", "x@y.test", 3)}
	w := mtaqueue.NewWatcher(mtaqueue.WatchOptions{Open: func() (mtaqueue.Queue, error) { return q, nil }, Now: clock, Interval: time.Minute})
	if s := w.Latest(); !s.Time.IsZero() {
		t.Fatalf("Latest before any listing: %+v", s)
	}
	ctx := context.Background()
	s := w.Fresh(ctx)
	if s.Err != "" || s.Summary.Messages != 3 || !s.Time.Equal(now) {
		t.Fatalf("first: %+v", s)
	}
	now = now.Add(90 * time.Second)
	w.Fresh(ctx)
	if n := q.lists.Load(); n != 1 {
		t.Errorf("a summary younger than two intervals was listed again: %d listings", n)
	}
	w.Invalidate()
	w.Fresh(ctx)
	now = now.Add(121 * time.Second)
	w.Fresh(ctx)
	if n := q.lists.Load(); n != 3 {
		t.Errorf("%d listings, want 3: after Invalidate and when stale", n)
	}
	if got := w.Latest(); !got.Time.Equal(now) {
		t.Errorf("Latest %v, want %v", got.Time, now)
	}
}

func TestWatcherErrorsAndTimeout(t *testing.T) {
	fail := mtaqueue.NewWatcher(mtaqueue.WatchOptions{Open: func() (mtaqueue.Queue, error) {
		return nil, errors.New("postqueue not found at /usr/sbin/postqueue (queue.postqueue in the config)")
	}})
	if s := fail.Fresh(context.Background()); s.Err != "queue not available: postqueue not found at /usr/sbin/postqueue (queue.postqueue in the config)" || s.Time.IsZero() {
		t.Errorf("missing postqueue: %+v", s)
	}

	q := &countingQueue{Queue: &adminapitest.Queue{}, block: make(chan struct{})}
	w := mtaqueue.NewWatcher(mtaqueue.WatchOptions{Open: func() (mtaqueue.Queue, error) { return q, nil }, Timeout: 50 * time.Millisecond})
	if s := w.Fresh(context.Background()); !strings.Contains(s.Err, "listing took longer than 50ms") {
		t.Errorf("stuck postqueue: %+v", s)
	}
}

func TestWatcherRunStops(t *testing.T) {
	q := &countingQueue{Queue: &adminapitest.Queue{}}
	w := mtaqueue.NewWatcher(mtaqueue.WatchOptions{Open: func() (mtaqueue.Queue, error) { return q, nil }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	for q.lists.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// TestWatcherKeepsSummaryWhenReaderLeaves: a listing cut short because
// its reader went away leaves the last summary as it was.
func TestWatcherKeepsSummaryWhenReaderLeaves(t *testing.T) {
	q := &countingQueue{Queue: (&adminapitest.Queue{}).Add(time.Now(), "a@spam.example", "x@y.test", 2)}
	w := mtaqueue.NewWatcher(mtaqueue.WatchOptions{Open: func() (mtaqueue.Queue, error) { return q, nil }})
	first := w.Fresh(context.Background())
	w.Invalidate()
	q.block = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if s := w.Fresh(ctx); s.Err != "" || s.Summary.Messages != 2 || !s.Time.Equal(first.Time) {
		t.Errorf("after a cancelled listing: %+v, want the first summary", s)
	}
}
