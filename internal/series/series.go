// Package series counts what the daemon decides, per kind and per time
// bucket, for the dashboard's charts. It is in memory only: counts begin
// when the daemon starts, except what the daemon seeds from the event log.
package series

import (
	"sync"
	"time"
)

// The kinds charted on the overview page.
const (
	Accepted   = "accepted"   // a message (or, through the policy server, a recipient) let through
	Greylisted = "greylisted" // a greylist deferral
	Rejected   = "rejected"   // refused with a 5xx
	Virus      = "virus"      // an infected message found
	Trap       = "trap"       // a connection to the worm trap
	Latch      = "latch"      // a client or user latched
)

// Kinds lists the kinds in chart order.
func Kinds() []string { return []string{Accepted, Greylisted, Rejected, Virus, Trap, Latch} }

// Bucket is one interval's count.
type Bucket struct {
	Start time.Time
	Count int64
}

// Series is one kind's buckets, oldest first, ending with the bucket that
// holds now.
type Series struct {
	Kind    string
	Buckets []Bucket
	Total   int64
}

// Recorder keeps a ring of buckets per kind.
type Recorder struct {
	step time.Duration
	mu   sync.Mutex
	// rings[kind][i] counts bucket number slot[i] (Unix time / step).
	rings map[string][]int64
	slots []int64
}

// New returns a recorder of n buckets of step each (for example 144 of
// 10 minutes: a day).
func New(step time.Duration, n int) *Recorder {
	r := &Recorder{step: step, rings: map[string][]int64{}, slots: make([]int64, n)}
	for i := range r.slots {
		r.slots[i] = -1
	}
	for _, k := range Kinds() {
		r.rings[k] = make([]int64, n)
	}
	return r
}

func (r *Recorder) slot(at time.Time) int64 { return at.UnixNano() / int64(r.step) }

// Add counts n of kind at the instant at. Unknown kinds and instants
// older than the ring are ignored.
func (r *Recorder) Add(kind string, at time.Time, n int) {
	s := r.slot(at)
	i := int(s % int64(len(r.slots)))
	r.mu.Lock()
	defer r.mu.Unlock()
	ring, ok := r.rings[kind]
	if !ok {
		return
	}
	switch {
	case r.slots[i] == s:
	case r.slots[i] < s:
		// The slot held an older bucket: it starts again for s.
		r.slots[i] = s
		for _, rr := range r.rings {
			rr[i] = 0
		}
	default:
		return
	}
	ring[i] += int64(n)
}

// Snapshot returns every kind's buckets for the span ending at now.
func (r *Recorder) Snapshot(now time.Time) []Series {
	n := len(r.slots)
	last := r.slot(now)
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Series, 0, len(r.rings))
	for _, kind := range Kinds() {
		ring := r.rings[kind]
		s := Series{Kind: kind, Buckets: make([]Bucket, 0, n)}
		for b := last - int64(n) + 1; b <= last; b++ {
			i := int(((b % int64(n)) + int64(n)) % int64(n))
			var c int64
			if r.slots[i] == b {
				c = ring[i]
			}
			s.Buckets = append(s.Buckets, Bucket{Start: time.Unix(0, b*int64(r.step)), Count: c})
			s.Total += c
		}
		out = append(out, s)
	}
	return out
}

// Step returns the bucket width.
func (r *Recorder) Step() time.Duration { return r.step }
