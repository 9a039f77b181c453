package storetest_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"mailwarden/internal/store"
	"mailwarden/internal/store/memory"
	"mailwarden/internal/store/storetest"
)

// TestFaultyForwards runs the whole suite through a Faulty with no
// faults: every method must reach the wrapped store unchanged, context
// and audit included.
func TestFaultyForwards(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return storetest.WithFaults(memory.New())
	})
}

var errBoom = errors.New("disk full")

func freezes(f *storetest.Faulty) error {
	_, err := f.ListFreezes(context.Background())
	return err
}

func TestFailOnUntilHeal(t *testing.T) {
	f := storetest.WithFaults(memory.New())
	if err := freezes(f); err != nil {
		t.Fatalf("before any fault: %v", err)
	}
	f.FailOn("ListFreezes", errBoom)
	for range 3 {
		if err := freezes(f); !errors.Is(err, errBoom) {
			t.Fatalf("with a fault: err = %v, want the injected error", err)
		}
	}
	// Other methods are not touched.
	if err := f.SetFreeze(context.Background(), store.Freeze{Scope: store.FreezeAll, Since: time.Now()}); err != nil {
		t.Fatalf("another method: %v", err)
	}
	f.Heal()
	if err := freezes(f); err != nil {
		t.Fatalf("after Heal: %v", err)
	}
	if n := f.Calls("ListFreezes"); n != 5 {
		t.Errorf("Calls(ListFreezes) = %d, want 5, failed calls included", n)
	}
	if n := f.Calls("SetFreeze"); n != 1 {
		t.Errorf("Calls(SetFreeze) = %d, want 1", n)
	}
}

func TestFailCallAndAfter(t *testing.T) {
	f := storetest.WithFaults(memory.New())
	f.FailCall("ListFreezes", 2, errBoom)
	var got []bool
	for range 4 {
		got = append(got, freezes(f) != nil)
	}
	if want := []bool{false, true, false, false}; !slices.Equal(got, want) {
		t.Errorf("FailCall(2): failures %v, want %v", got, want)
	}

	f.FailAfter("ListFreezes", 2, errBoom)
	got = nil
	for range 4 {
		got = append(got, freezes(f) != nil)
	}
	if want := []bool{false, false, true, true}; !slices.Equal(got, want) {
		t.Errorf("FailAfter(2): failures %v, want %v", got, want)
	}
}

func TestFailAll(t *testing.T) {
	f := storetest.WithFaults(memory.New())
	f.FailAll(errBoom)
	ctx := context.Background()
	if err := f.Ping(ctx); !errors.Is(err, errBoom) {
		t.Errorf("Ping: %v", err)
	}
	if _, err := f.AddLatch(ctx, store.Latch{Kind: store.LatchClient, Key: "10.1.2.3"}, time.Now()); !errors.Is(err, errBoom) {
		t.Errorf("AddLatch: %v", err)
	}
	f.Heal()
	if err := f.Ping(ctx); err != nil {
		t.Errorf("Ping after Heal: %v", err)
	}
}

// TestFaultKeepsAudit: a change failed by a fault never reached the
// store, so its audit stays unstored, as with a real failure.
func TestFaultKeepsAudit(t *testing.T) {
	f := storetest.WithFaults(memory.New())
	f.FailOn("SetFreeze", errBoom)
	a := &store.Audit{Event: store.Event{Time: time.Now(), Kind: store.EventAdmin, Reason: "freeze"}}
	ctx := store.WithAudit(context.Background(), a)
	if err := f.SetFreeze(ctx, store.Freeze{Scope: store.FreezeAll, Since: time.Now()}); !errors.Is(err, errBoom) {
		t.Fatalf("SetFreeze: %v", err)
	}
	if a.Stored() {
		t.Error("audit marked stored by a failed change")
	}
	if evs, err := f.QueryEvents(context.Background(), store.EventFilter{}); err != nil || len(evs) != 0 {
		t.Errorf("events after a failed change = %+v, %v; want none", evs, err)
	}
}

// TestDropAudits: the wrapped store makes the change but, seeing no
// audit, neither stores nor marks it.
func TestDropAudits(t *testing.T) {
	f := storetest.WithFaults(memory.New())
	f.DropAudits()
	a := &store.Audit{Event: store.Event{Time: time.Now(), Kind: store.EventAdmin, Reason: "freeze"}}
	ctx := store.WithAudit(context.Background(), a)
	if err := f.SetFreeze(ctx, store.Freeze{Scope: store.FreezeAll, Since: time.Now()}); err != nil {
		t.Fatalf("SetFreeze: %v", err)
	}
	if a.Stored() {
		t.Error("audit marked stored by a store that was not to see it")
	}
	if fs, err := f.ListFreezes(context.Background()); err != nil || len(fs) != 1 {
		t.Errorf("freezes = %+v, %v; want the change made", fs, err)
	}
	f.Heal()
	if err := f.LiftFreeze(ctx, store.FreezeAll, ""); err != nil {
		t.Fatalf("LiftFreeze: %v", err)
	}
	if !a.Stored() {
		t.Error("after Heal the audit was not stored")
	}
}

func TestPanicOn(t *testing.T) {
	f := storetest.WithFaults(memory.New())
	f.PanicOn("ListFreezes", "backend bug")
	func() {
		defer func() {
			if r := recover(); r != "backend bug" {
				t.Errorf("recovered %v, want the injected panic", r)
			}
		}()
		_ = freezes(f)
		t.Error("ListFreezes returned; want a panic")
	}()
	f.Heal()
	if err := freezes(f); err != nil {
		t.Errorf("after Heal: %v", err)
	}
}

func TestUnknownMethodPanics(t *testing.T) {
	f := storetest.WithFaults(memory.New())
	defer func() {
		if recover() == nil {
			t.Error("FailOn of a misspelt method did not panic")
		}
	}()
	f.FailOn("ListFreeze", errBoom)
}

func TestOnCall(t *testing.T) {
	f := storetest.WithFaults(memory.New())
	var mu sync.Mutex
	var seen []storetest.Call
	f.OnCall(func(c storetest.Call) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, c)
	})
	f.FailOn("Expire", errBoom)
	now := time.Now()
	ctx := context.Background()
	_ = f.Ping(ctx)
	_, _ = f.Expire(ctx, now)
	_, _, _ = f.TakeRate(ctx, "user:alice", 2, 5, time.Hour, now)
	f.OnCall(nil)
	_ = f.Ping(ctx)

	if len(seen) != 3 {
		t.Fatalf("OnCall saw %+v, want Ping, Expire and TakeRate", seen)
	}
	if seen[0].Method != "Ping" || len(seen[0].Args) != 0 || seen[0].Err() != nil {
		t.Errorf("Ping call = %+v", seen[0])
	}
	if c := seen[1]; c.Method != "Expire" || c.Args[0] != now || !errors.Is(c.Err(), errBoom) {
		t.Errorf("failed Expire call = %+v, want its now and the injected error", c)
	}
	if c := seen[2]; c.Method != "TakeRate" || c.Args[0] != "user:alice" || c.Args[1] != 2 ||
		c.Results[0] != true || c.Err() != nil {
		t.Errorf("TakeRate call = %+v, want its key, units and that it was allowed", c)
	}
	if f.Unwrap() == nil {
		t.Error("Unwrap returned nil")
	}
}
