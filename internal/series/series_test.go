package series

import (
	"testing"
	"time"
)

func TestBucketsAndWrap(t *testing.T) {
	r := New(time.Minute, 3)
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	r.Add(Accepted, t0, 2)
	r.Add(Accepted, t0.Add(30*time.Second), 1)
	r.Add(Virus, t0.Add(time.Minute), 1)
	r.Add("nonsense", t0, 5)
	snap := r.Snapshot(t0.Add(time.Minute))
	acc := find(t, snap, Accepted)
	if acc.Total != 3 || len(acc.Buckets) != 3 || acc.Buckets[1].Count != 3 || !acc.Buckets[1].Start.Equal(t0) {
		t.Fatalf("accepted = %+v, want 3 in the bucket starting %s", acc, t0)
	}
	// Three minutes on, the first bucket's slot is reused: its counts go.
	r.Add(Virus, t0.Add(3*time.Minute), 1)
	snap = r.Snapshot(t0.Add(3 * time.Minute))
	if got := find(t, snap, Accepted).Total; got != 0 {
		t.Errorf("accepted after the ring wrapped = %d, want 0", got)
	}
	if got := find(t, snap, Virus).Total; got != 2 {
		t.Errorf("virus = %d, want 2 (one per bucket still in the span)", got)
	}
	// An instant older than the ring is ignored, not counted in a new bucket.
	r.Add(Trap, t0, 1)
	if got := find(t, r.Snapshot(t0.Add(3*time.Minute)), Trap).Total; got != 0 {
		t.Errorf("trap counted from before the span: %d", got)
	}
}

func find(t *testing.T, ss []Series, kind string) Series {
	t.Helper()
	for _, s := range ss {
		if s.Kind == kind {
			return s
		}
	}
	t.Fatalf("no series %q", kind)
	return Series{}
}
