package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/events"
	"mailwarden/internal/store"
	"mailwarden/internal/store/memory"
	"mailwarden/internal/store/storetest"
)

// httpGet returns the status and body of GET url.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func storeEvents(t *testing.T, st store.Store) []store.Event {
	t.Helper()
	evs, err := st.QueryEvents(context.Background(), store.EventFilter{Kind: store.EventStore, Tail: true})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestStoreHealthReadyStatusMetrics: while the write probe fails, the
// daemon is not ready, says why, shows the store down in status and in
// mailwarden_store_up; once it passes again it is ready and the outage
// is recorded as one down and one recovery event.
func TestStoreHealthReadyStatusMetrics(t *testing.T) {
	cfg := testConfig(t)
	st := storetest.WithFaults(memory.New())
	d := startWith(t, cfg, Options{Stderr: io.Discard, Stdout: io.Discard, Store: st})
	ctx := context.Background()
	base := "http://" + cfg.Listen.HTTP
	if code, body := httpGet(t, base+"/-/ready"); code != http.StatusOK {
		t.Fatalf("ready with a healthy store: %d %s", code, body)
	}
	if _, body := httpGet(t, base+"/metrics"); !strings.Contains(body, "\nmailwarden_store_up 1\n") {
		t.Errorf("metrics with a healthy store lack mailwarden_store_up 1")
	}

	st.FailOn("Probe", errors.New("database or disk is full"))
	d.health.check(ctx)
	code, body := httpGet(t, base+"/-/ready")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "store cannot write") ||
		!strings.Contains(body, "database or disk is full") {
		t.Errorf("ready with the probe failing: %d %q, want 503 naming the store and the error", code, body)
	}
	// The monitor's goroutine probes again each second while down.
	if _, body := httpGet(t, base+"/metrics"); !strings.Contains(body, "\nmailwarden_store_up 0\n") ||
		strings.Contains(body, "\nmailwarden_store_probe_failures_total 0\n") {
		t.Errorf("metrics with the probe failing lack mailwarden_store_up 0 and a probe failure:\n%s",
			grepLines(body, "mailwarden_store_"))
	}
	status, err := d.adminSrv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s := status.Store; s == nil || s.Up || s.Backend != "sqlite" || !strings.Contains(s.LastError, "disk is full") {
		t.Errorf("status store while down = %+v", s)
	}
	if evs := storeEvents(t, st); len(evs) != 0 {
		t.Errorf("events recorded while the store cannot write: %+v", evs)
	}

	st.Heal()
	d.health.check(ctx)
	if code, body := httpGet(t, base+"/-/ready"); code != http.StatusOK {
		t.Errorf("ready after the store healed: %d %s", code, body)
	}
	if _, body := httpGet(t, base+"/metrics"); !strings.Contains(body, "\nmailwarden_store_up 1\n") {
		t.Errorf("metrics after the store healed lack mailwarden_store_up 1")
	}
	if status, err = d.adminSrv.Status(ctx); err != nil || status.Store == nil || !status.Store.Up {
		t.Errorf("status store after healing = %+v, %v", status.Store, err)
	}
	// The monitor's own goroutine may probe too; the outage is still
	// recorded once.
	d.health.check(ctx)
	evs := storeEvents(t, st)
	if len(evs) != 2 || !strings.HasPrefix(evs[0].Reason, "store could not write from ") ||
		!strings.Contains(evs[0].Reason, "database or disk is full") ||
		!strings.HasPrefix(evs[1].Reason, "store writes again after ") || evs[0].Time.After(evs[1].Time) {
		t.Fatalf("store events after one outage = %+v, want a down and a recovery event", evs)
	}
	t.Logf("events: %q, %q", evs[0].Reason, evs[1].Reason)
}

// TestStoreHealthCountsLostWrites: the outage's events say how many
// writes failed while the store could not write, by kind, and events
// that cannot be recorded at recovery are recorded at the next good
// probe.
func TestStoreHealthCountsLostWrites(t *testing.T) {
	st := storetest.WithFaults(memory.New())
	ev := events.NewLog(events.LogOptions{Store: st})
	h := newStoreHealth(st, ev, slog.New(slog.DiscardHandler), "sqlite")
	failed := map[string]uint64{"triplet": 0, "event": 0}
	h.failures = func() map[string]uint64 {
		return map[string]uint64{"triplet": failed["triplet"], "event": failed["event"]}
	}
	clock := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	h.now = func() time.Time { return clock }
	ctx := context.Background()
	h.check(ctx)

	// Writes fail before the probe notices, and while it does; the
	// outage began when the monitor first saw a failed write.
	failed["triplet"] = 3
	if !h.due() {
		t.Error("a new write failure does not make a probe due")
	}
	clock = clock.Add(5 * time.Second)
	st.FailOn("Probe", errors.New("read-only file system"))
	h.check(ctx)
	if h.ready() == nil {
		t.Fatal("ready while the probe fails")
	}
	failed["triplet"], failed["event"] = 10, 2
	clock = clock.Add(85 * time.Second)
	if s := h.status(); s.Up || s.LostWrites != 12 || s.WriteFailures["event"] != 2 {
		t.Errorf("status while down = %+v", s)
	}

	st.Heal()
	st.FailOn("AppendEvents", errors.New("database is locked"))
	h.check(ctx)
	if err := h.ready(); err != nil {
		t.Fatalf("not ready after the probe passed: %v", err)
	}
	if evs := storeEvents(t, st); len(evs) != 0 {
		t.Fatalf("events stored past a failing AppendEvents: %+v", evs)
	}
	st.Heal()
	h.check(ctx)
	evs := storeEvents(t, st)
	if len(evs) != 2 {
		t.Fatalf("store events = %+v, want the outage's two", evs)
	}
	want := "store could not write from 2026-12-01T10:00:00Z to 2026-12-01T10:01:30Z (1m30s): read-only file system; " +
		"12 writes lost (event=2 triplet=10)"
	if evs[0].Reason != want || !evs[0].Time.Equal(clock.Add(-90*time.Second)) {
		t.Errorf("down event = %q at %v\nwant %q", evs[0].Reason, evs[0].Time, want)
	}
	if want := "store writes again after 1m30s; 12 writes lost (event=2 triplet=10) while it could not"; evs[1].Reason != want {
		t.Errorf("recovery event = %q\nwant %q", evs[1].Reason, want)
	}
	h.check(ctx)
	if n := len(storeEvents(t, st)); n != 2 {
		t.Errorf("%d store events after another good probe, want still 2", n)
	}
}

// grepLines returns the lines of s holding sub.
func grepLines(s, sub string) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}
