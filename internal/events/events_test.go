package events

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"mailwarden/internal/config"
	"mailwarden/internal/policy"
	"mailwarden/internal/store"
	"mailwarden/internal/store/sqlite"
)

// newLog returns a log over a fresh SQLite store, with the settings
// *set points at (changed by the test as a reload would).
func newLog(t *testing.T, set *config.Events) (*Log, *sqlite.Store) {
	t.Helper()
	st, err := sqlite.Open(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return NewLog(LogOptions{Store: st, Settings: func() config.Events { return *set }}), st
}

func all(t *testing.T, l *Log) []store.Event {
	t.Helper()
	evs, err := l.After(context.Background(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestWhatBecomesAnEvent(t *testing.T) {
	now := time.Now().Truncate(time.Millisecond)
	req := &policy.Request{Time: now, Frontend: "milter", Stage: policy.StageRcpt,
		ClientIP: netip.MustParseAddr("10.1.2.3"), Site: "lincoln", SASLUser: "alice",
		Sender: "a@school.test", Recipient: "b@example.org", QueueID: "Q1"}
	for _, c := range []struct {
		name string
		v    policy.Verdict
		gl   bool
		want string
	}{
		{"accept", policy.Verdict{Action: policy.Continue}, false, ""},
		{"reject", policy.Verdict{Action: policy.Reject, Check: "sender"}, false, store.EventReject},
		{"latch", policy.Verdict{Action: policy.Reject, Check: "sender", Event: store.EventLatch}, false, store.EventLatch},
		{"rate", policy.Verdict{Action: policy.Tempfail, Check: "ratelimit", Event: store.EventRateTrip}, false, store.EventRateTrip},
		{"internal error in the greylist", policy.TempfailInternal("greylist", "store down"), false, store.EventTempfail},
		{"greylist deferral, not recorded", policy.Verdict{Action: policy.Tempfail, Check: "greylist", Event: store.EventGreylist}, false, ""},
		{"greylist deferral, recorded", policy.Verdict{Action: policy.Tempfail, Check: "greylist", Event: store.EventGreylist}, true, store.EventGreylist},
	} {
		t.Run(c.name, func(t *testing.T) {
			set := config.Events{Retention: config.Duration(time.Hour), RecordGreylist: c.gl}
			l, _ := newLog(t, &set)
			l.Observe(req, c.v, 0)
			evs := all(t, l)
			if c.want == "" {
				if len(evs) != 0 {
					t.Fatalf("recorded %+v, want nothing", evs)
				}
				return
			}
			if len(evs) != 1 {
				t.Fatalf("recorded %d events, want 1", len(evs))
			}
			e := evs[0]
			if e.Kind != c.want || e.Client != "10.1.2.3" || e.Site != "lincoln" || e.User != "alice" ||
				e.Sender != "a@school.test" || len(e.Recipients) != 1 || e.Recipients[0] != "b@example.org" ||
				e.QueueID != "Q1" || !e.Time.Equal(now) || !e.Expires.Equal(now.Add(time.Hour)) || e.Check != c.v.Check {
				t.Errorf("event = %+v", e)
			}
		})
	}
}

// TestLatchBesideItsCause: a verdict that latched is recorded as what the
// message did and, beside it, as the latch it set, so `events --kind
// rate_trip` lists every trip and `events --kind latch` every latch.
func TestLatchBesideItsCause(t *testing.T) {
	now := time.Now().Truncate(time.Millisecond)
	req := &policy.Request{Time: now, Stage: policy.StageRcpt, ClientIP: netip.MustParseAddr("10.1.2.3"),
		SASLUser: "alice", Sender: "a@school.test", Recipient: "b@example.org"}
	for _, c := range []struct {
		name  string
		v     policy.Verdict
		first string
	}{
		{"rate trip", policy.Verdict{Action: policy.Tempfail, Check: "ratelimit", Event: store.EventRateTrip,
			Reason: "ratelimit: user alice over 3 messages per 1h0m0s; latched user alice (ref L1)"}, store.EventRateTrip},
		{"forgery", policy.Verdict{Action: policy.Reject, Check: "sender", Event: store.EventReject,
			Reason: "sender: rule sender_domain: ...; latched user alice (ref L1)"}, store.EventReject},
	} {
		t.Run(c.name, func(t *testing.T) {
			set := config.Events{Retention: config.Duration(time.Hour)}
			l, _ := newLog(t, &set)
			c.v.Latched = "latched user alice (ref L1, rule x): why"
			l.Observe(req, c.v, 0)
			evs := all(t, l)
			if len(evs) != 2 {
				t.Fatalf("recorded %+v, want the %s and the latch", evs, c.first)
			}
			cause, latch := evs[0], evs[1]
			if cause.Kind != c.first || cause.Reason != c.v.Reason {
				t.Errorf("first event = %+v, want kind %s with the verdict's reason", cause, c.first)
			}
			if latch.Kind != store.EventLatch || latch.Reason != c.v.Latched || latch.Check != c.v.Check || latch.Action != c.v.Action.String() ||
				latch.Client != "10.1.2.3" || latch.User != "alice" || !latch.Time.Equal(now) || !latch.Expires.Equal(now.Add(time.Hour)) {
				t.Errorf("latch event = %+v", latch)
			}
		})
	}
}

// TestRecordUsesLiveRetention: the retention in force when an event is
// recorded sets its expiry, so a reload applies to the next event.
func TestRecordUsesLiveRetention(t *testing.T) {
	set := config.Events{Retention: config.Duration(time.Hour)}
	l, _ := newLog(t, &set)
	ctx := context.Background()
	at := time.Now().Truncate(time.Millisecond)
	if err := l.Record(ctx, store.Event{Time: at, Kind: store.EventMailbox, Reason: "first"}); err != nil {
		t.Fatal(err)
	}
	set.Retention = config.Duration(48 * time.Hour)
	if err := l.Record(ctx, store.Event{Time: at, Kind: store.EventMailbox, Reason: "second"}); err != nil {
		t.Fatal(err)
	}
	evs := all(t, l)
	if len(evs) != 2 || !evs[0].Expires.Equal(at.Add(time.Hour)) || !evs[1].Expires.Equal(at.Add(48*time.Hour)) {
		t.Errorf("expiries %v", evs)
	}
	if err := l.Record(ctx, store.Event{Kind: "mailbx"}); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("unknown kind: %v, want ErrUnknownKind", err)
	}
	if n := len(all(t, l)); n != 2 {
		t.Errorf("%d events after a refused one, want 2", n)
	}
}

// TestAuditCommitsWithTheChange: an admin change and its record are
// stored together; a change that fails records nothing; an action that
// changes nothing in the store is still recorded.
func TestAuditCommitsWithTheChange(t *testing.T) {
	set := config.Events{Retention: config.Duration(time.Hour)}
	l, st := newLog(t, &set)
	ctx := context.Background()
	now := time.Now()
	lt, err := st.AddLatch(ctx, store.Latch{Kind: store.LatchClient, Key: "10.1.2.3", Rule: "r", Reason: "x"}, now)
	if err != nil {
		t.Fatal(err)
	}
	clear := func(id string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := st.ClearLatch(ctx, id, "root", "reimaged", time.Now())
			return err
		}
	}
	a := Admin{Who: "root", Action: "latch clear", Client: "10.1.2.3", Reason: "reimaged"}
	if err := l.Audit(ctx, a, clear(lt.ID)); err != nil {
		t.Fatal(err)
	}
	if err := l.Audit(ctx, a, clear("L404")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("clearing an unknown latch: %v", err)
	}
	if err := l.Audit(ctx, Admin{Who: "web:alice", Action: "web login", Client: "192.0.2.1", Reason: "logged in"}, nil); err != nil {
		t.Fatal(err)
	}
	evs := all(t, l)
	if len(evs) != 2 || evs[0].Check != "latch clear" || evs[0].User != "root" || evs[0].Kind != store.EventAdmin ||
		evs[0].Reason != "reimaged" || evs[1].Check != "web login" {
		t.Errorf("admin events %+v, want the clear (once) and the login", evs)
	}
}

// TestAuditEntriesOutliveEvents: admin entries, recorded by Audit or
// Record, are kept for events.audit_retention, and an ordinary expiry
// pass that removes the other events leaves them; each says where it
// came from.
func TestAuditEntriesOutliveEvents(t *testing.T) {
	set := config.Events{Retention: config.Duration(time.Hour), AuditRetention: config.Duration(365 * 24 * time.Hour)}
	l, st := newLog(t, &set)
	now := time.Now().Truncate(time.Millisecond)
	l.o.Now = func() time.Time { return now }
	ctx := WithFrom(context.Background(), "admin socket")
	if err := l.Audit(ctx, Admin{Who: "root", Action: "freeze on", Reason: "spam run"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := l.Record(ctx, store.Event{Time: now, Kind: store.EventAdmin, Check: "scan"},
		store.Event{Time: now, Kind: store.EventTrap, Client: "10.1.2.3"}); err != nil {
		t.Fatal(err)
	}
	if err := l.Audit(ctx, Admin{Who: "web:alice", Action: "web login", From: "dashboard 192.0.2.1"}, nil); err != nil {
		t.Fatal(err)
	}
	// The store expires by the real clock: two hours on, the trap event
	// is gone and every admin entry is left.
	if _, err := st.Expire(context.Background(), now.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	evs := all(t, l)
	if len(evs) != 3 {
		t.Fatalf("after expiry: %+v, want the three admin entries", evs)
	}
	for _, ev := range evs {
		if ev.Kind != store.EventAdmin || !ev.Expires.Equal(now.Add(365*24*time.Hour)) {
			t.Errorf("%+v: want an admin entry kept a year", ev)
		}
	}
	if evs[0].Action != "admin socket" || evs[2].Action != "dashboard 192.0.2.1" {
		t.Errorf("from: %q, %q", evs[0].Action, evs[2].Action)
	}
	// An audit retention shorter than the events' is never used.
	set.AuditRetention = config.Duration(time.Minute)
	if err := l.Audit(ctx, Admin{Who: "root", Action: "freeze off"}, nil); err != nil {
		t.Fatal(err)
	}
	if evs := all(t, l); !evs[3].Expires.Equal(now.Add(time.Hour)) {
		t.Errorf("short audit retention: expires %v, want the events' hour", evs[3].Expires)
	}
}
