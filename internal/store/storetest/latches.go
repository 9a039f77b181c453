package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"mailwarden/internal/store"
)

// latchIDSymbols are the characters a latch id may use: upper-case
// letters and digits without 0/O and 1/I, which are confused when an id
// is read aloud or copied by hand.
const latchIDSymbols = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"

func sampleLatch(kind, key string) store.Latch {
	return store.Latch{
		Kind:     kind,
		Key:      key,
		Rule:     "sender_domain",
		Reason:   "envelope sender domain evil.example not allowed for site lincoln",
		Site:     "lincoln",
		Evidence: "ceo@evil.example",
	}
}

func addLatch(t *testing.T, s store.Store, l store.Latch, now time.Time) store.Latch {
	t.Helper()
	return ret(s.AddLatch(context.Background(), l, now)).must(t, "AddLatch(%s %q)", l.Kind, l.Key)
}

func activeLatch(t *testing.T, s store.Store, kind, key string, now time.Time) store.Latch {
	t.Helper()
	return ret(s.ActiveLatch(context.Background(), kind, key, now)).must(t, "ActiveLatch(%s %q)", kind, key)
}

func getLatch(t *testing.T, s store.Store, id string) store.Latch {
	t.Helper()
	return ret(s.GetLatch(context.Background(), id)).must(t, "GetLatch(%q)", id)
}

func checkLatchID(t *testing.T, id string) {
	t.Helper()
	foreign := func(r rune) bool { return !strings.ContainsRune(latchIDSymbols, r) }
	if id == "" || len(id) > 12 || strings.ContainsFunc(id, foreign) {
		t.Fatalf("latch id %q: want 1 to 12 of %s", id, latchIDSymbols)
	}
}

// assertLatch compares every field; times with Equal.
func assertLatch(t *testing.T, got, want store.Latch) {
	t.Helper()
	type text struct{ ID, Kind, Key, Rule, Reason, Site, Evidence, ClearedBy, ClearNote string }
	g := text{got.ID, got.Kind, got.Key, got.Rule, got.Reason, got.Site, got.Evidence, got.ClearedBy, got.ClearNote}
	w := text{want.ID, want.Kind, want.Key, want.Rule, want.Reason, want.Site, want.Evidence, want.ClearedBy, want.ClearNote}
	if g != w {
		t.Errorf("latch = %+v, want %+v", g, w)
	}
	if got.Count != want.Count || got.Refused != want.Refused {
		t.Errorf("latch %s Count = %d, Refused = %d; want %d and %d", got.ID, got.Count, got.Refused, want.Count, want.Refused)
	}
	assertTimes(t, "latch "+got.ID, []timePair{
		{"FirstSeen", got.FirstSeen, want.FirstSeen},
		{"LastSeen", got.LastSeen, want.LastSeen},
		{"Expires", got.Expires, want.Expires},
		{"ClearedAt", got.ClearedAt, want.ClearedAt},
	})
}

func testAddLatchCreates(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := baseTime()
	in := sampleLatch(store.LatchClient, "10.1.2.3")
	got := addLatch(t, s, in, base)
	checkLatchID(t, got.ID)
	want := in
	want.ID, want.Count, want.FirstSeen, want.LastSeen = got.ID, 1, base, base
	assertLatch(t, got, want)
	if !got.Active(base) {
		t.Errorf("new latch not active: %+v", got)
	}
	assertLatch(t, activeLatch(t, s, store.LatchClient, "10.1.2.3", base), want)
	assertLatch(t, getLatch(t, s, got.ID), want)
	// Far in the future: a latch without Expires holds until cleared.
	activeLatch(t, s, store.LatchClient, "10.1.2.3", base.Add(10*365*24*time.Hour))

	for _, k := range [][2]string{
		{store.LatchUser, "10.1.2.3"},     // another kind
		{store.LatchClient, "10.1.2.30"},  // another key
		{store.LatchClient, "10.1.2.%"},   // a LIKE pattern that would match
		{store.LatchClient, "10.1.2.3 "},  // not trimmed
		{store.LatchClient, "10.1.2."},    // a prefix
		{store.LatchUser, "nobody@local"}, // nothing at all
	} {
		_, err := s.ActiveLatch(ctx, k[0], k[1], base)
		assertNotFound(t, err, fmt.Sprintf("ActiveLatch(%s %q)", k[0], k[1]))
	}
	_, err := s.GetLatch(ctx, "ZZZZZZZZ")
	assertNotFound(t, err, "GetLatch of an unknown id")
}

func testAddLatchRepeats(t *testing.T, s store.Store) {
	base := baseTime()
	first := addLatch(t, s, sampleLatch(store.LatchUser, "alice"), base)
	again := sampleLatch(store.LatchUser, "alice")
	again.Rule, again.Reason, again.Evidence = "rate_user", "120 messages in 10m", "bob@example.net"
	later := base.Add(2 * time.Minute)
	got := addLatch(t, s, again, later)

	want := first
	want.Count, want.LastSeen = 2, later
	want.Rule, want.Reason, want.Evidence = again.Rule, again.Reason, again.Evidence
	if got.ID != first.ID {
		t.Fatalf("second AddLatch for an active key made latch %s, want the same latch %s", got.ID, first.ID)
	}
	assertLatch(t, got, want)
	assertLatch(t, activeLatch(t, s, store.LatchUser, "alice", later), want)
	assertLatch(t, getLatch(t, s, first.ID), want)

	got = addLatch(t, s, again, later.Add(time.Minute))
	if got.ID != first.ID || got.Count != 3 || !got.FirstSeen.Equal(base) {
		t.Fatalf("third AddLatch = %s count %d first seen %v; want %s, 3, %v", got.ID, got.Count, got.FirstSeen, first.ID, base)
	}
}

// testAddLatchRefusal counts messages refused while a latch holds apart
// from the violations that set it: a host that forged once and was then
// refused three times did one forgery, not four.
func testAddLatchRefusal(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := baseTime()
	first := addLatch(t, s, sampleLatch(store.LatchClient, "10.1.2.3"), base)
	want := first
	for i := 1; i <= 3; i++ {
		at := base.Add(time.Duration(i) * time.Minute)
		got, err := s.AddLatchRefusal(ctx, first.ID, at)
		if err != nil {
			t.Fatalf("AddLatchRefusal #%d: %v", i, err)
		}
		want.Count, want.Refused, want.LastSeen = 1+i, i, at
		assertLatch(t, got, want)
	}
	at := base.Add(3 * time.Minute)
	assertLatch(t, getLatch(t, s, first.ID), want)
	assertLatch(t, activeLatch(t, s, store.LatchClient, "10.1.2.3", at), want)
	list, err := s.ListLatches(ctx, store.LatchFilter{Key: "10.1.2.3"}, at)
	if err != nil || len(list) != 1 {
		t.Fatalf("ListLatches = %v, %v; want the one latch", list, err)
	}
	assertLatch(t, list[0], want)

	// Another violation counts as one, and keeps the refusals.
	again := addLatch(t, s, sampleLatch(store.LatchClient, "10.1.2.3"), base.Add(4*time.Minute))
	if again.ID != first.ID || again.Count != 5 || again.Refused != 3 {
		t.Errorf("AddLatch after three refusals = %s count %d refused %d; want %s, 5, 3", again.ID, again.Count, again.Refused, first.ID)
	}

	cleared := base.Add(5 * time.Minute)
	if _, err := s.ClearLatch(ctx, first.ID, "admin", "reimaged", cleared); err != nil {
		t.Fatalf("ClearLatch: %v", err)
	}
	if _, err := s.AddLatchRefusal(ctx, first.ID, cleared.Add(time.Minute)); !errors.Is(err, store.ErrNotActive) {
		t.Errorf("AddLatchRefusal of a cleared latch: err = %v, want store.ErrNotActive", err)
	}
	if l := getLatch(t, s, first.ID); l.Count != 5 || l.Refused != 3 {
		t.Errorf("a refusal by a cleared latch was counted: count %d refused %d, want 5 and 3", l.Count, l.Refused)
	}
	_, err = s.AddLatchRefusal(ctx, "ZZZZZZZZ", at)
	assertNotFound(t, err, "AddLatchRefusal of an unknown id")

	// A fresh latch starts with no refusals.
	next := addLatch(t, s, sampleLatch(store.LatchClient, "10.1.2.3"), cleared.Add(2*time.Minute))
	if next.ID == first.ID || next.Count != 1 || next.Refused != 0 {
		t.Errorf("latch after clearing = %s count %d refused %d; want a fresh one with 1 and 0", next.ID, next.Count, next.Refused)
	}
}

func testClearLatch(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := baseTime()
	addLatch(t, s, sampleLatch(store.LatchClient, "10.1.2.3"), base)
	l := addLatch(t, s, sampleLatch(store.LatchClient, "10.1.2.3"), base.Add(time.Minute))

	at := base.Add(time.Hour)
	got, err := s.ClearLatch(ctx, l.ID, "admin", "reinstalled, ticket 42", at)
	if err != nil {
		t.Fatalf("ClearLatch: %v", err)
	}
	want := l
	want.ClearedAt, want.ClearedBy, want.ClearNote = at, "admin", "reinstalled, ticket 42"
	assertLatch(t, got, want)
	assertLatch(t, getLatch(t, s, l.ID), want)
	if got.Active(at) {
		t.Error("cleared latch reports Active")
	}
	_, err = s.ActiveLatch(ctx, store.LatchClient, "10.1.2.3", at)
	assertNotFound(t, err, "ActiveLatch after ClearLatch")

	if _, err := s.ClearLatch(ctx, l.ID, "admin", "again", at.Add(time.Minute)); !errors.Is(err, store.ErrNotActive) {
		t.Errorf("ClearLatch of a cleared latch: err = %v, want store.ErrNotActive", err)
	}
	_, err = s.ClearLatch(ctx, "ZZZZZZZZ", "admin", "", at)
	assertNotFound(t, err, "ClearLatch of an unknown id")
	assertLatch(t, getLatch(t, s, l.ID), want)

	// The next violation starts a new latch; the cleared one stays as it was.
	next := addLatch(t, s, sampleLatch(store.LatchClient, "10.1.2.3"), at.Add(time.Minute))
	if next.ID == l.ID {
		t.Fatalf("AddLatch after ClearLatch reused id %s", l.ID)
	}
	checkLatchID(t, next.ID)
	if next.Count != 1 || !next.FirstSeen.Equal(at.Add(time.Minute)) || !next.ClearedAt.IsZero() {
		t.Errorf("latch after clearing = count %d, first seen %v, cleared %v; want a fresh one",
			next.Count, next.FirstSeen, next.ClearedAt)
	}
	assertLatch(t, activeLatch(t, s, store.LatchClient, "10.1.2.3", at.Add(time.Minute)), next)
	assertLatch(t, getLatch(t, s, l.ID), want)
}

func testLatchExpires(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := baseTime()
	in := sampleLatch(store.LatchClient, "10.1.2.3")
	in.Expires = base.Add(time.Hour)
	l := addLatch(t, s, in, base)
	if !l.Expires.Equal(in.Expires) {
		t.Errorf("Expires = %v, want %v", l.Expires, in.Expires)
	}
	activeLatch(t, s, store.LatchClient, "10.1.2.3", base.Add(59*time.Minute))
	for _, now := range []time.Time{base.Add(time.Hour), base.Add(2 * time.Hour)} {
		_, err := s.ActiveLatch(ctx, store.LatchClient, "10.1.2.3", now)
		assertNotFound(t, err, fmt.Sprintf("ActiveLatch %v after a latch expired", now.Sub(in.Expires)))
	}
	if _, err := s.ClearLatch(ctx, l.ID, "admin", "", base.Add(time.Hour)); !errors.Is(err, store.ErrNotActive) {
		t.Errorf("ClearLatch of an expired latch: err = %v, want store.ErrNotActive", err)
	}
	// An expired latch is not extended: a new violation makes a new latch.
	next := addLatch(t, s, sampleLatch(store.LatchClient, "10.1.2.3"), base.Add(2*time.Hour))
	if next.ID == l.ID || next.Count != 1 {
		t.Errorf("AddLatch after expiry = %s count %d; want a new latch, not %s", next.ID, next.Count, l.ID)
	}
	got := getLatch(t, s, l.ID)
	if got.Count != 1 || !got.ClearedAt.IsZero() {
		t.Errorf("expired latch changed: %+v", got)
	}
}

func testListLatches(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := baseTime()
	at := func(m int) time.Time { return base.Add(time.Duration(m) * time.Minute) }
	c1 := addLatch(t, s, sampleLatch(store.LatchClient, "10.0.0.1"), at(1))
	u1 := addLatch(t, s, sampleLatch(store.LatchUser, "alice"), at(2))
	c2 := addLatch(t, s, sampleLatch(store.LatchClient, "10.0.0.2"), at(3))
	if _, err := s.ClearLatch(ctx, c2.ID, "admin", "", at(4)); err != nil {
		t.Fatalf("ClearLatch: %v", err)
	}
	short := sampleLatch(store.LatchClient, "10.0.0.3")
	short.Expires = at(30)
	c3 := addLatch(t, s, short, at(5))
	addLatch(t, s, sampleLatch(store.LatchClient, "10.0.0.1"), at(6)) // c1 seen again
	c2b := addLatch(t, s, sampleLatch(store.LatchClient, "10.0.0.2"), at(7))
	now := at(60)

	cases := []struct {
		name string
		f    store.LatchFilter
		want []store.Latch
	}{
		{"all", store.LatchFilter{}, []store.Latch{c2b, c1, c3, c2, u1}},
		{"active", store.LatchFilter{Active: true}, []store.Latch{c2b, c1, u1}},
		{"kind user", store.LatchFilter{Kind: store.LatchUser}, []store.Latch{u1}},
		{"kind client", store.LatchFilter{Kind: store.LatchClient}, []store.Latch{c2b, c1, c3, c2}},
		{"key", store.LatchFilter{Key: "10.0.0.2"}, []store.Latch{c2b, c2}},
		{"key active", store.LatchFilter{Key: "10.0.0.2", Active: true}, []store.Latch{c2b}},
		{"limit", store.LatchFilter{Limit: 2}, []store.Latch{c2b, c1}},
		{"active limit", store.LatchFilter{Active: true, Limit: 1}, []store.Latch{c2b}},
		{"key prefix is not a match", store.LatchFilter{Key: "10.0.0."}, nil},
		{"key of another kind", store.LatchFilter{Kind: store.LatchUser, Key: "10.0.0.1"}, nil},
	}
	for _, tc := range cases {
		got, err := s.ListLatches(ctx, tc.f, now)
		if err != nil {
			t.Fatalf("%s: ListLatches: %v", tc.name, err)
		}
		if ids(got) != ids(tc.want) {
			t.Errorf("%s: ListLatches = %s, want %s (newest LastSeen first)", tc.name, ids(got), ids(tc.want))
		}
	}
	got, err := s.ListLatches(ctx, store.LatchFilter{Key: "10.0.0.1"}, now)
	if err != nil || len(got) != 1 {
		t.Fatalf("ListLatches(10.0.0.1) = %v, %v", got, err)
	}
	if got[0].Count != 2 || !got[0].LastSeen.Equal(at(6)) || !got[0].FirstSeen.Equal(at(1)) {
		t.Errorf("listed latch = count %d, seen %v..%v; want 2, %v..%v",
			got[0].Count, got[0].FirstSeen, got[0].LastSeen, at(1), at(6))
	}
}

func ids(ls []store.Latch) string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.Kind + ":" + l.Key + "/" + l.ID
	}
	return "[" + strings.Join(out, " ") + "]"
}

func testLatchIDsUnique(t *testing.T, s store.Store) {
	const n, workers = 1000, 8
	base := baseTime()
	got := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				l, err := s.AddLatch(context.Background(), sampleLatch(store.LatchClient, fmt.Sprintf("10.9.%d.%d", i/256, i%256)), base)
				got[i], errs[i] = l.ID, err
			}
		})
	}
	wg.Wait()
	seen := make(map[string]int, n)
	for i, id := range got {
		if errs[i] != nil {
			t.Fatalf("AddLatch #%d: %v", i, errs[i])
		}
		checkLatchID(t, id)
		if j, dup := seen[id]; dup {
			t.Fatalf("latches %d and %d share id %s", j, i, id)
		}
		seen[id] = i
	}
}

func testAddLatchParallel(t *testing.T, s store.Store) {
	const workers = 20
	base := baseTime()
	got := make([]store.Latch, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			got[i], errs[i] = s.AddLatch(context.Background(), sampleLatch(store.LatchClient, "10.1.2.3"), base)
		})
	}
	wg.Wait()
	counts := make([]bool, workers+1)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("AddLatch #%d: %v", i, err)
		}
		if got[i].ID != got[0].ID {
			t.Fatalf("parallel AddLatch made latches %s and %s for one key", got[0].ID, got[i].ID)
		}
		if c := got[i].Count; c < 1 || c > workers || counts[c] {
			t.Fatalf("parallel AddLatch returned count %d twice or out of 1..%d", c, workers)
		}
		counts[got[i].Count] = true
	}
	if l := activeLatch(t, s, store.LatchClient, "10.1.2.3", base); l.Count != workers {
		t.Fatalf("ActiveLatch Count = %d, want %d", l.Count, workers)
	}
	list, err := s.ListLatches(context.Background(), store.LatchFilter{Key: "10.1.2.3"}, base)
	if err != nil || len(list) != 1 {
		t.Fatalf("ListLatches after parallel AddLatch = %d latches (%v), want 1", len(list), err)
	}
}
