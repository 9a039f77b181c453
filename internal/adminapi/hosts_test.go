package adminapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/adminapi/adminapitest"
	"mailwarden/internal/hosts"
	"mailwarden/internal/scan"
	"mailwarden/internal/sites"
	"mailwarden/internal/store"
	"mailwarden/internal/store/sqlite"
)

// hostsFixture serves a real host registry over a temporary SQLite store
// holding one latched host with trap hits.
func hostsFixture(t *testing.T) (*Client, *sqlite.Store) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	st, err := sqlite.OpenWith(t.TempDir(), log, sqlite.Options{Mirror: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	sr, err := sites.New([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		[]sites.Site{{Name: "lincoln", Networks: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}})
	if err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return t0 }
	reg, err := hosts.New(hosts.Options{Store: st, Sites: func() *sites.Registry { return sr }, Now: now, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := st.AddLatch(ctx, store.Latch{Kind: store.LatchClient, Key: "10.1.2.3", Rule: "sender_domain",
		Reason: "envelope sender domain evil.example not allowed", Evidence: "boss@evil.example"}, t0.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := st.AppendEvents(ctx, store.Event{Time: t0.Add(-time.Hour), Kind: store.EventLatch, Check: "sender",
		Action: "reject", Client: "10.1.2.3", Reason: "envelope sender domain evil.example not allowed",
		Expires: t0.AddDate(10, 0, 0)}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddTrapHits(ctx, store.TrapRecord{Client: "10.1.2.3", FirstSeen: t0.Add(-2 * time.Hour),
		LastSeen: t0.Add(-90 * time.Minute), Count: 7, LastHelo: "pc17", LastMailFrom: "x@spam.example",
		LastDst: "192.0.2.25:25"}); err != nil {
		t.Fatal(err)
	}
	c, _ := start(t, Options{Backend: st, Hosts: reg, Now: now, Log: log})
	return c, st
}

func TestHostsListShowNoteDisinfect(t *testing.T) {
	c, _ := hostsFixture(t)
	ctx := context.Background()
	ip := netip.MustParseAddr("10.1.2.3")

	hs, err := c.Hosts(ctx, hosts.HostFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 1 || hs[0].IP != "10.1.2.3" || hs[0].Site != "lincoln" || hs[0].Status != hosts.StatusLatched {
		t.Fatalf("hosts: got %+v", hs)
	}
	if hs[0].Trap == nil || hs[0].Trap.Count != 7 || hs[0].Evidence[hosts.KindTrap] != 7 {
		t.Errorf("trap evidence: got %+v, counts %v", hs[0].Trap, hs[0].Evidence)
	}
	if hs, _ := c.Hosts(ctx, hosts.HostFilter{Status: hosts.StatusSuspect}); len(hs) != 0 {
		t.Errorf("status=suspect: got %+v, want none", hs)
	}
	if _, err := c.Hosts(ctx, hosts.HostFilter{Status: "sick"}); !BadInput(err) {
		t.Errorf("status=sick: got %v, want a 400", err)
	}

	h, err := c.Host(ctx, ip)
	if err != nil {
		t.Fatal(err)
	}
	if h.Trap == nil || h.Trap.LastHelo != "pc17" || h.Trap.LastMailFrom != "x@spam.example" || h.Trap.LastDst != "192.0.2.25:25" {
		t.Errorf("trap details: got %+v", h.Trap)
	}
	if len(h.ActiveLatches) != 1 || len(h.Events) == 0 {
		t.Errorf("latches %+v, events %+v", h.ActiveLatches, h.Events)
	}
	if _, err := c.Host(ctx, netip.MustParseAddr("10.9.9.9")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown host: got %v, want not found", err)
	}

	if _, err := c.NoteHost(ctx, ip, "  "); !BadInput(err) {
		t.Errorf("empty note: got %v, want a 400", err)
	}
	n, err := c.NoteHost(ctx, ip, "owner is in room 12")
	if err != nil {
		t.Fatal(err)
	}
	if n.By != me(t) {
		t.Errorf("note by %q, want the peer's user %q", n.By, me(t))
	}

	if _, err := c.DisinfectHost(ctx, ip, ""); !BadInput(err) || !strings.Contains(err.Error(), "note") {
		t.Errorf("disinfect without a note: got %v, want a 400 asking for one", err)
	}
	d, err := c.DisinfectHost(ctx, ip, "reimaged")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Cleared) != 1 || d.Cleared[0].ClearedBy != me(t) || d.Cleared[0].ClearNote != "reimaged" {
		t.Errorf("cleared latches: got %+v", d.Cleared)
	}
	h, err = c.Host(ctx, ip)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Notes) != 1 || h.Notes[0].Text != "owner is in room 12" || len(h.Disinfections) != 1 ||
		h.Disinfections[0].By != me(t) || len(h.ActiveLatches) != 0 {
		t.Errorf("after note and disinfect: notes %+v, disinfections %+v, latches %+v", h.Notes, h.Disinfections, h.ActiveLatches)
	}
}

func TestTimeline(t *testing.T) {
	c, _ := hostsFixture(t)
	es, err := c.Timeline(context.Background(), time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The trap hit came first, then the forgery; the latch is left out.
	if len(es) != 2 || es[0].Kind != hosts.KindTrap || es[1].Kind != hosts.KindForgery || es[0].IP != "10.1.2.3" {
		t.Fatalf("timeline: got %+v", es)
	}
	if es, _ := c.Timeline(context.Background(), time.Time{}, 1); len(es) != 1 {
		t.Errorf("limit 1: got %d entries", len(es))
	}
}

func TestHostsAndScanNotConfigured(t *testing.T) {
	c, _ := start(t, Options{Backend: nil})
	ctx := context.Background()
	var ae *APIError
	if _, err := c.Hosts(ctx, hosts.HostFilter{}); !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable {
		t.Errorf("hosts without a registry: got %v, want 503", err)
	}
	if _, err := c.Scan(ctx, nil); !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable {
		t.Errorf("scan without a scanner: got %v, want 503", err)
	}
}

func TestScan(t *testing.T) {
	var got []netip.Prefix
	fake := func(_ context.Context, targets []netip.Prefix) (scan.Summary, []scan.Finding, error) {
		got = targets
		allowed := netip.MustParsePrefix("10.1.0.0/16")
		for _, p := range targets {
			if !allowed.Contains(p.Addr()) {
				return scan.Summary{}, nil, errors.Join(scan.ErrOutsideRange, errors.New("192.0.2.0/24 is not in 10.1.0.0/16"))
			}
		}
		return scan.Summary{Probed: 3, Open: 1, Closed: 2, Duration: time.Second}, []scan.Finding{
			{Addr: netip.MustParseAddr("10.1.0.5"), Port: 1080, Open: true, Time: t0},
			{Addr: netip.MustParseAddr("10.1.0.6"), Port: 1080, Err: "refused", Time: t0},
		}, nil
	}
	mem := adminapitest.New()
	c, _ := start(t, Options{Scan: fake, Backend: mem})
	ctx := context.Background()
	res, err := c.Scan(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A scan is an admin action: it is in the audit log.
	if evs, _ := mem.QueryEvents(ctx, store.EventFilter{Kind: store.EventAdmin}); len(evs) != 1 || evs[0].Check != "scan" ||
		evs[0].User != me(t) || evs[0].Reason != "scanned the configured ranges: 3 probed, 1 open" {
		t.Errorf("admin events after a scan: %+v", evs)
	}
	if got != nil || res.Probed != 3 || res.Open != 1 || len(res.OpenPorts) != 1 || res.OpenPorts[0].IP != "10.1.0.5" {
		t.Errorf("scan of all ranges: targets %v, result %+v", got, res)
	}
	if _, err := c.Scan(ctx, []string{"10.1.0.0/24", "10.1.9.9"}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1] != netip.MustParsePrefix("10.1.9.9/32") {
		t.Errorf("targets passed on: %v", got)
	}
	_, err = c.Scan(ctx, []string{"192.0.2.0/24"})
	if !BadInput(err) || !strings.Contains(err.Error(), "192.0.2.0/24 is not in 10.1.0.0/16") {
		t.Errorf("outside range: got %v, want a 400 with the scanner's message", err)
	}
	if _, err := c.Scan(ctx, []string{"10.1.0.0/33"}); !BadInput(err) {
		t.Errorf("bad CIDR: got %v, want a 400", err)
	}
}
