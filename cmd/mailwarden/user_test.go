package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/account"
	"mailwarden/internal/store"
	"mailwarden/internal/store/sqlite"
)

// userRun runs a user command with stdin in, as the OS user "tester".
func userRun(t *testing.T, in string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runEnv(append([]string{"user"}, args...), env{stdin: strings.NewReader(in), stdout: &out, stderr: &errb,
		who: func() string { return "tester" }})
	return code, out.String(), errb.String()
}

// openData opens the data directory the commands wrote, as the daemon
// would, to check what they stored.
func openData(t *testing.T, dir string) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestUserLifecycle(t *testing.T) {
	data := t.TempDir()
	initStore(t, data)
	const pw, pw2 = "correct horse battery", "staple 2 the battery"
	code, stdout, stderr := userRun(t, pw+"\n", "add", "--data", data, "--role", "admin", "--password-stdin", "alice")
	if code != 0 || !strings.Contains(stdout, "added dashboard user alice (admin)") {
		t.Fatalf("user add: code %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// Flags after the name work too, and the default role is viewer.
	if code, _, stderr := userRun(t, pw, "add", "bob", "--password-stdin", "--data", data); code != 0 {
		t.Fatalf("user add bob: code %d, stderr %q", code, stderr)
	}

	st := openData(t, data)
	ctx := context.Background()
	alice, err := st.GetUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if alice.Role != store.RoleAdmin || account.Check(alice.Hash, pw) != nil {
		t.Fatalf("stored alice = role %q, password check %v", alice.Role, account.Check(alice.Hash, pw))
	}
	if bob, err := st.GetUser(ctx, "bob"); err != nil || bob.Role != store.RoleViewer {
		t.Fatalf("bob = %+v, %v; want a viewer", bob, err)
	}

	code, stdout, _ = userRun(t, "", "list", "--data", data)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[1], "alice") || !strings.Contains(lines[1], "admin") ||
		!strings.HasPrefix(lines[2], "bob") || !strings.Contains(lines[2], "viewer") {
		t.Fatalf("user list: code %d, stdout\n%s", code, stdout)
	}
	code, stdout, _ = userRun(t, "", "list", "--json", "--data", data)
	var listed []map[string]any
	if err := json.Unmarshal([]byte(stdout), &listed); code != 0 || err != nil || len(listed) != 2 {
		t.Fatalf("user list --json: code %d, %v:\n%s", code, err, stdout)
	}
	if listed[0]["name"] != "alice" || listed[0]["role"] != "admin" || listed[0]["created"] == nil {
		t.Errorf("user list --json first entry = %v", listed[0])
	}
	if strings.Contains(stdout, "$2") || strings.Contains(stdout, "hash") {
		t.Errorf("user list --json shows the hash:\n%s", stdout)
	}

	// passwd: the new password works, the old one no longer does, and
	// Created stays.
	time.Sleep(2 * time.Millisecond)
	code, stdout, stderr = userRun(t, pw2+"\r\n", "passwd", "--password-stdin", "--data", data, "alice")
	if code != 0 || !strings.Contains(stdout, "changed the password of dashboard user alice") {
		t.Fatalf("user passwd: code %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	after, err := st.GetUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if account.Check(after.Hash, pw2) != nil || account.Check(after.Hash, pw) == nil {
		t.Error("after passwd, the new password is refused or the old one accepted")
	}
	if !after.Created.Equal(alice.Created) || !after.Changed.After(alice.Changed) || after.Role != store.RoleAdmin {
		t.Errorf("after passwd: %+v, before %+v", after, alice)
	}

	if code, stdout, _ := userRun(t, "", "role", "alice", "viewer", "--data", data); code != 0 ||
		!strings.Contains(stdout, "from admin to viewer") {
		t.Errorf("user role: code %d, stdout %q", code, stdout)
	}
	if u, _ := st.GetUser(ctx, "alice"); u.Role != store.RoleViewer {
		t.Errorf("after user role, alice is %q", u.Role)
	}
	if code, stdout, _ := userRun(t, "", "role", "alice", "viewer", "--data", data); code != 0 ||
		!strings.Contains(stdout, "already viewer") {
		t.Errorf("user role to the same role: code %d, stdout %q", code, stdout)
	}

	if code, stdout, _ := userRun(t, "", "del", "alice", "--data", data); code != 0 ||
		!strings.Contains(stdout, "deleted dashboard user alice (viewer)") {
		t.Errorf("user del: code %d, stdout %q", code, stdout)
	}
	if _, err := st.GetUser(ctx, "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("alice after del: %v", err)
	}

	// Every change is an admin event naming who ran the command.
	evs, err := st.QueryEvents(ctx, store.EventFilter{Kind: store.EventAdmin})
	if err != nil {
		t.Fatal(err)
	}
	var checks []string
	for _, ev := range evs {
		if ev.Check == "store init" {
			continue // made by initStore, as the OS user running the test
		}
		checks = append(checks, ev.Check)
		if ev.User != "tester" || ev.Reason == "" || !ev.Expires.After(ev.Time.Add(24*time.Hour)) {
			t.Errorf("admin event %+v: want user tester, a reason and the configured retention", ev)
		}
		if strings.Contains(ev.Reason, pw) || strings.Contains(ev.Reason, pw2) {
			t.Errorf("admin event holds the password: %+v", ev)
		}
	}
	// Newest first; "user role" to the same role changed nothing.
	want := []string{"user del", "user role", "user passwd", "user add", "user add"}
	if strings.Join(checks, ",") != strings.Join(want, ",") {
		t.Errorf("admin events = %v, want %v", checks, want)
	}
}

func TestUserRefusals(t *testing.T) {
	data := t.TempDir()
	initStore(t, data)
	const pw = "correct horse battery"
	if code, _, stderr := userRun(t, pw, "add", "--password-stdin", "--data", data, "alice"); code != 0 {
		t.Fatalf("user add: code %d, stderr %q", code, stderr)
	}
	for _, tc := range []struct {
		name, in string
		args     []string
		code     int
		stderr   string
	}{
		{"no verb", "", nil, 2, "usage"},
		{"unknown verb", "", []string{"rename", "alice"}, 2, `unknown command "user rename"`},
		{"duplicate", pw, []string{"add", "--password-stdin", "alice"}, 1, "already exists"},
		{"bad name", pw, []string{"add", "--password-stdin", "al ice"}, 2, "only letters, digits"},
		{"empty name", pw, []string{"add", "--password-stdin", ""}, 2, "user name must be"},
		{"no name", pw, []string{"add", "--password-stdin"}, 2, "want NAME"},
		{"two names", pw, []string{"add", "--password-stdin", "a", "b"}, 2, "want NAME"},
		{"bad role", pw, []string{"add", "--password-stdin", "--role", "root", "bob"}, 2, `role "root"`},
		{"short password", "short\n", []string{"add", "--password-stdin", "bob"}, 2, "at least 10"},
		{"empty password", "", []string{"add", "--password-stdin", "bob"}, 2, "at least 10"},
		{"long password", strings.Repeat("x", 73), []string{"add", "--password-stdin", "bob"}, 2, "at most 72"},
		{"no terminal", pw, []string{"add", "bob"}, 2, "--password-stdin"},
		{"passwd missing user", pw, []string{"passwd", "--password-stdin", "bob"}, 1, "not found"},
		{"del missing user", "", []string{"del", "bob"}, 1, "not found"},
		{"role missing user", "", []string{"role", "bob", "admin"}, 1, "not found"},
		{"role bad role", "", []string{"role", "alice", "root"}, 2, `role "root"`},
		{"flag of another verb", "", []string{"list", "--role", "admin"}, 2, "flag provided but not defined"},
		{"list with argument", "", []string{"list", "alice"}, 2, "takes no arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if len(args) > 0 {
				args = append([]string{args[0], "--data", data}, args[1:]...)
			}
			code, stdout, stderr := userRun(t, tc.in, args...)
			if code != tc.code || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("code %d, stderr %q; want code %d and %q", code, stderr, tc.code, tc.stderr)
			}
			if strings.Contains(stdout+stderr, pw) {
				t.Errorf("output shows the password: %q %q", stdout, stderr)
			}
		})
	}
	// Nothing refused was stored: alice is still the only user, with her
	// password.
	st := openData(t, data)
	us, err := st.ListUsers(context.Background())
	if err != nil || len(us) != 1 || us[0].Name != "alice" || account.Check(us[0].Hash, pw) != nil {
		t.Fatalf("users after refusals = %+v, %v", us, err)
	}
}

func TestReadPasswordLine(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"secret\n", "secret"},
		{"secret\r\n", "secret"},
		{"secret", "secret"},
		{" spaced out \n", " spaced out "},
		{"first\nsecond\n", "first"},
		{"tab\there\r\r\n", "tab\there\r"},
		{"\n", ""},
		{"", ""},
	} {
		got, err := readPasswordLine(strings.NewReader(tc.in))
		if err != nil || got != tc.want {
			t.Errorf("readPasswordLine(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := readPasswordLine(strings.NewReader(strings.Repeat("x", maxPasswordLine+10))); err == nil {
		t.Error("a line longer than the bound was accepted")
	}
}

// FuzzReadPasswordLine checks that any input gives the first line
// without its line end, or an error, and never a line end inside.
func FuzzReadPasswordLine(f *testing.F) {
	for _, s := range []string{"secret\n", "secret\r\n", "a\r", "\r\n\r\n", "", "\xff\xfe\n", strings.Repeat("y", maxPasswordLine)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := readPasswordLine(strings.NewReader(in))
		if err != nil {
			return
		}
		if strings.Contains(got, "\n") || !strings.HasPrefix(in, got) {
			t.Fatalf("readPasswordLine(%q) = %q", in, got)
		}
		rest := in[len(got):]
		if rest != "" && !strings.HasPrefix(rest, "\n") && !strings.HasPrefix(rest, "\r\n") {
			t.Fatalf("readPasswordLine(%q) = %q stops before a line end", in, got)
		}
	})
}
