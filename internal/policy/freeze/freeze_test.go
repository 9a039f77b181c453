package freeze

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/policy"
	"mailwarden/internal/store"
	"mailwarden/internal/store/memory"
	"mailwarden/internal/store/storetest"
)

// outbound is a message from an internal client of the hosting server.
func outbound(stage policy.Stage) *policy.Request {
	return &policy.Request{Stage: stage, ClientIP: netip.MustParseAddr("10.1.2.3"), Internal: true,
		Sender: "info@shop.example.com", Recipient: "x@elsewhere.example", SASLUser: "info@shop.example.com"}
}

// newCheck returns a check over a memory store holding fs, wrapped so
// that a test can make it fail.
func newCheck(t *testing.T, fs ...store.Freeze) (*Check, *storetest.Faulty) {
	t.Helper()
	st := storetest.WithFaults(memory.New())
	for _, f := range fs {
		if err := st.SetFreeze(context.Background(), f); err != nil {
			t.Fatal(err)
		}
	}
	c, err := New(Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	return c, st
}

func check(t *testing.T, c *Check, r *policy.Request) policy.Verdict {
	t.Helper()
	v, err := c.Check(context.Background(), r)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return v
}

func TestScopes(t *testing.T) {
	since := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		freeze store.Freeze
		mod    func(*policy.Request)
		held   bool
	}{
		{"all", store.Freeze{Scope: store.FreezeAll}, nil, true},
		{"all, unauthenticated internal", store.Freeze{Scope: store.FreezeAll}, func(r *policy.Request) { r.SASLUser = "" }, true},
		{"all, authenticated external", store.Freeze{Scope: store.FreezeAll}, func(r *policy.Request) { r.Internal = false }, true},
		{"domain", store.Freeze{Scope: store.FreezeDomain, Value: "shop.example.com"}, nil, true},
		{"parent domain", store.Freeze{Scope: store.FreezeDomain, Value: "Example.COM"}, nil, true},
		{"other domain", store.Freeze{Scope: store.FreezeDomain, Value: "example.org"}, nil, false},
		{"lookalike domain", store.Freeze{Scope: store.FreezeDomain, Value: "op.example.com"}, nil, false},
		{"domain, null sender", store.Freeze{Scope: store.FreezeDomain, Value: "example.com"}, func(r *policy.Request) { r.Sender = "" }, false},
		{"user", store.Freeze{Scope: store.FreezeUser, Value: "INFO@shop.example.com"}, nil, true},
		{"other user", store.Freeze{Scope: store.FreezeUser, Value: "sales@shop.example.com"}, nil, false},
		{"user, unauthenticated", store.Freeze{Scope: store.FreezeUser, Value: ""}, func(r *policy.Request) { r.SASLUser = "" }, false},
		{"network", store.Freeze{Scope: store.FreezeNetwork, Value: "10.1.0.0/16"}, nil, true},
		{"network host", store.Freeze{Scope: store.FreezeNetwork, Value: "10.1.2.3"}, nil, true},
		{"network, mapped client", store.Freeze{Scope: store.FreezeNetwork, Value: "10.1.2.0/24"},
			func(r *policy.Request) { r.ClientIP = netip.MustParseAddr("::ffff:10.1.2.3") }, true},
		{"other network", store.Freeze{Scope: store.FreezeNetwork, Value: "10.2.0.0/16"}, nil, false},
		{"bad network", store.Freeze{Scope: store.FreezeNetwork, Value: "10.1.0.0/99"}, nil, false},
		{"unknown scope", store.Freeze{Scope: "planet", Value: "earth"}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.freeze
			f.By, f.Since, f.Note = "admin", since, "spam run"
			c, _ := newCheck(t, f)
			r := outbound(policy.StageRcpt)
			if tc.mod != nil {
				tc.mod(r)
			}
			v := check(t, c, r)
			if !tc.held {
				if v.Action != policy.Continue {
					t.Errorf("not matching, yet %+v", v)
				}
				return
			}
			if v.Action != policy.Tempfail || v.Event != store.EventFreeze {
				t.Fatalf("matching, yet %+v", v)
			}
			if got, want := v.Reply(), "451 4.7.0 Outbound mail is frozen by the administrator, please try again later"; got != want {
				t.Errorf("reply %q, want %q", got, want)
			}
			if !strings.Contains(v.Reason, "freeze of "+strings.TrimSpace(f.Scope)) || !strings.Contains(v.Reason, "by admin") {
				t.Errorf("reason %q does not name the freeze", v.Reason)
			}
		})
	}
}

func TestStages(t *testing.T) {
	c, _ := newCheck(t, store.Freeze{Scope: store.FreezeAll})
	for st, held := range map[policy.Stage]bool{
		policy.StageConnect: false, policy.StageHelo: false, policy.StageMail: false,
		policy.StageRcpt: true, policy.StageData: true, policy.StageEOM: true,
	} {
		if v := check(t, c, outbound(st)); (v.Action == policy.Tempfail) != held {
			t.Errorf("at %v: %v, want held=%v", st, v.Action, held)
		}
	}
}

func TestLiftingLetsMailThrough(t *testing.T) {
	c, st := newCheck(t, store.Freeze{Scope: store.FreezeDomain, Value: "example.com"})
	if v := check(t, c, outbound(policy.StageRcpt)); v.Action != policy.Tempfail {
		t.Fatalf("frozen: %v", v.Action)
	}
	if err := st.LiftFreeze(context.Background(), store.FreezeDomain, "example.com"); err != nil {
		t.Fatal(err)
	}
	// Freezes are read on every call, so lifting takes effect at once.
	if v := check(t, c, outbound(policy.StageRcpt)); v.Action != policy.Continue {
		t.Errorf("after lifting: %v", v.Action)
	}
}

func TestInboundUntouched(t *testing.T) {
	c, st := newCheck(t, store.Freeze{Scope: store.FreezeAll})
	st.FailAll(errors.New("store down"))
	r := &policy.Request{Stage: policy.StageRcpt, ClientIP: netip.MustParseAddr("198.51.100.7"),
		Sender: "a@shop.example.com", Recipient: "info@shop.example.com"}
	for _, stage := range []policy.Stage{policy.StageRcpt, policy.StageData, policy.StageEOM} {
		r.Stage = stage
		if v := check(t, c, r); v.Action != policy.Continue {
			t.Errorf("inbound at %v: %+v", stage, v)
		}
	}
}

func TestStoreError(t *testing.T) {
	c, st := newCheck(t)
	boom := errors.New("disk full")
	st.FailAll(boom)
	_, err := c.Check(context.Background(), outbound(policy.StageRcpt))
	if err == nil || !strings.HasPrefix(err.Error(), "freeze: ") || !errors.Is(err, boom) {
		t.Errorf("error = %v", err)
	}
	if _, err := New(Options{}); err == nil {
		t.Error("New without a store succeeded")
	}
}

func TestParseNetwork(t *testing.T) {
	for in, want := range map[string]string{
		"10.1.0.0/16":         "10.1.0.0/16",
		"10.1.2.3/16":         "10.1.0.0/16",
		"10.1.2.3":            "10.1.2.3/32",
		"2001:db8::/32":       "2001:db8::/32",
		"::ffff:10.1.0.0/112": "10.1.0.0/16",
		"::ffff:10.1.2.3":     "10.1.2.3/32",
	} {
		p, err := ParseNetwork(in)
		if err != nil || p.String() != want {
			t.Errorf("ParseNetwork(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, in := range []string{"", "10.1.0.0/33", "example.org", "fe80::1%eth0"} {
		if _, err := ParseNetwork(in); err == nil {
			t.Errorf("ParseNetwork(%q) succeeded", in)
		}
	}
}
