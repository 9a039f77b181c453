package daemon

import (
	"slices"
	"testing"

	"mailwarden/internal/policy"
	"mailwarden/internal/series"
	"mailwarden/internal/store"
)

func TestChartKind(t *testing.T) {
	milter := func(st policy.Stage) *policy.Request { return &policy.Request{Frontend: "milter", Stage: st} }
	pol := func(st policy.Stage) *policy.Request { return &policy.Request{Frontend: "policy", Stage: st} }
	for _, c := range []struct {
		name string
		req  *policy.Request
		v    policy.Verdict
		want []string
	}{
		{"milter message passes", milter(policy.StageEOM), policy.Verdict{Action: policy.Continue}, []string{series.Accepted}},
		{"milter recipient passes: not yet a message", milter(policy.StageRcpt), policy.Verdict{Action: policy.Continue}, nil},
		{"policy recipient passes", pol(policy.StageRcpt), policy.Verdict{Action: policy.Accept}, []string{series.Accepted}},
		{"greylisted", pol(policy.StageRcpt), policy.Verdict{Action: policy.Tempfail, Check: "greylist", Event: store.EventGreylist}, []string{series.Greylisted}},
		{"other tempfail", pol(policy.StageRcpt), policy.Verdict{Action: policy.Tempfail, Check: "freeze"}, nil},
		{"forgery latches", milter(policy.StageMail), policy.Verdict{Action: policy.Reject, Check: "sender", Event: store.EventReject, Latched: "latched client 10.1.2.3"}, []string{series.Rejected, series.Latch}},
		{"rate trip latches", pol(policy.StageRcpt), policy.Verdict{Action: policy.Tempfail, Check: "ratelimit", Event: store.EventRateTrip, Latched: "latched user alice"}, []string{series.Latch}},
		{"latched sender refused", milter(policy.StageMail), policy.Verdict{Action: policy.Reject, Check: "latch", Event: store.EventLatch}, []string{series.Rejected}},
		{"virus", milter(policy.StageEOM), policy.Verdict{Action: policy.Reject, Check: "antivirus", Event: store.EventVirus}, []string{series.Rejected, series.Virus}},
		{"virus latches", milter(policy.StageEOM), policy.Verdict{Action: policy.Reject, Check: "antivirus", Event: store.EventVirus, Latched: "latched client 10.1.2.3"}, []string{series.Rejected, series.Virus, series.Latch}},
		{"plain reject", pol(policy.StageRcpt), policy.Verdict{Action: policy.Reject, Check: "sender"}, []string{series.Rejected}},
	} {
		if got := chartKinds(c.req, c.v); !slices.Equal(got, c.want) {
			t.Errorf("%s: chartKinds = %q, want %q", c.name, got, c.want)
		}
	}
	for _, c := range []struct {
		name string
		e    store.Event
		want []string
	}{
		{"stored latch refusal", store.Event{Kind: store.EventLatch, Check: "latch", Action: "reject"}, []string{series.Rejected}},
		{"stored discarded virus", store.Event{Kind: store.EventVirus, Check: "antivirus", Action: "discard"}, []string{series.Virus}},
		// A latching forgery is two events, a reject and a latch; the
		// message counts once as rejected.
		{"stored forgery", store.Event{Kind: store.EventReject, Check: "sender", Action: "reject"}, []string{series.Rejected}},
		{"stored latch set by a forgery", store.Event{Kind: store.EventLatch, Check: "sender", Action: "reject"}, []string{series.Latch}},
		{"stored latch set by a rate trip", store.Event{Kind: store.EventLatch, Check: "ratelimit", Action: "tempfail"}, []string{series.Latch}},
		{"stored rate trip", store.Event{Kind: store.EventRateTrip, Check: "ratelimit", Action: "tempfail"}, nil},
	} {
		if got := eventChartKinds(c.e); !slices.Equal(got, c.want) {
			t.Errorf("%s counts as %q, want %q", c.name, got, c.want)
		}
	}
}
