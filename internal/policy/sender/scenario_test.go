package sender_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/policy"
	"mailwarden/internal/policy/freeze"
	"mailwarden/internal/policy/latch"
	"mailwarden/internal/policy/sender"
	"mailwarden/internal/sites"
	"mailwarden/internal/store"
	"mailwarden/internal/store/memory"
)

// TestWormDay runs PRODUCT.md §1 Day A through a pipeline in the
// product's order: an infected machine at a school forges a bank's
// domain, is refused and latched; its user's next, legitimate message is
// refused with the school's contact and the latch's reference; once the
// administrator clears the latch, mail flows again. Inbound mail is never
// touched.
func TestWormDay(t *testing.T) {
	now := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	reg, err := sites.New([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, []sites.Site{
		{Name: "lincoln", Networks: []netip.Prefix{netip.MustParsePrefix("10.1.2.0/24")}, Contact: "Ms Smith x212"},
	})
	if err != nil {
		t.Fatal(err)
	}
	latches := memory.New()
	fz, err := freeze.New(freeze.Options{Store: latches})
	if err != nil {
		t.Fatal(err)
	}
	lc, err := latch.New(latch.Options{Store: latches, Sites: reg, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	sc, err := sender.New(sender.Options{Sites: reg, SenderDomains: []string{"district.example.edu"}, AllowNullSender: true, Latch: lc})
	if err != nil {
		t.Fatal(err)
	}
	p := policy.NewPipeline([]policy.Check{fz, lc, sc}, policy.PipelineOptions{Classify: reg.Classify})

	send := func(ip, from string, stage policy.Stage) policy.Verdict {
		return p.Evaluate(context.Background(), &policy.Request{Stage: stage, Time: now,
			ClientIP: netip.MustParseAddr(ip), Sender: from, Recipient: "x@elsewhere.example"})
	}

	v := send("10.1.2.3", "security@bank.example", policy.StageRcpt)
	if v.Action != policy.Reject || v.Check != "sender" || v.Event != store.EventReject || v.Latched == "" {
		t.Fatalf("forgery: %+v", v)
	}
	ls, _ := latches.ListLatches(context.Background(), store.LatchFilter{Active: true}, now)
	if len(ls) != 1 {
		t.Fatalf("latches after the forgery: %+v", ls)
	}
	id := ls[0].ID

	now = now.Add(time.Hour)
	for _, stage := range []policy.Stage{policy.StageMail, policy.StageRcpt} {
		v = send("10.1.2.3", "pat@district.example.edu", stage)
		if v.Action != policy.Reject || v.Check != "latch" {
			t.Fatalf("legitimate mail from the latched machine at %v: %+v", stage, v)
		}
	}
	reply := v.Reply()
	for _, want := range []string{"550 5.7.1", "Contact Ms Smith x212", "ref " + id, "bank.example"} {
		if !strings.Contains(reply, want) {
			t.Errorf("reply %q does not contain %q", reply, want)
		}
	}
	if v := send("10.1.2.4", "kim@district.example.edu", policy.StageRcpt); v.Action != policy.Continue {
		t.Errorf("the clean machine next door: %+v", v)
	}
	if v := send("198.51.100.7", "security@bank.example", policy.StageRcpt); v.Action != policy.Continue {
		t.Errorf("inbound mail from the real bank: %+v", v)
	}

	if _, err := latches.ClearLatch(context.Background(), id, "admin", "reimaged", now); err != nil {
		t.Fatal(err)
	}
	if v := send("10.1.2.3", "pat@district.example.edu", policy.StageRcpt); v.Action != policy.Continue {
		t.Errorf("after clearing: %+v", v)
	}
}
