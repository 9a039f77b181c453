package store_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"mailwarden/internal/store"
	"mailwarden/internal/store/memory"
	"mailwarden/internal/store/storetest"
)

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

// expiring returns a memory store, wrapped, holding n triplets that
// expire at at, and a channel that receives the now of every call of
// Expire once it returns.
func expiring(t *testing.T, n int, at time.Time) (*storetest.Faulty, chan time.Time) {
	t.Helper()
	mem := memory.New()
	for i := range n {
		if err := mem.PutTriplet(context.Background(), store.Triplet{Client: "192.0.2.0/24", Sender: "a@example.org",
			Recipient: fmt.Sprintf("%d@example.net", i), FirstSeen: at, LastSeen: at, Attempts: 1, Expires: at}); err != nil {
			t.Fatal(err)
		}
	}
	f := storetest.WithFaults(mem)
	calls := make(chan time.Time, 1)
	f.OnCall(func(c storetest.Call) {
		if c.Method == "Expire" {
			calls <- c.Args[0].(time.Time)
		}
	})
	return f, calls
}

func TestRunExpiry(t *testing.T) {
	start := time.Now()
	// The first pass deletes the seven triplets, the second fails, the
	// third finds nothing left.
	f, calls := expiring(t, 7, start)
	f.FailCall("Expire", 2, errors.New("disk on fire"))
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		store.RunExpiry(ctx, f, time.Millisecond, slog.New(rec))
		close(done)
	}()
	for i := range 3 {
		now := <-calls
		if now.Before(start) {
			t.Errorf("call %d: Expire got now = %v, before the runner started", i, now)
		}
	}
	cancel()
	// A tick may already be pending; let it through so the runner can see
	// ctx is done.
	for {
		select {
		case <-calls:
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
	f, _ := expiring(t, 0, time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Returning at all is the assertion: a runner that ignored ctx would
	// block the test until its timeout.
	store.RunExpiry(ctx, f, time.Hour, slog.New(&recorder{}))
	if n := f.Calls("Expire"); n != 0 {
		t.Errorf("Expire was called %d times after ctx was done", n)
	}
}
