package mailbox

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRestoreRefusesWhatChangedSince(t *testing.T) {
	src, o, path := smallDA(t, "a:x\nb:x\nc:x\nd:x\n")
	_, res, err := Remove(src, targetsOf(t, []string{"a@d.example"}), o)
	if err != nil {
		t.Fatal(err)
	}
	// Someone adds a box after the removal.
	changed := "b:x\nc:x\nd:x\nnew:x\n"
	if err := os.WriteFile(path, []byte(changed), 0o640); err != nil {
		t.Fatal(err)
	}
	rr, err := Restore(res.Backup, RestoreOptions{})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), path+" changed since the removal") || len(rr.Restored) != 0 {
		t.Fatalf("Restore: %+v, %v; want a conflict naming %s", rr, err, path)
	}
	if got, _ := os.ReadFile(path); string(got) != changed {
		t.Fatalf("a refused restore wrote %q", got)
	}
	rr, err = Restore(res.Backup, RestoreOptions{Force: true})
	if err != nil || len(rr.Saved) != 1 {
		t.Fatalf("forced Restore: %+v, %v", rr, err)
	}
	if got, _ := os.ReadFile(path); string(got) != "a:x\nb:x\nc:x\nd:x\n" {
		t.Errorf("forced restore gave %q", got)
	}
	if got, _ := os.ReadFile(rr.Saved[0]); string(got) != changed {
		t.Errorf("the overwritten content was not kept: %q", got)
	}
	if st := readState(res.Backup); !strings.HasPrefix(st, StateRestored) {
		t.Errorf("state %q", st)
	}
}

func TestRestoreRefusesDamagedBackup(t *testing.T) {
	src, o, path := smallDA(t, "a:x\nb:x\nc:x\nd:x\n")
	_, res, err := Remove(src, targetsOf(t, []string{"a@d.example"}), o)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ReadManifest(res.Backup)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(res.Backup, m.Files[0].Copy)
	if err := os.WriteFile(cp, []byte("tampered\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(res.Backup, RestoreOptions{Force: true}); err == nil || !strings.Contains(err.Error(), "does not match its checksum") {
		t.Fatalf("Restore from a damaged backup: %v", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "b:x\nc:x\nd:x\n" {
		t.Errorf("a refused restore wrote %q", got)
	}
}

func TestManifestRecordsEverything(t *testing.T) {
	src, o, path := smallDA(t, "a:x:1:12::/h:/bin/false\nb:x\nc:x\nd:x\n")
	maildir := filepath.Join(src.Home, "acct", "imap", "d.example", "a")
	writeFile(t, filepath.Join(maildir, "Maildir", "cur", "1.msg"), "hello\n", 0o600)
	writeFile(t, filepath.Join(src.Root, "d.example", "limit", "a"), "200\n", 0o644)
	writeFile(t, filepath.Join(src.Root, "d.example", "quota"), "a:0\nb:0\n", 0o644)
	_, res, err := Remove(src, targetsOf(t, []string{"a@d.example"}), o)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ReadManifest(res.Backup)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Files) != 2 || m.Files[0].Path != path || m.Files[0].Mode != "0640" || len(m.Files[0].Removed) != 1 ||
		m.Files[0].Removed[0] != (ManifestLine{Line: 1, Mailbox: "a@d.example"}) {
		t.Errorf("manifest files %+v", m.Files)
	}
	if os.Geteuid() == 0 && (m.Files[0].UID != mailUID || m.Files[0].GID != mailGID) {
		t.Errorf("manifest owner %d:%d", m.Files[0].UID, m.Files[0].GID)
	}
	if len(m.Moves) != 2 {
		t.Fatalf("moves %+v, want the limit file and the mail directory", m.Moves)
	}
	for _, mv := range m.Moves {
		if !strings.HasPrefix(mv.To, filepath.Join(o.QuarantineDir, m.ID)+"/") {
			t.Errorf("move to %s is outside the removal's quarantine", mv.To)
		}
	}
	if got, err := os.ReadFile(filepath.Join(o.QuarantineDir, m.ID, strings.TrimPrefix(maildir, "/"), "Maildir", "cur", "1.msg")); err != nil || string(got) != "hello\n" {
		t.Errorf("quarantined mail: %q, %v", got, err)
	}
	sums, _ := os.ReadFile(filepath.Join(res.Backup, sumsName))
	if !strings.Contains(string(sums), m.Files[0].OldSHA256+"  "+m.Files[0].Copy) {
		t.Errorf("SHA256SUMS lacks the passwd copy:\n%s", sums)
	}
	list, err := ListBackups(o.BackupDir)
	if err != nil || len(list) != 1 || list[0].Lines != 2 || list[0].Moves != 2 || list[0].Mailboxes != 1 {
		t.Errorf("ListBackups: %+v, %v", list, err)
	}
}

func TestFindBackup(t *testing.T) {
	dir := t.TempDir()
	if _, err := FindBackup(dir, "latest"); err == nil {
		t.Error("latest in an empty directory")
	}
	writeFile(t, filepath.Join(dir, "20260101T000000Z.partial", "x"), "", 0o600)
	if _, err := FindBackup(dir, "20260101T000000Z.partial"); err == nil || !strings.Contains(err.Error(), "nothing to restore") {
		t.Errorf("an abandoned backup: %v", err)
	}
	if _, err := FindBackup(dir, "nonesuch"); err == nil {
		t.Error("a missing backup was found")
	}
}
