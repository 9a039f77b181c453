package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"mailwarden/internal/store"
)

func addTrap(t *testing.T, s store.Store, recs ...store.TrapRecord) {
	t.Helper()
	if err := s.AddTrapHits(context.Background(), recs...); err != nil {
		t.Fatalf("AddTrapHits: %v", err)
	}
}

func trapRecords(t *testing.T, s store.Store, client string) []store.TrapRecord {
	t.Helper()
	return ret(s.TrapRecords(context.Background(), client)).must(t, "TrapRecords(%q)", client)
}

func assertTrap(t *testing.T, got, want store.TrapRecord) {
	t.Helper()
	if got.Client != want.Client || got.Count != want.Count || !got.FirstSeen.Equal(want.FirstSeen) ||
		!got.LastSeen.Equal(want.LastSeen) || got.LastDst != want.LastDst || got.LastHelo != want.LastHelo ||
		got.LastMailFrom != want.LastMailFrom {
		t.Errorf("trap record =\n %+v\nwant\n %+v", got, want)
	}
}

// testTrapMerge adds drain intervals out of order, as the daemon and a
// CLI import may, and checks the documented merge.
func testTrapMerge(t *testing.T, s store.Store) {
	base := baseTime()
	const ip = "10.1.2.3"
	addTrap(t, s, store.TrapRecord{Client: ip, FirstSeen: base, LastSeen: base.Add(time.Minute), Count: 3,
		LastDst: "192.0.2.1:25", LastHelo: "pc17", LastMailFrom: "a@evil.example"})
	// Newer, silent HELO: the older HELO stays.
	addTrap(t, s, store.TrapRecord{Client: ip, FirstSeen: base.Add(2 * time.Minute), LastSeen: base.Add(3 * time.Minute),
		Count: 2, LastDst: "192.0.2.9:25", LastMailFrom: "b@evil.example"})
	// Older than everything: moves FirstSeen back, overrides nothing.
	addTrap(t, s, store.TrapRecord{Client: ip, FirstSeen: base.Add(-time.Hour), LastSeen: base.Add(-time.Hour),
		Count: 1, LastDst: "198.51.100.1:25", LastHelo: "old", LastMailFrom: "old@evil.example"})
	want := store.TrapRecord{Client: ip, FirstSeen: base.Add(-time.Hour), LastSeen: base.Add(3 * time.Minute), Count: 6,
		LastDst: "192.0.2.9:25", LastHelo: "pc17", LastMailFrom: "b@evil.example"}
	got := trapRecords(t, s, ip)
	if len(got) != 1 {
		t.Fatalf("TrapRecords(%q) = %+v, want one record", ip, got)
	}
	assertTrap(t, got[0], want)

	// An older record fills a field the newer one left empty.
	const other = "10.9.9.9"
	addTrap(t, s, store.TrapRecord{Client: other, FirstSeen: base.Add(time.Hour), LastSeen: base.Add(time.Hour), Count: 1})
	addTrap(t, s, store.TrapRecord{Client: other, FirstSeen: base, LastSeen: base, Count: 4, LastHelo: "infected"})
	wantOther := store.TrapRecord{Client: other, FirstSeen: base, LastSeen: base.Add(time.Hour), Count: 5, LastHelo: "infected"}

	all := trapRecords(t, s, "")
	if len(all) != 2 {
		t.Fatalf("TrapRecords(\"\") = %+v, want two records", all)
	}
	// Newest LastSeen first.
	assertTrap(t, all[0], wantOther)
	assertTrap(t, all[1], want)
	if recs := trapRecords(t, s, "10.0.0.1"); len(recs) != 0 {
		t.Errorf("TrapRecords of an unknown client = %+v, want none", recs)
	}
}

func recordPort(t *testing.T, s store.Store, client string, port int, open bool, at time.Time) {
	t.Helper()
	if err := s.RecordPort(context.Background(), store.PortFinding{Client: client, Port: port, Open: open, Time: at}); err != nil {
		t.Fatalf("RecordPort(%s:%d open=%v): %v", client, port, open, err)
	}
}

func portsString(ps []store.PortState) string {
	out := ""
	for _, p := range ps {
		out += fmt.Sprintf("[%s:%d open=%v first=%d checked=%d]", p.Client, p.Port, p.Open,
			p.FirstOpen.UnixMilli(), p.LastChecked.UnixMilli())
	}
	return out
}

func assertPorts(t *testing.T, what string, got, want []store.PortState) {
	t.Helper()
	for i := range want {
		// Compare zero FirstOpen as zero, not as the epoch.
		if want[i].FirstOpen.IsZero() != (i < len(got) && got[i].FirstOpen.IsZero()) {
			t.Errorf("%s = %s, want %s", what, portsString(got), portsString(want))
			return
		}
	}
	if portsString(got) != portsString(want) {
		t.Errorf("%s = %s, want %s", what, portsString(got), portsString(want))
	}
}

func testPorts(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := baseTime()
	const ip = "10.1.2.3"
	recordPort(t, s, ip, 1080, false, base)
	ps, err := s.Ports(ctx, ip)
	if err != nil || len(ps) != 0 {
		t.Fatalf("Ports after a closed finding = %s, %v; want none kept", portsString(ps), err)
	}
	recordPort(t, s, ip, 1080, true, base.Add(time.Minute))
	recordPort(t, s, ip, 1080, false, base.Add(30*time.Second)) // older: ignored
	recordPort(t, s, ip, 1080, true, base.Add(2*time.Minute))
	recordPort(t, s, "10.0.0.7", 3127, true, base)
	recordPort(t, s, ip, 25, true, base)

	open := []store.PortState{
		{Client: ip, Port: 25, Open: true, FirstOpen: base, LastChecked: base},
		{Client: ip, Port: 1080, Open: true, FirstOpen: base.Add(time.Minute), LastChecked: base.Add(2 * time.Minute)},
	}
	got, err := s.OpenPorts(ctx, ip)
	if err != nil {
		t.Fatalf("OpenPorts: %v", err)
	}
	assertPorts(t, "OpenPorts", got, open)

	recordPort(t, s, ip, 1080, false, base.Add(3*time.Minute))
	// An older open finding moves FirstOpen back but does not reopen.
	recordPort(t, s, ip, 1080, true, base.Add(-time.Minute))
	closed := store.PortState{Client: ip, Port: 1080, Open: false, FirstOpen: base.Add(-time.Minute), LastChecked: base.Add(3 * time.Minute)}
	got, err = s.Ports(ctx, ip)
	if err != nil {
		t.Fatalf("Ports: %v", err)
	}
	assertPorts(t, "Ports", got, []store.PortState{open[0], closed})
	got, err = s.OpenPorts(ctx, ip)
	if err != nil {
		t.Fatalf("OpenPorts: %v", err)
	}
	assertPorts(t, "OpenPorts after closing", got, open[:1])
	got, err = s.OpenPorts(ctx, "")
	if err != nil {
		t.Fatalf("OpenPorts(\"\"): %v", err)
	}
	assertPorts(t, "OpenPorts of every client", got, []store.PortState{
		{Client: "10.0.0.7", Port: 3127, Open: true, FirstOpen: base, LastChecked: base}, open[0]})
}

func recordLogin(t *testing.T, s store.Store, l store.MailLogin) {
	t.Helper()
	if err := s.RecordLogin(context.Background(), l); err != nil {
		t.Fatalf("RecordLogin(%+v): %v", l, err)
	}
}

func testLogins(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := baseTime()
	const ip = "10.1.2.3"
	_, err := s.LastLogin(ctx, ip)
	assertNotFound(t, err, "LastLogin with no login")
	recordLogin(t, s, store.MailLogin{Client: ip, User: "alice", Service: "imap", Time: base.Add(time.Minute)})
	recordLogin(t, s, store.MailLogin{Client: ip, User: "bob", Service: "pop3", Time: base}) // older
	recordLogin(t, s, store.MailLogin{Client: "10.0.0.7", User: "carol", Service: "imap", Time: base.Add(time.Hour)})
	got, err := s.LastLogin(ctx, ip)
	if err != nil {
		t.Fatalf("LastLogin: %v", err)
	}
	if got.Client != ip || got.User != "alice" || got.Service != "imap" || !got.Time.Equal(base.Add(time.Minute)) {
		t.Errorf("LastLogin = %+v, want alice's imap login", got)
	}
	recordLogin(t, s, store.MailLogin{Client: ip, User: "dave", Service: "webmail", Time: base.Add(2 * time.Minute)})
	if got, err := s.LastLogin(ctx, ip); err != nil || got.User != "dave" || got.Service != "webmail" {
		t.Errorf("LastLogin after a newer login = %+v, %v; want dave's", got, err)
	}
	all, err := s.LastLogins(ctx)
	if err != nil {
		t.Fatalf("LastLogins: %v", err)
	}
	if len(all) != 2 || all[0].Client != "10.0.0.7" || all[0].User != "carol" ||
		all[1].Client != ip || all[1].User != "dave" || !all[1].Time.Equal(base.Add(2*time.Minute)) {
		t.Errorf("LastLogins = %+v, want carol's from 10.0.0.7 then dave's from %s", all, ip)
	}
}

func testNotesAndDisinfections(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := baseTime()
	const ip = "10.1.2.3"
	notes := []store.HostNote{
		{Client: ip, By: "root", Text: "second", Time: base.Add(time.Minute)},
		{Client: ip, By: "admin", Text: "first", Time: base},
		{Client: "10.0.0.7", By: "admin", Text: "elsewhere", Time: base},
	}
	for _, n := range notes {
		if err := s.AddHostNote(ctx, n); err != nil {
			t.Fatalf("AddHostNote: %v", err)
		}
	}
	got, err := s.HostNotes(ctx, ip)
	if err != nil {
		t.Fatalf("HostNotes: %v", err)
	}
	if len(got) != 2 || got[0].Text != "first" || got[0].By != "admin" || !got[0].Time.Equal(base) ||
		got[1].Text != "second" || got[1].Client != ip {
		t.Errorf("HostNotes = %+v, want first then second", got)
	}
	d := store.Disinfection{Client: ip, By: "tech", Note: "reimaged", Time: base.Add(time.Hour)}
	if err := s.AddDisinfection(ctx, d); err != nil {
		t.Fatalf("AddDisinfection: %v", err)
	}
	ds, err := s.Disinfections(ctx, ip)
	if err != nil {
		t.Fatalf("Disinfections: %v", err)
	}
	if len(ds) != 1 || ds[0].By != "tech" || ds[0].Note != "reimaged" || !ds[0].Time.Equal(d.Time) || ds[0].Client != ip {
		t.Errorf("Disinfections = %+v, want %+v", ds, d)
	}
	if ds, err := s.Disinfections(ctx, "10.0.0.7"); err != nil || len(ds) != 0 {
		t.Errorf("Disinfections of another host = %+v, %v; want none", ds, err)
	}
	// "" reads every host's, by client and then oldest first.
	allNotes, err := s.HostNotes(ctx, "")
	if err != nil {
		t.Fatalf("HostNotes(\"\"): %v", err)
	}
	if len(allNotes) != 3 || allNotes[0].Text != "elsewhere" || allNotes[1].Text != "first" || allNotes[2].Text != "second" {
		t.Errorf("HostNotes(\"\") = %+v, want elsewhere, first, second", allNotes)
	}
	if err := s.AddDisinfection(ctx, store.Disinfection{Client: "10.0.0.7", By: "tech", Note: "wiped", Time: base}); err != nil {
		t.Fatalf("AddDisinfection: %v", err)
	}
	allDs, err := s.Disinfections(ctx, "")
	if err != nil {
		t.Fatalf("Disinfections(\"\"): %v", err)
	}
	if len(allDs) != 2 || allDs[0].Note != "wiped" || allDs[1].Note != "reimaged" {
		t.Errorf("Disinfections(\"\") = %+v, want wiped (10.0.0.7) then reimaged", allDs)
	}
}

// hostsBeforeClose stores one of each host record and returns a check
// that they are all there after a reopen.
func hostsBeforeClose(t *testing.T, s store.Store, base time.Time) func(t *testing.T, s store.Store) {
	ctx := context.Background()
	const ip = "10.1.2.3"
	trap := store.TrapRecord{Client: ip, FirstSeen: base, LastSeen: base, Count: 2, LastHelo: "pc"}
	addTrap(t, s, trap)
	recordPort(t, s, ip, 1080, true, base)
	recordLogin(t, s, store.MailLogin{Client: ip, User: "alice", Service: "imap", Time: base})
	if err := s.AddHostNote(ctx, store.HostNote{Client: ip, By: "admin", Text: "n", Time: base}); err != nil {
		t.Fatalf("AddHostNote: %v", err)
	}
	if err := s.AddDisinfection(ctx, store.Disinfection{Client: ip, By: "admin", Time: base}); err != nil {
		t.Fatalf("AddDisinfection: %v", err)
	}
	return func(t *testing.T, s store.Store) {
		if recs := trapRecords(t, s, ip); len(recs) != 1 {
			t.Errorf("TrapRecords after reopen = %+v", recs)
		} else {
			assertTrap(t, recs[0], trap)
		}
		if ps, err := s.OpenPorts(ctx, ip); err != nil || len(ps) != 1 || ps[0].Port != 1080 {
			t.Errorf("OpenPorts after reopen = %s, %v", portsString(ps), err)
		}
		if l, err := s.LastLogin(ctx, ip); err != nil || l.User != "alice" {
			t.Errorf("LastLogin after reopen = %+v, %v", l, err)
		}
		if ns, err := s.HostNotes(ctx, ip); err != nil || len(ns) != 1 {
			t.Errorf("HostNotes after reopen = %+v, %v", ns, err)
		}
		if ds, err := s.Disinfections(ctx, ip); err != nil || len(ds) != 1 {
			t.Errorf("Disinfections after reopen = %+v, %v", ds, err)
		}
	}
}
