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
	return ret(s.AddClientPass(context.Background(), client, now, expires)).must(t, "AddClientPass(%q)", client)
}

func passes(t *testing.T, s store.Store, client string, now time.Time) int {
	t.Helper()
	return ret(s.ClientPasses(context.Background(), client, now)).must(t, "ClientPasses(%q)", client)
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

func listPasses(t *testing.T, s store.Store, now time.Time, minPasses, limit int) []store.ClientPass {
	t.Helper()
	cs, err := s.ListClientPasses(context.Background(), now, minPasses, limit)
	if err != nil {
		t.Fatalf("ListClientPasses(min=%d, limit=%d): %v", minPasses, limit, err)
	}
	return cs
}

func testListClientPasses(t *testing.T, s store.Store) {
	base := baseTime()
	if cs := listPasses(t, s, base, 0, 0); len(cs) != 0 {
		t.Fatalf("ListClientPasses on an empty store = %+v, want none", cs)
	}
	counts := map[string]int{"192.0.2.0/24": 3, "198.51.100.0/24": 7, "203.0.113.0/24": 1, "2001:db8::/64": 5}
	for c, n := range counts {
		for range n {
			addPass(t, s, c, base, base.Add(2*time.Hour))
		}
	}
	// Expires before the others: gone when listing at base+1h.
	for range 9 {
		addPass(t, s, "192.0.2.128/25", base, base.Add(30*time.Minute))
	}

	now := base.Add(time.Hour)
	all := listPasses(t, s, now, 0, 0)
	wantOrder := []string{"198.51.100.0/24", "2001:db8::/64", "192.0.2.0/24", "203.0.113.0/24"}
	if len(all) != len(wantOrder) {
		t.Fatalf("ListClientPasses(min 0) = %+v, want %d unexpired clients", all, len(wantOrder))
	}
	for i, c := range wantOrder {
		if all[i].Client != c || all[i].Passes != counts[c] || !all[i].Expires.Equal(base.Add(2*time.Hour)) {
			t.Errorf("ListClientPasses #%d = %+v, want %s with %d passes expiring %v",
				i, all[i], c, counts[c], base.Add(2*time.Hour))
		}
	}

	atLeast3 := listPasses(t, s, now, 3, 0)
	if len(atLeast3) != 3 || atLeast3[2].Client != "192.0.2.0/24" {
		t.Errorf("ListClientPasses(min 3) = %+v, want the clients with 7, 5 and 3 passes", atLeast3)
	}
	top := listPasses(t, s, now, 0, 2)
	if len(top) != 2 || top[0].Client != "198.51.100.0/24" || top[1].Client != "2001:db8::/64" {
		t.Errorf("ListClientPasses(limit 2) = %+v, want the clients with 7 and 5 passes", top)
	}
	if cs := listPasses(t, s, now, 8, 0); len(cs) != 0 {
		t.Errorf("ListClientPasses(min 8) = %+v, want none (the 9-pass client has expired)", cs)
	}
	// Before its expiry the 9-pass client leads.
	if cs := listPasses(t, s, base, 0, 1); len(cs) != 1 || cs[0].Client != "192.0.2.128/25" || cs[0].Passes != 9 {
		t.Errorf("ListClientPasses at base, limit 1 = %+v, want 192.0.2.128/25 with 9 passes", cs)
	}
	// At its expiry instant a record is gone, as everywhere.
	if cs := listPasses(t, s, base.Add(2*time.Hour), 0, 0); len(cs) != 0 {
		t.Errorf("ListClientPasses at the expiry instant = %+v, want none", cs)
	}
}
