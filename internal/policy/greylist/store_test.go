package greylist

import (
	"context"
	"testing"
	"time"

	"mailwarden/internal/store"
	"mailwarden/internal/store/memory"
	"mailwarden/internal/store/storetest"
)

// The tests keep greylisting's state in a memory store, which passes the
// same conformance suite as SQLite, wrapped so that a test can make it
// fail. The helpers below read it at the zero time, before every
// expiry, so an assertion sees what is stored whatever the test clock.

func newStore() *storetest.Faulty { return storetest.WithFaults(memory.New()) }

// stored returns the stored triplet, expired or not.
func stored(t *testing.T, st store.Greylist, client, sender, recipient string) (store.Triplet, bool) {
	t.Helper()
	tr, err := st.GetTriplet(context.Background(), client, sender, recipient, time.Time{})
	return tr, err == nil
}

// allTriplets returns every stored triplet, expired or not.
func allTriplets(t *testing.T, st store.Greylist) []store.Triplet {
	t.Helper()
	ts, err := st.ListTriplets(context.Background(), store.TripletFilter{}, time.Time{})
	if err != nil {
		t.Fatalf("ListTriplets: %v", err)
	}
	return ts
}

// allPasses returns every stored pass count, expired or not.
func allPasses(t *testing.T, st store.Greylist) []store.ClientPass {
	t.Helper()
	cs, err := st.ListClientPasses(context.Background(), time.Time{}, 0, 0)
	if err != nil {
		t.Fatalf("ListClientPasses: %v", err)
	}
	return cs
}
