package integration_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"mailwarden/test/harness"
)

// TestDataFileModes starts the daemon on a data directory that does not
// exist yet, under umask 000, and has it make what it keeps there: the
// store and its marker, the admin socket, a backup (the spool is made
// only with antivirus on; internal/spool checks its 0700). The store
// holds password hashes, so nothing may be readable by others whatever
// the umask: files 0640 or tighter, directories 0750 or tighter, the
// admin socket exactly admin.mode.
//
// The umask is process-wide; this test does not call t.Parallel, so no
// other test runs while it is lowered.
func TestDataFileModes(t *testing.T) {
	bin := binary(t)
	m := harness.NewMailwarden(t, bin, "")
	// NewMailwarden made the directory and a store in it; start from
	// nothing, as the daemon's first start on a new machine does.
	if err := os.RemoveAll(m.DataDir); err != nil {
		t.Fatal(err)
	}
	old := syscall.Umask(0)
	defer syscall.Umask(old)

	m.Start(t)
	if fi, err := os.Lstat(filepath.Join(m.DataDir, "admin.sock")); err != nil {
		t.Error(err)
	} else if fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("admin socket: mode %v, want a socket with admin.mode 0660", fi.Mode())
	}
	backup := filepath.Join(m.DataDir, "backups", "store.db")
	if err := os.Mkdir(filepath.Dir(backup), 0o750); err != nil {
		t.Fatal(err)
	}
	if res := m.CLI(t, "store", "backup", backup); res.ExitCode != 0 {
		t.Fatalf("store backup: exit %d\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	if res := m.CLI(t, "freeze", "on", "--all", "--note", "modes"); res.ExitCode != 0 {
		t.Fatalf("freeze on: exit %d\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	m.Stop(t)

	seen := map[string]bool{}
	err := filepath.WalkDir(m.DataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(m.DataDir, path)
		seen[rel] = true
		perm := fi.Mode().Perm()
		switch {
		case fi.IsDir():
			if perm&^0o750 != 0 {
				t.Errorf("directory %s has mode %04o, want 0750 or tighter", rel, perm)
			}
		case fi.Mode()&fs.ModeSocket != 0:
			t.Errorf("socket %s left behind after the daemon stopped", rel)
		default:
			if perm&^0o640 != 0 {
				t.Errorf("file %s has mode %04o, want 0640 or tighter", rel, perm)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".", "mailwarden.db", "mailwarden.store", "backups/store.db"} {
		if !seen[want] {
			t.Errorf("%s was not made in the data directory; found %v", want, seen)
		}
	}
	if fi, err := os.Stat(m.MailLogFile); err != nil {
		t.Error(err)
	} else if perm := fi.Mode().Perm(); perm&^0o640 != 0 {
		t.Errorf("mail log %s has mode %04o, want 0640 or tighter", m.MailLogFile, perm)
	}
	if t.Failed() {
		t.Logf("data directory: %v", seen)
	}
}
