package storetest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/store"
)

func testNullSender(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := baseTime()
	null := triplet("192.0.2.0/24", "", "b@example.net", base)
	null.Attempts = 4
	named := triplet("192.0.2.0/24", "a@example.org", "b@example.net", base)
	put(t, s, null, named)
	assertTriplet(t, mustGet(t, s, null, base), null)
	assertTriplet(t, mustGet(t, s, named, base), named)

	list, err := s.ListTriplets(ctx, store.TripletFilter{}, base)
	if err != nil {
		t.Fatalf("ListTriplets: %v", err)
	}
	if len(list) != 2 {
		t.Fatalf("ListTriplets returned %d triplets, want 2", len(list))
	}
	if err := s.DeleteTriplet(ctx, null.Client, "", null.Recipient); err != nil {
		t.Fatalf("DeleteTriplet of the null sender: %v", err)
	}
	_, err = get(t, s, null, base)
	assertNotFound(t, err, "GetTriplet after deleting the null-sender triplet")
	assertTriplet(t, mustGet(t, s, named, base), named)
}

func testUnusualKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := baseTime()
	keys := [][3]string{
		{"192.0.2.0/24", "用户@例子.广告", "ü@bücher.example"},
		{"192.0.2.0/24", `o'brien"x@example.org`, `"quoted local"@example.net`},
		{"192.0.2.0/24", "100%@example.org", "under_score@example.net"},
		{"192.0.2.0/24", `back\slash@example.org`, "semi;colon@example.net"},
		{"192.0.2.0/24", "a@example.org", strings.Repeat("r", 1000-len("@example.net")) + "@example.net"},
		{"10.0.0.%", "a@example.org", "b@example.net"},
		{"10.0.0._", "a@example.org", "b@example.net"},
		{"10.0.0.*", "a@example.org", "b@example.net"},
		{"{10.0.0.1}", "a@example.org", "b@example.net"},
	}
	putAndCheck(t, s, keys, base)
	// A look-up that would match under LIKE or glob rules must not.
	for _, k := range [][3]string{
		{"192.0.2.0/24", "100_@example.org", "under%score@example.net"},
		{"192.0.2.0/24", "a@example.org", strings.Repeat("r", 999)},
		{"10.0.0.1", "a@example.org", "b@example.net"},
	} {
		_, err := s.GetTriplet(ctx, k[0], k[1], k[2], base)
		assertNotFound(t, err, "GetTriplet of a wildcard look-alike "+k[0]+" "+k[1])
	}
	for _, c := range []string{"10.0.0.%", "10.0.0._", "10.0.0.*"} {
		list, err := s.ListTriplets(ctx, store.TripletFilter{Client: c}, base)
		if err != nil {
			t.Fatalf("ListTriplets(Client=%q): %v", c, err)
		}
		if len(list) != 1 || list[0].Client != c {
			t.Errorf("ListTriplets(Client=%q) = %d triplets, want exactly that client's one", c, len(list))
		}
	}
	addPass(t, s, "10.0.0.%", base, base.Add(time.Hour))
	if n := passes(t, s, "10.0.0.1", base); n != 0 {
		t.Errorf("ClientPasses(10.0.0.1) = %d after a pass for 10.0.0.%%, want 0", n)
	}
}

func testKeysDoNotCollide(t *testing.T, s store.Store) {
	base := baseTime()
	// Pairs that a backend joining keys with a separator could confuse.
	keys := [][3]string{
		{"a", "b|c", "d"}, {"a|b", "c", "d"},
		{"a", "b:c", "d"}, {"a:b", "c", "d"},
		{"a", "b,c", "d"}, {"a,b", "c", "d"},
		{"a", "b c", "d"}, {"a b", "c", "d"},
		{"a", "b\tc", "d"}, {"a\tb", "c", "d"},
		{"a", "b/c", "d"}, {"a/b", "c", "d"},
		{"a", "", "bd"}, {"a", "b", "d"}, {"ab", "", "d"},
	}
	putAndCheck(t, s, keys, base)
	addPass(t, s, "a|b", base, base.Add(time.Hour))
	addPass(t, s, "a|b", base, base.Add(time.Hour))
	addPass(t, s, "a", base, base.Add(time.Hour))
	if n := passes(t, s, "a|b", base); n != 2 {
		t.Errorf("ClientPasses(a|b) = %d, want 2", n)
	}
	if n := passes(t, s, "a", base); n != 1 {
		t.Errorf("ClientPasses(a) = %d, want 1", n)
	}
}

func testPing(t *testing.T, s store.Store) {
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

// testProbe checks that an open store takes the write probe, again and
// again, and that a closed one refuses it.
func testProbe(t *testing.T, s store.Store) {
	ctx := context.Background()
	for i := range 3 {
		if err := s.Probe(ctx); err != nil {
			t.Fatalf("Probe %d: %v", i+1, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Probe(ctx); err == nil {
		t.Errorf("Probe on a closed store succeeded")
	}
}

// testCanceledContext checks that every context-taking method returns an
// error wrapping context.Canceled instead of blocking. The wait bound is
// only a guard against a hang, not a timing requirement.
func testCanceledContext(t *testing.T, s store.Store) {
	base := baseTime()
	tr := triplet("192.0.2.0/24", "a@example.org", "b@example.net", base)
	put(t, s, tr)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	calls := []canceledCall{
		{"GetTriplet", func() error {
			_, err := s.GetTriplet(ctx, tr.Client, tr.Sender, tr.Recipient, base)
			return err
		}},
		{"PutTriplet", func() error { return s.PutTriplet(ctx, tr) }},
		{"DeleteTriplet", func() error { return s.DeleteTriplet(ctx, tr.Client, tr.Sender, tr.Recipient) }},
		{"ListTriplets", func() error {
			_, err := s.ListTriplets(ctx, store.TripletFilter{}, base)
			return err
		}},
		{"AddClientPass", func() error {
			_, err := s.AddClientPass(ctx, tr.Client, base, base.Add(time.Hour))
			return err
		}},
		{"ClientPasses", func() error {
			_, err := s.ClientPasses(ctx, tr.Client, base)
			return err
		}},
		{"GreylistStats", func() error {
			_, err := s.GreylistStats(ctx, base, 5)
			return err
		}},
		{"Expire", func() error {
			_, err := s.Expire(ctx, base)
			return err
		}},
		{"Ping", func() error { return s.Ping(ctx) }},
		{"Probe", func() error { return s.Probe(ctx) }},
	}
	assertCanceled(t, calls)
	// The store still works with a live context.
	mustGet(t, s, tr, base)
}

// canceledCall is a store method called with a canceled context.
type canceledCall struct {
	name string
	fn   func() error
}

// assertCanceled checks that each call returns context.Canceled, and
// returns at all.
func assertCanceled(t *testing.T, calls []canceledCall) {
	t.Helper()
	for _, c := range calls {
		done := make(chan error, 1)
		go func() { done <- c.fn() }()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s with a canceled context: err = %v, want context.Canceled", c.name, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s with a canceled context did not return", c.name)
		}
	}
}

// putAndCheck stores a triplet for each key, with distinct attempt
// counts, and checks that each reads back as itself.
func putAndCheck(t *testing.T, s store.Store, keys [][3]string, base time.Time) {
	t.Helper()
	var trs []store.Triplet
	for i, k := range keys {
		tr := triplet(k[0], k[1], k[2], base)
		tr.Attempts = i + 1
		trs = append(trs, tr)
	}
	put(t, s, trs...)
	for _, tr := range trs {
		assertTriplet(t, mustGet(t, s, tr, base), tr)
	}
}
