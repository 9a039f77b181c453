package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"mailwarden/internal/store"
)

// TestFlushAfterQueuedWrites: a read right after write-behind writes sees
// every one of them, as before flush learnt to return at once when
// nothing is queued; and once every write has been answered (committed,
// failed or given up by its caller) the writer counts none unanswered,
// so an idle store's reads run no write transaction.
func TestFlushAfterQueuedWrites(t *testing.T) {
	ctx := context.Background()
	s := openWith(t, t.TempDir(), Options{Mirror: true})
	now := time.Now()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				ev := store.Event{Time: now, Kind: "decision", Client: fmt.Sprintf("192.0.2.%d", g), Sender: fmt.Sprintf("s%d@example.org", i)}
				if err := s.AppendEvents(ctx, ev); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	evs, err := s.QueryEvents(ctx, store.EventFilter{Kind: "decision"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2000 {
		t.Fatalf("QueryEvents right after 2,000 queued events: %d", len(evs))
	}

	// A write that fails and one whose caller gave up are answered too.
	boom := errors.New("boom")
	if err := s.w.do(ctx, func(*writer) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("failing write: %v", err)
	}
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.w.do(gone, func(*writer) error { return nil }); err == nil {
		t.Fatal("write with a canceled context: no error")
	}
	// The writer counts an answer just after giving it.
	for deadline := time.Now().Add(5 * time.Second); s.w.unanswered.Load() != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d writes counted unanswered 5s after every write returned, want 0", s.w.unanswered.Load())
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.w.flush(ctx); err != nil {
		t.Fatalf("flush of an idle writer: %v", err)
	}
}

// TestReadDoesNotWaitForAnotherWriter: with none of its own writes
// queued, a read does not go through the writer, so another process
// holding the database's write lock (a backup, an admin command) does
// not hold up the alert engine's or the dashboard's reads: an empty
// write transaction before the read would wait up to the busy timeout.
func TestReadDoesNotWaitForAnotherWriter(t *testing.T) {
	ctx := context.Background()
	s := openWith(t, t.TempDir(), Options{Mirror: true})
	if err := s.AppendEvents(ctx, store.Event{Time: time.Now(), Kind: "decision"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.QueryEvents(ctx, store.EventFilter{}); err != nil { // commits it
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); s.w.unanswered.Load() != 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}

	other, err := sql.Open("sqlite", dsn(s.path))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatalf("taking the write lock as another process would: %v", err)
	}
	defer conn.ExecContext(ctx, "ROLLBACK")

	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	start := time.Now()
	evs, err := s.QueryEvents(rctx, store.EventFilter{Kind: "decision"})
	if err != nil || len(evs) != 1 {
		t.Fatalf("QueryEvents while another connection holds the write lock: %d events, %v (after %v); want 1 at once",
			len(evs), err, time.Since(start).Round(time.Millisecond))
	}
}
