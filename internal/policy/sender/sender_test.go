package sender

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/policy"
	"mailwarden/internal/policy/latch"
	"mailwarden/internal/reply"
	"mailwarden/internal/sites"
	"mailwarden/internal/store"
	"mailwarden/internal/store/memory"
	"mailwarden/internal/store/storetest"
)

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// env is a school district: the district domain for everyone, a school
// with its own domain, a relay that must never latch.
type env struct {
	t   *testing.T
	reg *sites.Registry
	st  *storetest.Faulty // a memory store, failing when told
	lc  *latch.Check
	c   *Check
	now time.Time
}

func newEnv(t *testing.T, mod func(*Options)) *env {
	t.Helper()
	reg, err := sites.New([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, []sites.Site{
		{Name: "lincoln", Networks: []netip.Prefix{netip.MustParsePrefix("10.1.2.0/24")}, Contact: "Ms Smith x212",
			SenderDomains: []string{"lincoln.example.edu"}, HeaderFromDomains: []string{"lincoln.example.edu"}},
		{Name: "office", Networks: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}, Contact: "helpdesk x100"},
	})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, reg: reg, st: storetest.WithFaults(memory.New()), now: t0}
	e.lc, err = latch.New(latch.Options{
		Store: e.st, Sites: reg, DefaultContact: "the IT office",
		ExemptClients: []netip.Prefix{netip.MustParsePrefix("10.0.0.25/32")},
		Now:           func() time.Time { return e.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	o := Options{
		Sites:             reg,
		SenderDomains:     []string{"District.Example.EDU"},
		HeaderFromDomains: []string{"district.example.edu"},
		AllowNullSender:   true,
		Latch:             e.lc,
	}
	if mod != nil {
		mod(&o)
	}
	e.c, err = New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

func (e *env) req(stage policy.Stage, ip, sender string) *policy.Request {
	r := &policy.Request{Stage: stage, ClientIP: netip.MustParseAddr(ip), Sender: sender, Recipient: "friend@elsewhere.example"}
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

func (e *env) latches() []store.Latch {
	ls, err := e.st.ListLatches(context.Background(), store.LatchFilter{Active: true}, e.now)
	if err != nil {
		e.t.Fatal(err)
	}
	return ls
}

func TestEnvelopeSender(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Latch = nil })
	for _, tc := range []struct {
		ip, sender string
		ok         bool
	}{
		{"10.9.1.1", "pat@district.example.edu", true},
		{"10.9.1.1", "pat@Mail.District.Example.EDU", true}, // subdomain, any case
		{"10.9.1.1", "pat@district.example.edu.evil.test", false},
		{"10.9.1.1", "pat@notdistrict.example.edu", false},
		{"10.9.1.1", "pat@lincoln.example.edu", false},   // another site's domain
		{"10.9.1.1", "root", false},                      // no domain at all
		{"10.9.1.1", "", true},                           // bounce, allowed
		{"10.1.2.3", "pat@lincoln.example.edu", true},    // the site's own list
		{"10.1.2.3", "pat@district.example.edu", false},  // which replaces the global one
		{"10.200.0.1", "pat@district.example.edu", true}, // internal, no site: global list
		{"10.200.0.1", "x@evil.example", false},
	} {
		v := e.check(e.req(policy.StageRcpt, tc.ip, tc.sender))
		if tc.ok != (v.Action == policy.Continue) {
			t.Errorf("%s <%s>: %v (%s), want ok=%v", tc.ip, tc.sender, v.Action, v.Reason, tc.ok)
		}
		if !tc.ok && (v.Action != policy.Reject || v.Reply() == "" || v.Event != store.EventReject) {
			t.Errorf("%s <%s>: verdict %+v", tc.ip, tc.sender, v)
		}
	}
}

func TestForgeryRejectedAndLatched(t *testing.T) {
	e := newEnv(t, nil)
	v := e.check(e.req(policy.StageRcpt, "10.1.2.3", "ceo@bank.example"))
	// The forgery is a reject event; the latch it set is an event of
	// its own beside it.
	if v.Action != policy.Reject || v.Event != store.EventReject || !strings.HasPrefix(v.Latched, "latched client 10.1.2.3 (ref ") {
		t.Fatalf("forgery: %+v", v)
	}
	if got, want := v.Reply(), "550 5.7.1 Sender domain bank.example is not allowed from 10.1.2.3"; got != want {
		t.Errorf("reply %q, want %q", got, want)
	}
	if !strings.Contains(v.Reason, "bank.example") || !strings.Contains(v.Reason, "sender_domain") || !strings.Contains(v.Reason, "site lincoln") {
		t.Errorf("reason %q does not say which rule, domain and site", v.Reason)
	}
	ls := e.latches()
	if len(ls) != 1 || ls[0].Kind != store.LatchClient || ls[0].Key != "10.1.2.3" || ls[0].Rule != RuleSenderDomain ||
		ls[0].Evidence != "ceo@bank.example" || ls[0].Site != "lincoln" {
		t.Fatalf("latches = %+v", ls)
	}
	// Later recipients of the same message are refused too, but latch
	// only once.
	for i := 1; i < 4; i++ {
		r := e.req(policy.StageRcpt, "10.1.2.3", "ceo@bank.example")
		r.RcptIndex = i
		if v := e.check(r); v.Action != policy.Reject || v.Event != store.EventReject || v.Latched != "" {
			t.Errorf("recipient %d: %+v", i, v)
		}
	}
	if ls := e.latches(); len(ls) != 1 || ls[0].Count != 1 {
		t.Errorf("after 4 recipients: %+v, want one latch with count 1", ls)
	}
}

func TestExemptClientRejectedNotLatched(t *testing.T) {
	e := newEnv(t, nil)
	v := e.check(e.req(policy.StageRcpt, "10.0.0.25", "ceo@bank.example"))
	if v.Action != policy.Reject || v.Event != store.EventReject || v.Latched != "" {
		t.Errorf("forgery from exempt relay: %+v", v)
	}
	if ls := e.latches(); len(ls) != 0 {
		t.Errorf("exempt relay latched: %+v", ls)
	}
}

func TestNotChecked(t *testing.T) {
	e := newEnv(t, nil)
	for name, r := range map[string]*policy.Request{
		"inbound": e.req(policy.StageRcpt, "198.51.100.7", "ceo@bank.example"),
		"authenticated external": func() *policy.Request {
			r := e.req(policy.StageRcpt, "198.51.100.7", "x@evil.example")
			r.SASLUser = "pat"
			return r
		}(),
		"at MAIL": e.req(policy.StageMail, "10.1.2.3", "ceo@bank.example"),
	} {
		if v := e.check(r); v.Action != policy.Continue {
			t.Errorf("%s: %+v", name, v)
		}
	}
	r := e.req(policy.StageEOM, "198.51.100.7", "ceo@bank.example")
	r.HeaderFrom = "ceo@bank.example"
	if v := e.check(r); v.Action != policy.Continue {
		t.Errorf("inbound header From: %+v", v)
	}
	if ls := e.latches(); len(ls) != 0 {
		t.Errorf("latched: %+v", ls)
	}
	// No list anywhere: the policy is off.
	off := newEnv(t, func(o *Options) { o.SenderDomains, o.HeaderFromDomains, o.Sites = nil, nil, nil })
	if v := off.check(off.req(policy.StageRcpt, "10.200.0.1", "ceo@bank.example")); v.Action != policy.Continue {
		t.Errorf("policy off: %+v", v)
	}
}

func TestNullSender(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.AllowNullSender = false })
	v := e.check(e.req(policy.StageRcpt, "10.9.1.1", ""))
	if v.Action != policy.Reject || !strings.Contains(v.Text, "<>") {
		t.Errorf("null sender refused with %+v", v)
	}
}

func TestHeaderFrom(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Latch = nil })
	for _, tc := range []struct {
		ip, from string
		ok       bool
	}{
		{"10.9.1.1", "Pat <pat@district.example.edu>", true},
		{"10.9.1.1", "pat@district.example.edu", true},
		{"10.9.1.1", "=?windows-1252?q?J=F6rg?= <j@district.example.edu>", true},
		{"10.9.1.1", "team: a@district.example.edu, b@www.district.example.edu;", true},
		{"10.9.1.1", "", true}, // not seen by this front end
		{"10.9.1.1", "Bank <ceo@bank.example>", false},
		{"10.9.1.1", "a@district.example.edu, b@bank.example", false},
		{"10.9.1.1", "team: a@district.example.edu, b@bank.example;", false},
		{"10.9.1.1", "ceo@bank.example <x@district.example.edu>", false}, // malformed, hiding a domain
		{"10.9.1.1", "undisclosed:;", false},
		{"10.9.1.1", "Bank Security", false},
		{"10.1.2.3", "Pat <pat@lincoln.example.edu>", true},
		{"10.1.2.3", "Pat <pat@district.example.edu>", false},
	} {
		r := e.req(policy.StageEOM, tc.ip, "pat@district.example.edu")
		r.HeaderFrom = tc.from
		v := e.check(r)
		if tc.ok != (v.Action == policy.Continue) {
			t.Errorf("%s From %q: %v (%s), want ok=%v", tc.ip, tc.from, v.Action, v.Reason, tc.ok)
		}
		if !tc.ok && (v.Code != 550 || !strings.Contains(v.Reason, RuleHeaderFrom)) {
			t.Errorf("From %q: verdict %+v", tc.from, v)
		}
	}
}

func TestHeaderFromLatches(t *testing.T) {
	e := newEnv(t, nil)
	r := e.req(policy.StageEOM, "10.9.1.1", "pat@district.example.edu")
	r.HeaderFrom = "Bank <ceo@bank.example>"
	if v := e.check(r); v.Action != policy.Reject || v.Event != store.EventReject || v.Latched == "" || !strings.Contains(v.Text, "bank.example") {
		t.Errorf("forged From: %+v", v)
	}
	if ls := e.latches(); len(ls) != 1 || ls[0].Rule != RuleHeaderFrom || !strings.Contains(ls[0].Evidence, "ceo@bank.example") {
		t.Errorf("latches: %+v", ls)
	}
}

// TestLatchStoreError: a forgery whose latch cannot be written is still
// refused, as a temporary failure so that the retry latches, and as a
// verdict, not an error: a fail-open pipeline would accept an error
// (issue 21: forgeries accepted with fail_open: [sender] on a full disk).
func TestLatchStoreError(t *testing.T) {
	e := newEnv(t, nil)
	e.st.FailAll(errors.New("disk full"))
	v, err := e.c.Check(context.Background(), e.req(policy.StageRcpt, "10.1.2.3", "ceo@bank.example"))
	if err != nil {
		t.Fatalf("Check returned %v; a fail-open pipeline would then accept the forgery", err)
	}
	if v.Action != policy.Tempfail || v.Code != 451 || v.Latched != "" || !strings.Contains(v.Reason, "latching failed") ||
		!strings.Contains(v.Reason, "disk full") {
		t.Errorf("verdict %+v, want a 451 tempfail saying latching failed", v)
	}
	e.st.Heal()
	if v := e.check(e.req(policy.StageRcpt, "10.1.2.3", "ceo@bank.example")); v.Action != policy.Reject || v.Latched == "" {
		t.Errorf("the retry after the store heals: %+v, want refused and latched", v)
	}
}

func TestReplyIsOneSafeLine(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Latch = nil })
	v := e.check(e.req(policy.StageRcpt, "10.9.1.1", "x@evil\r\n250-ok\u00e9"+strings.Repeat(".x", 400)))
	if strings.ContainsAny(v.Text, "\r\n\u00e9") || len(reply.Clean(v.Reply())) > reply.MaxLine {
		t.Errorf("unsafe reply (%d bytes): %q", len(v.Text), v.Text)
	}
	if _, err := New(Options{ReplyText: "a\nb", SenderDomains: []string{""}}); err == nil ||
		!strings.Contains(err.Error(), "control character") || !strings.Contains(err.Error(), "empty domain") {
		t.Errorf("New error = %v", err)
	}
}

func TestFromDomains(t *testing.T) {
	for in, want := range map[string]string{
		"Alice <alice@Example.NET>":             "example.net",
		"alice@example.net":                     "example.net",
		"<alice@example.net>":                   "example.net",
		"alice@example.net (Alice)":             "example.net",
		`"alice@evil.test" <alice@example.net>`: "example.net", // a display name is not an address
		"g: a@one.test, B <b@two.test>;":        "one.test two.test",
		"a@one.test, b@two.test":                "one.test two.test",
		"=?x-unknown?q?=FF?= <a@example.net>":   "example.net",
		"Broken \"quote <a@example.net>":        "example.net",
		"a@evil.test <b@example.net>":           "evil.test example.net",
	} {
		got, ok := FromDomains(in)
		if !ok || strings.Join(got, " ") != want {
			t.Errorf("FromDomains(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "Alice", "undisclosed-recipients:;", "<>", "@"} {
		if got, ok := FromDomains(in); ok {
			t.Errorf("FromDomains(%q) = %q, want unreadable", in, got)
		}
	}
}

func FuzzFromDomains(f *testing.F) {
	for _, s := range []string{"Alice <alice@example.net>", "g: a@b.c, d@e.f;", "a@evil <b@good>", "=?utf-8?b?w6k=?= <x@y.z>", "\"\\\" <@>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ds, ok := FromDomains(s)
		if ok != (len(ds) > 0) {
			t.Fatalf("FromDomains(%q) = %q, %v", s, ds, ok)
		}
		for _, d := range ds {
			if d == "" || d != strings.ToLower(d) {
				t.Fatalf("FromDomains(%q) gave domain %q", s, d)
			}
		}
	})
}
