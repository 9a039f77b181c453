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
		want [2]string
	}{
		{"milter message passes", milter(policy.StageEOM), policy.Verdict{Action: policy.Continue}, [2]string{series.Accepted, ""}},
		{"milter recipient passes: not yet a message", milter(policy.StageRcpt), policy.Verdict{Action: policy.Continue}, [2]string{}},
		{"policy recipient passes", pol(policy.StageRcpt), policy.Verdict{Action: policy.Accept}, [2]string{series.Accepted, ""}},
		{"greylisted", pol(policy.StageRcpt), policy.Verdict{Action: policy.Tempfail, Check: "greylist", Event: store.EventGreylist}, [2]string{series.Greylisted, ""}},
		{"other tempfail", pol(policy.StageRcpt), policy.Verdict{Action: policy.Tempfail, Check: "freeze"}, [2]string{}},
		{"forgery latches", milter(policy.StageMail), policy.Verdict{Action: policy.Reject, Check: "sender", Event: store.EventLatch}, [2]string{series.Rejected, series.Latch}},
		{"latched sender refused", milter(policy.StageMail), policy.Verdict{Action: policy.Reject, Check: "latch", Event: store.EventLatch}, [2]string{series.Rejected, ""}},
		{"virus", milter(policy.StageEOM), policy.Verdict{Action: policy.Reject, Check: "antivirus", Event: store.EventVirus}, [2]string{series.Rejected, series.Virus}},
		{"plain reject", pol(policy.StageRcpt), policy.Verdict{Action: policy.Reject, Check: "sender"}, [2]string{series.Rejected, ""}},
	} {
		k1, k2 := chartKinds(c.req, c.v)
		if got := [2]string{k1, k2}; got != c.want {
			t.Errorf("%s: chartKinds = %q, want %q", c.name, got, c.want)
		}
	}
	if k1, k2 := eventChartKinds(store.Event{Kind: store.EventLatch, Check: "latch", Action: "reject"}); k1 != series.Rejected || k2 != "" {
		t.Errorf("stored latch refusal counts as %q and %q, want rejected only", k1, k2)
	}
	if k1, k2 := eventChartKinds(store.Event{Kind: store.EventVirus, Check: "antivirus", Action: "discard"}); k1 != series.Virus || k2 != "" {
		t.Errorf("stored discarded virus counts as %q and %q, want virus only", k1, k2)
	}
}
