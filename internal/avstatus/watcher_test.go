package avstatus

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"mailwarden/internal/clamd"
	"mailwarden/internal/config"
	"mailwarden/internal/events"
	"mailwarden/internal/store"
	"mailwarden/internal/store/memory"
	"mailwarden/internal/store/storetest"
)

// dbTime is the date in clamd's answer
// "ClamAV 1.0.7/27463/Wed Nov 18 08:24:02 2026".
var dbTime = time.Date(2026, 11, 18, 8, 24, 2, 0, time.UTC)

const addrA, addrB = "tcp:127.0.0.1:3310", "unix:/run/clamav/clamd.ctl"

// fakeClamd reports whatever the test last set.
type fakeClamd struct {
	mu      sync.Mutex
	servers []clamd.ServerStatus
}

func (f *fakeClamd) Status() []clamd.ServerStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]clamd.ServerStatus(nil), f.servers...)
}

func (f *fakeClamd) set(s ...clamd.ServerStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.servers = s
}

// eventStore keeps the watcher's events in a memory store, wrapped so
// that a test can make appending fail. Its retention clock stands at the
// zero time: the test clock runs days ahead, and every event stays.
type eventStore struct {
	*storetest.Faulty
	mem *memory.Store
}

func newEvents() eventStore {
	mem := memory.NewWith(memory.Options{Now: func() time.Time { return time.Time{} }})
	return eventStore{storetest.WithFaults(mem), mem}
}

// all returns the stored events, oldest first.
func (e eventStore) all() []store.Event {
	evs, err := e.mem.QueryEvents(context.Background(), store.EventFilter{Tail: true})
	if err != nil {
		panic(err)
	}
	return evs
}

func (e eventStore) reasons() []string {
	var out []string
	for _, ev := range e.all() {
		out = append(out, ev.Reason)
	}
	return out
}

// clock is a fake clock the test moves.
type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func (c *clock) status(addr string, up bool, ver int, db time.Time) clamd.ServerStatus {
	s := clamd.ServerStatus{Addr: addr, Up: up, Checked: c.t.Add(-5 * time.Second),
		Version: clamd.Version{Engine: "ClamAV 1.0.7", DBVersion: ver, DBTime: db, Server: addr}}
	if !up {
		s.LastError = "dial tcp 127.0.0.1:3310: connect: connection refused"
	}
	return s
}

func setup(maxAge time.Duration) (*Watcher, *fakeClamd, eventStore, *clock) {
	clk := &clock{t: dbTime.Add(76 * time.Hour)} // 3d4h after the signatures
	fc, fe := &fakeClamd{}, newEvents()
	log := events.NewLog(events.LogOptions{Store: fe, Now: clk.now,
		Settings: func() config.Events { return config.Events{Retention: config.Duration(48 * time.Hour)} }})
	w := New(Options{Clamd: fc, MaxAge: maxAge, Events: log, Now: clk.now})
	return w, fc, fe, clk
}

func TestStaleSignaturesGiveOneEventADay(t *testing.T) {
	w, fc, fe, clk := setup(72 * time.Hour)
	ctx := context.Background()
	fc.set(clk.status(addrA, true, 27463, dbTime))
	w.Check(ctx)
	want := "clamd at tcp:127.0.0.1:3310 signatures are 3d4h old (version 27463 of 2026-11-18); the limit is 72h"
	if got := fe.reasons(); len(got) != 1 || got[0] != want {
		t.Fatalf("first check: events %q, want [%q]", got, want)
	}
	if e := fe.all()[0]; e.Kind != store.EventSignatures || e.Check != "clamd" || !e.Time.Equal(clk.t) ||
		!e.Expires.Equal(clk.t.Add(48*time.Hour)) {
		t.Errorf("event: %+v", e)
	}

	// A day of polling every minute with the same stale signatures.
	for range 24*60 - 1 {
		clk.add(time.Minute)
		fc.set(clk.status(addrA, true, 27463, dbTime))
		w.Check(ctx)
	}
	if n := len(fe.reasons()); n != 1 {
		t.Fatalf("a stale day gave %d events, want 1", n)
	}
	clk.add(time.Minute)
	w.Check(ctx)
	if got := fe.reasons(); len(got) != 2 || !strings.Contains(got[1], "signatures are 4d4h old") {
		t.Fatalf("after 24h: events %q", got)
	}

	// New signatures that are still stale are reported at once.
	fc.set(clk.status(addrA, true, 27464, dbTime.Add(24*time.Hour)))
	w.Check(ctx)
	if got := fe.reasons(); len(got) != 3 || !strings.Contains(got[2], "(version 27464 of 2026-11-19)") {
		t.Fatalf("new but stale version: events %q", got)
	}

	// Fresh signatures: no event; stale again later: one event.
	fc.set(clk.status(addrA, true, 27470, clk.t.Add(-time.Hour)))
	w.Check(ctx)
	clk.add(70 * time.Hour)
	w.Check(ctx)
	if n := len(fe.reasons()); n != 3 {
		t.Fatalf("fresh signatures gave an event: %q", fe.reasons())
	}
	clk.add(2 * time.Hour)
	w.Check(ctx)
	if got := fe.reasons(); len(got) != 4 || !strings.Contains(got[3], "signatures are 3d1h old (version 27470") {
		t.Fatalf("stale again: events %q", got)
	}
}

func TestEachServerJudgedAlone(t *testing.T) {
	w, fc, fe, clk := setup(72 * time.Hour)
	fc.set(clk.status(addrA, true, 27463, dbTime), clk.status(addrB, true, 27470, clk.t.Add(-2*time.Hour)))
	w.Check(context.Background())
	if got := fe.reasons(); len(got) != 1 || !strings.HasPrefix(got[0], "clamd at "+addrA+" ") {
		t.Errorf("one stale server of two: events %q", got)
	}
}

func TestNoLimitOrUnknownDateIsNeverStale(t *testing.T) {
	w, fc, fe, clk := setup(0)
	fc.set(clk.status(addrA, true, 27463, dbTime))
	w.Check(context.Background())
	if got := fe.reasons(); len(got) != 0 {
		t.Errorf("signature_max_age 0: events %q", got)
	}
	w.Update(fc, 72*time.Hour)
	fc.set(clk.status(addrA, true, 0, time.Time{}))
	w.Check(context.Background())
	if got := fe.reasons(); len(got) != 0 {
		t.Errorf("unknown signature date: events %q", got)
	}
	// A reload that sets a limit applies at the next check.
	fc.set(clk.status(addrA, true, 27463, dbTime))
	w.Check(context.Background())
	if got := fe.reasons(); len(got) != 1 {
		t.Errorf("after Update to 72h: events %q", got)
	}
}

func TestDownAndBack(t *testing.T) {
	w, fc, fe, clk := setup(72 * time.Hour)
	ctx := context.Background()
	fresh := clk.t.Add(-time.Hour)
	// Not yet checked by the client: nothing to say about it.
	unchecked := clamd.ServerStatus{Addr: addrB}
	fc.set(clk.status(addrA, true, 27470, fresh), unchecked)
	w.Check(ctx)
	if got := fe.reasons(); len(got) != 0 {
		t.Fatalf("healthy start: events %q", got)
	}
	fc.set(clk.status(addrA, false, 27470, fresh), unchecked)
	for range 5 {
		clk.add(time.Minute)
		w.Check(ctx)
	}
	want := "clamd at tcp:127.0.0.1:3310 is down: dial tcp 127.0.0.1:3310: connect: connection refused"
	if got := fe.reasons(); len(got) != 1 || got[0] != want {
		t.Fatalf("down for 5 checks: events %q, want [%q]", got, want)
	}
	fc.set(clk.status(addrA, true, 27471, fresh), unchecked)
	w.Check(ctx)
	w.Check(ctx)
	want = "clamd at tcp:127.0.0.1:3310 is up again (ClamAV 1.0.7, version 27471 of 2026-11-21)"
	if got := fe.reasons(); len(got) != 2 || got[1] != want {
		t.Fatalf("back up: events %q, want second %q", got, want)
	}
}

func TestDownAtStart(t *testing.T) {
	w, fc, fe, clk := setup(72 * time.Hour)
	fc.set(clk.status(addrA, false, 0, time.Time{}))
	w.Check(context.Background())
	if got := fe.reasons(); len(got) != 1 || !strings.Contains(got[0], "is down: dial tcp") {
		t.Errorf("down at start: events %q", got)
	}
}

func TestFailedRecordIsRetried(t *testing.T) {
	w, fc, fe, clk := setup(72 * time.Hour)
	ctx := context.Background()
	fe.FailOn("AppendEvents", errors.New("disk full"))
	fc.set(clk.status(addrA, true, 27463, dbTime))
	w.Check(ctx)
	fe.Heal()
	w.Check(ctx)
	w.Check(ctx)
	if got := fe.reasons(); len(got) != 1 || !strings.Contains(got[0], "signatures are 3d4h old") {
		t.Errorf("after a failed append: events %q, want exactly one", got)
	}
}

func TestReloadKeepsMemory(t *testing.T) {
	w, fc, fe, clk := setup(72 * time.Hour)
	ctx := context.Background()
	fc.set(clk.status(addrA, true, 27463, dbTime))
	w.Check(ctx)
	// A reload with a new client for the same server says nothing new.
	fc2 := &fakeClamd{}
	fc2.set(clk.status(addrA, true, 27463, dbTime))
	w.Update(fc2, 48*time.Hour)
	w.Check(ctx)
	if n := len(fe.reasons()); n != 1 {
		t.Errorf("reload repeated the event: %q", fe.reasons())
	}
	// Antivirus switched off: nothing is watched and nothing breaks.
	w.Update(nil, 72*time.Hour)
	w.Check(ctx)
	if n := len(fe.reasons()); n != 1 {
		t.Errorf("with no clamd: %q", fe.reasons())
	}
}

func TestRunChecks(t *testing.T) {
	clk := &clock{t: dbTime.Add(76 * time.Hour)}
	fc, fe := &fakeClamd{}, newEvents()
	fc.set(clk.status(addrA, true, 27463, dbTime))
	w := New(Options{Clamd: fc, MaxAge: 72 * time.Hour, Now: clk.now,
		Events:     events.NewLog(events.LogOptions{Store: fe, Now: clk.now}),
		FirstCheck: time.Millisecond, Interval: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(fe.reasons()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if got := fe.reasons(); len(got) != 1 {
		t.Errorf("Run: events %q, want one", got)
	}
}

// notifyingClamd is a fakeClamd that announces changes, as the clamd
// client's breaker does.
type notifyingClamd struct {
	fakeClamd
	ch    chan struct{}
	taken int // calls of Changed
}

func (n *notifyingClamd) Changed() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.taken++
	return n.ch
}

// watched reports whether anyone waits for a change yet.
func (n *notifyingClamd) watched() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.taken > 0
}

// change sets the servers and announces it.
func (n *notifyingClamd) change(s ...clamd.ServerStatus) {
	n.set(s...)
	n.mu.Lock()
	defer n.mu.Unlock()
	close(n.ch)
	n.ch = make(chan struct{})
}

// TestRunRecordsShortOutage is issue 21 item 7: a clamd that the
// client's breaker takes down and brings back between two of the
// watcher's periodic looks gets one down event and one up event, as
// soon as the client announces each change.
func TestRunRecordsShortOutage(t *testing.T) {
	clk := &clock{t: dbTime.Add(time.Hour)}
	nc, fe := &notifyingClamd{ch: make(chan struct{})}, newEvents()
	nc.set(clk.status(addrA, true, 27463, dbTime))
	w := New(Options{Clamd: nc, MaxAge: 72 * time.Hour, Now: clk.now,
		Events:     events.NewLog(events.LogOptions{Store: fe, Now: clk.now}),
		FirstCheck: time.Hour, Interval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitEvents := func(n int) []string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for len(fe.reasons()) < n && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		return fe.reasons()
	}

	for deadline := time.Now().Add(5 * time.Second); !nc.watched(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Run does not wait for the clamd client's changes")
		}
	}
	down := clk.status(addrA, false, 27463, dbTime)
	down.LastError = "no answer within 5s: read tcp 127.0.0.1:3310: i/o timeout"
	nc.change(down)
	if got := waitEvents(1); len(got) != 1 || got[0] != "clamd at "+addrA+" is down: "+down.LastError {
		t.Fatalf("after the client announced the server down: events %q", got)
	}
	nc.change(clk.status(addrA, true, 27463, dbTime))
	got := waitEvents(2)
	if len(got) != 2 || !strings.HasPrefix(got[1], "clamd at "+addrA+" is up again (ClamAV 1.0.7") {
		t.Fatalf("after the client announced the server up: events %q", got)
	}
	// A change announced without a change of state records nothing.
	nc.change(clk.status(addrA, true, 27463, dbTime))
	time.Sleep(20 * time.Millisecond)
	if got := fe.reasons(); len(got) != 2 {
		t.Errorf("events %q, want the two", got)
	}
}

func TestMetrics(t *testing.T) {
	w, fc, _, clk := setup(72 * time.Hour)
	fc.set(clk.status(addrA, true, 27463, dbTime), clk.status(addrB, false, 0, time.Time{}),
		clk.status(addrA, true, 27463, dbTime))
	reg := prometheus.NewRegistry()
	reg.MustRegister(w)
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}).
		ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	if rec.Code != 200 {
		t.Fatalf("scrape: %d\n%s", rec.Code, body)
	}
	for _, want := range []string{
		`mailwarden_clamd_up{server="tcp:127.0.0.1:3310"} 1`,
		`mailwarden_clamd_up{server="unix:/run/clamav/clamd.ctl"} 0`,
		`mailwarden_clamd_signature_version{server="tcp:127.0.0.1:3310"} 27463`,
		`mailwarden_clamd_signature_timestamp_seconds{server="tcp:127.0.0.1:3310"} 1.794990242e+09`,
		`mailwarden_clamd_signature_age_seconds{server="tcp:127.0.0.1:3310"} 273600`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("scrape lacks %q:\n%s", want, body)
		}
	}
	// A server that never said its version has no signature metrics
	// (an age of 0 would look fresh).
	if strings.Contains(body, `signature_age_seconds{server="unix:`) || strings.Contains(body, `signature_version{server="unix:`) {
		t.Errorf("signature metrics for a server without a version:\n%s", body)
	}
}

func TestFormat(t *testing.T) {
	for d, want := range map[time.Duration]string{
		45 * time.Second:              "45s",
		3*time.Minute + 5*time.Second: "3m5s",
		2*time.Hour + 5*time.Minute:   "2h5m",
		76 * time.Hour:                "3d4h",
		-76 * time.Hour:               "-3d4h",
		9 * 24 * time.Hour:            "9d",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
	for d, want := range map[time.Duration]string{
		72 * time.Hour: "72h", 90 * time.Minute: "1h30m", time.Minute: "1m", 30 * time.Second: "30s",
	} {
		if got := FormatLimit(d); got != want {
			t.Errorf("FormatLimit(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestSignatureVersion(t *testing.T) {
	st := func(v int, up bool) clamd.ServerStatus {
		return clamd.ServerStatus{Addr: "a", Up: up, Version: clamd.Version{DBVersion: v}}
	}
	for _, tc := range []struct {
		name string
		sts  []clamd.ServerStatus
		want int
	}{
		{"none", nil, 0},
		{"not yet checked", []clamd.ServerStatus{st(0, true)}, 0},
		{"one", []clamd.ServerStatus{st(27463, true)}, 27463},
		{"one down keeps its version", []clamd.ServerStatus{st(27463, false)}, 27463},
		{"two agree, one unknown", []clamd.ServerStatus{st(27463, true), st(0, true), st(27463, true)}, 27463},
		{"two disagree", []clamd.ServerStatus{st(27463, true), st(27464, true)}, 0},
	} {
		if got := SignatureVersion(tc.sts); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}
