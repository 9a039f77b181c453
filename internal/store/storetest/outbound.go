package storetest

import (
	"context"
	"testing"
	"time"

	"mailwarden/internal/store"
)

// testOutboundCanceledContext is testCanceledContext for the latch,
// freeze, rate and event methods.
func testOutboundCanceledContext(t *testing.T, s store.Store) {
	base := baseTime()
	l := addLatch(t, s, sampleLatch(store.LatchClient, "10.1.2.3"), base)
	f := store.Freeze{Scope: store.FreezeUser, Value: "alice", Since: base, By: "admin"}
	if err := s.SetFreeze(context.Background(), f); err != nil {
		t.Fatalf("SetFreeze: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	calls := []canceledCall{
		{"AddLatch", func() error {
			_, err := s.AddLatch(ctx, sampleLatch(store.LatchClient, "10.1.2.3"), base)
			return err
		}},
		{"ActiveLatch", func() error {
			_, err := s.ActiveLatch(ctx, store.LatchClient, "10.1.2.3", base)
			return err
		}},
		{"GetLatch", func() error {
			_, err := s.GetLatch(ctx, l.ID)
			return err
		}},
		{"ListLatches", func() error {
			_, err := s.ListLatches(ctx, store.LatchFilter{}, base)
			return err
		}},
		{"ClearLatch", func() error {
			_, err := s.ClearLatch(ctx, l.ID, "admin", "", base)
			return err
		}},
		{"SetFreeze", func() error { return s.SetFreeze(ctx, f) }},
		{"LiftFreeze", func() error { return s.LiftFreeze(ctx, f.Scope, f.Value) }},
		{"ListFreezes", func() error {
			_, err := s.ListFreezes(ctx)
			return err
		}},
		{"TakeRate", func() error {
			_, _, err := s.TakeRate(ctx, "user:alice", 1, 5, time.Hour, base)
			return err
		}},
		{"AppendEvents", func() error {
			return s.AppendEvents(ctx, store.Event{Time: base, Kind: store.EventReject, Expires: base.Add(time.Hour)})
		}},
		{"QueryEvents", func() error {
			_, err := s.QueryEvents(ctx, store.EventFilter{})
			return err
		}},
	}
	assertCanceled(t, calls)
	// The store still works with a live context.
	getLatch(t, s, l.ID)
	listFreezes(t, s)
}

// outboundBeforeClose stores latches, a freeze, events and rate state in
// s and returns a check, to run on the reopened store, that all of them
// survived.
func outboundBeforeClose(t *testing.T, s store.Store, base time.Time) func(t *testing.T, s store.Store) {
	ctx := context.Background()
	addLatch(t, s, sampleLatch(store.LatchClient, "10.1.2.3"), base)
	active := addLatch(t, s, sampleLatch(store.LatchClient, "10.1.2.3"), base.Add(time.Minute))
	active, err := s.AddLatchRefusal(ctx, active.ID, base.Add(2*time.Minute))
	if err != nil {
		t.Fatalf("AddLatchRefusal: %v", err)
	}
	user := sampleLatch(store.LatchUser, "alice")
	user.Expires = base.Add(24 * time.Hour)
	cleared := addLatch(t, s, user, base)
	cleared, err = s.ClearLatch(ctx, cleared.ID, "admin", "password changed", base.Add(time.Hour))
	if err != nil {
		t.Fatalf("ClearLatch: %v", err)
	}
	freeze := store.Freeze{Scope: store.FreezeDomain, Value: "example.org", Since: base, By: "admin", Note: "spam run"}
	if err := s.SetFreeze(ctx, freeze); err != nil {
		t.Fatalf("SetFreeze: %v", err)
	}
	ev := store.Event{Time: base, Kind: store.EventLatch, Check: "sender", Action: "reject", Client: "10.1.2.3",
		Recipients: []string{"a@example.net", "b@example.net"}, Reason: "before", Expires: base.Add(time.Hour)}
	appendEvents(t, s, ev)
	const key, limit, period = "user:alice", 5, time.Hour
	for range limit {
		mustAllow(t, s, key, 1, limit, period, base)
	}

	return func(t *testing.T, s store.Store) {
		assertLatch(t, getLatch(t, s, active.ID), active)
		assertLatch(t, activeLatch(t, s, store.LatchClient, "10.1.2.3", base.Add(time.Hour)), active)
		assertLatch(t, getLatch(t, s, cleared.ID), cleared)
		_, err := s.ActiveLatch(ctx, store.LatchUser, "alice", base.Add(time.Hour))
		assertNotFound(t, err, "ActiveLatch of a latch cleared before the reopen")
		assertFreezes(t, listFreezes(t, s), []store.Freeze{freeze})

		evs := queryEvents(t, s, store.EventFilter{})
		if len(evs) != 1 {
			t.Fatalf("events after reopen = [%s], want [before]", reasons(evs))
		}
		assertEvent(t, evs[0], ev)
		// The limiter remembers the burst already taken.
		mustRefuse(t, s, key, 1, limit, period, base, period/limit)

		// Ids keep increasing across the reopen.
		after := ev
		after.Reason, after.Time = "after", base.Add(time.Second)
		appendEvents(t, s, after)
		evs = queryEvents(t, s, store.EventFilter{})
		if len(evs) != 2 || evs[0].Reason != "after" || evs[0].ID <= evs[1].ID {
			t.Errorf("events after reopen and append = %+v; want the new one first with a larger id", evs)
		}
	}
}
