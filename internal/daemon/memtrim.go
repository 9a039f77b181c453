package daemon

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"time"
)

// A burst of mail leaves the Go heap twice its live size (the collector
// lets it grow that far before each cycle) and the runtime gives the
// free half back to the system only slowly: 100,000 new triplets left
// the daemon at 88 MB, still 73 MB two minutes later, with 20 MB live
// (BENCHMARKS.md, issue 16). An administrator reads that figure in top
// right after the burst. So the daemon looks every trimCheck: once mail
// has made the collector run and then, for one look, so little was
// allocated that mail has all but stopped, and the heap has grown by
// trimMinGrowth since the last trim to at least trimMinHeap, the store
// drops the caches it does not need now and two collections return what
// is not live to the system at once (trimNow). Under load every look
// sees megabytes allocated and no trim happens; a trickle of mail
// allocates less than trimBusyAlloc a look, and a trim then follows at
// most one of the collector's own cycles, which at that rate come
// minutes apart. The runtime's own collection every two minutes of an
// idle daemon finds no growth and starts no trim.
const (
	trimCheck     = 250 * time.Millisecond
	trimBusyAlloc = 128 << 10 // allocated in one look: mail still coming
	trimMinHeap   = 16 << 20
	trimMinGrowth = 8 << 20
)

// memTrimmer decides when to trim from runtime figures.
type memTrimmer struct {
	samples []rtmetrics.Sample
	cycles  uint64 // collections counted at the last look
	allocs  uint64 // bytes allocated so far, at the last look
	base    uint64 // the heap right after the last trim
	armed   bool   // a collection not of our making ran since the last trim
	free    func() // collects and returns free memory to the system
}

func newMemTrimmer(free func()) *memTrimmer {
	t := &memTrimmer{
		samples: []rtmetrics.Sample{
			{Name: "/gc/cycles/total:gc-cycles"},
			{Name: "/gc/heap/allocs:bytes"},
			{Name: "/memory/classes/heap/objects:bytes"},
			{Name: "/memory/classes/heap/unused:bytes"},
			{Name: "/memory/classes/heap/free:bytes"},
		},
		free: free,
	}
	t.cycles, t.allocs, _ = t.read()
	return t
}

// read returns the collections and the bytes allocated so far, and the
// heap the process holds from the system: objects (live or not yet
// collected), the unused room in their spans, and free spans not yet
// given back.
func (t *memTrimmer) read() (cycles, allocs, heap uint64) {
	rtmetrics.Read(t.samples)
	for _, s := range t.samples[2:] {
		heap += s.Value.Uint64()
	}
	return t.samples[0].Value.Uint64(), t.samples[1].Value.Uint64(), heap
}

// tick trims if mail made the collector run and has gone quiet since,
// and the heap grew enough to bother; it reports the heap it found.
func (t *memTrimmer) tick() (heap uint64, trimmed bool) {
	cycles, allocs, heap := t.read()
	busy := allocs-t.allocs >= trimBusyAlloc
	if cycles != t.cycles {
		t.armed = true
	}
	t.cycles, t.allocs = cycles, allocs
	if !t.armed || busy || heap < trimMinHeap || heap < t.base+trimMinGrowth {
		return heap, false
	}
	t.free()
	// The trim's own collections are not mail.
	t.cycles, t.allocs, t.base = t.read()
	t.armed = false
	return heap, true
}

// memoryReleaser is a store that can give back memory it holds outside
// the Go heap (the SQLite store's page caches).
type memoryReleaser interface {
	ReleaseMemory(ctx context.Context) error
}

// trimNow has the store drop the caches it does not need now, then
// collects twice and returns the free heap to the system. The first
// collection leaves what sync.Pools held in their victim caches and
// runs finalizers; the second frees those.
func trimNow(ctx context.Context, st any, log *slog.Logger) {
	if r, ok := st.(memoryReleaser); ok {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := r.ReleaseMemory(ctx); err != nil {
			log.Debug("store did not release its memory", "err", err)
		}
		cancel()
	}
	runtime.GC()
	debug.FreeOSMemory()
}

// runMemTrim looks every trimCheck until ctx ends.
func runMemTrim(ctx context.Context, st any, log *slog.Logger) {
	t := newMemTrimmer(func() { trimNow(ctx, st, log) })
	tk := time.NewTicker(trimCheck)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			if heap, ok := t.tick(); ok {
				log.Debug("returned free memory to the system", "heap_bytes_before", heap)
			}
		}
	}
}
