package greylist

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/policy"
	"mailwarden/internal/store"
	"mailwarden/internal/store/storetest"
)

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// env is a Check over a fake store with a fake clock, configured as
// config.Default configures it.
type env struct {
	t   *testing.T
	st  *storetest.Faulty
	now time.Time
	c   *Check
}

func newEnv(t *testing.T, mod func(*Options)) *env {
	t.Helper()
	e := &env{t: t, st: newStore(), now: t0}
	o := Options{
		Store:               e.st,
		Delay:               5 * time.Minute,
		RetryWindow:         48 * time.Hour,
		PassedLifetime:      35 * 24 * time.Hour,
		IPv4Prefix:          24,
		IPv6Prefix:          64,
		AutoWhitelistAfter:  5,
		SkipAuthenticated:   true,
		SkipInternal:        true,
		WhitelistRecipients: []string{"postmaster@", "abuse@"},
		ReplyText:           "Greylisted, please try again in {delay}",
		AddHeader:           true,
		Hostname:            "mx.example.net",
		Now:                 func() time.Time { return e.now },
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

func (e *env) advance(d time.Duration) { e.now = e.now.Add(d) }

func rcptReq(ip, sender, rcpt string) *policy.Request {
	return &policy.Request{
		Stage:      policy.StageRcpt,
		ClientIP:   netip.MustParseAddr(ip),
		ClientName: "unknown",
		Sender:     sender,
		Recipient:  rcpt,
	}
}

func (e *env) check(req *policy.Request) policy.Verdict {
	e.t.Helper()
	v, err := e.c.Check(context.Background(), req)
	if err != nil {
		e.t.Fatalf("Check: %v", err)
	}
	return v
}

func (e *env) wantTempfail(v policy.Verdict, reply string) {
	e.t.Helper()
	if v.Action != policy.Tempfail || v.Reply() != reply {
		e.t.Fatalf("verdict %v %q (%s), want tempfail %q", v.Action, v.Reply(), v.Reason, reply)
	}
}

func (e *env) wantContinue(v policy.Verdict, reason string) {
	e.t.Helper()
	if v.Action != policy.Continue || v.Reason != reason {
		e.t.Fatalf("verdict %v reason %q, want continue %q", v.Action, v.Reason, reason)
	}
}

const fiveMinutes = "451 4.7.1 Greylisted, please try again in 5 minutes"

func TestGreylistLifecycle(t *testing.T) {
	e := newEnv(t, nil)
	req := rcptReq("192.0.2.10", "Alice@Example.COM", "Bob@Example.ORG")

	v := e.check(req)
	e.wantTempfail(v, fiveMinutes)
	if v.Reason != "greylist: new triplet" {
		t.Errorf("reason %q", v.Reason)
	}
	tr, ok := stored(t, e.st, "192.0.2.0/24", "alice@example.com", "bob@example.org")
	if !ok {
		t.Fatal("new triplet not stored under the /24 and lowercased addresses")
	}
	if !tr.FirstSeen.Equal(t0) || !tr.LastSeen.Equal(t0) || tr.Attempts != 1 || tr.Passed() ||
		!tr.Expires.Equal(t0.Add(48*time.Hour)) {
		t.Errorf("new triplet stored as %+v", tr)
	}

	// An early retry is refused with the remaining wait, rounded up.
	e.advance(time.Minute + 8*time.Second + 500*time.Millisecond)
	v = e.check(req)
	e.wantTempfail(v, "451 4.7.1 Greylisted, please try again in 3 minutes 52 seconds")
	tr, _ = stored(t, e.st, "192.0.2.0/24", "alice@example.com", "bob@example.org")
	if !tr.FirstSeen.Equal(t0) || tr.Attempts != 2 || !tr.LastSeen.Equal(e.now) {
		t.Errorf("after early retry stored %+v", tr)
	}

	// The retry after the delay passes with postgrey's header.
	e.now = t0.Add(5*time.Minute + 7*time.Second)
	req.QueueID = "4ABC123"
	v = e.check(req)
	e.wantContinue(v, "greylist: passed after 307s")
	want := []policy.Header{{Name: "X-Greylist",
		Value: "delayed 307 seconds by mailwarden at mx.example.net; Mon, 02 Mar 2026 10:05:07 +0000"}}
	if !slices.Equal(v.Headers, want) {
		t.Errorf("headers %+v, want %+v", v.Headers, want)
	}
	tr, _ = stored(t, e.st, "192.0.2.0/24", "alice@example.com", "bob@example.org")
	if !tr.PassedAt.Equal(e.now) || tr.Attempts != 3 || !tr.Expires.Equal(e.now.Add(35*24*time.Hour)) {
		t.Errorf("after pass stored %+v", tr)
	}
	if n, _ := e.st.ClientPasses(context.Background(), "192.0.2.0/24", e.now); n != 1 {
		t.Errorf("client passes %d, want 1", n)
	}

	// Later messages pass without a header or a logged reason, and renew
	// the triplet.
	e.advance(20 * 24 * time.Hour)
	req.QueueID = "5DEF456"
	v = e.check(req)
	e.wantContinue(v, "")
	if len(v.Headers) != 0 {
		t.Errorf("routine pass added headers %+v", v.Headers)
	}
	tr, _ = stored(t, e.st, "192.0.2.0/24", "alice@example.com", "bob@example.org")
	if !tr.Expires.Equal(e.now.Add(35 * 24 * time.Hour)) {
		t.Errorf("routine pass did not renew: expires %v", tr.Expires)
	}
}

func TestRetryAfterWindowIsGreylistedAfresh(t *testing.T) {
	e := newEnv(t, nil)
	req := rcptReq("192.0.2.10", "a@example.com", "b@example.org")
	e.wantTempfail(e.check(req), fiveMinutes)

	e.advance(48*time.Hour + time.Second)
	v := e.check(req)
	e.wantTempfail(v, fiveMinutes)
	tr, _ := stored(t, e.st, "192.0.2.0/24", "a@example.com", "b@example.org")
	if !tr.FirstSeen.Equal(e.now) || tr.Attempts != 1 {
		t.Errorf("late retry stored %+v, want a fresh triplet", tr)
	}
	// The fresh triplet still needs the full delay.
	e.advance(4 * time.Minute)
	e.wantTempfail(e.check(req), "451 4.7.1 Greylisted, please try again in 1 minute")
}

func TestLateRetryOfUnexpiredRecordStartsOver(t *testing.T) {
	// A backend may keep a pending record past the window (a longer expiry
	// from an older configuration); the window still decides.
	e := newEnv(t, nil)
	if err := e.st.PutTriplet(context.Background(), store.Triplet{
		Client: "192.0.2.0/24", Sender: "a@example.com", Recipient: "b@example.org",
		FirstSeen: t0.Add(-72 * time.Hour), LastSeen: t0.Add(-72 * time.Hour),
		Attempts: 1, Expires: t0.Add(time.Hour),
	}); err != nil {
		t.Fatal(err)
	}
	v := e.check(rcptReq("192.0.2.10", "a@example.com", "b@example.org"))
	e.wantTempfail(v, fiveMinutes)
	if !strings.HasPrefix(v.Reason, "greylist: new triplet") {
		t.Errorf("reason %q", v.Reason)
	}
	tr, _ := stored(t, e.st, "192.0.2.0/24", "a@example.com", "b@example.org")
	if !tr.FirstSeen.Equal(t0) || tr.Attempts != 1 || !tr.Expires.Equal(t0.Add(48*time.Hour)) {
		t.Errorf("stored %+v", tr)
	}
}

func TestNetblockAggregation(t *testing.T) {
	e := newEnv(t, nil)
	e.wantTempfail(e.check(rcptReq("192.0.2.10", "a@example.com", "b@example.org")), fiveMinutes)
	e.wantTempfail(e.check(rcptReq("2001:db8:1:2::1", "a@example.com", "b@example.org")), fiveMinutes)
	e.advance(6 * time.Minute)

	// Another address in the same /24 and /64 completes the same triplet.
	e.wantContinue(e.check(rcptReq("192.0.2.99", "a@example.com", "b@example.org")), "greylist: passed after 360s")
	e.wantContinue(e.check(rcptReq("2001:db8:1:2:ffff::9", "a@example.com", "b@example.org")), "greylist: passed after 360s")
	// A mapped IPv4 address is the same client as the plain one.
	e.wantContinue(e.check(rcptReq("::ffff:192.0.2.200", "a@example.com", "b@example.org")), "")

	// Neighbouring networks are different clients.
	e.wantTempfail(e.check(rcptReq("192.0.3.10", "a@example.com", "b@example.org")), fiveMinutes)
	e.wantTempfail(e.check(rcptReq("2001:db8:1:3::1", "a@example.com", "b@example.org")), fiveMinutes)
}

// passesInMemoryStore is a store that says it reads pass counts from
// memory, as the SQLite store does.
type passesInMemoryStore struct{ *storetest.Faulty }

func (passesInMemoryStore) PassesInMemory() bool { return true }

func TestAutoWhitelist(t *testing.T) {
	t.Run("pass cache for every client", func(t *testing.T) { autoWhitelist(t, nil) })
	t.Run("store reads passes from memory", func(t *testing.T) {
		autoWhitelist(t, func(o *Options) { o.Store = passesInMemoryStore{o.Store.(*storetest.Faulty)} })
	})
}

// TestPassCacheSkipsNewClients: with a store that reads pass counts
// from memory, the pass cache holds no entry for each new client (a
// burst of new ones would hold it all twice); with another store it
// does, saving a store read for each further recipient.
func TestPassCacheSkipsNewClients(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Options)
		want int
	}{
		{"other store", nil, 50},
		{"passes in memory", func(o *Options) { o.Store = passesInMemoryStore{o.Store.(*storetest.Faulty)} }, 0},
	} {
		e := newEnv(t, tc.mod)
		for i := range 50 {
			e.wantTempfail(e.check(rcptReq(fmt.Sprintf("10.%d.0.1", i+1), "a@example.com", "b@example.org")), fiveMinutes)
		}
		e.c.passes.mu.Lock()
		got := len(e.c.passes.m)
		e.c.passes.mu.Unlock()
		if got != tc.want {
			t.Errorf("%s: pass cache holds %d clients after 50 new ones, want %d", tc.name, got, tc.want)
		}
	}
}

func autoWhitelist(t *testing.T, mod func(*Options)) {
	e := newEnv(t, mod)
	first := rcptReq("198.51.100.20", "news@lists.example.com", "u1@example.org")
	e.wantTempfail(e.check(first), fiveMinutes)
	e.advance(10 * time.Minute)
	e.wantContinue(e.check(first), "greylist: passed after 600s") // pass 1
	for range 3 {                                                 // passes 2-4
		e.advance(time.Hour)
		e.wantContinue(e.check(first), "")
	}

	// Four passes are not enough: a new triplet is greylisted.
	e.wantTempfail(e.check(rcptReq("198.51.100.21", "news@lists.example.com", "u2@example.org")), fiveMinutes)

	e.advance(time.Hour)
	e.wantContinue(e.check(first), "") // pass 5

	v := e.check(rcptReq("198.51.100.22", "other@lists.example.com", "u3@example.org"))
	e.wantContinue(v, "greylist: skipped: auto-whitelisted client 198.51.100.0/24 (5 passes)")
	if _, ok := stored(t, e.st, "198.51.100.0/24", "other@lists.example.com", "u3@example.org"); ok {
		t.Error("auto-whitelisted client got a triplet")
	}
	// A whitelisted client's deliveries are counted at most hourly, so the
	// busiest senders do not cost a store write per message...
	if n, _ := e.st.ClientPasses(context.Background(), "198.51.100.0/24", e.now); n != 5 {
		t.Errorf("passes %d after a whitelisted delivery within the hour, want 5", n)
	}
	// ...but one that keeps sending is counted again and stays whitelisted.
	e.advance(time.Hour)
	e.wantContinue(e.check(rcptReq("198.51.100.22", "other@lists.example.com", "u4@example.org")),
		"greylist: skipped: auto-whitelisted client 198.51.100.0/24 (5 passes)")
	if n, _ := e.st.ClientPasses(context.Background(), "198.51.100.0/24", e.now); n != 6 {
		t.Errorf("passes %d after a whitelisted delivery an hour later, want 6", n)
	}
	// Another network is not affected.
	e.wantTempfail(e.check(rcptReq("203.0.113.5", "other@lists.example.com", "u3@example.org")), fiveMinutes)
}

func TestAutoWhitelistOff(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.AutoWhitelistAfter = 0 })
	for range 100 {
		if _, err := e.st.AddClientPass(context.Background(), "198.51.100.0/24", t0, t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	e.wantTempfail(e.check(rcptReq("198.51.100.20", "a@example.com", "b@example.org")), fiveMinutes)
}

func TestSkipReasons(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.WhitelistClients = []string{"mail.example.com", "198.51.100.7", "/^smtp\\d+\\.example\\.net$/"}
	})
	tests := []struct {
		name   string
		modify func(*policy.Request)
		reason string
	}{
		{"authenticated", func(r *policy.Request) { r.SASLUser = "alice" },
			"greylist: skipped: authenticated"},
		// The pipeline's Classify, from the one sites registry, marks
		// internal clients before any check runs.
		{"internal", func(r *policy.Request) { r.ClientIP, r.Internal = netip.MustParseAddr("10.20.30.40"), true },
			"greylist: skipped: internal client"},
		{"postmaster", func(r *policy.Request) { r.Recipient = "PostMaster@Example.org" },
			"greylist: skipped: whitelisted recipient postmaster@"},
		{"abuse with extension", func(r *policy.Request) { r.Recipient = "abuse+spam@example.org" },
			"greylist: skipped: whitelisted recipient abuse@"},
		{"client name", func(r *policy.Request) { r.ClientName = "Out1.Mail.Example.com" },
			"greylist: skipped: whitelisted client name mail.example.com"},
		{"client regexp", func(r *policy.Request) { r.ClientName = "smtp12.example.net" },
			`greylist: skipped: whitelisted client name /^smtp\d+\.example\.net$/`},
		{"client address", func(r *policy.Request) { r.ClientIP = netip.MustParseAddr("198.51.100.7") },
			"greylist: skipped: whitelisted client address 198.51.100.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := rcptReq("203.0.113.9", "a@example.com", "b@example.org")
			tt.modify(req)
			e.wantContinue(e.check(req), tt.reason)
		})
	}
	if ts := allTriplets(t, e.st); len(ts) != 0 {
		t.Errorf("skipped requests stored triplets: %v", ts)
	}
	// Near misses are greylisted.
	for _, req := range []*policy.Request{
		rcptReq("203.0.113.9", "a@example.com", "postmaster.team@example.org"),
		rcptReq("198.51.100.8", "a@example.com", "b@example.org"),
		func() *policy.Request {
			r := rcptReq("203.0.113.9", "a@example.com", "b@example.org")
			r.ClientName = "notmail.example.com.evil.test"
			return r
		}(),
	} {
		e.wantTempfail(e.check(req), fiveMinutes)
	}
}

func TestSkipsCanBeTurnedOff(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.SkipAuthenticated, o.SkipInternal = false, false })
	req := rcptReq("10.1.1.1", "a@example.com", "b@example.org")
	req.SASLUser, req.Internal = "alice", true
	e.wantTempfail(e.check(req), fiveMinutes)
}

func TestUnknownClient(t *testing.T) {
	e := newEnv(t, nil)
	req := rcptReq("192.0.2.1", "a@example.com", "b@example.org")
	req.ClientIP = netip.Addr{}
	e.wantTempfail(e.check(req), fiveMinutes)
	if _, ok := stored(t, e.st, "unknown", "a@example.com", "b@example.org"); !ok {
		t.Fatal("no triplet under client \"unknown\"")
	}
	e.advance(6 * time.Minute)
	e.wantContinue(e.check(req), "greylist: passed after 360s")
	if ps := allPasses(t, e.st); len(ps) != 0 {
		t.Errorf("address-less client counted toward auto-whitelisting: %v", ps)
	}
}

func TestStoreErrorIsReturned(t *testing.T) {
	for _, awl := range []int{0, 5} {
		e := newEnv(t, func(o *Options) { o.AutoWhitelistAfter = awl })
		boom := errors.New("database is locked")
		e.st.FailAll(boom)
		v, err := e.c.Check(context.Background(), rcptReq("192.0.2.1", "a@example.com", "b@example.org"))
		if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "greylist: ") {
			t.Errorf("awl=%d: err %v, want a wrapped store error", awl, err)
		}
		if v.Action != policy.Continue || v.Reason != "" {
			t.Errorf("awl=%d: verdict %+v returned with an error", awl, v)
		}
	}
}

func TestOtherStagesContinue(t *testing.T) {
	e := newEnv(t, nil)
	for _, st := range []policy.Stage{policy.StageConnect, policy.StageHelo, policy.StageMail, policy.StageData, policy.StageEOM} {
		req := rcptReq("192.0.2.1", "a@example.com", "b@example.org")
		req.Stage = st
		e.wantContinue(e.check(req), "")
	}
	if len(allTriplets(t, e.st)) != 0 {
		t.Error("a non-RCPT stage stored a triplet")
	}
}

func TestOneHeaderPerMessage(t *testing.T) {
	e := newEnv(t, nil)
	for _, r := range []string{"b@example.org", "c@example.org"} {
		e.check(rcptReq("192.0.2.1", "a@example.com", r))
	}
	e.advance(5 * time.Minute)
	var headers int
	for _, r := range []string{"b@example.org", "c@example.org"} {
		req := rcptReq("192.0.2.1", "a@example.com", r)
		req.QueueID = "ABC"
		headers += len(e.check(req).Headers)
	}
	if headers != 1 {
		t.Errorf("%d X-Greylist headers for one message, want 1", headers)
	}
}

func TestNoHeaderWhenOff(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.AddHeader = false })
	req := rcptReq("192.0.2.1", "a@example.com", "b@example.org")
	e.check(req)
	e.advance(5 * time.Minute)
	if v := e.check(req); len(v.Headers) != 0 {
		t.Errorf("headers %+v with AddHeader off", v.Headers)
	}
}

func TestAllow(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	req := rcptReq("192.0.2.10", "a@example.com", "b@example.org")
	e.wantTempfail(e.check(req), fiveMinutes)

	e.advance(time.Minute)
	if err := e.c.Allow(ctx, netip.MustParseAddr("192.0.2.77"), "A@Example.com", "B@example.ORG"); err != nil {
		t.Fatalf("Allow: %v", err)
	}
	tr, _ := stored(t, e.st, "192.0.2.0/24", "a@example.com", "b@example.org")
	if !tr.PassedAt.Equal(e.now) || !tr.Expires.Equal(e.now.Add(35*24*time.Hour)) {
		t.Errorf("allowed triplet stored as %+v", tr)
	}
	e.wantContinue(e.check(req), "")

	err := e.c.Allow(ctx, netip.MustParseAddr("192.0.2.77"), "nobody@example.com", "b@example.org")
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Allow of a missing triplet: %v, want ErrNotFound", err)
	}

	// The function form, as the CLI uses it.
	e.check(rcptReq("2001:db8::5", "", "c@example.org"))
	nb := Netblock(netip.MustParseAddr("2001:db8::99"), 24, 64)
	if err := Allow(ctx, e.st, nb, "", "c@example.org", e.now, 24*time.Hour); err != nil {
		t.Fatalf("Allow: %v", err)
	}
	tr, _ = stored(t, e.st, "2001:db8::/64", "", "c@example.org")
	if !tr.Passed() || !tr.Expires.Equal(e.now.Add(24*time.Hour)) {
		t.Errorf("allowed triplet stored as %+v", tr)
	}
}

func TestNetblock(t *testing.T) {
	tests := []struct {
		ip     string
		v4, v6 int
		want   string
	}{
		{"192.0.2.10", 24, 64, "192.0.2.0/24"},
		{"192.0.2.10", 32, 64, "192.0.2.10/32"},
		{"::ffff:192.0.2.10", 24, 64, "192.0.2.0/24"},
		{"2001:db8:1:2:3:4:5:6", 24, 64, "2001:db8:1:2::/64"},
		{"2001:db8:1:2:3:4:5:6", 24, 48, "2001:db8:1::/48"},
		{"fe80::1%eth0", 24, 64, "fe80::/64"},
		{"192.0.2.10", 40, 64, "192.0.2.10/32"}, // clamped
		{"0.0.0.0", 24, 64, "unknown"},
		{"::", 24, 64, "unknown"},
	}
	for _, tt := range tests {
		if got := Netblock(netip.MustParseAddr(tt.ip), tt.v4, tt.v6); got != tt.want {
			t.Errorf("Netblock(%s, %d, %d) = %q, want %q", tt.ip, tt.v4, tt.v6, got, tt.want)
		}
	}
	if got := Netblock(netip.Addr{}, 24, 64); got != "unknown" {
		t.Errorf("Netblock(zero) = %q", got)
	}
}

func TestFormatWait(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{5 * time.Minute, "5 minutes"},
		{4*time.Minute + 51*time.Second + time.Millisecond, "4 minutes 52 seconds"},
		{time.Second, "1 second"},
		{time.Nanosecond, "1 second"},
		{61 * time.Second, "1 minute 1 second"},
		{90 * time.Minute, "1 hour 30 minutes"},
		{2*time.Hour + 5*time.Second, "2 hours 5 seconds"},
	}
	for _, tt := range tests {
		if got := formatWait(tt.d); got != tt.want {
			t.Errorf("formatWait(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestOptionErrors(t *testing.T) {
	_, err := New(Options{
		Delay:       time.Hour,
		RetryWindow: 30 * time.Minute,
		IPv4Prefix:  33,
		IPv6Prefix:  -1,
		ReplyText:   "try again\r\n250 OK",
	})
	if err == nil {
		t.Fatal("New accepted bad options")
	}
	for _, want := range []string{
		"greylist: delay 1h0m0s must be shorter than the retry window 30m0s",
		"greylist: IPv4 prefix length 33 is not between 1 and 32",
		"greylist: IPv6 prefix length -1 is not between 1 and 128",
		"greylist: reply: the text contains a line break, a control character",
		"greylist: no store",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestZeroOptionsTakeDefaults(t *testing.T) {
	st := newStore()
	c, err := New(Options{Store: st, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.Check(context.Background(), rcptReq("192.0.2.1", "a@example.com", "b@example.org"))
	if err != nil || v.Reply() != fiveMinutes {
		t.Fatalf("verdict %q, %v", v.Reply(), err)
	}
	if _, ok := stored(t, st, "192.0.2.0/24", "a@example.com", "b@example.org"); !ok {
		t.Error("default IPv4 aggregation is not /24")
	}
}
