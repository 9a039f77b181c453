package events

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"mailwarden/internal/policy"
	"mailwarden/internal/store"
)

type fakeEvents struct {
	mu  sync.Mutex
	evs []store.Event
}

func (f *fakeEvents) AppendEvents(_ context.Context, evs ...store.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.evs = append(f.evs, evs...)
	return nil
}

func (f *fakeEvents) QueryEvents(context.Context, store.EventFilter) ([]store.Event, error) {
	return nil, nil
}

func TestWhatBecomesAnEvent(t *testing.T) {
	now := time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)
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
			f := &fakeEvents{}
			NewRecorder(Options{Store: f, Retention: time.Hour, Greylist: c.gl}).Observe(req, c.v, 0)
			if c.want == "" {
				if len(f.evs) != 0 {
					t.Fatalf("recorded %+v, want nothing", f.evs)
				}
				return
			}
			if len(f.evs) != 1 {
				t.Fatalf("recorded %d events, want 1", len(f.evs))
			}
			e := f.evs[0]
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
	now := time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)
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
			c.v.Latched = "latched user alice (ref L1, rule x): why"
			f := &fakeEvents{}
			NewRecorder(Options{Store: f, Retention: time.Hour}).Observe(req, c.v, 0)
			if len(f.evs) != 2 {
				t.Fatalf("recorded %+v, want the %s and the latch", f.evs, c.first)
			}
			cause, l := f.evs[0], f.evs[1]
			if cause.Kind != c.first || cause.Reason != c.v.Reason {
				t.Errorf("first event = %+v, want kind %s with the verdict's reason", cause, c.first)
			}
			if l.Kind != store.EventLatch || l.Reason != c.v.Latched || l.Check != c.v.Check || l.Action != c.v.Action.String() ||
				l.Client != "10.1.2.3" || l.User != "alice" || !l.Time.Equal(now) || !l.Expires.Equal(now.Add(time.Hour)) {
				t.Errorf("latch event = %+v", l)
			}
		})
	}
}
