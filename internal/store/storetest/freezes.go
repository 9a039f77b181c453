package storetest

import (
	"cmp"
	"context"
	"slices"
	"testing"
	"time"

	"mailwarden/internal/store"
)

// listFreezes returns the freezes sorted by scope and value, since the
// order is not part of the contract.
func listFreezes(t *testing.T, s store.Store) []store.Freeze {
	t.Helper()
	fs, err := s.ListFreezes(context.Background())
	if err != nil {
		t.Fatalf("ListFreezes: %v", err)
	}
	slices.SortFunc(fs, func(a, b store.Freeze) int {
		return cmp.Or(cmp.Compare(a.Scope, b.Scope), cmp.Compare(a.Value, b.Value))
	})
	return fs
}

func assertFreezes(t *testing.T, got, want []store.Freeze) {
	t.Helper()
	slices.SortFunc(want, func(a, b store.Freeze) int {
		return cmp.Or(cmp.Compare(a.Scope, b.Scope), cmp.Compare(a.Value, b.Value))
	})
	if len(got) != len(want) {
		t.Fatalf("ListFreezes = %+v, want %+v", got, want)
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Scope != w.Scope || g.Value != w.Value || g.By != w.By || g.Note != w.Note || !g.Since.Equal(w.Since) {
			t.Errorf("freeze %d = %+v, want %+v", i, g, w)
		}
	}
}

func testFreezes(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := baseTime()
	if fs := listFreezes(t, s); len(fs) != 0 {
		t.Fatalf("ListFreezes on an empty store = %+v", fs)
	}
	all := store.Freeze{Scope: store.FreezeAll, Since: base, By: "admin", Note: "incident 42"}
	dom := store.Freeze{Scope: store.FreezeDomain, Value: "example.org", Since: base.Add(time.Minute), By: "root", Note: "spam run"}
	usr := store.Freeze{Scope: store.FreezeUser, Value: "example.org", Since: base.Add(2 * time.Minute), By: "root"}
	net := store.Freeze{Scope: store.FreezeNetwork, Value: "10.0.0.0/8", Since: base.Add(3 * time.Minute), By: "ops", Note: "lab"}
	for _, f := range []store.Freeze{all, dom, usr, net} {
		if err := s.SetFreeze(ctx, f); err != nil {
			t.Fatalf("SetFreeze(%s %q): %v", f.Scope, f.Value, err)
		}
	}
	// The same value under another scope is another freeze.
	assertFreezes(t, listFreezes(t, s), []store.Freeze{all, dom, usr, net})

	dom2 := dom
	dom2.Since, dom2.By, dom2.Note = base.Add(time.Hour), "admin", "still spamming"
	if err := s.SetFreeze(ctx, dom2); err != nil {
		t.Fatalf("SetFreeze replacing: %v", err)
	}
	assertFreezes(t, listFreezes(t, s), []store.Freeze{all, dom2, usr, net})

	if err := s.LiftFreeze(ctx, store.FreezeDomain, "example.org"); err != nil {
		t.Fatalf("LiftFreeze: %v", err)
	}
	assertFreezes(t, listFreezes(t, s), []store.Freeze{all, usr, net})
	assertNotFound(t, s.LiftFreeze(ctx, store.FreezeDomain, "example.org"), "LiftFreeze of a lifted freeze")
	assertNotFound(t, s.LiftFreeze(ctx, store.FreezeDomain, "example.net"), "LiftFreeze of an unknown value")
	assertNotFound(t, s.LiftFreeze(ctx, store.FreezeNetwork, "example.org"), "LiftFreeze under another scope")
	assertFreezes(t, listFreezes(t, s), []store.Freeze{all, usr, net})

	if err := s.LiftFreeze(ctx, store.FreezeAll, ""); err != nil {
		t.Fatalf("LiftFreeze(all): %v", err)
	}
	assertFreezes(t, listFreezes(t, s), []store.Freeze{usr, net})
}
