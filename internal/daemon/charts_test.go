package daemon

import (
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
		want string
	}{
		{"milter message passes", milter(policy.StageEOM), policy.Verdict{Action: policy.Continue}, series.Accepted},
		{"milter recipient passes: not yet a message", milter(policy.StageRcpt), policy.Verdict{Action: policy.Continue}, ""},
		{"policy recipient passes", pol(policy.StageRcpt), policy.Verdict{Action: policy.Accept}, series.Accepted},
		{"greylisted", pol(policy.StageRcpt), policy.Verdict{Action: policy.Tempfail, Check: "greylist", Event: store.EventGreylist}, series.Greylisted},
		{"other tempfail", pol(policy.StageRcpt), policy.Verdict{Action: policy.Tempfail, Check: "freeze"}, ""},
		{"forgery latches", milter(policy.StageMail), policy.Verdict{Action: policy.Reject, Check: "sender", Event: store.EventLatch}, series.Latch},
		{"latched sender refused", milter(policy.StageMail), policy.Verdict{Action: policy.Reject, Check: "latch", Event: store.EventLatch}, series.Rejected},
		{"virus", milter(policy.StageEOM), policy.Verdict{Action: policy.Reject, Check: "antivirus", Event: store.EventVirus}, series.Virus},
		{"plain reject", pol(policy.StageRcpt), policy.Verdict{Action: policy.Reject, Check: "sender"}, series.Rejected},
	} {
		if got := chartKind(c.req, c.v); got != c.want {
			t.Errorf("%s: chartKind = %q, want %q", c.name, got, c.want)
		}
	}
	if got := eventChartKind(store.Event{Kind: store.EventLatch, Check: "latch", Action: "reject"}); got != series.Rejected {
		t.Errorf("stored latch refusal counts as %q, want rejected", got)
	}
}
