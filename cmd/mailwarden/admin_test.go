package main

import (
	"context"
	"encoding/json"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/adminapi/adminapitest"
	"mailwarden/internal/store"
)

// startAdmin serves the admin API on admin.sock in a fresh data directory,
// where the commands find it given --data, and returns that directory.
func startAdmin(t *testing.T, mem *adminapitest.Memory) string {
	t.Helper()
	return serveAdmin(t, t.TempDir(), adminapi.Options{Backend: mem})
}

// serveAdmin serves the admin API with o on admin.sock in data and
// returns data.
func serveAdmin(t *testing.T, data string, o adminapi.Options) string {
	t.Helper()
	srv := adminapi.NewServer(o)
	ln, err := srv.Listen(filepath.Join(data, "admin.sock"), 0o660, "", "")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return data
}

func currentUser(t *testing.T) string {
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}

func TestLatchCommands(t *testing.T) {
	mem := adminapitest.New()
	data := startAdmin(t, mem)
	ctx := context.Background()
	now := time.Now()
	host, _ := mem.AddLatch(ctx, store.Latch{Kind: store.LatchClient, Key: "10.1.2.3", Rule: "sender_domain",
		Reason: "sender domain \x1b[2Jevil.example not allowed", Site: "lincoln", Evidence: "a@evil.example"}, now.Add(-3*time.Hour))
	mem.AddLatch(ctx, store.Latch{Kind: store.LatchUser, Key: "bob", Rule: "rate_user", Reason: "100 messages in 1h"}, now.Add(-time.Minute))

	code, stdout, stderr := runCmd("latch", "list", "--data", data)
	if code != 0 || !strings.Contains(stdout, host.ID) || !strings.Contains(stdout, "10.1.2.3") ||
		!strings.Contains(stdout, "rate_user") || !strings.Contains(stdout, "(3h ago)") ||
		!strings.Contains(stdout, "a@evil.example") {
		t.Errorf("latch list: code %d\n%s%s", code, stdout, stderr)
	}
	if strings.ContainsRune(stdout, 0x1b) {
		t.Errorf("latch list printed an escape character from a reason:\n%q", stdout)
	}
	code, stdout, _ = runCmd("latch", "list", "--kind", "user", "--json", "--data", data)
	var ls []adminapi.Latch
	if err := json.Unmarshal([]byte(stdout), &ls); code != 0 || err != nil || len(ls) != 1 || ls[0].Key != "bob" {
		t.Errorf("latch list --kind user --json: code %d, %v, %q", code, err, stdout)
	}
	code, stdout, _ = runCmd("latch", "show", host.ID, "--data", data)
	for _, want := range []string{"Status:      active", "Site:        lincoln", "Evidence:    a@evil.example", "Expires:     never"} {
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("latch show lacks %q: code %d\n%s", want, code, stdout)
		}
	}

	if code, _, stderr := runCmd("latch", "clear", host.ID, "--data", data); code != 2 || !strings.Contains(stderr, "--note is required") {
		t.Errorf("clear without --note: code %d, stderr %q", code, stderr)
	}
	if code, _, stderr := runCmd("latch", "clear", host.ID, "--note", "   ", "--data", data); code != 2 || !strings.Contains(stderr, "note") {
		t.Errorf("clear with a blank note: code %d, stderr %q", code, stderr)
	}
	code, stdout, stderr = runCmd("latch", "clear", host.ID, "--note", "reimaged, ticket 4411", "--data", data)
	if code != 0 || !strings.Contains(stdout, "cleared latch "+host.ID+" on client 10.1.2.3 (by "+currentUser(t)) {
		t.Errorf("latch clear: code %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if l, _ := mem.GetLatch(ctx, host.ID); l.ClearedBy != currentUser(t) || l.ClearNote != "reimaged, ticket 4411" {
		t.Errorf("stored latch after clear: %+v", l)
	}
	if code, _, stderr := runCmd("latch", "clear", host.ID, "--note", "again", "--data", data); code != 1 || !strings.Contains(stderr, "is not active: cleared") {
		t.Errorf("clearing twice: code %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCmd("latch", "clear", "LNOPE", "--note", "x", "--data", data)
	if code != 1 || stderr != "mailwarden latch clear: no latch with id \"LNOPE\" (latch list shows them)\n" {
		t.Errorf("unknown id: code %d, stderr %q", code, stderr)
	}
	if code, _, _ := runCmd("latch", "show", "--data", data); code != 2 {
		t.Errorf("show without ID: code %d", code)
	}
	if code, _, _ := runCmd("latch", "purge", "--data", data); code != 2 {
		t.Errorf("unknown verb: code %d", code)
	}
	if code, stdout, _ := runCmd("latch", "list", "--kind", "client", "--data", data); code != 0 || strings.TrimSpace(stdout) != "no active latches" {
		t.Errorf("no active client latches: code %d, stdout %q", code, stdout)
	}
	if evs := mem.Events(); len(evs) != 1 || evs[0].Check != "latch clear" || evs[0].User != currentUser(t) {
		t.Errorf("admin events: %+v", evs)
	}
}

func TestFreezeCommands(t *testing.T) {
	mem := adminapitest.New()
	data := startAdmin(t, mem)
	scopes := [][]string{{"--all"}, {"--domain", "Example.org"}, {"--user", "alice"}, {"--network", "10.1.0.0/16"}}
	for _, s := range scopes {
		args := append([]string{"freeze", "on", "--data", data, "--note", "spam run"}, s...)
		if code, stdout, stderr := runCmd(args...); code != 0 || !strings.Contains(stdout, "frozen: ") {
			t.Errorf("%v: code %d, stdout %q, stderr %q", s, code, stdout, stderr)
		}
	}
	code, stdout, _ := runCmd("freeze", "status", "--data", data)
	for _, want := range []string{"all ", "domain   example.org", "user     alice", "network  10.1.0.0/16", "spam run", currentUser(t)} {
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("freeze status lacks %q: code %d\n%s", want, code, stdout)
		}
	}
	code, stdout, _ = runCmd("freeze", "status", "--json", "--data", data)
	var fz []adminapi.Freeze
	if err := json.Unmarshal([]byte(stdout), &fz); code != 0 || err != nil || len(fz) != 4 {
		t.Errorf("freeze status --json: code %d, %v, %q", code, err, stdout)
	}

	bad := []struct {
		args []string
		want string
	}{
		{[]string{"on", "--network", "10.1.0.0/33"}, `network "10.1.0.0/33" is not a CIDR`},
		{[]string{"on", "--domain", ""}, "needs a domain"},
		{[]string{"on", "--user", ""}, "needs a user name"},
		{[]string{"on"}, "say what to freeze"},
		{[]string{"on", "--all", "--domain", "example.org"}, "one scope at a time"},
		{[]string{"off"}, "say what to freeze"},
		{[]string{"status", "--all"}, "flag provided but not defined: -all"},
		{[]string{"on", "example.org"}, "unexpected argument"},
		{[]string{"thaw"}, "unknown command"},
	}
	for _, tc := range bad {
		args := append([]string{"freeze"}, tc.args...)
		if code, _, stderr := runCmd(append(args, "--data", data)...); code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: code %d, stderr %q, want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}

	for _, s := range scopes {
		args := append([]string{"freeze", "off", "--data", data}, s...)
		if code, stdout, stderr := runCmd(args...); code != 0 || !strings.Contains(stdout, "lifted the freeze on") {
			t.Errorf("off %v: code %d, stdout %q, stderr %q", s, code, stdout, stderr)
		}
	}
	if code, stdout, _ := runCmd("freeze", "status", "--data", data); code != 0 || strings.TrimSpace(stdout) != "no outbound freeze in force" {
		t.Errorf("status after lifting: code %d, %q", code, stdout)
	}
	if code, _, stderr := runCmd("freeze", "off", "--all", "--data", data); code != 1 || !strings.Contains(stderr, "no freeze on all outbound mail") {
		t.Errorf("lifting a freeze not in force: code %d, stderr %q", code, stderr)
	}
	var checks []string
	for _, e := range mem.Events() {
		checks = append(checks, e.Check)
	}
	if len(checks) != 8 || checks[0] != "freeze on" || checks[7] != "freeze off" {
		t.Errorf("admin events: %v", checks)
	}
}

func TestEventsCommand(t *testing.T) {
	mem := adminapitest.New()
	data := startAdmin(t, mem)
	now := time.Now()
	var evs []store.Event
	for i := range 70 {
		e := store.Event{Time: now.Add(time.Duration(i-70)*5*time.Minute + 150*time.Second), Kind: store.EventReject,
			Check: "sender", Action: "reject", Client: "10.0.0.1", User: "carol", Sender: "x@evil.example", Reason: "not allowed"}
		if i%2 == 0 {
			e.Kind, e.Action, e.Client, e.User = store.EventTempfail, "tempfail", "10.0.0.2", "dave"
		}
		evs = append(evs, e)
	}
	mem.AppendEvents(context.Background(), evs...)

	events := func(args ...string) []adminapi.Event {
		t.Helper()
		code, stdout, stderr := runCmd(append([]string{"events", "--json", "--data", data}, args...)...)
		var out []adminapi.Event
		if err := json.Unmarshal([]byte(stdout), &out); code != 0 || err != nil {
			t.Fatalf("events %v: code %d, %v, stderr %q", args, code, err, stderr)
		}
		return out
	}
	if n := len(events()); n != 50 {
		t.Errorf("default limit: got %d events, want 50", n)
	}
	// Events are 5 minutes apart, the newest 2.5 minutes ago: 24 in 2h,
	// none of them near the edges.
	if n := len(events("--since", "2h", "--limit", "100")); n != 24 {
		t.Errorf("--since 2h: got %d events, want 24", n)
	}
	until := now.Add(-time.Hour).Format(time.RFC3339)
	got := events("--since", "2h", "--until", until)
	if len(got) != 12 || got[0].Time.After(now.Add(-time.Hour)) {
		t.Errorf("--since 2h --until %s: got %d events", until, len(got))
	}
	got = events("--kind", "reject", "--host", "10.0.0.1", "--user", "carol", "--limit", "5")
	if len(got) != 5 || got[0].Kind != "reject" || got[0].Client != "10.0.0.1" || !got[0].Time.After(got[4].Time) {
		t.Errorf("kind/host/user/limit: got %+v", got)
	}
	if n := len(events("--host", "10.0.0.1", "--user", "dave")); n != 0 {
		t.Errorf("host and user of different events: got %d", n)
	}

	code, stdout, _ := runCmd("events", "--limit", "3", "--data", data)
	if code != 0 || !strings.HasPrefix(stdout, "TIME") || strings.Count(stdout, "\n") != 4 || !strings.Contains(stdout, "x@evil.example") {
		t.Errorf("events table: code %d\n%s", code, stdout)
	}
	for _, args := range [][]string{{"--since", "yesterday"}, {"--kind", "rejected"}, {"--host", "10.0.0"}, {"--limit", "0"}} {
		if code, _, stderr := runCmd(append([]string{"events", "--data", data}, args...)...); code != 2 || stderr == "" {
			t.Errorf("events %v: code %d, stderr %q, want a usage error", args, code, stderr)
		}
	}
}

func TestAdminCommandsWithoutDaemon(t *testing.T) {
	data := t.TempDir()
	sock := filepath.Join(data, "admin.sock")
	want := "cannot reach the mailwarden daemon at " + sock + ": no such file — is mailwarden serve running?"
	for _, args := range [][]string{{"latch", "list"}, {"freeze", "status"}, {"events"}} {
		code, _, stderr := runCmd(append(args, "--data", data)...)
		if code != 1 || !strings.Contains(stderr, want) {
			t.Errorf("%v: code %d, stderr %q", args, code, stderr)
		}
	}
	// admin.socket in the config file wins over the data directory.
	other := filepath.Join(t.TempDir(), "mw.sock")
	cfg := filepath.Join(t.TempDir(), "mailwarden.yaml")
	os.WriteFile(cfg, []byte("admin:\n  socket: "+other+"\n"), 0o600)
	if code, _, stderr := runCmd("freeze", "status", "--config", cfg, "--data", data); code != 1 || !strings.Contains(stderr, "daemon at "+other+":") {
		t.Errorf("admin.socket from --config: code %d, stderr %q", code, stderr)
	}
}
