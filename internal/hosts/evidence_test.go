package hosts

import (
	"context"
	"maps"
	"net/netip"
	"testing"
	"time"

	"mailwarden/internal/events"
	"mailwarden/internal/policy"
	"mailwarden/internal/policy/latch"
	"mailwarden/internal/policy/ratelimit"
	"mailwarden/internal/policy/sender"
	"mailwarden/internal/sites"
	"mailwarden/internal/store"
)

// TestRefusedWhileLatchedIsNotTheOffence runs the outbound checks as the
// daemon does, recording their events, and reads the hosts back: a
// machine that forged once and then had three messages refused because
// it was latched did one forgery, and a machine latched by a rate trip
// tripped once. Neither the refusals nor the latch count as the offence
// again.
func TestRefusedWhileLatchedIsNotTheOffence(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	now := func() time.Time { return f.now }
	reg, err := sites.New([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, []sites.Site{
		{Name: "lincoln", Networks: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, SenderDomains: []string{"lincoln.example"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	lc, err := latch.New(latch.Options{Store: f.st, Sites: reg, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	sc, err := sender.New(sender.Options{Sites: reg, Latch: lc})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := ratelimit.New(ratelimit.Options{Store: f.st, Client: ratelimit.Limit{Messages: 1, Per: time.Hour}, Latch: lc, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	rec := events.NewLog(events.LogOptions{Store: f.st})
	pl := policy.NewPipeline([]policy.Check{lc, sc, rc}, policy.PipelineOptions{Classify: reg.Classify, Observe: rec.Observe})
	send := func(ip, from string, stage policy.Stage, rcpts int) policy.Verdict {
		t.Helper()
		f.now = f.now.Add(time.Second)
		req := &policy.Request{Stage: stage, Time: f.now, ClientIP: netip.MustParseAddr(ip), Sender: from, Recipient: "x@elsewhere.example"}
		v := pl.Evaluate(ctx, req)
		for i := 1; i < rcpts; i++ {
			req := &policy.Request{Stage: policy.StageRcpt, Time: f.now, ClientIP: netip.MustParseAddr(ip), Sender: from,
				Recipient: "y@elsewhere.example", RcptIndex: i}
			if w := pl.Evaluate(ctx, req); w.Action != policy.Reject {
				t.Fatalf("recipient %d of a refused message from %s: %v %s", i+1, ip, w.Action, w.Reply())
			}
		}
		return v
	}

	const forger, sprayer = "10.1.2.3", "10.1.2.4"
	if v := send(forger, "worm@evil.example", policy.StageRcpt, 1); v.Action != policy.Reject || v.Check != "sender" {
		t.Fatalf("forgery: %v by %s, want reject by sender", v.Action, v.Check)
	}
	// Three legitimate messages: two at MAIL as the milter asks, one to
	// three recipients at RCPT as the policy server asks.
	for _, m := range []struct {
		stage policy.Stage
		rcpts int
	}{{policy.StageMail, 1}, {policy.StageMail, 1}, {policy.StageRcpt, 3}} {
		if v := send(forger, "pat@lincoln.example", m.stage, m.rcpts); v.Action != policy.Reject || v.Check != "latch" {
			t.Fatalf("legitimate mail from the latched %s: %v by %s, want reject by latch", forger, v.Action, v.Check)
		}
	}

	send(sprayer, "pat@lincoln.example", policy.StageRcpt, 1)
	if v := send(sprayer, "pat@lincoln.example", policy.StageRcpt, 1); v.Action != policy.Tempfail || v.Check != "ratelimit" {
		t.Fatalf("second message in the hour: %v by %s, want tempfail by ratelimit", v.Action, v.Check)
	}
	for range 2 {
		if v := send(sprayer, "pat@lincoln.example", policy.StageMail, 1); v.Check != "latch" {
			t.Fatalf("mail from %s latched by its rate trip: %v by %s, want refused by latch", sprayer, v.Action, v.Check)
		}
	}

	for ip, want := range map[string]map[string]int{
		forger:  {KindForgery: 1, KindLatch: 1, KindRefusedLatched: 3},
		sprayer: {KindRateTrip: 1, KindLatch: 1, KindRefusedLatched: 2},
	} {
		if got := f.get(ip).Evidence; !maps.Equal(got, want) {
			t.Errorf("%s: Evidence = %v, want %v", ip, got, want)
		}
	}
	hs, err := f.reg.List(ctx, HostFilter{})
	if err != nil || len(hs) != 2 {
		t.Fatalf("List = %d hosts, %v; want 2", len(hs), err)
	}
	for _, h := range hs {
		if h.Evidence[KindForgery]+h.Evidence[KindRateTrip] != 1 || h.Evidence[KindLatch] != 1 {
			t.Errorf("List: %s Evidence = %v, want one offence and one latch", h.IP, h.Evidence)
		}
	}

	// The event log says the same: the forgery is a reject, the rate
	// trip a rate_trip, each latch set one latch event, and each refused
	// message one latch event of the latch check.
	count := func(kind, check string) int {
		t.Helper()
		evs, err := f.st.QueryEvents(ctx, store.EventFilter{Kind: kind})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range evs {
			if e.Check == check {
				n++
			}
		}
		return n
	}
	for _, c := range []struct {
		kind, check string
		want        int
	}{
		{store.EventReject, "sender", 1},
		{store.EventRateTrip, "ratelimit", 1},
		{store.EventLatch, "sender", 1},
		{store.EventLatch, "ratelimit", 1},
		{store.EventLatch, "latch", 5},
		{store.EventReject, "latch", 2}, // the later recipients of the three-recipient message
	} {
		if got := count(c.kind, c.check); got != c.want {
			t.Errorf("%s events by %s: %d, want %d", c.kind, c.check, got, c.want)
		}
	}

	// When the events have expired, the latches still tell the same story.
	f.now = f.now.Add(48 * time.Hour)
	if _, err := f.st.Expire(ctx, f.now); err != nil {
		t.Fatal(err)
	}
	if got, want := f.get(forger).Evidence, map[string]int{KindForgery: 1, KindLatch: 1, KindRefusedLatched: 3}; !maps.Equal(got, want) {
		t.Errorf("after the events expired: Evidence = %v, want %v", got, want)
	}
}
