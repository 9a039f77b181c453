package store

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// fakeStore answers Expire from a script and reports each call; the other
// methods are never called by RunExpiry.
type fakeStore struct {
	Store
	calls   chan time.Time
	results []expireResult
	mu      sync.Mutex
}

type expireResult struct {
	n   int
	err error
}

func (f *fakeStore) Expire(ctx context.Context, now time.Time) (int, error) {
	f.mu.Lock()
	r := expireResult{}
	if len(f.results) > 0 {
		r, f.results = f.results[0], f.results[1:]
	}
	f.mu.Unlock()
	f.calls <- now
	return r.n, r.err
}

// recorder is a slog handler that keeps the records it is given.
type recorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec)
	return nil
}

func (r *recorder) attr(i int, key string) (slog.Level, string, slog.Value) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.records[i]
	var v slog.Value
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value
			return false
		}
		return true
	})
	return rec.Level, rec.Message, v
}

func TestRunExpiry(t *testing.T) {
	f := &fakeStore{
		calls: make(chan time.Time),
		results: []expireResult{
			{n: 7},
			{err: errors.New("disk on fire")},
			{n: 0},
		},
	}
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	start := time.Now()
	go func() {
		RunExpiry(ctx, f, time.Millisecond, slog.New(rec))
		close(done)
	}()
	for i := range 3 {
		now := <-f.calls
		if now.Before(start) {
			t.Errorf("call %d: Expire got now = %v, before the runner started", i, now)
		}
	}
	cancel()
	// A tick may already be pending; let it through so the runner can see
	// ctx is done.
	for {
		select {
		case <-f.calls:
			continue
		case <-done:
		}
		break
	}

	if len(rec.records) < 3 {
		t.Fatalf("got %d log records, want at least 3", len(rec.records))
	}
	lvl, msg, v := rec.attr(0, "deleted")
	if lvl != slog.LevelDebug || v.Int64() != 7 {
		t.Errorf("first record: %v %q deleted=%v, want a debug record with deleted=7", lvl, msg, v)
	}
	lvl, msg, v = rec.attr(1, "err")
	if lvl != slog.LevelWarn || v.String() != "disk on fire" {
		t.Errorf("second record: %v %q err=%v, want a warning carrying the error", lvl, msg, v)
	}
	// The runner kept going after the error.
	lvl, _, v = rec.attr(2, "deleted")
	if lvl != slog.LevelDebug || v.Int64() != 0 {
		t.Errorf("third record: %v deleted=%v, want debug deleted=0", lvl, v)
	}
}

func TestRunExpiryStopsWhenCanceled(t *testing.T) {
	f := &fakeStore{calls: make(chan time.Time, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Returning at all is the assertion: a runner that ignored ctx would
	// block the test until its timeout.
	RunExpiry(ctx, f, time.Hour, slog.New(&recorder{}))
	if len(f.calls) != 0 {
		t.Error("Expire was called after ctx was done")
	}
}
