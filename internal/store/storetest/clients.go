package storetest

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"mailwarden/internal/store"
)

func addPass(t *testing.T, s store.Store, client string, now, expires time.Time) int {
	t.Helper()
	n, err := s.AddClientPass(context.Background(), client, now, expires)
	if err != nil {
		t.Fatalf("AddClientPass(%q): %v", client, err)
	}
	return n
}

func passes(t *testing.T, s store.Store, client string, now time.Time) int {
	t.Helper()
	n, err := s.ClientPasses(context.Background(), client, now)
	if err != nil {
		t.Fatalf("ClientPasses(%q): %v", client, err)
	}
	return n
}

func testAddClientPass(t *testing.T, s store.Store) {
	base := baseTime()
	const c = "192.0.2.0/24"
	if n := passes(t, s, c, base); n != 0 {
		t.Fatalf("ClientPasses of an unknown client = %d, want 0", n)
	}
	for want := 1; want <= 3; want++ {
		if n := addPass(t, s, c, base, base.Add(time.Hour)); n != want {
			t.Fatalf("AddClientPass returned %d, want %d", n, want)
		}
	}
	if n := passes(t, s, c, base); n != 3 {
		t.Fatalf("ClientPasses = %d, want 3", n)
	}
	if n := passes(t, s, "198.51.100.0/24", base); n != 0 {
		t.Fatalf("ClientPasses of another client = %d, want 0", n)
	}
	// Each pass moves the expiry: the count survives the first lifetime.
	if n := addPass(t, s, c, base.Add(30*time.Minute), base.Add(3*time.Hour)); n != 4 {
		t.Fatalf("AddClientPass returned %d, want 4", n)
	}
	if n := passes(t, s, c, base.Add(2*time.Hour)); n != 4 {
		t.Fatalf("ClientPasses after the expiry was extended = %d, want 4", n)
	}
}

func testAddClientPassParallel(t *testing.T, s store.Store) {
	const workers = 50
	base := baseTime()
	const c = "192.0.2.0/24"
	got := make([]int, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			got[i], errs[i] = s.AddClientPass(context.Background(), c, base, base.Add(time.Hour))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("AddClientPass #%d: %v", i, err)
		}
	}
	// Every increment is seen exactly once: the results are 1..50.
	slices.Sort(got)
	for i, n := range got {
		if n != i+1 {
			t.Fatalf("parallel AddClientPass results %v, want each of 1..%d once", got, workers)
		}
	}
	if n := passes(t, s, c, base); n != workers {
		t.Fatalf("ClientPasses = %d, want %d", n, workers)
	}
}

func testAddClientPassAfterExpiry(t *testing.T, s store.Store) {
	base := baseTime()
	const c = "192.0.2.0/24"
	addPass(t, s, c, base, base.Add(time.Hour))
	addPass(t, s, c, base, base.Add(time.Hour))
	later := base.Add(2 * time.Hour)
	if n := addPass(t, s, c, later, later.Add(time.Hour)); n != 1 {
		t.Fatalf("AddClientPass on an expired record = %d, want 1", n)
	}
	if n := passes(t, s, c, later); n != 1 {
		t.Fatalf("ClientPasses = %d, want 1", n)
	}
}

func testGreylistStats(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := baseTime()
	st, err := s.GreylistStats(ctx, base, 5)
	if err != nil {
		t.Fatalf("GreylistStats on an empty store: %v", err)
	}
	if st != (store.GreylistStats{}) {
		t.Fatalf("GreylistStats on an empty store = %+v", st)
	}

	now := base.Add(time.Hour)
	var trs []store.Triplet
	for i, kind := range []string{"pending", "pending", "passed", "passed", "passed", "old-pending", "old-passed"} {
		tr := triplet("192.0.2.0/24", "s@example.org", kind+string(rune('0'+i))+"@example.net", base)
		if kind == "passed" || kind == "old-passed" {
			tr.PassedAt = base
		}
		if kind == "old-pending" || kind == "old-passed" {
			tr.Expires = base.Add(30 * time.Minute)
		}
		trs = append(trs, tr)
	}
	put(t, s, trs...)
	for range 5 {
		addPass(t, s, "c5", base, base.Add(2*time.Hour))
	}
	for range 4 {
		addPass(t, s, "c4", base, base.Add(2*time.Hour))
	}
	for range 6 {
		addPass(t, s, "c6-expired", base, base.Add(30*time.Minute))
	}

	for _, tc := range []struct {
		after int
		want  store.GreylistStats
	}{
		{5, store.GreylistStats{Pending: 2, Passed: 3, WhitelistedClients: 1}},
		{4, store.GreylistStats{Pending: 2, Passed: 3, WhitelistedClients: 2}},
		{7, store.GreylistStats{Pending: 2, Passed: 3, WhitelistedClients: 0}},
	} {
		st, err := s.GreylistStats(ctx, now, tc.after)
		if err != nil {
			t.Fatalf("GreylistStats: %v", err)
		}
		if st != tc.want {
			t.Errorf("GreylistStats(whitelistAfter=%d) = %+v, want %+v", tc.after, st, tc.want)
		}
	}
}
