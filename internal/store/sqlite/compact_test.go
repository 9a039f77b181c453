package sqlite

import (
	"fmt"
	"testing"
	"time"

	"mailwarden/internal/store"
)

// Triplets whose keys join to the same text must stay apart in the
// mirror, and a look-up must give back every field as stored.
func TestMirrorKeysStayApart(t *testing.T) {
	m := &mirror{h: newHasher(), m: make(map[tripletHash]compactTriplet)}
	base := time.Unix(1_800_000_000, 123456789)
	a := store.Triplet{Client: "10.0.0.0/24", Sender: "ab", Recipient: "c", FirstSeen: base, LastSeen: base.Add(time.Minute),
		Attempts: 2, Expires: base.Add(time.Hour)}
	b := store.Triplet{Client: "10.0.0.0/24a", Sender: "b", Recipient: "c", FirstSeen: base, LastSeen: base,
		PassedAt: base.Add(5 * time.Minute), Attempts: 3, Expires: base.Add(2 * time.Hour)}
	c := store.Triplet{Client: "10.0.0.0/24", Sender: "", Recipient: "abc", FirstSeen: base, LastSeen: base,
		Attempts: 1, Expires: base.Add(3 * time.Hour)}
	for _, tr := range []store.Triplet{a, b, c} {
		m.apply(mirrorOp{t: tr})
	}
	if n := m.len(); n != 3 {
		t.Fatalf("mirror holds %d triplets, want 3", n)
	}
	for _, want := range []store.Triplet{a, b, c} {
		got, ok := m.get(keyOf(want))
		if !ok {
			t.Fatalf("triplet %q/%q/%q not found", want.Client, want.Sender, want.Recipient)
		}
		if got.Client != want.Client || got.Sender != want.Sender || got.Recipient != want.Recipient ||
			!got.FirstSeen.Equal(want.FirstSeen) || !got.LastSeen.Equal(want.LastSeen) ||
			!got.PassedAt.Equal(want.PassedAt) || !got.Expires.Equal(want.Expires) ||
			got.Attempts != want.Attempts || got.Passed() != want.Passed() {
			t.Errorf("got %+v, want %+v", got, want)
		}
	}
	m.apply(mirrorOp{t: a, del: true})
	if _, ok := m.get(keyOf(a)); ok {
		t.Error("deleted triplet still found")
	}
	if _, ok := m.get(keyOf(b)); !ok {
		t.Error("deleting one triplet removed another")
	}
	m.expire(base.Add(2 * time.Hour))
	if _, ok := m.get(keyOf(b)); ok {
		t.Error("triplet expiring at now still found after expire")
	}
	if _, ok := m.get(keyOf(c)); !ok {
		t.Error("unexpired triplet dropped by expire")
	}
}

// A look-up is on every recipient's path: it must not allocate.
func TestMirrorGetDoesNotAllocate(t *testing.T) {
	m := &mirror{h: newHasher(), m: make(map[tripletHash]compactTriplet)}
	tr := store.Triplet{Client: "192.0.2.0/24", Sender: "someone@example.org", Recipient: "user@example.net",
		FirstSeen: time.Now(), LastSeen: time.Now(), Attempts: 1, Expires: time.Now().Add(time.Hour)}
	m.apply(mirrorOp{t: tr})
	k := keyOf(tr)
	if n := testing.AllocsPerRun(100, func() { m.get(k) }); n != 0 {
		t.Errorf("mirror.get allocates %.0f times, want 0", n)
	}
}

// A sweep lets look-ups and puts in as it goes; when it ends, every
// triplet expired before it started is gone and every live one, old or
// put meanwhile, is there.
func TestMirrorExpireWhileInUse(t *testing.T) {
	m := &mirror{h: newHasher(), m: make(map[tripletHash]compactTriplet), clients: make(map[string]clientPass)}
	now := time.Unix(1_800_000_000, 0)
	trip := func(i int, exp time.Time) store.Triplet {
		return store.Triplet{Client: fmt.Sprintf("10.%d.%d.0/24", i/256%256, i%256), Sender: fmt.Sprintf("s%d@example.org", i),
			Recipient: "r@example.net", FirstSeen: now.Add(-time.Hour), LastSeen: now.Add(-time.Hour), Attempts: 1, Expires: exp}
	}
	const n = 5 * expireYield
	for i := range n {
		exp := now.Add(time.Hour)
		if i%2 == 0 {
			exp = now.Add(-time.Second)
		}
		m.apply(mirrorOp{t: trip(i, exp)})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := n; i < n+2000; i++ {
			m.apply(mirrorOp{t: trip(i, now.Add(time.Hour))})
			m.get(keyOf(trip(i-n, now)))
		}
	}()
	m.expire(now)
	<-done
	for i := range n + 2000 {
		_, ok := m.get(keyOf(trip(i, now)))
		if want := i >= n || i%2 == 1; ok != want {
			t.Fatalf("triplet %d present %v after the sweep, want %v", i, ok, want)
		}
	}
}
