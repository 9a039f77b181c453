package daemon

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/debug"
	"testing"
)

// TestMemTrimOncePerQuietSpell drives the trimmer with real runtime
// figures and the collector under the test's control: it trims only
// after a collection it did not make, at the first look that finds
// allocation quiet, once per quiet spell, not again until the heap has
// grown, and never a small heap.
func TestMemTrimOncePerQuietSpell(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	trims := 0
	tr := newMemTrimmer(func() { trims++; runtime.GC() })
	look := func() bool {
		_, ok := tr.tick()
		return ok
	}
	var sink [][]byte
	mail := func(n int) { // allocates as mail would, n bytes
		for range n >> 12 {
			sink = append(sink, make([]byte, 4096))
		}
		sink = sink[:0]
	}

	keep := make([]byte, 2*trimMinHeap)
	for i := range keep {
		keep[i] = 1
	}
	look()
	if look() {
		t.Fatal("trimmed with no collection since start: nothing says mail came")
	}
	runtime.GC() // as a burst of mail would
	mail(4 * trimBusyAlloc)
	if look() {
		t.Fatal("trimmed while mail was still allocating")
	}
	if !look() {
		t.Fatalf("no trim at the first quiet look with a %d MB heap", len(keep)>>20)
	}
	if look() || look() {
		t.Fatal("trimmed twice in one quiet spell")
	}
	runtime.GC() // the runtime's own collection of an idle process
	if look() {
		t.Fatal("trimmed again with the heap no bigger than after the last trim")
	}
	more := make([]byte, 2*trimMinGrowth)
	for i := range more {
		more[i] = 1
	}
	runtime.GC()
	look() // sees the allocation of more: busy
	if !look() {
		t.Fatalf("no trim after the heap grew by %d MB", len(more)>>20)
	}
	if trims != 2 {
		t.Fatalf("free called %d times, want 2", trims)
	}
	runtime.KeepAlive(keep)
	runtime.KeepAlive(more)

	keep, more = nil, nil
	debug.FreeOSMemory()
	tr = newMemTrimmer(func() { trims++ })
	runtime.GC()
	if _, _, heap := tr.read(); heap >= trimMinHeap {
		t.Fatalf("test binary's heap is %d MB after FreeOSMemory, want under %d to check the small-heap case", heap>>20, trimMinHeap>>20)
	}
	if look() || trims != 2 {
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
