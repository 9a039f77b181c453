package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/hosts"
	"mailwarden/internal/scan"
	"mailwarden/internal/sites"
	"mailwarden/internal/store"
	"mailwarden/internal/store/sqlite"
)

// TestEveryChangingVerbIsAudited runs every verb the command table marks
// as changing state and requires one admin event naming the verb and
// the user who ran it. A new verb without a row here fails the test.
// Verbs through the daemon are audited by the admin API; the user verbs,
// which work without it, through the same event log.
func TestEveryChangingVerbIsAudited(t *testing.T) {
	data := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	st, err := sqlite.OpenWith(data, log, sqlite.Options{Mirror: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	now := time.Now()
	sr, _ := sites.New([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, nil)
	reg, err := hosts.New(hosts.Options{Store: st, Sites: func() *sites.Registry { return sr }, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	l, err := st.AddLatch(ctx, store.Latch{Kind: store.LatchClient, Key: "10.1.2.3", Rule: "sender_domain", Reason: "x"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutTriplet(ctx, store.Triplet{Client: "192.0.2.0/24", Sender: "a@example.org", Recipient: "b@school.test",
		FirstSeen: now, LastSeen: now, Attempts: 1, Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	scanFn := func(context.Context, []netip.Prefix) (scan.Summary, []scan.Finding, error) {
		return scan.Summary{Probed: 1}, nil, nil
	}
	serveAdmin(t, data, adminapi.Options{Backend: st, Hosts: reg, Scan: scanFn, Greylist: st})

	const pw = "a long enough password"
	// store init and store restore work on data directories of their own
	// (restore refuses one whose daemon runs); their events are read there.
	fresh, restored := filepath.Join(t.TempDir(), "new"), filepath.Join(t.TempDir(), "restored")
	// store copy copies the store init made (the table runs init first)
	// into a new directory, whose audit trail ends with the copy.
	copied := filepath.Join(t.TempDir(), "copied")
	qcfg, _ := fakeQueue(t)
	backup := filepath.Join(t.TempDir(), "backup.db")
	if code, _, stderr := runCmd("store", "backup", "--data", data, backup); code != 0 {
		t.Fatalf("store backup: %s", stderr)
	}
	rows := map[string]struct {
		args  []string
		stdin string
	}{
		"greylist allow":  {[]string{"192.0.2.9", "a@example.org", "b@school.test"}, ""},
		"latch clear":     {[]string{l.ID, "--note", "reimaged"}, ""},
		"freeze on":       {[]string{"--all", "--note", "spam run"}, ""},
		"freeze off":      {[]string{"--all", "--note", "over"}, ""},
		"hosts note":      {[]string{"10.1.2.4", "in", "the", "lab"}, ""},
		"hosts disinfect": {[]string{"10.1.2.4", "--note", "reimaged"}, ""},
		"scan":            {nil, ""},
		"user add":        {[]string{"carol", "--password-stdin"}, pw + "\n"},
		"user passwd":     {[]string{"carol", "--password-stdin"}, pw + "!\n"},
		"user role":       {[]string{"carol", "admin"}, ""},
		"user del":        {[]string{"carol"}, ""},
		"store init":      {[]string{"--data", fresh}, ""},
		"store restore":   {[]string{"--data", restored, backup}, ""},
		"store copy":      {[]string{"--from", fresh, "--to", copied, "--yes"}, ""},
		// The queue tools act on the MTA's queue (stand-ins here) and
		// record what --apply did in the store of --data.
		"queue purge":   {[]string{"--config", qcfg, "--sender", "*@victim-one.example", "--apply"}, ""},
		"queue hold":    {[]string{"--config", qcfg, "--queue", "deferred", "--apply"}, ""},
		"queue release": {[]string{"--config", qcfg, "--queue", "hold", "--apply"}, ""},
	}
	// The mailbox tools change passwd files offline; they record in the
	// store of --data when there is one (TestMailboxChangesAreAudited),
	// besides the backup manifest each removal and restore writes.
	offline := map[string]bool{"mailbox snapshot": true, "mailbox remove": true, "mailbox restore": true}
	seen := 0
	for _, c := range commands {
		if !c.changes || offline[c.name] {
			continue
		}
		seen++
		row, ok := rows[c.name]
		if !ok {
			t.Errorf("%q changes state but has no row in this test: add one", c.name)
			continue
		}
		before := adminEvents(t, st)
		args := strings.Fields(c.name)
		if c.name != "store copy" { // it names its stores itself
			args = append(args, "--data", data)
		}
		args = append(args, row.args...)
		var out, errb bytes.Buffer
		code := runEnv(args, env{stdin: strings.NewReader(row.stdin), stdout: &out, stderr: &errb,
			who: func() string { return "tester" }})
		if code != 0 {
			t.Errorf("%s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
			continue
		}
		after := adminEvents(t, st)
		if elsewhere := map[string]string{"store init": fresh, "store restore": restored, "store copy": copied}[c.name]; elsewhere != "" {
			// A store of its own: its newest event must be this one.
			made, err := sqlite.Open(elsewhere, log)
			if err != nil {
				t.Fatal(err)
			}
			after = adminEvents(t, made)
			before = after[min(1, len(after)):]
			made.Close()
		}
		if len(after) != len(before)+1 || after[0].Check != c.name {
			t.Errorf("%s: admin events went from %d to %d (newest %+v); want one %q", c.name, len(before), len(after), after[:min(1, len(after))], c.name)
		}
	}
	if seen != len(rows) {
		t.Errorf("%d changing verbs, %d rows: a row names a verb that no longer changes state", seen, len(rows))
	}
}

func adminEvents(t *testing.T, st store.Events) []store.Event {
	t.Helper()
	evs, err := st.QueryEvents(context.Background(), store.EventFilter{Kind: store.EventAdmin})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}
