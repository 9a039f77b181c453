package daemon

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
	"mailwarden/internal/store/memory"
	"mailwarden/internal/store/storetest"
)

// TestFailOpenCannotOpenAKnownRefusal: fail_open is for a check that
// cannot decide. With fail_open on latch and sender and every write
// failing (a full disk), mail from a host known to be latched is still
// refused, and a detected forgery is still refused (issue 21: both were
// accepted, 6 of 6).
func TestFailOpenCannotOpenAKnownRefusal(t *testing.T) {
	cfg := config.Default()
	cfg.InternalNetworks = []config.Prefix{config.MustPrefix("10.0.0.0/8")}
	cfg.SenderPolicy.SenderDomains = []string{"school.test"}
	cfg.FailOpen = []string{"latch", "sender"}
	cfg.Greylist.Enabled = false
	cfg.RateLimits.Enabled = false // nothing after the latch and sender checks would refuse
	st := storetest.WithFaults(memory.New())
	ctx := context.Background()
	now := time.Now()
	if _, err := st.AddLatch(ctx, store.Latch{Kind: store.LatchClient, Key: "10.1.2.3", Rule: "sender_domain", Reason: "forged"}, now); err != nil {
		t.Fatal(err)
	}
	built, err := Checks(cfg, Deps{Store: st, Log: slog.New(slog.DiscardHandler), Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	pl := policy.NewPipeline(built.Checks, policy.PipelineOptions{FailOpen: FailOpen(cfg), Classify: built.Classify})
	st.FailOn("AddLatch", errors.New("disk full"))
	st.FailOn("AddLatchRefusal", errors.New("disk full"))

	req := func(ip, sender string) *policy.Request {
		return &policy.Request{Stage: policy.StageRcpt, Frontend: "policy", ClientIP: netip.MustParseAddr(ip),
			Sender: sender, Recipient: "someone@example.org"}
	}
	var accepted, refused int
	for range 6 {
		if v := pl.Evaluate(ctx, req("10.1.2.3", "teacher@school.test")); v.Action.Final() {
			refused++
		} else {
			accepted++
			t.Errorf("latched host's mail: %+v, want it refused", v)
		}
		v := pl.Evaluate(ctx, req("10.1.2.4", "worm@hotmail.example"))
		if v.Action != policy.Tempfail && v.Action != policy.Reject {
			accepted++
			t.Errorf("forgery with the latch unwritable: %+v, want it refused", v)
		} else {
			refused++
		}
	}
	t.Logf("with every latch write failing and fail_open [latch sender]: %d refused, %d wrongly accepted", refused, accepted)
}
