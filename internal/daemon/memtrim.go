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
// on a quiet afternoon. So once mail has made the collector run and it
// then has not had to run for trimQuiet, mail is slow: if the heap holds
// at least trimMinHeap, the store drops the caches it does not need now
// and two collections return what is not live to the system at once
// (trimNow). Under load the collector runs more often than that and no
// trim happens; two extra collections per quiet spell are the whole
// cost, and an idle daemon's small heap is left alone.
const (
	trimCheck   = 2 * time.Second
	trimQuiet   = 5 * time.Second
	trimMinHeap = 16 << 20
)

// memTrimmer decides when to trim from runtime figures.
type memTrimmer struct {
	samples []rtmetrics.Sample
	cycles  uint64    // collections counted at the last look
	since   time.Time // when that count last changed
	armed   bool      // a collection not of our making ran since the last trim
	free    func()    // collects and returns free memory to the system
}

func newMemTrimmer(now time.Time, free func()) *memTrimmer {
	t := &memTrimmer{
		samples: []rtmetrics.Sample{
			{Name: "/gc/cycles/total:gc-cycles"},
			{Name: "/memory/classes/heap/objects:bytes"},
			{Name: "/memory/classes/heap/unused:bytes"},
			{Name: "/memory/classes/heap/free:bytes"},
		},
		free:  free,
		since: now,
	}
	t.cycles, _ = t.read()
	return t
}

// read returns the collections so far and the heap the process holds
// from the system: objects (live or not yet collected), the unused room
// in their spans, and free spans not yet given back.
func (t *memTrimmer) read() (cycles, heap uint64) {
	rtmetrics.Read(t.samples)
	for _, s := range t.samples[1:] {
		heap += s.Value.Uint64()
	}
	return t.samples[0].Value.Uint64(), heap
}

// tick trims once a quiet spell has lasted trimQuiet, if the heap is
// big enough to bother; it reports the heap it found when it trimmed.
func (t *memTrimmer) tick(now time.Time) (heap uint64, trimmed bool) {
	cycles, heap := t.read()
	if cycles != t.cycles {
		t.cycles, t.since, t.armed = cycles, now, true
		return 0, false
	}
	if !t.armed || now.Sub(t.since) < trimQuiet || heap < trimMinHeap {
		return 0, false
	}
	t.free()
	t.cycles, _ = t.read() // the trim's own collection is not mail
	t.since, t.armed = now, false
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
	t := newMemTrimmer(time.Now(), func() { trimNow(ctx, st, log) })
	tk := time.NewTicker(trimCheck)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tk.C:
			if heap, ok := t.tick(now); ok {
				log.Debug("returned free memory to the system", "heap_bytes_before", heap)
			}
		}
	}
}
