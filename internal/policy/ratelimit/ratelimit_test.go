package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/policy"
	"mailwarden/internal/policy/latch"
	"mailwarden/internal/store"
	"mailwarden/internal/store/memory"
	"mailwarden/internal/store/storetest"
)

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

type env struct {
	t   *testing.T
	st  *storetest.Faulty // a memory store, failing when told
	ls  *memory.Store
	c   *Check
	now time.Time
	// charged counts the units each key was charged: allowed takes only.
	charged map[string]int
}

// newEnv limits users to 3 messages and 5 recipients an hour, clients to
// 10 and 20, sender domains to 100 and 200.
func newEnv(t *testing.T, mod func(*env, *Options)) *env {
	t.Helper()
	e := &env{t: t, st: storetest.WithFaults(memory.New()), ls: memory.New(), now: t0, charged: map[string]int{}}
	e.st.OnCall(func(c storetest.Call) {
		if c.Method == "TakeRate" && c.Results[0] == true {
			e.charged[c.Args[0].(string)] += c.Args[1].(int)
		}
	})
	o := Options{
		Store:         e.st,
		User:          Limit{Messages: 3, Recipients: 5, Per: time.Hour},
		Client:        Limit{Messages: 10, Recipients: 20, Per: time.Hour},
		SenderDomain:  Limit{Messages: 100, Recipients: 200, Per: time.Hour},
		ExemptClients: []netip.Prefix{netip.MustParsePrefix("10.0.0.25/32")},
		Now:           func() time.Time { return e.now },
	}
	if mod != nil {
		mod(e, &o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.c = c
	return e
}

// latchOnTrip makes trips latch.
func latchOnTrip(e *env, o *Options) {
	lc, err := latch.New(latch.Options{Store: e.ls, Now: func() time.Time { return e.now }})
	if err != nil {
		e.t.Fatal(err)
	}
	o.Latch = lc
}

// send offers one message with n recipients from user at ip, returning
// each recipient's verdict.
func (e *env) send(ip, user, sender string, n int) []policy.Verdict {
	e.t.Helper()
	var vs []policy.Verdict
	for i := range n {
		r := &policy.Request{Stage: policy.StageRcpt, ClientIP: netip.MustParseAddr(ip), SASLUser: user,
			Sender: sender, Recipient: fmt.Sprintf("r%d@elsewhere.example", i), RcptIndex: i,
			Internal: strings.HasPrefix(ip, "10.")}
		v, err := e.c.Check(context.Background(), r)
		if err != nil {
			e.t.Fatalf("Check: %v", err)
		}
		vs = append(vs, v)
	}
	return vs
}

func actions(vs []policy.Verdict) string {
	var s []string
	for _, v := range vs {
		s = append(s, v.Action.String())
	}
	return strings.Join(s, " ")
}

func TestUserMessageLimit(t *testing.T) {
	e := newEnv(t, nil)
	for i := range 3 {
		if got := actions(e.send("198.51.100.7", "alice", "alice@shop.example", 1)); got != "continue" {
			t.Fatalf("message %d: %s", i+1, got)
		}
	}
	vs := e.send("198.51.100.7", "Alice", "alice@shop.example", 3)
	if got := actions(vs); got != "tempfail tempfail tempfail" {
		t.Fatalf("4th message: %s, want every recipient tempfailed", got)
	}
	v := vs[0]
	if got, want := v.Reply(), "451 4.7.1 Too much mail from user alice, please try again later"; got != want {
		t.Errorf("reply %q, want %q", got, want)
	}
	if v.Event != store.EventRateTrip || !strings.Contains(v.Reason, "3 messages per 1h0m0s") || !strings.Contains(v.Reason, "retry after 20m") {
		t.Errorf("trip verdict: %+v", v)
	}
	// The trip is one event; the message's other recipients are refused
	// without charging anything.
	if vs[1].Event != "" || e.charged["user:rcpt:alice"] != 3 {
		t.Errorf("recipient 2 event %q; user recipients charged %d, want 3", vs[1].Event, e.charged["user:rcpt:alice"])
	}
	// Another user is not affected; alice may send again when the rate
	// allows another message.
	if got := actions(e.send("198.51.100.7", "bob", "bob@shop.example", 1)); got != "continue" {
		t.Errorf("bob: %s", got)
	}
	e.now = e.now.Add(20 * time.Minute)
	if got := actions(e.send("198.51.100.7", "alice", "alice@shop.example", 1)); got != "continue" {
		t.Errorf("alice 20 minutes later: %s", got)
	}
}

func TestUserRecipientLimit(t *testing.T) {
	e := newEnv(t, nil)
	vs := e.send("198.51.100.7", "alice", "alice@shop.example", 7)
	if got := actions(vs); got != "continue continue continue continue continue tempfail tempfail" {
		t.Fatalf("7 recipients: %s", got)
	}
	if vs[5].Event != store.EventRateTrip || !strings.Contains(vs[5].Reason, "5 recipients per") {
		t.Errorf("6th recipient: %+v", vs[5])
	}
	// The refused recipients were not charged to later limits.
	if got := e.charged["client:rcpt:198.51.100.7"]; got != 5 {
		t.Errorf("client recipients charged %d, want 5", got)
	}
}

func TestOrderAndKeys(t *testing.T) {
	e := newEnv(t, func(_ *env, o *Options) { o.User = Limit{Messages: 1, Per: time.Hour} })
	e.send("10.1.2.3", "alice", "alice@Shop.example", 2)
	want := map[string]int{
		"user:msg:alice": 1, "client:msg:10.1.2.3": 1, "client:rcpt:10.1.2.3": 2,
		"domain:msg:shop.example": 1, "domain:rcpt:shop.example": 2,
	}
	for k, n := range want {
		if e.charged[k] != n {
			t.Errorf("%s charged %d, want %d", k, e.charged[k], n)
		}
	}
	if len(e.charged) != len(want) {
		t.Errorf("charged %v, want exactly %v", e.charged, want)
	}
	// The user's message limit refuses first; nothing after it is taken.
	before := e.charged["client:msg:10.1.2.3"]
	if got := actions(e.send("10.1.2.3", "alice", "alice@shop.example", 1)); got != "tempfail" {
		t.Fatalf("second message: %s", got)
	}
	if e.charged["client:msg:10.1.2.3"] != before || e.charged["domain:msg:shop.example"] != 1 {
		t.Errorf("a refused message was charged to later limits: %v", e.charged)
	}
}

func TestClientAndDomainLimits(t *testing.T) {
	e := newEnv(t, func(_ *env, o *Options) {
		o.Client = Limit{Messages: 2, Per: time.Hour}
		o.SenderDomain = Limit{Recipients: 3, Per: time.Hour}
	})
	e.send("10.1.2.3", "", "a@school.example", 1)
	e.send("10.1.2.3", "", "b@school.example", 1)
	vs := e.send("10.1.2.3", "", "c@other.example", 1)
	if vs[0].Action != policy.Tempfail || !strings.Contains(vs[0].Text, "from client 10.1.2.3") {
		t.Errorf("3rd message from the client: %+v", vs[0])
	}
	// An exempt relay is not limited per address, but its domain is.
	vs = e.send("10.0.0.25", "", "d@school.example", 3)
	if got := actions(vs); got != "continue tempfail tempfail" {
		t.Fatalf("relay: %s", got)
	}
	if !strings.Contains(vs[1].Text, "from domain school.example") {
		t.Errorf("domain trip: %+v", vs[1])
	}
	if _, ok := e.charged["client:msg:10.0.0.25"]; ok {
		t.Error("exempt relay charged per address")
	}
}

// TestLatchOnTrip is rate_limits.latch_on_trip: the trip is still a
// rate_trip event, the latch it sets is its own event, and neither the
// latch nor any reply drawn from it promises a retry, since the latch
// holds until someone clears it.
func TestLatchOnTrip(t *testing.T) {
	e := newEnv(t, latchOnTrip)
	for i := range 10 {
		if got := actions(e.send("10.1.2.3", "", "x@school.example", 1)); got != "continue" {
			t.Fatalf("message %d: %s", i+1, got)
		}
	}
	ls, _ := e.ls.ListLatches(context.Background(), store.LatchFilter{}, e.now)
	if len(ls) != 0 {
		t.Fatalf("latched under the limit: %+v", ls)
	}
	vs := e.send("10.1.2.3", "", "x@school.example", 1)
	v := vs[0]
	if v.Action != policy.Tempfail || v.Event != store.EventRateTrip || v.Code != 451 || v.Status != "4.7.1" {
		t.Fatalf("11th message: %+v, want a 451 4.7.1 recorded as a rate_trip", v)
	}
	ls, _ = e.ls.ListLatches(context.Background(), store.LatchFilter{Active: true}, e.now)
	if len(ls) != 1 || ls[0].Kind != store.LatchClient || ls[0].Key != "10.1.2.3" || ls[0].Rule != "rate_client" {
		t.Fatalf("latches: %+v", ls)
	}
	l := ls[0]
	if want := "client 10.1.2.3 over 10 messages per 1h0m0s"; l.Reason != want {
		t.Errorf("latch reason %q, want %q: it is read in every later refusal", l.Reason, want)
	}
	if want := "latched client 10.1.2.3 (ref " + l.ID + ", rule rate_client): " + l.Reason; v.Latched != want {
		t.Errorf("latch event reason %q, want %q", v.Latched, want)
	}
	// The tripping message is told it is blocked and whom to call, not
	// to try again: a retry meets the latch.
	for _, want := range []string{"Mail from 10.1.2.3 is blocked: client 10.1.2.3 over 10 messages per 1h0m0s", "ref " + l.ID} {
		if !strings.Contains(v.Reply(), want) {
			t.Errorf("reply %q lacks %q", v.Reply(), want)
		}
	}
	for _, text := range []string{v.Reply(), v.Reason, v.Latched, l.Reason} {
		if strings.Contains(strings.ToLower(text), "retry") || strings.Contains(text, "try again") {
			t.Errorf("%q invites a retry while the latch holds", text)
		}
	}

	// Every later message is refused by the latch, with a reply that
	// does not invite a retry either.
	lc, err := latch.New(latch.Options{Store: e.ls, Now: func() time.Time { return e.now }})
	if err != nil {
		t.Fatal(err)
	}
	e.now = e.now.Add(2 * time.Hour)
	r := &policy.Request{Stage: policy.StageMail, ClientIP: netip.MustParseAddr("10.1.2.3"), Internal: true, Sender: "x@school.example"}
	later, err := lc.Check(context.Background(), r)
	if err != nil || later.Action != policy.Reject || later.Check != "latch" {
		t.Fatalf("later message: %+v, %v; want refused by the latch", later, err)
	}
	if reply := later.Reply(); strings.Contains(strings.ToLower(reply), "retry") || strings.Contains(reply, "try again") ||
		!strings.Contains(reply, "over 10 messages per 1h0m0s") {
		t.Errorf("later reply %q: want the trip without a retry", reply)
	}
}

// TestTripNotLatchingSaysRetry: without latch_on_trip the trip is the
// ordinary tempfail, whose reason may say when the bucket refills.
func TestTripNotLatchingSaysRetry(t *testing.T) {
	e := newEnv(t, nil)
	for range 10 {
		e.send("10.1.2.3", "", "x@school.example", 1)
	}
	v := e.send("10.1.2.3", "", "x@school.example", 1)[0]
	if v.Event != store.EventRateTrip || v.Latched != "" || !strings.Contains(v.Reason, "retry after 6m") ||
		v.Reply() != "451 4.7.1 Too much mail from client 10.1.2.3, please try again later" {
		t.Errorf("trip without latching: %+v", v)
	}
}

func TestInboundUntouched(t *testing.T) {
	e := newEnv(t, nil)
	e.st.FailAll(errors.New("store down"))
	for range 10 {
		if got := actions(e.send("198.51.100.7", "", "news@list.example", 3)); got != "continue continue continue" {
			t.Fatalf("inbound: %s", got)
		}
	}
	r := &policy.Request{Stage: policy.StageMail, ClientIP: netip.MustParseAddr("10.1.2.3"), Internal: true}
	if v, err := e.c.Check(context.Background(), r); err != nil || v.Action != policy.Continue {
		t.Errorf("at MAIL: %+v, %v", v, err)
	}
}

func TestStoreError(t *testing.T) {
	e := newEnv(t, nil)
	boom := errors.New("disk full")
	e.st.FailAll(boom)
	r := &policy.Request{Stage: policy.StageRcpt, ClientIP: netip.MustParseAddr("10.1.2.3"), Internal: true}
	_, err := e.c.Check(context.Background(), r)
	if err == nil || !strings.HasPrefix(err.Error(), "ratelimit: ") || !errors.Is(err, boom) {
		t.Errorf("error = %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	_, err := New(Options{
		User:      Limit{Messages: 5},
		Client:    Limit{Recipients: -1, Per: time.Hour},
		ReplyText: "a\r\nb",
	})
	for _, want := range []string{"no store", "user limit has no period", "client limit has a negative count", "control character"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New error %v does not say %q", err, want)
		}
	}
	// Zero limits turn limiting off and need no period.
	if _, err := New(Options{Store: memory.New()}); err != nil {
		t.Errorf("New with no limits: %v", err)
	}
}
