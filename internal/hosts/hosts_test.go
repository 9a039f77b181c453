package hosts

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	"mailwarden/internal/events"
	"mailwarden/internal/sites"
	"mailwarden/internal/store"
	"mailwarden/internal/store/sqlite"
)

type fixture struct {
	t   *testing.T
	st  *sqlite.Store
	reg *Registry
	now time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	st, err := sqlite.OpenWith(t.TempDir(), log, sqlite.Options{Mirror: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	sr, err := sites.New([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, []sites.Site{
		{Name: "lincoln", Networks: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}},
		{Name: "oak", Networks: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, st: st, now: time.UnixMilli(time.Now().UnixMilli())}
	f.reg, err = New(Options{Store: st, Sites: func() *sites.Registry { return sr }, Now: func() time.Time { return f.now }, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) events(evs ...store.Event) {
	f.t.Helper()
	if err := f.st.AppendEvents(context.Background(), evs...); err != nil {
		f.t.Fatal(err)
	}
}

// forgery records what the sender check does when it latches a client:
// the latch, a reject event for the forgery and a latch event beside it.
func (f *fixture) forgery(ip string, at time.Time) store.Latch {
	f.t.Helper()
	reason := "envelope sender domain evil.example not allowed for site lincoln"
	l, err := f.st.AddLatch(context.Background(), store.Latch{Kind: store.LatchClient, Key: ip, Rule: "sender_domain",
		Reason: reason, Evidence: "boss@evil.example"}, at)
	if err != nil {
		f.t.Fatal(err)
	}
	f.events(store.Event{Time: at, Kind: store.EventReject, Check: "sender", Action: "reject", Client: ip, Reason: "sender: " + reason},
		store.Event{Time: at, Kind: store.EventLatch, Check: "sender", Action: "reject", Client: ip, Reason: "latched client " + ip})
	return l
}

func (f *fixture) trap(ip string, first, last time.Time, n int) {
	f.t.Helper()
	if err := f.st.AddTrapHits(context.Background(), store.TrapRecord{Client: ip, FirstSeen: first, LastSeen: last,
		Count: n, LastHelo: "pc17"}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) get(ip string) Host {
	f.t.Helper()
	h, err := f.reg.Get(context.Background(), netip.MustParseAddr(ip))
	if err != nil {
		f.t.Fatalf("Get(%s): %v", ip, err)
	}
	return h
}

func TestHostEvidenceAndDisinfect(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	base := f.now
	const ip = "10.1.2.3"
	f.trap(ip, base, base.Add(time.Minute), 3)
	latch := f.forgery(ip, base.Add(2*time.Minute))
	if err := f.st.RecordPort(ctx, store.PortFinding{Client: ip, Port: 1080, Open: true, Time: base.Add(3 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := f.st.RecordLogin(ctx, store.MailLogin{Client: ip, User: "alice", Service: "imap", Time: base}); err != nil {
		t.Fatal(err)
	}
	// Other hosts' evidence and harmless events stay out of this host.
	f.trap("10.2.0.9", base, base, 1)
	f.events(store.Event{Time: base, Kind: store.EventReject, Check: "greylist", Client: ip, Reason: "not evidence"})

	f.now = base.Add(5 * time.Minute)
	h := f.get(ip)
	if h.Site != "lincoln" || !h.Internal || h.Status != StatusLatched || h.LastLogin.User != "alice" {
		t.Errorf("host = site %q internal %v status %q user %q; want lincoln, true, latched, alice",
			h.Site, h.Internal, h.Status, h.LastLogin.User)
	}
	wantEvidence := map[string]int{KindTrap: 3, KindForgery: 1, KindLatch: 1, KindBackdoor: 1}
	if !maps.Equal(h.Evidence, wantEvidence) {
		t.Errorf("Evidence = %v, want %v", h.Evidence, wantEvidence)
	}
	if !h.FirstSeen.Equal(base) || !h.LastSeen.Equal(base.Add(3*time.Minute)) {
		t.Errorf("seen %v .. %v, want %v .. %v", h.FirstSeen, h.LastSeen, base, base.Add(3*time.Minute))
	}
	if h.Trap.Count != 3 || h.Trap.LastHelo != "pc17" || len(h.OpenPorts) != 1 || h.OpenPorts[0].Port != 1080 {
		t.Errorf("trap %+v, open ports %+v; want 3 hits and port 1080", h.Trap, h.OpenPorts)
	}
	if len(h.ActiveLatches) != 1 || h.ActiveLatches[0].ID != latch.ID || len(h.Events) != 3 {
		t.Errorf("active latches %+v, %d events; want latch %s and 3 events (forgery, latch, greylist)", h.ActiveLatches, len(h.Events), latch.ID)
	}

	if err := f.reg.Note(ctx, netip.MustParseAddr(ip), "tech", "pulled from the lab"); err != nil {
		t.Fatal(err)
	}
	f.now = base.Add(10 * time.Minute)
	// As the admin API does: the disinfection is audited through the
	// event log, and the registry completes the entry.
	var cleared []store.Latch
	err := events.NewLog(events.LogOptions{Store: f.st}).Audit(ctx,
		events.Admin{Who: "tech", Action: "hosts disinfect", Client: ip, Reason: "disinfected: reimaged"},
		func(ctx context.Context) (err error) {
			cleared, err = f.reg.Disinfect(ctx, netip.MustParseAddr(ip), "tech", "reimaged")
			return err
		})
	if err != nil {
		t.Fatalf("Disinfect: %v", err)
	}
	if len(cleared) != 1 || cleared[0].ID != latch.ID || cleared[0].ClearedBy != "tech" || cleared[0].ClearNote != "reimaged" {
		t.Fatalf("Disinfect cleared %+v, want latch %s cleared by tech", cleared, latch.ID)
	}
	if _, err := f.st.ActiveLatch(ctx, store.LatchClient, ip, f.now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ActiveLatch after Disinfect: err = %v, want ErrNotFound", err)
	}
	h = f.get(ip)
	if h.Status != StatusDisinfected || len(h.ActiveLatches) != 0 || len(h.Notes) != 1 || h.Notes[0].Text != "pulled from the lab" ||
		len(h.Disinfections) != 1 || h.Disinfections[0].By != "tech" {
		t.Errorf("after Disinfect: status %q, latches %d, notes %+v, disinfections %+v",
			h.Status, len(h.ActiveLatches), h.Notes, h.Disinfections)
	}
	admin, err := f.st.QueryEvents(ctx, store.EventFilter{Kind: store.EventAdmin, Client: ip})
	if err != nil || len(admin) != 1 || admin[0].Check != "hosts disinfect" || admin[0].User != "tech" || admin[0].Site != "lincoln" ||
		admin[0].Reason != "disinfected: reimaged; cleared latches "+latch.ID {
		t.Errorf("admin events = %+v, %v; want one hosts disinfect by tech", admin, err)
	}

	// Evidence after the disinfection makes it a suspect again.
	f.events(store.Event{Time: base.Add(11 * time.Minute), Kind: store.EventRateTrip, Check: "ratelimit",
		Client: ip, Reason: "rate limit user alice"})
	f.now = base.Add(12 * time.Minute)
	if h = f.get(ip); h.Status != StatusSuspect || h.Evidence[KindRateTrip] != 1 {
		t.Errorf("after new evidence: status %q, rate trips %d; want suspect, 1", h.Status, h.Evidence[KindRateTrip])
	}

	if _, err := f.reg.Get(ctx, netip.MustParseAddr("10.9.9.9")); !errors.Is(err, ErrUnknownHost) {
		t.Errorf("Get of a host without evidence: err = %v, want ErrUnknownHost", err)
	}
}

func TestList(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	base := f.now
	f.trap("10.2.0.9", base, base.Add(time.Minute), 2) // oak, suspect
	f.forgery("10.1.2.3", base.Add(5*time.Minute))     // lincoln, latched
	// An inbound virus from outside is not evidence against its MTA; a
	// greylist deferral is no evidence at all.
	f.events(inboundVirus("198.51.100.7", base, "alice@school.example"),
		store.Event{Time: base, Kind: store.EventTempfail, Check: "greylist", Client: "10.3.3.3"})

	ips := func(fl HostFilter) []string {
		t.Helper()
		hs, err := f.reg.List(ctx, fl)
		if err != nil {
			t.Fatalf("List(%+v): %v", fl, err)
		}
		var out []string
		for _, h := range hs {
			out = append(out, h.IP.String())
		}
		return out
	}
	for _, c := range []struct {
		f    HostFilter
		want []string
	}{
		{HostFilter{}, []string{"10.1.2.3", "10.2.0.9"}},
		{HostFilter{Site: "oak"}, []string{"10.2.0.9"}},
		{HostFilter{Status: StatusLatched}, []string{"10.1.2.3"}},
		{HostFilter{Status: StatusSuspect}, []string{"10.2.0.9"}},
		{HostFilter{Since: base.Add(2 * time.Minute)}, []string{"10.1.2.3"}},
		{HostFilter{Limit: 1}, []string{"10.1.2.3"}},
	} {
		if got := ips(c.f); !slices.Equal(got, c.want) {
			t.Errorf("List(%+v) = %v, want %v", c.f, got, c.want)
		}
	}
}

func TestTimeline(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	base := f.now
	// A virus reaches alice; later her machine forges mail, then a
	// machine at another site starts hitting the worm trap.
	f.events(inboundVirus("198.51.100.7", base, "alice@school.example"))
	if err := f.st.RecordLogin(ctx, store.MailLogin{Client: "10.1.2.3", User: "alice", Service: "imap", Time: base}); err != nil {
		t.Fatal(err)
	}
	f.forgery("10.1.2.3", base.Add(time.Hour))
	f.forgery("10.1.2.3", base.Add(90*time.Minute)) // a later repeat is not a new entry
	f.trap("10.2.0.9", base.Add(2*time.Hour), base.Add(3*time.Hour), 40)
	f.now = base.Add(4 * time.Hour)

	entries, err := f.reg.Timeline(ctx, time.Time{}, 0)
	if err != nil {
		t.Fatalf("Timeline: %v", err)
	}
	type line struct{ ip, site, kind, user string }
	var got []line
	for _, e := range entries {
		got = append(got, line{e.IP, e.Site, e.Kind, e.User})
	}
	want := []line{
		{"198.51.100.7", "", KindInboundVirus, ""},
		{"10.1.2.3", "lincoln", KindForgery, "alice"},
		{"10.2.0.9", "oak", KindTrap, ""},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Timeline = %+v, want %+v", got, want)
	}
	if e := entries[0]; !slices.Equal(e.Recipients, []string{"alice@school.example"}) ||
		e.Detail != "virus Win.Worm.Mydoom delivered to alice@school.example" || !e.Time.Equal(base) {
		t.Errorf("first entry = %+v", e)
	}
	if e := entries[1]; !e.Time.Equal(base.Add(time.Hour)) {
		t.Errorf("forgery entry at %v, want its first forgery at %v", e.Time, base.Add(time.Hour))
	}

	later, err := f.reg.Timeline(ctx, base.Add(100*time.Minute), 0)
	if err != nil || len(later) != 1 || later[0].Kind != KindTrap {
		t.Errorf("Timeline since the trap hits = %+v, %v; want the trap entry only", later, err)
	}
	if two, err := f.reg.Timeline(ctx, time.Time{}, 2); err != nil || len(two) != 2 || two[1].Kind != KindForgery {
		t.Errorf("Timeline limited to 2 = %+v, %v; want the two earliest", two, err)
	}
}

// inboundVirus is the event the antivirus check records for an inbound
// virus to internal recipients.
func inboundVirus(client string, at time.Time, rcpt string) store.Event {
	return store.Event{Time: at, Kind: store.EventVirus, Check: "antivirus", Action: "reject", Client: client,
		Recipients: []string{rcpt},
		Reason:     "antivirus: virus Win.Worm.Mydoom found in inbound message by clamd 127.0.0.1:3310; reject; internal recipients " + rcpt}
}
