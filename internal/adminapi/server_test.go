package adminapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/adminapi/adminapitest"
	"mailwarden/internal/config"
	"mailwarden/internal/events"
	"mailwarden/internal/store"
)

var t0 = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)

// start serves o on a fresh socket and returns a client for it.
func start(t *testing.T, o Options) (*Client, string) {
	t.Helper()
	if o.Now == nil {
		o.Now = func() time.Time { return t0 }
	}
	srv := NewServer(o)
	path := filepath.Join(t.TempDir(), "run", "admin.sock")
	ln, err := srv.Listen(path, 0o660, "", "")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	c := Dial(path)
	t.Cleanup(func() {
		c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return c, path
}

func me(t *testing.T) string {
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}

func addLatch(t *testing.T, m *adminapitest.Memory, kind, key string, at time.Time) store.Latch {
	t.Helper()
	l, err := m.AddLatch(context.Background(), store.Latch{Kind: kind, Key: key, Rule: "sender_domain",
		Reason: "envelope sender domain evil.example not allowed", Site: "lincoln", Evidence: "x@evil.example"}, at)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLatchListShowClear(t *testing.T) {
	mem := adminapitest.New()
	c, _ := start(t, Options{Backend: mem, Events: events.NewLog(events.LogOptions{Store: mem, Now: func() time.Time { return t0 },
		Settings: func() config.Events { return config.Events{Retention: config.Duration(48 * time.Hour)} }})})
	ctx := context.Background()
	host := addLatch(t, mem, store.LatchClient, "10.1.2.3", t0.Add(-2*time.Hour))
	usr := addLatch(t, mem, store.LatchUser, "bob", t0.Add(-time.Hour))

	ls, err := c.Latches(ctx, store.LatchFilter{Active: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 2 || ls[0].ID != usr.ID || ls[1].ID != host.ID || ls[0].Status != "active" {
		t.Fatalf("active latches, newest first: got %+v", ls)
	}
	if ls, _ := c.Latches(ctx, store.LatchFilter{Kind: store.LatchClient}); len(ls) != 1 || ls[0].Key != "10.1.2.3" {
		t.Errorf("kind=client: got %+v", ls)
	}

	got, err := c.Latch(ctx, host.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Key != "10.1.2.3" || got.Site != "lincoln" || got.Evidence != "x@evil.example" || !got.FirstSeen.Equal(host.FirstSeen) {
		t.Errorf("show: got %+v", got)
	}

	cleared, err := c.ClearLatch(ctx, host.ID, "  reimaged by tech, ticket 4411 ")
	if err != nil {
		t.Fatal(err)
	}
	if cleared.Status != "cleared" || cleared.ClearedBy != me(t) || cleared.ClearNote != "reimaged by tech, ticket 4411" || !cleared.ClearedAt.Equal(t0) {
		t.Errorf("cleared latch: got %+v, want cleared by %q", cleared, me(t))
	}
	if ls, _ := c.Latches(ctx, store.LatchFilter{Active: true}); len(ls) != 1 || ls[0].ID != usr.ID {
		t.Errorf("active after clear: got %+v", ls)
	}
	if ls, _ := c.Latches(ctx, store.LatchFilter{}); len(ls) != 2 {
		t.Errorf("all latches after clear: got %d", len(ls))
	}

	// The audit trail says who, from where, why and what, and is kept
	// for the audit retention, not the events' 48h.
	evs := mem.Events()
	if len(evs) != 1 {
		t.Fatalf("admin events: got %+v", evs)
	}
	ev := evs[0]
	if ev.Kind != store.EventAdmin || ev.Check != "latch clear" || ev.User != me(t) || ev.Client != "10.1.2.3" ||
		!strings.Contains(ev.Reason, host.ID) || !strings.Contains(ev.Reason, "ticket 4411") ||
		ev.Action != "admin socket" || !ev.Time.Equal(t0) || !ev.Expires.Equal(t0.Add(config.Default().Events.AuditRetention.D())) {
		t.Errorf("admin event: got %+v", ev)
	}

	// Clearing again, an unknown id, and a clear without a note.
	_, err = c.ClearLatch(ctx, host.ID, "again")
	if !errors.Is(err, store.ErrNotActive) || !strings.Contains(err.Error(), "cleared") || !strings.Contains(err.Error(), me(t)) {
		t.Errorf("second clear: got %v", err)
	}
	_, err = c.Latch(ctx, "LNOPE")
	if !errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), `"LNOPE"`) {
		t.Errorf("unknown id: got %v", err)
	}
	_, err = c.ClearLatch(ctx, "LNOPE", "why")
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("clear unknown id: got %v", err)
	}
	_, err = c.ClearLatch(ctx, usr.ID, " ")
	if !BadInput(err) || !strings.Contains(err.Error(), "note") {
		t.Errorf("clear without note: got %v", err)
	}
	if _, err := c.ClearLatch(ctx, usr.ID, "line one\nline two"); !BadInput(err) {
		t.Errorf("note with a newline: got %v", err)
	}
	if l, _ := mem.GetLatch(ctx, usr.ID); !l.Active(t0) {
		t.Error("a refused clear cleared the latch")
	}
	if n := len(mem.Events()); n != 1 {
		t.Errorf("refused requests recorded admin events: %d events", n)
	}
	if _, err := c.Latches(ctx, store.LatchFilter{Kind: "host"}); !BadInput(err) {
		t.Errorf("bad kind: got %v", err)
	}
}

func TestExpiredLatchCannotBeCleared(t *testing.T) {
	mem := adminapitest.New()
	c, _ := start(t, Options{Backend: mem})
	l, _ := mem.AddLatch(context.Background(), store.Latch{Kind: store.LatchClient, Key: "10.9.9.9",
		Expires: t0.Add(-time.Minute)}, t0.Add(-time.Hour))
	got, err := c.Latch(context.Background(), l.ID)
	if err != nil || got.Status != "expired" {
		t.Errorf("show expired latch: %+v, %v", got, err)
	}
	if _, err := c.ClearLatch(context.Background(), l.ID, "done"); !errors.Is(err, store.ErrNotActive) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("clear expired latch: got %v", err)
	}
}

func TestFreezeEveryScope(t *testing.T) {
	mem := adminapitest.New()
	c, _ := start(t, Options{Backend: mem})
	ctx := context.Background()
	cases := []struct{ scope, value, stored string }{
		{store.FreezeAll, "", ""},
		{store.FreezeDomain, "Example.ORG.", "example.org"},
		{store.FreezeUser, "alice", "alice"},
		{store.FreezeNetwork, "10.1.2.3/16", "10.1.0.0/16"},
		{store.FreezeNetwork, "2001:db8::1", "2001:db8::1/128"},
	}
	for _, tc := range cases {
		f, err := c.Freeze(ctx, tc.scope, tc.value, "spam run")
		if err != nil {
			t.Fatalf("freeze %s %q: %v", tc.scope, tc.value, err)
		}
		if f.Scope != tc.scope || f.Value != tc.stored || f.By != me(t) || f.Note != "spam run" || !f.Since.Equal(t0) {
			t.Errorf("freeze %s %q: got %+v", tc.scope, tc.value, f)
		}
	}
	fs, err := c.Freezes(ctx)
	if err != nil || len(fs) != len(cases) {
		t.Fatalf("freezes: %+v, %v", fs, err)
	}
	for _, tc := range cases {
		f, err := c.Unfreeze(ctx, tc.scope, tc.value, "cleaned up")
		if err != nil {
			t.Fatalf("unfreeze %s %q: %v", tc.scope, tc.value, err)
		}
		if f.Value != tc.stored || f.By != me(t) {
			t.Errorf("unfreeze %s %q: got %+v", tc.scope, tc.value, f)
		}
	}
	if fs, _ := c.Freezes(ctx); len(fs) != 0 {
		t.Errorf("freezes left after lifting all: %+v", fs)
	}
	if _, err := c.Unfreeze(ctx, store.FreezeDomain, "example.org", ""); !errors.Is(err, store.ErrNotFound) ||
		!strings.Contains(err.Error(), "no freeze on sender domain example.org") {
		t.Errorf("lifting a freeze not in force: got %v", err)
	}

	evs := mem.Events()
	if len(evs) != 2*len(cases) {
		t.Fatalf("want one admin event per change, got %d", len(evs))
	}
	if e := evs[1]; e.Check != "freeze on" || e.User != me(t) || e.Kind != store.EventAdmin ||
		!strings.Contains(e.Reason, "sender domain example.org") || !strings.Contains(e.Reason, "spam run") {
		t.Errorf("freeze on event: %+v", e)
	}
	if e := evs[len(cases)]; e.Check != "freeze off" || !strings.Contains(e.Reason, "all outbound mail") || !strings.Contains(e.Reason, "cleaned up") {
		t.Errorf("freeze off event: %+v", e)
	}
}

func TestFreezeBadInput(t *testing.T) {
	mem := adminapitest.New()
	c, _ := start(t, Options{Backend: mem})
	ctx := context.Background()
	bad := []struct{ scope, value, want string }{
		{store.FreezeDomain, "", "needs a domain"},
		{store.FreezeDomain, "exa mple.org", "not a valid domain"},
		{store.FreezeDomain, "spam@example.org", "without a local part"},
		{store.FreezeDomain, "-bad.example", "not a valid domain"},
		{store.FreezeDomain, "bücher.example", "xn--"},
		{store.FreezeNetwork, "10.1.0.0/33", "not a CIDR"},
		{store.FreezeNetwork, "lincoln", "not a CIDR"},
		{store.FreezeNetwork, "", "needs a CIDR"},
		{store.FreezeUser, "", "needs a user"},
		{store.FreezeUser, "al ice", "not a SASL user"},
		{store.FreezeAll, "x", "takes no value"},
		{"site", "lincoln", "unknown freeze scope"},
	}
	for _, tc := range bad {
		_, err := c.Freeze(ctx, tc.scope, tc.value, "")
		if !BadInput(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("freeze %s %q: got %v, want a 400 containing %q", tc.scope, tc.value, err, tc.want)
		}
		if _, err := c.Unfreeze(ctx, tc.scope, tc.value, ""); !BadInput(err) {
			t.Errorf("unfreeze %s %q: got %v, want a 400", tc.scope, tc.value, err)
		}
	}
	if fs, _ := mem.ListFreezes(ctx); len(fs) != 0 {
		t.Errorf("bad input stored freezes: %+v", fs)
	}
	if n := len(mem.Events()); n != 0 {
		t.Errorf("bad input recorded %d admin events", n)
	}
}

func TestEventFilters(t *testing.T) {
	mem := adminapitest.New()
	c, _ := start(t, Options{Backend: mem})
	ctx := context.Background()
	var evs []store.Event
	for i := range 60 {
		e := store.Event{Time: t0.Add(time.Duration(i-60) * time.Minute), Kind: store.EventReject,
			Check: "sender", Client: "10.0.0.1", User: "carol"}
		if i%10 == 0 {
			e.Kind, e.Client, e.User = store.EventRateTrip, "10.0.0.2", "dave"
		}
		evs = append(evs, e)
	}
	mem.AppendEvents(ctx, evs...)

	got, err := c.Events(ctx, store.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != DefaultEventLimit || !got[0].Time.Equal(t0.Add(-time.Minute)) {
		t.Errorf("default: %d events, first %v", len(got), got[0].Time)
	}
	got, _ = c.Events(ctx, store.EventFilter{Since: t0.Add(-10 * time.Minute)})
	if len(got) != 10 {
		t.Errorf("since: got %d events, want 10", len(got))
	}
	got, _ = c.Events(ctx, store.EventFilter{Since: t0.Add(-20 * time.Minute), Until: t0.Add(-10 * time.Minute)})
	if len(got) != 10 || !got[0].Time.Equal(t0.Add(-11*time.Minute)) {
		t.Errorf("since+until: got %d events", len(got))
	}
	got, _ = c.Events(ctx, store.EventFilter{Kind: store.EventRateTrip, Limit: 3})
	if len(got) != 3 || got[0].Kind != store.EventRateTrip || got[0].User != "dave" {
		t.Errorf("kind+limit: got %+v", got)
	}
	if got, _ = c.Events(ctx, store.EventFilter{Client: "10.0.0.2", Limit: 100}); len(got) != 6 {
		t.Errorf("client: got %d events, want 6", len(got))
	}
	if got, _ = c.Events(ctx, store.EventFilter{Client: "::ffff:10.0.0.2", Limit: 100}); len(got) != 6 {
		t.Errorf("IPv4-mapped client: got %d events, want 6", len(got))
	}
	if got, _ = c.Events(ctx, store.EventFilter{User: "carol", Limit: 100}); len(got) != 54 {
		t.Errorf("user: got %d events, want 54", len(got))
	}
	for _, f := range []store.EventFilter{{Kind: "rejected"}, {Client: "10.0.0"}, {Limit: -1}, {Limit: MaxEventLimit + 1}} {
		if _, err := c.Events(ctx, f); !BadInput(err) {
			t.Errorf("filter %+v: got %v, want a 400", f, err)
		}
	}
}

func TestPanicBecomes500(t *testing.T) {
	// Listing freezes panics, as a bug in a backend might.
	mem := adminapitest.New()
	mem.PanicOn("ListFreezes", "backend bug")
	c, _ := start(t, Options{Backend: mem})
	var ae *APIError
	if _, err := c.Freezes(context.Background()); !errors.As(err, &ae) || ae.Status != http.StatusInternalServerError {
		t.Errorf("panicking handler: got %v", err)
	}
	if _, err := c.Latches(context.Background(), store.LatchFilter{}); err != nil {
		t.Errorf("server after a panic: %v", err)
	}
}

func TestUnrecordedChangeIsReported(t *testing.T) {
	// A backend that leaves the audit to the event log, which then
	// cannot write it.
	mem := adminapitest.New()
	mem.DropAudits()
	mem.FailOn("AppendEvents", errors.New("disk full"))
	c, _ := start(t, Options{Backend: mem})
	_, err := c.Freeze(context.Background(), store.FreezeAll, "", "")
	if err == nil || !strings.Contains(err.Error(), "in force, but recording the admin event") {
		t.Errorf("freeze with a failing event log: got %v", err)
	}
}

func TestRequestBodyChecks(t *testing.T) {
	mem := adminapitest.New()
	c, _ := start(t, Options{Backend: mem})
	l := addLatch(t, mem, store.LatchClient, "10.1.2.3", t0)
	_, err := c.ClearLatch(context.Background(), l.ID, strings.Repeat("x", 70<<10))
	if !BadInput(err) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized body: got %v", err)
	}
	var out Latch
	err = c.do(context.Background(), http.MethodPost, "/v1/latches/"+l.ID+"/clear", nil,
		map[string]string{"note": "ok", "by": "mallory"}, &out)
	if !BadInput(err) || !strings.Contains(err.Error(), `unknown field "by"`) {
		t.Errorf("a client-sent name: got %v", err)
	}
	err = c.do(context.Background(), http.MethodGet, "/v2/latches", nil, nil, &out)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusNotFound || !strings.Contains(err.Error(), "no such endpoint") {
		t.Errorf("unknown endpoint: got %v", err)
	}
}

// TestWrongMethodIs405: an endpoint asked with another method answers
// 405 with Allow; an unknown path stays 404.
func TestWrongMethodIs405(t *testing.T) {
	srv := NewServer(Options{Backend: adminapitest.New()})
	for _, tc := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/v1/scan", 405, "POST"},
		{"DELETE", "/v1/latches", 405, "GET, HEAD"},
		{"GET", "/v1/nothing", 404, ""},
	} {
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.status || rec.Header().Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d Allow %q, want %d Allow %q", tc.method, tc.path, rec.Code, rec.Header().Get("Allow"), tc.status, tc.allow)
		}
	}
}
