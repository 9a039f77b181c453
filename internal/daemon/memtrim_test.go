package daemon

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// TestMemTrimOncePerQuietSpell drives the trimmer with real runtime
// figures and the collector under the test's control: it trims only
// after a collection it did not make, once the collector has been quiet
// for trimQuiet, once per quiet spell, and never a small heap.
func TestMemTrimOncePerQuietSpell(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	t0 := time.Now()
	trims := 0
	tr := newMemTrimmer(t0, func() { trims++; runtime.GC() })
	at := func(d time.Duration) bool {
		_, ok := tr.tick(t0.Add(d))
		return ok
	}

	keep := make([]byte, 2*trimMinHeap)
	for i := range keep {
		keep[i] = 1
	}
	if at(10 * time.Second) {
		t.Fatal("trimmed with no collection since start: nothing says mail came")
	}
	runtime.GC() // as a burst of mail would
	if at(12 * time.Second) {
		t.Fatal("trimmed in the look that saw a collection")
	}
	if at(14 * time.Second) {
		t.Fatal("trimmed 2s into a quiet spell, want trimQuiet")
	}
	if !at(18 * time.Second) {
		t.Fatalf("no trim 6s into a quiet spell with a %d MB heap", len(keep)>>20)
	}
	if at(30*time.Second) || at(60*time.Second) {
		t.Fatal("trimmed twice in one quiet spell")
	}
	if trims != 1 {
		t.Fatalf("free called %d times, want 1", trims)
	}
	runtime.KeepAlive(keep)

	keep = nil
	debug.FreeOSMemory()
	runtime.GC()
	at(62 * time.Second)
	if _, heap := tr.read(); heap >= trimMinHeap {
		t.Fatalf("test binary's heap is %d MB after FreeOSMemory, want under %d to check the small-heap case", heap>>20, trimMinHeap>>20)
	}
	if at(70 * time.Second) {
		t.Fatal("trimmed a heap under trimMinHeap")
	}
}

type releaser struct{ calls int }

func (r *releaser) ReleaseMemory(context.Context) error { r.calls++; return nil }

// TestTrimReleasesStoreMemory: a trim asks a store that can give memory
// back (the SQLite store's page caches) to do so; one that cannot is
// left alone.
func TestTrimReleasesStoreMemory(t *testing.T) {
	r := &releaser{}
	trimNow(context.Background(), r, slog.New(slog.DiscardHandler))
	if r.calls != 1 {
		t.Fatalf("ReleaseMemory called %d times by one trim, want 1", r.calls)
	}
	trimNow(context.Background(), struct{}{}, slog.New(slog.DiscardHandler))
}
