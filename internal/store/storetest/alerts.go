package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"mailwarden/internal/store"
)

// alert returns a pending alert made at base that is kept a day.
func alert(kind, receiver string, base time.Time, items ...string) store.Alert {
	return store.Alert{Created: base, Kind: kind, Severity: "warning", Receiver: receiver,
		Subject: kind + " on mw.test", Text: "text of " + kind, Items: items, Expires: base.Add(24 * time.Hour)}
}

func addAlerts(t *testing.T, s store.Store, cursor int64, as ...store.Alert) []int64 {
	t.Helper()
	ids := ret(s.AddAlerts(context.Background(), as, cursor)).must(t, "AddAlerts")
	if len(ids) != len(as) {
		t.Fatalf("AddAlerts returned %d ids for %d alerts", len(ids), len(as))
	}
	return ids
}

// assertAlerts checks that the listing what returned want, in order.
func assertAlerts(t *testing.T, what string, got []store.Alert, want ...store.Alert) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s = %d alerts, want %d", what, len(got), len(want))
	}
	for i := range want {
		assertAlert(t, got[i], want[i])
	}
}

func assertAlert(t *testing.T, got, want store.Alert) {
	t.Helper()
	if got.ID != want.ID || got.Kind != want.Kind || got.Severity != want.Severity || got.Receiver != want.Receiver ||
		got.Digest != want.Digest || got.Subject != want.Subject || got.Text != want.Text ||
		!slices.Equal(got.Items, want.Items) || got.State != want.State || got.Attempts != want.Attempts ||
		got.Error != want.Error {
		t.Errorf("alert =\n %+v\nwant\n %+v", got, want)
	}
	assertTimes(t, "alert", []timePair{
		{"Created", got.Created, want.Created}, {"NextTry", got.NextTry, want.NextTry},
		{"SentAt", got.SentAt, want.SentAt}, {"Expires", got.Expires, want.Expires},
	})
}

// testAlertsOutbox walks alerts through the outbox: added pending with
// increasing IDs, listed, marked, and gone from the pending list once
// sent or failed.
func testAlertsOutbox(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := baseTime()
	if c := ret(s.AlertCursor(ctx)).must(t, "AlertCursor"); c != 0 {
		t.Fatalf("AlertCursor of an empty store = %d, want 0", c)
	}
	a := alert("latch", "ops", base, "10.1.2.3 latched", "line\nwith newline and ünïcode")
	b := alert("latch", "mail", base)
	b.Digest = true
	ids := addAlerts(t, s, 7, a, b)
	if ids[1] <= ids[0] || ids[0] <= 0 {
		t.Fatalf("AddAlerts ids = %v, want positive and increasing", ids)
	}
	a.ID, b.ID = ids[0], ids[1]
	a.State, b.State = store.AlertPending, store.AlertPending
	if c := ret(s.AlertCursor(ctx)).must(t, "AlertCursor"); c != 7 {
		t.Errorf("AlertCursor = %d, want 7", c)
	}
	assertAlerts(t, "PendingAlerts", ret(s.PendingAlerts(ctx, 0)).must(t, "PendingAlerts"), a, b)
	if p := ret(s.PendingAlerts(ctx, 1)).must(t, "PendingAlerts(1)"); len(p) != 1 || p[0].ID != a.ID {
		t.Errorf("PendingAlerts(1) = %v, want the oldest", p)
	}

	// A failed attempt keeps it pending with its next try; a delivery
	// takes it off the pending list.
	retry := base.Add(10 * time.Second)
	if err := s.MarkAlert(ctx, store.AlertUpdate{ID: a.ID, State: store.AlertPending, Attempts: 1,
		NextTry: retry, Error: "connection refused"}); err != nil {
		t.Fatalf("MarkAlert: %v", err)
	}
	a.Attempts, a.NextTry, a.Error = 1, retry, "connection refused"
	assertAlert(t, ret(s.PendingAlerts(ctx, 1)).must(t, "PendingAlerts")[0], a)
	sent := base.Add(20 * time.Second)
	if err := s.MarkAlert(ctx, store.AlertUpdate{ID: a.ID, State: store.AlertSent, Attempts: 2, SentAt: sent}); err != nil {
		t.Fatalf("MarkAlert: %v", err)
	}
	a.State, a.Attempts, a.NextTry, a.SentAt, a.Error = store.AlertSent, 2, time.Time{}, sent, ""
	if err := s.MarkAlert(ctx, store.AlertUpdate{ID: b.ID, State: store.AlertFailed, Attempts: 9, Error: "gone"}); err != nil {
		t.Fatalf("MarkAlert: %v", err)
	}
	b.State, b.Attempts, b.Error = store.AlertFailed, 9, "gone"
	if p := ret(s.PendingAlerts(ctx, 0)).must(t, "PendingAlerts"); len(p) != 0 {
		t.Errorf("PendingAlerts after delivery = %v, want none", p)
	}
	assertAlerts(t, "RecentAlerts", ret(s.RecentAlerts(ctx, 0)).must(t, "RecentAlerts"), b, a)
	if r := ret(s.RecentAlerts(ctx, 1)).must(t, "RecentAlerts(1)"); len(r) != 1 || r[0].ID != b.ID {
		t.Errorf("RecentAlerts(1) = %v, want the newest", r)
	}
	err := s.MarkAlert(ctx, store.AlertUpdate{ID: b.ID + 1000, State: store.AlertSent})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("MarkAlert of an unknown id: err = %v, want store.ErrNotFound", err)
	}
}

// testAlertCursor checks that the cursor only moves forward and moves
// without alerts too.
func testAlertCursor(t *testing.T, s store.Store) {
	ctx := context.Background()
	addAlerts(t, s, 40)
	addAlerts(t, s, 12, alert("virus", "ops", baseTime()))
	if c := ret(s.AlertCursor(ctx)).must(t, "AlertCursor"); c != 40 {
		t.Errorf("AlertCursor after a lower cursor = %d, want 40", c)
	}
	addAlerts(t, s, 41)
	if c := ret(s.AlertCursor(ctx)).must(t, "AlertCursor"); c != 41 {
		t.Errorf("AlertCursor = %d, want 41", c)
	}
}

// testAlertsExpire checks that Expire deletes alerts past their expiry,
// and counts them.
func testAlertsExpire(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := baseTime()
	short := alert("queue", "ops", base)
	short.Expires = base.Add(time.Hour)
	ids := addAlerts(t, s, 1, short, alert("queue", "ops", base))
	assertExpire(t, s, base.Add(2*time.Hour), 1, "Expire")
	r := ret(s.RecentAlerts(ctx, 0)).must(t, "RecentAlerts")
	if len(r) != 1 || r[0].ID != ids[1] {
		t.Errorf("RecentAlerts after Expire = %v, want only alert %d", r, ids[1])
	}
}

// testAlertsCanceledContext checks that a canceled context stores nothing.
func testAlertsCanceledContext(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.AddAlerts(ctx, []store.Alert{alert("latch", "ops", baseTime())}, 3); err == nil {
		t.Fatal("AddAlerts with a canceled context succeeded")
	}
	if r := ret(s.RecentAlerts(context.Background(), 0)).must(t, "RecentAlerts"); len(r) != 0 {
		t.Errorf("RecentAlerts after a canceled AddAlerts = %v, want none", r)
	}
}

// alertsBeforeClose stores a pending alert and returns the check that
// it is still pending, with the cursor, after a reopen.
func alertsBeforeClose(t *testing.T, s store.Store, base time.Time) func(t *testing.T, s store.Store) {
	t.Helper()
	a := alert("latch", "ops", base, "10.9.9.9")
	a.ID = addAlerts(t, s, 99, a)[0]
	a.State = store.AlertPending
	return func(t *testing.T, s store.Store) {
		t.Helper()
		ctx := context.Background()
		p := ret(s.PendingAlerts(ctx, 0)).must(t, "PendingAlerts after reopen")
		if len(p) != 1 {
			t.Fatalf("PendingAlerts after reopen = %v, want one", p)
		}
		assertAlert(t, p[0], a)
		if c := ret(s.AlertCursor(ctx)).must(t, "AlertCursor after reopen"); c != 99 {
			t.Errorf("AlertCursor after reopen = %d, want 99", c)
		}
	}
}
