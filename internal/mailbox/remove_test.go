package mailbox

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailwarden/internal/mailbox/mailboxtest"
)

// smallDA writes a DirectAdmin tree with one domain whose passwd is given
// exactly, owned by the mail user when running as root.
func smallDA(t *testing.T, passwd string) (Source, ApplyOptions, string) {
	t.Helper()
	dir := t.TempDir()
	root, home := filepath.Join(dir, "virtual"), filepath.Join(dir, "home")
	writeFile(t, filepath.Join(root, "domainowners"), "d.example: acct\n", 0o644)
	path := filepath.Join(root, "d.example", "passwd")
	writeFile(t, path, passwd, 0o640)
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(path, mailUID, mailGID); err != nil {
			t.Fatal(err)
		}
	}
	o := ApplyOptions{BackupDir: filepath.Join(dir, "backups"), QuarantineDir: filepath.Join(dir, "quarantine"), MaxShare: 0.5}
	return Source{Layout: LayoutDirectAdmin, Root: root, Home: home}, o, path
}

func TestRemoveOddFiles(t *testing.T) {
	cases := []struct {
		name, in, remove, want string
	}{
		{"crlf", "a:x\r\nbad:x\r\nb:x\r\nc:x\r\n", "bad", "a:x\r\nb:x\r\nc:x\r\n"},
		{"no final newline, last line goes", "a:x\nb:x\nc:x\nbad:x", "bad", "a:x\nb:x\nc:x\n"},
		{"no final newline, kept", "bad:x\na:x\nb:x\nc:x", "bad", "a:x\nb:x\nc:x"},
		{"comments and blank lines", "# mail users\n\na:x\n# planted below\nbad:x\n\n\tb:x\nc:x\n", "", ""},
		{"duplicates both go", "a:x\nbad:1\nb:x\nbad:2\nc:x\nd:x\n", "bad", "a:x\nb:x\nc:x\nd:x\n"},
		{"mixed ends", "a:x\r\nbad:x\nb:x\r\nc:x\n", "bad", "a:x\r\nb:x\r\nc:x\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.remove == "" {
				// A line with leading white space is refused, whole file.
				src, o, path := smallDA(t, c.in)
				_, _, err := Remove(src, targetsOf(t, []string{"bad@d.example"}), o)
				if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), path+":7: entry starts with white space") {
					t.Fatalf("Remove: %v, want a refusal naming %s:7", err, path)
				}
				if got, _ := os.ReadFile(path); string(got) != c.in {
					t.Errorf("refused file changed to %q", got)
				}
				return
			}
			src, o, path := smallDA(t, c.in)
			before, _ := os.Stat(path)
			p, res, err := Remove(src, targetsOf(t, []string{c.remove + "@d.example"}), o)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(path)
			if string(got) != c.want {
				t.Errorf("file is %q, want %q", got, c.want)
			}
			after, _ := os.Stat(path)
			if bo, ao := ownerOf(before), ownerOf(after); before.Mode() != after.Mode() || bo.uid != ao.uid || bo.gid != ao.gid {
				t.Errorf("mode or owner changed: %v %+v -> %v %+v", before.Mode(), ownerOf(before), after.Mode(), ownerOf(after))
			}
			if o := ownerOf(after); os.Geteuid() == 0 && (o.uid != mailUID || o.gid != mailGID) {
				t.Errorf("owner %d:%d, want %d:%d", o.uid, o.gid, mailUID, mailGID)
			}
			if strings.Contains(c.name, "duplicates") {
				if len(p.Changes[0].Removed) != 2 || !strings.Contains(strings.Join(p.Notes, "\n"), "listed 2 times") {
					t.Errorf("duplicates: removed %+v, notes %q", p.Changes[0].Removed, p.Notes)
				}
			}
			rr, err := Restore(res.Backup, RestoreOptions{})
			if err != nil || len(rr.Restored) != 1 {
				t.Fatalf("Restore: %+v, %v", rr, err)
			}
			if got, _ := os.ReadFile(path); string(got) != c.in {
				t.Errorf("restored %q, want %q", got, c.in)
			}
		})
	}
}

func TestRemoveRefusesJunkFiles(t *testing.T) {
	for name, in := range map[string]string{
		"binary":  "a:x\nb:x\n\x00\x01\x02\x03garbage\xff\n",
		"escapes": "a:x\nb:x\x1b]0;owned\x07\n",
		"no ':'":  "a:x\nthis is not a passwd file\n",
	} {
		t.Run(name, func(t *testing.T) {
			src, o, path := smallDA(t, in)
			_, _, err := Remove(src, targetsOf(t, []string{"a@d.example"}), o)
			if !errors.Is(err, ErrRefused) || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), path+":") {
				t.Fatalf("Remove: %v, want a refusal naming %s and its line", err, path)
			}
			if got, _ := os.ReadFile(path); string(got) != in {
				t.Errorf("refused file changed to %q", got)
			}
			if bs, _ := ListBackups(o.BackupDir); len(bs) != 0 {
				t.Errorf("a refused removal left backups %+v", bs)
			}
		})
	}
	t.Run("symlink", func(t *testing.T) {
		src, o, path := smallDA(t, "a:x\nb:x\nc:x\n")
		real := path + ".real"
		if err := os.Rename(path, real); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(real, path); err != nil {
			t.Fatal(err)
		}
		_, _, err := Remove(src, targetsOf(t, []string{"a@d.example"}), o)
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "symbolic link") {
			t.Fatalf("Remove over a symlink: %v", err)
		}
		if st, _ := os.Lstat(path); st.Mode()&os.ModeSymlink == 0 {
			t.Error("the symlink was replaced")
		}
	})
}

func TestRemoveGuards(t *testing.T) {
	src, o, path := smallDA(t, "a:x\nb:x\nc:x\nd:x\n")
	in, _ := os.ReadFile(path)
	all := targetsOf(t, []string{"a@d.example", "b@d.example", "c@d.example", "d@d.example"})
	_, _, err := Remove(src, all, o)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "would remove all 4 mailboxes and leave the file empty") {
		t.Errorf("emptying a file: %v", err)
	}
	_, _, err = Remove(src, all[:3], o)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "would remove 3 of 4 mailboxes (75%), more than max_remove_share 50%") {
		t.Errorf("gutting a file: %v", err)
	}
	if got, _ := os.ReadFile(path); string(got) != string(in) {
		t.Fatalf("a refused removal changed the file to %q", got)
	}
	// Half is allowed; a named box that does not exist is reported.
	p, res, err := Remove(src, targetsOf(t, []string{"a@d.example", "b@d.example", "zz@d.example", "a@nowhere.example"}), o)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "c:x\nd:x\n" {
		t.Errorf("after removing half: %q", got)
	}
	if len(p.NotFound) != 2 || len(res.Edited) != 1 {
		t.Errorf("not found %v, edited %v", p.NotFound, res.Edited)
	}
	// --force may empty the file; the backup still has it all.
	o.Force = true
	if _, _, err := Remove(src, targetsOf(t, []string{"c@d.example", "d@d.example"}), o); err != nil {
		t.Fatalf("forced: %v", err)
	}
	if got, _ := os.ReadFile(path); len(got) != 0 {
		t.Errorf("forced removal of every box left %q", got)
	}
	list, err := ListBackups(o.BackupDir)
	if err != nil || len(list) != 2 {
		t.Fatalf("backups %+v, %v", list, err)
	}
	for i := len(list) - 1; i >= 0; i-- {
		if _, err := Restore(list[i].Dir, RestoreOptions{}); err != nil {
			t.Fatalf("restoring %s: %v", list[i].ID, err)
		}
	}
	if got, _ := os.ReadFile(path); string(got) != string(in) {
		t.Errorf("after restoring both, %q", got)
	}
}

func TestRemoveMatchesExactly(t *testing.T) {
	src, o, path := smallDA(t, "office:x\noffice2:x\nOffice:x\nmyoffice:x\nother:x\nmore:x\nx:x\n")
	p, _, err := Remove(src, targetsOf(t, []string{"office@D.Example"}), o)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "office2:x\nOffice:x\nmyoffice:x\nother:x\nmore:x\nx:x\n" {
		t.Errorf("after removing office@d.example: %q", got)
	}
	p, err = BuildPlan(src, targetsOf(t, []string{"OFFICE@d.example"}), o.QuarantineDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Changes) != 0 || len(p.NotFound) != 1 || !strings.Contains(strings.Join(p.Notes, "\n"), `but "Office" is`) {
		t.Errorf("a different case must not match: changes %d, not found %v, notes %q", len(p.Changes), p.NotFound, p.Notes)
	}
	for _, pat := range []string{"off*@d.example", "office@*", "a b@d.example", "a:b@d.example", "@d.example", "a@"} {
		if _, err := ParseTarget(pat); err == nil {
			t.Errorf("ParseTarget(%q) accepted", pat)
		}
	}
}

// TestRemoveAbortsChangedFile edits a file between planning and applying:
// that file, and the rest of its domain, is left alone; others proceed.
func TestRemoveAbortsChangedFile(t *testing.T) {
	a := newAttackedTree(t, 20, 60, 3, true)
	p, err := BuildPlan(a.Source, targetsOf(t, a.Bogus), a.Quarant)
	if err != nil {
		t.Fatal(err)
	}
	victim := p.Changes[0]
	if !victim.Passwd {
		t.Fatalf("first change is %s, want a passwd file", victim.Path)
	}
	// The control panel adds a box meanwhile.
	if err := mailboxtest.AppendLine(victim.Path, "newhire:x:1:12::/h:/bin/false\n"); err != nil {
		t.Fatal(err)
	}
	changed, _ := os.ReadFile(victim.Path)
	if err := mkdirSynced(a.Backups, 0o700); err != nil {
		t.Fatal(err)
	}
	o := a.applyOptions(true)
	res, err := p.apply(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failed) != 1 || !errors.Is(res.Failed[0], ErrChanged) || len(res.Skipped) != 1 || res.Skipped[0] != victim.Unit {
		t.Fatalf("failed %v, skipped %v; want the changed file's domain skipped", res.Failed, res.Skipped)
	}
	if got, _ := os.ReadFile(victim.Path); string(got) != string(changed) {
		t.Errorf("the changed file was written over")
	}
	for _, c := range p.Changes {
		if c.Unit == victim.Unit {
			continue
		}
		if got, _ := os.ReadFile(c.Path); string(got) != string(c.New) {
			t.Errorf("%s of another domain was not edited", c.Path)
		}
	}
	for _, mv := range res.Moved {
		if strings.Contains(mv.From, "/"+victim.Unit+"/") {
			t.Errorf("%s of the skipped domain was quarantined", mv.From)
		}
	}
	if st := readState(res.Backup); !strings.HasPrefix(st, StateIncomplete) {
		t.Errorf("state %q", st)
	}
	// Restore leaves the changed file (which it never touched) alone and
	// puts the rest back.
	if _, err := Restore(res.Backup, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	now := capture(t, a)
	if d := mailboxtest.Diff(a.Before, now, 10); len(d) != 1 || !strings.Contains(d[0], victim.Path) {
		t.Errorf("after restore, differences %q; want only the file the panel changed", d)
	}
}

func TestLockedRemovalWaitsForNoOne(t *testing.T) {
	src, o, _ := smallDA(t, "a:x\nb:x\nc:x\n")
	if err := os.MkdirAll(o.BackupDir, 0o700); err != nil {
		t.Fatal(err)
	}
	release, err := lockFile(filepath.Join(o.BackupDir, lockName))
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if _, _, err := Remove(src, targetsOf(t, []string{"a@d.example"}), o); !errors.Is(err, ErrLocked) {
		t.Errorf("Remove while locked: %v, want ErrLocked", err)
	}
}

// TestRemoveJunkBesidePasswd: a junk line in aliases (which an attacker
// could plant in every domain) does not keep the boxes alive; that file
// is left as it is, and the dry run says so.
func TestRemoveJunkBesidePasswd(t *testing.T) {
	src, o, path := smallDA(t, "a:x\nb:x\nc:x\nofice:x\n")
	aliases := filepath.Join(filepath.Dir(path), "aliases")
	junk := "ofice: ofice\nbroken line without colon\n"
	writeFile(t, aliases, junk, 0o644)
	writeFile(t, filepath.Join(filepath.Dir(path), "quota"), "a:0\nofice:0\n", 0o644)
	p, res, err := Remove(src, targetsOf(t, []string{"ofice@d.example"}), o)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "a:x\nb:x\nc:x\n" {
		t.Errorf("passwd %q", got)
	}
	if got, _ := os.ReadFile(aliases); string(got) != junk {
		t.Errorf("the junk aliases file was edited: %q", got)
	}
	if len(res.Edited) != 2 || !strings.Contains(strings.Join(p.Notes, "\n"), "aliases:2: entry \"broken line without colon\" has no ':'; that file is left as it is") {
		t.Errorf("edited %v, notes %q", res.Edited, p.Notes)
	}
}
