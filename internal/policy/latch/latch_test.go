package latch

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/policy"
	"mailwarden/internal/reply"
	"mailwarden/internal/sites"
	"mailwarden/internal/store"
	"mailwarden/internal/store/memory"
	"mailwarden/internal/store/storetest"
)

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

type env struct {
	t   *testing.T
	st  *storetest.Faulty // a memory store, failing when told
	reg *sites.Registry
	now time.Time
	c   *Check
}

func newEnv(t *testing.T, mod func(*Options)) *env {
	t.Helper()
	reg, err := sites.New([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, []sites.Site{
		{Name: "lincoln", Networks: []netip.Prefix{netip.MustParsePrefix("10.1.2.0/24")}, Contact: "Ms Smith x212"},
	})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: storetest.WithFaults(memory.New()), reg: reg, now: t0}
	o := Options{
		Store:          e.st,
		Sites:          reg,
		DefaultContact: "the IT office",
		ExemptClients:  []netip.Prefix{netip.MustParsePrefix("10.0.0.25/32")},
		ExemptUsers:    []string{"Monitor"},
		Now:            func() time.Time { return e.now },
	}
	if mod != nil {
		mod(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.c = c
	return e
}

// req returns a classified request from ip at stage.
func (e *env) req(stage policy.Stage, ip, user string) *policy.Request {
	r := &policy.Request{Stage: stage, ClientIP: netip.MustParseAddr(ip), SASLUser: user,
		Sender: "pat@district.example", Recipient: "someone@elsewhere.example"}
	e.reg.Classify(r)
	return r
}

func (e *env) check(r *policy.Request) policy.Verdict {
	e.t.Helper()
	v, err := e.c.Check(context.Background(), r)
	if err != nil {
		e.t.Fatalf("Check: %v", err)
	}
	return v
}

func (e *env) latch(r *policy.Request) (store.Latch, bool) {
	e.t.Helper()
	l, ok, err := e.c.Latch(context.Background(), r, "sender_domain", "envelope sender domain evil.example not allowed", "sender x@evil.example")
	if err != nil {
		e.t.Fatalf("Latch: %v", err)
	}
	return l, ok
}

func TestLatchedClientRefused(t *testing.T) {
	e := newEnv(t, nil)
	if v := e.check(e.req(policy.StageMail, "10.1.2.3", "")); v.Action != policy.Continue {
		t.Fatalf("unlatched client: %v", v.Action)
	}
	l, ok := e.latch(e.req(policy.StageRcpt, "10.1.2.3", ""))
	if !ok || l.Kind != store.LatchClient || l.Key != "10.1.2.3" || l.Site != "lincoln" || l.ID == "" {
		t.Fatalf("Latch = %+v, %v", l, ok)
	}
	e.now = e.now.Add(time.Hour)
	v := e.check(e.req(policy.StageMail, "10.1.2.3", ""))
	if v.Action != policy.Reject || v.Event != store.EventLatch {
		t.Fatalf("latched client: %+v", v)
	}
	reply := v.Reply()
	for _, want := range []string{"550 5.7.1 ", "10.1.2.3", "evil.example", "Ms Smith x212", "ref " + l.ID} {
		if !strings.Contains(reply, want) {
			t.Errorf("reply %q does not contain %q", reply, want)
		}
	}
	// Refused at MAIL and at RCPT; a refused message counts once, as a
	// refusal and not as another violation, and is one latch event: its
	// later recipients are plain rejects.
	if v := e.check(e.req(policy.StageRcpt, "10.1.2.3", "")); v.Action != policy.Reject || v.Event != store.EventLatch {
		t.Errorf("latched client at RCPT: %+v", v)
	}
	r := e.req(policy.StageRcpt, "10.1.2.3", "")
	r.RcptIndex = 1
	if v := e.check(r); v.Action != policy.Reject || v.Event != "" || v.Text == "" {
		t.Errorf("latched client at its second RCPT: %+v, want a reject that is no latch event", v)
	}
	got, _ := e.st.GetLatch(context.Background(), l.ID)
	if got.Count != 3 || got.Refused != 2 || !got.LastSeen.Equal(e.now) {
		t.Errorf("after MAIL, RCPT 0 and RCPT 1: Count=%d Refused=%d LastSeen=%v; want 3, 2 and %v", got.Count, got.Refused, got.LastSeen, e.now)
	}
	if v := e.check(e.req(policy.StageMail, "10.1.2.3", "")); !strings.Contains(v.Reason, "1 violations, 3 messages refused") {
		t.Errorf("reason %q does not count the violation and the refusals apart", v.Reason)
	}
	if got.Evidence != "sender x@evil.example" || got.Rule != "sender_domain" {
		t.Errorf("a retry replaced the evidence: %+v", got)
	}
	// Other stages are not this check's business.
	if v := e.check(e.req(policy.StageEOM, "10.1.2.3", "")); v.Action != policy.Continue {
		t.Errorf("at EOM: %v", v.Action)
	}
	// A neighbour is not latched.
	if v := e.check(e.req(policy.StageMail, "10.1.2.4", "")); v.Action != policy.Continue {
		t.Errorf("neighbour refused: %+v", v)
	}
}

func TestClearedLatchLetsMailThrough(t *testing.T) {
	e := newEnv(t, nil)
	l, _ := e.latch(e.req(policy.StageRcpt, "10.1.2.3", ""))
	if _, err := e.st.ClearLatch(context.Background(), l.ID, "admin", "reimaged", e.now); err != nil {
		t.Fatal(err)
	}
	if v := e.check(e.req(policy.StageMail, "10.1.2.3", "")); v.Action != policy.Continue {
		t.Errorf("cleared latch still refuses: %+v", v)
	}
	// A new violation latches again, with a new ID.
	l2, ok := e.latch(e.req(policy.StageRcpt, "10.1.2.3", ""))
	if !ok || l2.ID == l.ID {
		t.Errorf("new violation: %+v, %v (old id %s)", l2, ok, l.ID)
	}
	if v := e.check(e.req(policy.StageMail, "10.1.2.3", "")); v.Action != policy.Reject || !strings.Contains(v.Text, l2.ID) {
		t.Errorf("relatched client: %+v", v)
	}
}

func TestUserLatch(t *testing.T) {
	e := newEnv(t, nil)
	// An authenticated user is latched, not the address it came from.
	l, ok := e.latch(e.req(policy.StageRcpt, "198.51.100.7", "alice"))
	if !ok || l.Kind != store.LatchUser || l.Key != "alice" {
		t.Fatalf("Latch = %+v, %v", l, ok)
	}
	v := e.check(e.req(policy.StageRcpt, "203.0.113.9", "alice"))
	if v.Action != policy.Reject || !strings.Contains(v.Text, "Mail from alice is blocked") || !strings.Contains(v.Text, "the IT office") {
		t.Errorf("latched user from elsewhere: %+v", v)
	}
	if v := e.check(e.req(policy.StageRcpt, "198.51.100.7", "bob")); v.Action != policy.Continue {
		t.Errorf("another user from the same address: %+v", v)
	}
}

func TestExempt(t *testing.T) {
	e := newEnv(t, nil)
	if l, ok := e.latch(e.req(policy.StageRcpt, "10.0.0.25", "")); ok {
		t.Errorf("exempt client latched: %+v", l)
	}
	if l, ok := e.latch(e.req(policy.StageRcpt, "10.1.2.3", "monitor")); ok {
		t.Errorf("exempt user (other case) latched: %+v", l)
	}
	if ls, _ := e.st.ListLatches(context.Background(), store.LatchFilter{}, e.now); len(ls) != 0 {
		t.Errorf("store holds %d latches, want none", len(ls))
	}
	// A latch on an exempt address set before it became exempt does not
	// block it either: the exemption is for hosts that must keep sending.
	if _, err := e.st.AddLatch(context.Background(), store.Latch{Kind: store.LatchClient, Key: "10.0.0.25"}, e.now); err != nil {
		t.Fatal(err)
	}
	if v := e.check(e.req(policy.StageMail, "10.0.0.25", "")); v.Action != policy.Continue {
		t.Errorf("exempt client refused: %+v", v)
	}
	// A user at an exempt client is still latched as a user.
	if _, ok := e.latch(e.req(policy.StageRcpt, "10.0.0.25", "carol")); !ok {
		t.Error("user at an exempt client not latched")
	}
}

func TestExpiry(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Expiry = 24 * time.Hour })
	l, _ := e.latch(e.req(policy.StageRcpt, "10.1.2.3", ""))
	if !l.Expires.Equal(t0.Add(24 * time.Hour)) {
		t.Errorf("Expires = %v, want %v", l.Expires, t0.Add(24*time.Hour))
	}
	e.now = t0.Add(23 * time.Hour)
	if v := e.check(e.req(policy.StageMail, "10.1.2.3", "")); v.Action != policy.Reject {
		t.Errorf("before expiry: %v", v.Action)
	}
	e.now = t0.Add(24 * time.Hour)
	if v := e.check(e.req(policy.StageMail, "10.1.2.3", "")); v.Action != policy.Continue {
		t.Errorf("at expiry: %v", v.Action)
	}
	// Without Expiry a latch holds for good.
	e = newEnv(t, nil)
	l, _ = e.latch(e.req(policy.StageRcpt, "10.1.2.3", ""))
	e.now = t0.Add(10 * 365 * 24 * time.Hour)
	if !l.Expires.IsZero() {
		t.Errorf("Expires = %v, want never", l.Expires)
	}
	if v := e.check(e.req(policy.StageMail, "10.1.2.3", "")); v.Action != policy.Reject {
		t.Errorf("ten years on: %v", v.Action)
	}
}

func TestInboundUntouched(t *testing.T) {
	e := newEnv(t, nil)
	e.st.FailAll(errors.New("store down"))
	for _, st := range []policy.Stage{policy.StageConnect, policy.StageMail, policy.StageRcpt, policy.StageEOM} {
		// An external, unauthenticated client never reaches the store.
		if v := e.check(e.req(st, "198.51.100.7", "")); v.Action != policy.Continue {
			t.Errorf("inbound at %v: %+v", st, v)
		}
	}
}

func TestStoreError(t *testing.T) {
	e := newEnv(t, nil)
	e.st.FailAll(errors.New("disk full"))
	_, err := e.c.Check(context.Background(), e.req(policy.StageMail, "10.1.2.3", ""))
	if err == nil || !strings.Contains(err.Error(), "disk full") || !strings.HasPrefix(err.Error(), "latch: ") {
		t.Errorf("Check error = %v", err)
	}
	_, ok, err := e.c.Latch(context.Background(), e.req(policy.StageRcpt, "10.1.2.3", ""), "r", "why", "ev")
	if ok || err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Latch = %v, %v", ok, err)
	}
}

// TestReplyIsOneSafeLine checks that attacker-controlled text in a latch
// cannot break the SMTP reply line.
func TestReplyIsOneSafeLine(t *testing.T) {
	e := newEnv(t, nil)
	r := e.req(policy.StageRcpt, "10.1.2.3", "")
	if _, _, err := e.c.Latch(context.Background(), r, "sender_domain", "domain evil\r\n250 OK\u00e9"+strings.Repeat("x", 1000), "ev"); err != nil {
		t.Fatal(err)
	}
	v := e.check(e.req(policy.StageMail, "10.1.2.3", ""))
	if strings.ContainsAny(v.Text, "\r\n\u00e9") || len(reply.Clean(v.Reply())) > reply.MaxLine {
		t.Errorf("unsafe reply text (%d bytes): %q", len(v.Text), v.Text)
	}
}

func TestNewErrors(t *testing.T) {
	_, err := New(Options{ReplyText: "a\nb", Expiry: -time.Second, ExemptClients: []netip.Prefix{{}}})
	for _, want := range []string{"no store", "control character", "negative", "exempt client 1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New error %v does not say %q", err, want)
		}
	}
}

// TestLatchReplyInvitesNoRetry: a rate-limit latch stored by an earlier
// version carries the retry time at its trip in its reason; the reply of
// a latch that holds until cleared leaves it out.
func TestLatchReplyInvitesNoRetry(t *testing.T) {
	e := newEnv(t, nil)
	r := e.req(policy.StageRcpt, "10.1.2.3", "")
	if _, _, err := e.c.Latch(context.Background(), r, "rate_client", "client 10.1.2.3 over 50 messages per 1h0m0s; retry after 1m10s", "sender pat@district.example"); err != nil {
		t.Fatal(err)
	}
	v := e.check(e.req(policy.StageMail, "10.1.2.3", ""))
	if v.Action != policy.Reject || strings.Contains(v.Text, "retry") || !strings.Contains(v.Text, "blocked: client 10.1.2.3 over 50 messages per 1h0m0s. Contact") {
		t.Errorf("reply %q: want the trip without its retry time", v.Reply())
	}
	// Other rules' reasons are the user's own words and stay whole.
	if got := replyReason(store.Latch{Rule: "sender_domain", Reason: "domain x; retry after y"}); got != "domain x; retry after y" {
		t.Errorf("replyReason of a forgery latch = %q", got)
	}
}

func TestDescription(t *testing.T) {
	l := store.Latch{ID: "L2", Kind: store.LatchClient, Key: "10.1.2.3", Rule: "sender_domain", Reason: "forged", Count: 1}
	if got, want := Description(l), "latched client 10.1.2.3 (ref L2, rule sender_domain): forged"; got != want {
		t.Errorf("Description = %q, want %q", got, want)
	}
	l.Count, l.Refused = 5, 3
	if got, want := Description(l), "violation 2 on the latch of client 10.1.2.3 (ref L2, rule sender_domain): forged"; got != want {
		t.Errorf("Description of a second violation = %q, want %q", got, want)
	}
}
