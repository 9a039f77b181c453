package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/mailbox/mailboxtest"
)

func TestMailboxUsage(t *testing.T) {
	for _, args := range [][]string{
		{"mailbox"},
		{"mailbox", "frobnicate"},
		{"mailbox", "audit", "extra"},
		{"mailbox", "audit", "--json", "--csv"},
		{"mailbox", "audit", "--layout", "plesk"},
		{"mailbox", "audit", "--layout", "dovecot"},
		{"mailbox", "remove"},
		{"mailbox", "remove", "off*@x.example"},
		{"mailbox", "restore"},
		{"mailbox", "audit", "--apply"},
	} {
		if code, _, stderr := runCmd(args...); code != 2 || stderr == "" {
			t.Errorf("%q: exit %d, stderr %q; want 2 and a message", args, code, stderr)
		}
	}
}

func TestMailboxCommands(t *testing.T) {
	dir := t.TempDir()
	tr, err := mailboxtest.Generate(filepath.Join(dir, "srv"), mailboxtest.Options{Domains: 30, Seed: 3, MailDirs: true, UID: -1, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	flags := []string{"--data", data, "--root", tr.Root, "--home", tr.Home}
	mb := func(args ...string) (int, string, string) {
		return runCmd(append(append([]string{"mailbox"}, args...), flags...)...)
	}
	if code, out, stderr := mb("snapshot"); code != 0 || !strings.Contains(out, "snapshot of "+itoa(len(tr.Legit))+" mailboxes on 30 domains") {
		t.Fatalf("snapshot: exit %d\n%s%s", code, out, stderr)
	}
	if _, err := tr.Attack(mailboxtest.AttackOptions{Count: 120, Domains: 20}); err != nil {
		t.Fatal(err)
	}

	code, out, stderr := mb("audit")
	if code != 0 || !strings.Contains(out, "120 suspect mailboxes") || !strings.Contains(out, "Compared with the snapshot") {
		t.Fatalf("audit: exit %d\n%s%s", code, out, stderr)
	}
	if strings.Contains(out, "{SHA512-CRYPT}") {
		t.Error("the audit prints password hashes")
	}
	code, out, _ = mb("audit", "--json")
	if code != 0 {
		t.Fatalf("audit --json: exit %d", code)
	}
	var doc struct {
		Summary struct{ Suspect int }
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || doc.Summary.Suspect != 120 {
		t.Fatalf("audit --json: %v, summary %+v", err, doc.Summary)
	}
	auditFile := filepath.Join(dir, "audit.json")
	os.WriteFile(auditFile, []byte(out), 0o600)
	if code, out, _ := mb("audit", "--csv"); code != 0 || strings.Count(out, "\n") != len(tr.Legit)+121 {
		t.Errorf("audit --csv: exit %d, %d lines", code, strings.Count(out, "\n"))
	}

	before, err := mailboxtest.Capture(tr.Root, tr.Home)
	if err != nil {
		t.Fatal(err)
	}
	// The dry run lists each file's lines and changes nothing; the guard
	// refuses domains that would lose more than half their boxes.
	code, out, _ = mb("remove", "--from-audit", auditFile, "--force")
	if code != 0 || !strings.HasPrefix(out, "Dry run: nothing has been changed.") || !strings.Contains(out, "Total: 120 mailboxes") ||
		!strings.Contains(out, "/passwd: ") || !strings.Contains(out, "moves to the quarantine") {
		t.Fatalf("dry run: exit %d\n%s", code, out)
	}
	if strings.Contains(out, "$6$") {
		t.Error("the dry run prints password hashes")
	}
	if d := mailboxtest.Diff(before, capture(t, tr), 5); len(d) > 0 {
		t.Fatalf("the dry run changed the tree: %q", d)
	}
	code, out, stderr = mb("remove", "--from-audit", auditFile, "--apply")
	if code != 1 || !strings.Contains(stderr, "removal refused (--force overrides)") || !strings.Contains(out, "Refused (--force overrides):") {
		t.Errorf("remove --apply of 6 boxes on domains of 3 to 25: exit %d\n%s%s", code, out, stderr)
	}
	if d := mailboxtest.Diff(before, capture(t, tr), 5); len(d) > 0 {
		t.Fatalf("a refused removal changed the tree: %q", d)
	}
	code, out, stderr = mb("remove", "--from-audit", auditFile, "--apply", "--force")
	if code != 0 || !strings.Contains(out, "Removed 120 mailboxes. To undo: mailwarden mailbox restore ") {
		t.Fatalf("remove --apply: exit %d\n%s%s", code, out, stderr)
	}
	code, out, _ = mb("audit", "--no-snapshot")
	if code != 0 || !strings.Contains(out, itoa(len(tr.Legit))+" mailboxes on 30 domains") {
		t.Errorf("audit after removal: exit %d\n%s", code, out)
	}
	code, out, _ = mb("backups")
	if code != 0 || !strings.Contains(out, "complete") || !strings.Contains(out, " 120 ") {
		t.Errorf("backups: exit %d\n%s", code, out)
	}
	code, out, stderr = mb("restore", "latest")
	if code != 0 || !strings.Contains(out, "Restored ") {
		t.Fatalf("restore: exit %d\n%s%s", code, out, stderr)
	}
	if d := mailboxtest.Diff(before, capture(t, tr), 5); len(d) > 0 {
		t.Errorf("restore did not give back the tree: %q", d)
	}
	if code, _, stderr := mb("restore", "nonesuch"); code != 1 || !strings.Contains(stderr, "is not a backup") {
		t.Errorf("restore nonesuch: exit %d, %q", code, stderr)
	}
}

func TestMailboxAuditOfAnotherTree(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"one", "two"} {
		os.MkdirAll(filepath.Join(dir, d, "a.example"), 0o755)
		os.WriteFile(filepath.Join(dir, d, "a.example", "passwd"), []byte("ofice:x\nreal:x\nmore:x\n"), 0o640)
	}
	code, out, _ := runCmd("mailbox", "audit", "--json", "--root", filepath.Join(dir, "one"), "--data", dir)
	if code != 0 {
		t.Fatalf("audit: exit %d", code)
	}
	af := filepath.Join(dir, "audit.json")
	os.WriteFile(af, []byte(out), 0o600)
	code, _, stderr := runCmd("mailbox", "remove", "--from-audit", af, "--root", filepath.Join(dir, "two"), "--data", dir)
	if code != 2 || !strings.Contains(stderr, "the audit is of "+filepath.Join(dir, "one")) {
		t.Errorf("an audit of another tree: exit %d, %q", code, stderr)
	}
	// No domainowners: a warning, not a failure, and snapshots work.
	code, _, stderr = runCmd("mailbox", "snapshot", "--root", filepath.Join(dir, "one"), "--data", dir)
	if code != 0 || !strings.Contains(stderr, "warning: mailbox: reading domain owners") {
		t.Errorf("snapshot without domainowners: exit %d, %q", code, stderr)
	}
}

func TestMailboxAuditWarnsAboutJunk(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "virtual")
	os.MkdirAll(filepath.Join(root, "a.example"), 0o755)
	os.MkdirAll(filepath.Join(root, "b.example"), 0o755)
	os.WriteFile(filepath.Join(root, "domainowners"), []byte("a.example: x\nb.example: x\n"), 0o644)
	os.WriteFile(filepath.Join(root, "a.example", "passwd"), []byte("info:x\n"), 0o640)
	os.WriteFile(filepath.Join(root, "b.example", "passwd"), []byte("\x7fELF\x00\x00"), 0o640)
	code, out, stderr := runCmd("mailbox", "audit", "--root", root, "--data", dir)
	if code != 1 || !strings.Contains(stderr, "b.example/passwd:1: control character") || !strings.Contains(out, "1 mailboxes on 2 domains") {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	if code, _, stderr := runCmd("mailbox", "snapshot", "--root", root, "--data", dir); code != 1 || !strings.Contains(stderr, "not writing a snapshot") {
		t.Errorf("snapshot over junk: exit %d, %q", code, stderr)
	}
}

func capture(t *testing.T, tr *mailboxtest.Tree) map[string]mailboxtest.Node {
	t.Helper()
	c, err := mailboxtest.Capture(tr.Root, tr.Home)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
