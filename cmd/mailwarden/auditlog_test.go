package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/events"
	"mailwarden/internal/mailbox/mailboxtest"
	"mailwarden/internal/store"
	"mailwarden/internal/store/sqlite"
)

// TestAuditListsWhoWhereWhenWhatWhy: `mailwarden audit` reads the admin
// entries through the admin API, filtered by --who and --since, and
// shows each one's who, from where, when, what and note.
func TestAuditListsWhoWhereWhenWhatWhy(t *testing.T) {
	data := t.TempDir()
	st, err := sqlite.Open(data, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	serveAdmin(t, data, adminapi.Options{Backend: st})
	log := events.NewLog(events.LogOptions{Store: st})
	ctx := context.Background()
	for _, a := range []events.Admin{
		{Who: "root", Action: "freeze on", Reason: "froze all outbound mail: spam run", From: "admin socket"},
		{Who: "web:alice", Action: "latch clear", Client: "10.1.4.23", Reason: "reimaged", From: "dashboard 192.0.2.7"},
	} {
		if err := log.Audit(ctx, a, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := log.Record(ctx, store.Event{Kind: store.EventTrap, Client: "10.1.4.23", Reason: "not an audit entry"}); err != nil {
		t.Fatal(err)
	}

	code, out, stderr := runCmd("audit", "--data", data)
	if code != 0 {
		t.Fatalf("audit: exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "TIME") {
		t.Fatalf("audit printed:\n%s", out)
	}
	for i, want := range [][]string{
		{"web:alice", "dashboard 192.0.2.7", "latch clear", "10.1.4.23", "reimaged"},
		{"root", "admin socket", "freeze on", "spam run"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i+1], w) {
				t.Errorf("line %d %q lacks %q", i+1, lines[i+1], w)
			}
		}
	}
	if strings.Contains(out, "not an audit entry") {
		t.Errorf("audit shows a trap event:\n%s", out)
	}

	code, out, _ = runCmd("audit", "--data", data, "--who", "root", "--json")
	var es []adminapi.AuditEntry
	if err := json.Unmarshal([]byte(out), &es); code != 0 || err != nil || len(es) != 1 ||
		es[0].Who != "root" || es[0].From != "admin socket" || es[0].What != "freeze on" || es[0].Time.IsZero() {
		t.Errorf("audit --who root --json: exit %d, %v, %+v", code, err, es)
	}
	if code, out, _ := runCmd("audit", "--data", data, "--since", "2026-01-01T00:00:00Z", "--who", "nobody"); code != 0 ||
		!strings.Contains(out, "no audit entries") {
		t.Errorf("audit for nobody: exit %d, %q", code, out)
	}
	if code, _, stderr := runCmd("audit", "--data", data, "--since", "soon"); code != 2 || !strings.Contains(stderr, "--since") {
		t.Errorf("audit --since soon: exit %d, %q", code, stderr)
	}
}

// TestNothingDeletesAuditEntries: no admin API route and no command
// removes or edits events. The admin API's only non-GET routes act on
// latches, freezes, hosts, scans, the greylist and the MTA queue; no
// route under /v1/events takes anything but GET, and no verb of events
// or audit changes state. Expiry (events.audit_retention) is the only
// way an entry goes.
func TestNothingDeletesAuditEntries(t *testing.T) {
	srv := adminapi.NewServer(adminapi.Options{Backend: nil})
	for _, route := range srv.Routes() {
		method, path, _ := strings.Cut(route, " ")
		if strings.HasPrefix(path, "/v1/events") && method != http.MethodGet {
			t.Errorf("admin API route %s changes the event log", route)
		}
		if method == http.MethodDelete && path != "/v1/freezes" {
			t.Errorf("admin API route %s deletes something: if it is not events, add it here", route)
		}
	}
	for _, c := range commands {
		if (c.noun() == "events" || c.noun() == "audit") && c.changes {
			t.Errorf("command %q changes the event log", c.name)
		}
		if strings.Contains(c.name, "del") && c.name != "user del" {
			t.Errorf("command %q deletes something: if it is not events, add it here", c.name)
		}
	}
}

// TestBackupKeepsAuditEntries: `mailwarden store backup` copies the
// admin entries with the rest of the store.
func TestBackupKeepsAuditEntries(t *testing.T) {
	data := t.TempDir()
	st, err := sqlite.Open(data, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	log := events.NewLog(events.LogOptions{Store: st})
	if err := log.Audit(context.Background(), events.Admin{Who: "root", Action: "freeze on", Reason: "spam run"}, nil); err != nil {
		t.Fatal(err)
	}
	st.Close()
	backup := filepath.Join(t.TempDir(), "backup.db")
	if code, _, stderr := runCmd("store", "backup", "--data", data, backup); code != 0 {
		t.Fatalf("store backup: %s", stderr)
	}
	restored := filepath.Join(t.TempDir(), "restored")
	if code, _, stderr := runCmd("store", "restore", "--data", restored, backup); code != 0 {
		t.Fatalf("store restore: %s", stderr)
	}
	made, err := sqlite.Open(restored, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer made.Close()
	evs, err := made.QueryEvents(context.Background(), store.EventFilter{Kind: store.EventAdmin, Until: time.Now().Add(time.Hour)})
	found := false
	for _, e := range evs {
		found = found || (e.Check == "freeze on" && e.Reason == "spam run")
	}
	if err != nil || !found {
		t.Errorf("restored backup's admin entries: %+v, %v; want the freeze", evs, err)
	}
}

// TestMailboxChangesAreAudited: mailbox snapshot, remove --apply and
// restore work offline on the passwd files and record what they did in
// the store of --data when there is one.
func TestMailboxChangesAreAudited(t *testing.T) {
	dir := t.TempDir()
	tr, err := mailboxtest.Generate(filepath.Join(dir, "srv"), mailboxtest.Options{Domains: 5, Seed: 4, MailDirs: true, UID: -1, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if code, _, stderr := runCmd("store", "init", "--data", data); code != 0 {
		t.Fatalf("store init: %s", stderr)
	}
	flags := []string{"--data", data, "--root", tr.Root, "--home", tr.Home}
	mb := func(args ...string) {
		t.Helper()
		var out, errb bytes.Buffer
		if code := runEnv(append(append([]string{"mailbox"}, args...), flags...),
			env{stdout: &out, stderr: &errb, who: func() string { return "tester" }}); code != 0 || errb.Len() > 0 {
			t.Fatalf("mailbox %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
		}
	}
	mb("snapshot")
	bogus, err := tr.Attack(mailboxtest.AttackOptions{Count: 3, Domains: 2})
	if err != nil {
		t.Fatal(err)
	}
	mb("remove", bogus[0], "--apply")
	mb("restore", "latest")

	st, err := sqlite.Open(data, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	evs := adminEvents(t, st)
	var got []string
	for _, e := range evs {
		if e.User == "tester" && e.Action == "command line" {
			got = append(got, e.Check)
		}
	}
	if want := []string{"mailbox restore", "mailbox remove", "mailbox snapshot"}; !slices.Equal(got, want) {
		t.Errorf("audit entries %q, want %q (all: %+v)", got, want, evs)
	}
}
