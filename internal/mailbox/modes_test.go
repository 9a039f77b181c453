package mailbox

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestBackupAndSnapshotArePrivate: a removal's backup holds copies of
// passwd files (password hashes) and a snapshot lists every mailbox, so
// under any umask their files are 0600 and their directories 0700 at
// most (0640 and 0750 would do; these are tighter). The mailbox tools
// run as root, often from a shell with umask 000 or 022.
func TestBackupAndSnapshotArePrivate(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	src, o, _ := smallDA(t, "a:x\nb:x\nc:x\nd:x\n")
	if _, _, err := Remove(src, targetsOf(t, []string{"a@d.example"}), o); err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(filepath.Dir(o.BackupDir), "snapshots", "snap")
	// As "mailbox snapshot" makes its default path's directory.
	if err := os.MkdirAll(filepath.Dir(snap), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteSnapshot(snap, NewSnapshot(boxes("a@x.example"), nil, time.Now())); err != nil {
		t.Fatal(err)
	}
	for _, root := range []string{o.BackupDir, snap} {
		n := 0
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n++
			max := fs.FileMode(0o600)
			if d.IsDir() {
				max = 0o700
			}
			if fi.Mode().Perm()&^max != 0 {
				t.Errorf("%s has mode %v, want at most %v", p, fi.Mode().Perm(), max)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Errorf("nothing written under %s", root)
		}
	}
}
