package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"mailwarden/internal/store"
)

// The audit tests check the contract of store.WithAudit: a method that
// makes an admin change stores the audit event the context carries with
// the change and marks it stored; a change that is refused stores
// neither. A crash cannot be simulated here, so what is checked is what
// a caller sees: the event is there exactly when the change is.

// auditTests lists the audit subtests, which Run runs with the rest.
func auditTests() []struct {
	name string
	fn   func(t *testing.T, s store.Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"ClearLatch", testAuditClearLatch},
		{"Freezes", testAuditFreezes},
		{"Users", testAuditUsers},
		{"Hosts", testAuditHosts},
		{"Greylist", testAuditGreylist},
		{"OnlyOnce", testAuditOnlyOnce},
		{"CanceledContext", testAuditCanceled},
	}
}

// withAudit returns a context carrying a fresh admin event whose Reason
// is reason, and the audit to check afterwards.
func withAudit(reason string, base time.Time) (context.Context, *store.Audit) {
	a := &store.Audit{Event: store.Event{Time: base, Kind: store.EventAdmin, Check: "test", User: "root",
		Client: "10.1.2.3", Reason: reason, Expires: base.Add(24 * time.Hour)}}
	return store.WithAudit(context.Background(), a), a
}

// wantAudit checks that a was stored by the change just made: marked,
// and in the log exactly once among the events stored so far.
func wantAudit(t *testing.T, s store.Store, what string, a *store.Audit) {
	t.Helper()
	if !a.Stored() {
		t.Errorf("%s: audit not marked stored", what)
	}
	n := 0
	for _, ev := range queryEvents(t, s, store.EventFilter{}) {
		if ev.Reason == a.Event.Reason {
			n++
			assertEvent(t, ev, a.Event)
		}
	}
	if n != 1 {
		t.Errorf("%s: audit event %q stored %d times, want once", what, a.Event.Reason, n)
	}
}

// wantNoAudit checks that a refused change stored no audit and left it
// unmarked, so the caller knows to report the change as not made.
func wantNoAudit(t *testing.T, s store.Store, what string, a *store.Audit) {
	t.Helper()
	if a.Stored() {
		t.Errorf("%s: audit marked stored by a change that was not made", what)
	}
	for _, ev := range queryEvents(t, s, store.EventFilter{}) {
		if ev.Reason == a.Event.Reason {
			t.Errorf("%s: audit event stored by a change that was not made: %+v", what, ev)
		}
	}
}

func testAuditClearLatch(t *testing.T, s store.Store) {
	base := baseTime()
	l := addLatch(t, s, sampleLatch(store.LatchClient, "10.1.2.3"), base)

	ctx, a := withAudit("clear unknown", base)
	_, err := s.ClearLatch(ctx, "ZZZZZZZZ", "root", "n", base)
	assertNotFound(t, err, "ClearLatch of an unknown id")
	wantNoAudit(t, s, "ClearLatch of an unknown id", a)

	ctx, a = withAudit("clear", base)
	if _, err := s.ClearLatch(ctx, l.ID, "root", "reimaged", base.Add(time.Minute)); err != nil {
		t.Fatalf("ClearLatch: %v", err)
	}
	wantAudit(t, s, "ClearLatch", a)
	if got := getLatch(t, s, l.ID); got.ClearedBy != "root" {
		t.Errorf("latch after an audited clear = %+v, want cleared by root", got)
	}

	ctx, a = withAudit("clear again", base)
	if _, err := s.ClearLatch(ctx, l.ID, "root", "again", base.Add(2*time.Minute)); !errors.Is(err, store.ErrNotActive) {
		t.Fatalf("ClearLatch of a cleared latch: err = %v, want store.ErrNotActive", err)
	}
	wantNoAudit(t, s, "ClearLatch of a cleared latch", a)
}

func testAuditFreezes(t *testing.T, s store.Store) {
	base := baseTime()
	f := store.Freeze{Scope: store.FreezeDomain, Value: "example.org", Since: base, By: "root"}
	ctx, a := withAudit("freeze", base)
	if err := s.SetFreeze(ctx, f); err != nil {
		t.Fatalf("SetFreeze: %v", err)
	}
	wantAudit(t, s, "SetFreeze", a)
	assertFreezes(t, listFreezes(t, s), []store.Freeze{f})

	ctx, a = withAudit("lift unknown", base)
	assertNotFound(t, s.LiftFreeze(ctx, store.FreezeDomain, "example.net"), "LiftFreeze of an unknown freeze")
	wantNoAudit(t, s, "LiftFreeze of an unknown freeze", a)

	ctx, a = withAudit("lift", base)
	if err := s.LiftFreeze(ctx, f.Scope, f.Value); err != nil {
		t.Fatalf("LiftFreeze: %v", err)
	}
	wantAudit(t, s, "LiftFreeze", a)
	assertFreezes(t, listFreezes(t, s), nil)
}

func testAuditUsers(t *testing.T, s store.Store) {
	base := baseTime()
	alice := store.User{Name: "alice", Role: store.RoleAdmin, Hash: hashA, Created: base, Changed: base}
	ctx, a := withAudit("add", base)
	if err := s.AddUser(ctx, alice); err != nil {
		t.Fatalf("AddUser: %v", err)
	}
	wantAudit(t, s, "AddUser", a)

	ctx, a = withAudit("add again", base)
	if err := s.AddUser(ctx, alice); !errors.Is(err, store.ErrExists) {
		t.Fatalf("AddUser of a taken name: err = %v, want store.ErrExists", err)
	}
	wantNoAudit(t, s, "AddUser of a taken name", a)

	upd := store.User{Name: "alice", Role: store.RoleViewer, Hash: hashB, Changed: base.Add(time.Minute)}
	ctx, a = withAudit("update", base)
	if err := s.UpdateUser(ctx, upd); err != nil {
		t.Fatalf("UpdateUser: %v", err)
	}
	wantAudit(t, s, "UpdateUser", a)
	if u := getUser(t, s, "alice"); u.Role != store.RoleViewer {
		t.Errorf("user after an audited update = %+v, want a viewer", u)
	}

	for _, c := range []struct {
		name string
		fn   func(ctx context.Context) error
	}{
		{"UpdateUser of a missing user", func(ctx context.Context) error {
			return s.UpdateUser(ctx, store.User{Name: "bob", Role: store.RoleAdmin, Hash: hashA, Changed: base})
		}},
		{"DeleteUser of a missing user", func(ctx context.Context) error { return s.DeleteUser(ctx, "bob") }},
	} {
		ctx, a := withAudit(c.name, base)
		assertNotFound(t, c.fn(ctx), c.name)
		wantNoAudit(t, s, c.name, a)
	}

	ctx, a = withAudit("delete", base)
	if err := s.DeleteUser(ctx, "alice"); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	wantAudit(t, s, "DeleteUser", a)
}

func testAuditHosts(t *testing.T, s store.Store) {
	base := baseTime()
	ctx, a := withAudit("note", base)
	if err := s.AddHostNote(ctx, store.HostNote{Client: "10.1.2.3", By: "root", Text: "t", Time: base}); err != nil {
		t.Fatalf("AddHostNote: %v", err)
	}
	wantAudit(t, s, "AddHostNote", a)

	ctx, a = withAudit("disinfect", base)
	if err := s.AddDisinfection(ctx, store.Disinfection{Client: "10.1.2.3", By: "root", Note: "n", Time: base}); err != nil {
		t.Fatalf("AddDisinfection: %v", err)
	}
	wantAudit(t, s, "AddDisinfection", a)
	if ds, err := s.Disinfections(context.Background(), "10.1.2.3"); err != nil || len(ds) != 1 {
		t.Errorf("Disinfections after an audited add = %+v, %v; want one", ds, err)
	}
}

func testAuditGreylist(t *testing.T, s store.Store) {
	base := baseTime()
	tr := triplet("192.0.2.0/24", "a@example.org", "b@example.net", base)
	tr.PassedAt = base
	ctx, a := withAudit("allow", base)
	if err := s.PutTriplet(ctx, tr); err != nil {
		t.Fatalf("PutTriplet: %v", err)
	}
	wantAudit(t, s, "PutTriplet", a)
	assertTriplet(t, mustGet(t, s, tr, base), tr)
}

// testAuditOnlyOnce: one audit covers one change; a second change made
// with the same context stores no second copy.
func testAuditOnlyOnce(t *testing.T, s store.Store) {
	base := baseTime()
	ctx, a := withAudit("once", base)
	for _, v := range []string{"example.org", "example.net"} {
		if err := s.SetFreeze(ctx, store.Freeze{Scope: store.FreezeDomain, Value: v, Since: base, By: "root"}); err != nil {
			t.Fatalf("SetFreeze(%s): %v", v, err)
		}
	}
	wantAudit(t, s, "two SetFreeze calls with one audit", a)
}

// testAuditCanceled: a change refused because its context is done
// stores no audit either.
func testAuditCanceled(t *testing.T, s store.Store) {
	base := baseTime()
	ctx, a := withAudit("canceled", base)
	ctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.SetFreeze(ctx, store.Freeze{Scope: store.FreezeAll, Since: base, By: "root"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("SetFreeze with a canceled context: err = %v, want context.Canceled", err)
	}
	wantNoAudit(t, s, "SetFreeze with a canceled context", a)
	assertFreezes(t, listFreezes(t, s), nil)
}
