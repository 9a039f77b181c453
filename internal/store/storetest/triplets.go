package storetest

import (
	"context"
	"testing"
	"time"

	"mailwarden/internal/store"
)

func testGetMissing(t *testing.T, s store.Store) {
	base := baseTime()
	tr := triplet("192.0.2.0/24", "a@example.org", "b@example.net", base)
	_, err := get(t, s, tr, base)
	assertNotFound(t, err, "GetTriplet on an empty store")

	put(t, s, tr)
	other := tr
	other.Recipient = "c@example.net"
	_, err = get(t, s, other, base)
	assertNotFound(t, err, "GetTriplet of another recipient")
}

func testPutGetRoundTrip(t *testing.T, s store.Store) {
	base := baseTime()
	pending := store.Triplet{
		Client:    "192.0.2.0/24",
		Sender:    "a@example.org",
		Recipient: "b@example.net",
		FirstSeen: base.Add(-3 * time.Minute),
		LastSeen:  base.Add(-1234 * time.Millisecond),
		Attempts:  2,
		Expires:   base.Add(48 * time.Hour),
	}
	passed := store.Triplet{
		Client:    "2001:db8:1::/64",
		Sender:    "x@example.org",
		Recipient: "y@example.net",
		FirstSeen: base.Add(-10 * time.Minute),
		LastSeen:  base.Add(-7 * time.Millisecond),
		PassedAt:  base.Add(-5*time.Minute - 1*time.Millisecond),
		Attempts:  7,
		Expires:   base.Add(35 * 24 * time.Hour),
	}
	put(t, s, pending, passed)
	assertTriplet(t, mustGet(t, s, pending, base), pending)
	assertTriplet(t, mustGet(t, s, passed, base), passed)
}

func testSubMillisecond(t *testing.T, s store.Store) {
	base := baseTime()
	tr := triplet("192.0.2.0/24", "a@example.org", "b@example.net", base)
	tr.FirstSeen = base.Add(123456 * time.Nanosecond)
	tr.LastSeen = base.Add(time.Second + 999999*time.Nanosecond)
	tr.PassedAt = base.Add(time.Second + 1)
	put(t, s, tr)
	got := mustGet(t, s, tr, base)
	near := func(name string, got, want time.Time) {
		if d := got.Sub(want); d <= -time.Millisecond || d >= time.Millisecond {
			t.Errorf("%s = %v, want within a millisecond of %v", name, got, want)
		}
	}
	near("FirstSeen", got.FirstSeen, tr.FirstSeen)
	near("LastSeen", got.LastSeen, tr.LastSeen)
	near("PassedAt", got.PassedAt, tr.PassedAt)
	if !got.Passed() {
		t.Error("Passed() = false for a triplet stored with PassedAt set")
	}
}

func testPutReplaces(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := baseTime()
	first := triplet("192.0.2.0/24", "a@example.org", "b@example.net", base)
	put(t, s, first)

	second := first
	second.LastSeen = base.Add(6 * time.Minute)
	second.PassedAt = base.Add(6 * time.Minute)
	second.Attempts = 2
	second.Expires = base.Add(35 * 24 * time.Hour)
	put(t, s, second)
	assertTriplet(t, mustGet(t, s, first, base), second)

	all, err := s.ListTriplets(ctx, store.TripletFilter{}, base)
	if err != nil {
		t.Fatalf("ListTriplets: %v", err)
	}
	if len(all) != 1 {
		t.Fatalf("ListTriplets returned %d triplets after a replacing Put, want 1", len(all))
	}
}

func testExpiredTripletAbsent(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := baseTime()
	tr := triplet("192.0.2.0/24", "a@example.org", "b@example.net", base)
	tr.Expires = base.Add(time.Hour)
	passed := triplet("192.0.2.0/24", "a@example.org", "c@example.net", base)
	passed.PassedAt = base
	passed.Expires = base.Add(time.Hour)
	put(t, s, tr, passed)
	if _, err := s.AddClientPass(ctx, tr.Client, base, base.Add(time.Hour)); err != nil {
		t.Fatalf("AddClientPass: %v", err)
	}

	mustGet(t, s, tr, base.Add(59*time.Minute))
	for _, now := range []time.Time{base.Add(time.Hour), base.Add(2 * time.Hour)} {
		_, err := get(t, s, tr, now)
		assertNotFound(t, err, "GetTriplet at or after Expires")

		list, err := s.ListTriplets(ctx, store.TripletFilter{}, now)
		if err != nil {
			t.Fatalf("ListTriplets: %v", err)
		}
		if len(list) != 0 {
			t.Errorf("ListTriplets at %v returned %d expired triplets", now.Sub(base), len(list))
		}
		n, err := s.ClientPasses(ctx, tr.Client, now)
		if err != nil || n != 0 {
			t.Errorf("ClientPasses of an expired record = %d, %v; want 0, nil", n, err)
		}
		st, err := s.GreylistStats(ctx, now, 1)
		if err != nil {
			t.Fatalf("GreylistStats: %v", err)
		}
		if st != (store.GreylistStats{}) {
			t.Errorf("GreylistStats counting expired records: %+v", st)
		}
	}
}

func testExpire(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := baseTime()
	var trs []store.Triplet
	for i, life := range []time.Duration{time.Hour, 2 * time.Hour, 3 * time.Hour} {
		tr := triplet("192.0.2.0/24", "a@example.org", string(rune('a'+i))+"@example.net", base)
		tr.Expires = base.Add(life)
		trs = append(trs, tr)
	}
	put(t, s, trs...)
	if _, err := s.AddClientPass(ctx, "198.51.100.0/24", base, base.Add(time.Hour)); err != nil {
		t.Fatalf("AddClientPass: %v", err)
	}
	if _, err := s.AddClientPass(ctx, "203.0.113.0/24", base, base.Add(3*time.Hour)); err != nil {
		t.Fatalf("AddClientPass: %v", err)
	}

	assertExpire(t, s, base.Add(30*time.Minute), 0, "Expire before any expiry")
	// Two triplets and one client record expire at or before base+2h.
	assertExpire(t, s, base.Add(2*time.Hour), 3, "Expire")
	assertExpire(t, s, base.Add(2*time.Hour), 0, "second Expire")

	// Asking at base shows what is really gone rather than merely expired.
	for _, tr := range trs[:2] {
		_, err := get(t, s, tr, base)
		assertNotFound(t, err, "GetTriplet of an expired-and-deleted triplet")
	}
	assertTriplet(t, mustGet(t, s, trs[2], base), trs[2])
	if n, err := s.ClientPasses(ctx, "198.51.100.0/24", base); err != nil || n != 0 {
		t.Errorf("ClientPasses of a deleted record = %d, %v; want 0", n, err)
	}
	if n, err := s.ClientPasses(ctx, "203.0.113.0/24", base); err != nil || n != 1 {
		t.Errorf("ClientPasses of a kept record = %d, %v; want 1", n, err)
	}
}

func testDeleteTriplet(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := baseTime()
	if err := s.DeleteTriplet(ctx, "192.0.2.0/24", "a@example.org", "nobody@example.net"); err != nil {
		t.Fatalf("DeleteTriplet of a missing triplet: %v", err)
	}
	keep := triplet("192.0.2.0/24", "a@example.org", "keep@example.net", base)
	gone := triplet("192.0.2.0/24", "a@example.org", "gone@example.net", base)
	put(t, s, keep, gone)
	if err := s.DeleteTriplet(ctx, gone.Client, gone.Sender, gone.Recipient); err != nil {
		t.Fatalf("DeleteTriplet: %v", err)
	}
	_, err := get(t, s, gone, base)
	assertNotFound(t, err, "GetTriplet after DeleteTriplet")
	assertTriplet(t, mustGet(t, s, keep, base), keep)
	if err := s.DeleteTriplet(ctx, gone.Client, gone.Sender, gone.Recipient); err != nil {
		t.Fatalf("second DeleteTriplet: %v", err)
	}
}

func testListTriplets(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := baseTime()
	const a, b = "192.0.2.0/24", "198.51.100.0/24"
	mk := func(client, rcpt string, lastSeen time.Duration, passed bool) store.Triplet {
		tr := triplet(client, "s@example.org", rcpt, base)
		tr.LastSeen = base.Add(lastSeen)
		if passed {
			tr.PassedAt = tr.LastSeen
		}
		return tr
	}
	t1 := mk(a, "1@example.net", 1*time.Minute, false)
	t2 := mk(a, "2@example.net", 3*time.Minute, true)
	t3 := mk(b, "3@example.net", 2*time.Minute, false)
	t4 := mk(b, "4@example.net", 4*time.Minute, true)
	expired := mk(a, "5@example.net", 5*time.Minute, false)
	expired.Expires = base.Add(30 * time.Minute)
	put(t, s, t1, t2, t3, t4, expired)
	now := base.Add(time.Hour)

	cases := []struct {
		name string
		f    store.TripletFilter
		want []store.Triplet
	}{
		{"all", store.TripletFilter{}, []store.Triplet{t4, t2, t3, t1}},
		{"pending", store.TripletFilter{Pending: true}, []store.Triplet{t3, t1}},
		{"passed", store.TripletFilter{Passed: true}, []store.Triplet{t4, t2}},
		{"client", store.TripletFilter{Client: a}, []store.Triplet{t2, t1}},
		{"client pending", store.TripletFilter{Client: a, Pending: true}, []store.Triplet{t1}},
		{"limit", store.TripletFilter{Limit: 2}, []store.Triplet{t4, t2}},
		{"client passed limit", store.TripletFilter{Client: b, Passed: true, Limit: 1}, []store.Triplet{t4}},
		{"unknown client", store.TripletFilter{Client: "203.0.113.0/24"}, nil},
		{"client prefix is not a match", store.TripletFilter{Client: "192.0.2.0"}, nil},
	}
	for _, tc := range cases {
		got, err := s.ListTriplets(ctx, tc.f, now)
		if err != nil {
			t.Fatalf("%s: ListTriplets: %v", tc.name, err)
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: got %d triplets %v, want %d", tc.name, len(got), recipients(got), len(tc.want))
			continue
		}
		for i := range got {
			if got[i].Recipient != tc.want[i].Recipient {
				t.Errorf("%s: order %v, want %v (newest LastSeen first)", tc.name, recipients(got), recipients(tc.want))
				break
			}
			assertTriplet(t, got[i], tc.want[i])
		}
	}
}

func recipients(trs []store.Triplet) []string {
	out := make([]string, len(trs))
	for i, tr := range trs {
		out[i] = tr.Recipient
	}
	return out
}
