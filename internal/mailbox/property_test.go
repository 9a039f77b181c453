package mailbox

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// randomPasswd builds a passwd-file of random entries (with duplicate
// users), comments, blank and white-space lines, LF and CRLF ends, and
// sometimes no final newline. It returns the content and the users.
func randomPasswd(rng *rand.Rand) (string, []string) {
	pool := []string{"u1", "u2", "u3", "info", "ofice", "a@x.example", "b@x.example", "office@y.example", "z", "q.r", "s-t", "u_v"}
	var b strings.Builder
	users := map[string]bool{}
	n := rng.IntN(30)
	for i := range n {
		switch rng.IntN(10) {
		case 0:
			b.WriteString("# comment " + fmt.Sprint(rng.IntN(100)) + ": with colon")
		case 1:
			// blank
		case 2:
			b.WriteString(" \t ")
		default:
			u := pool[rng.IntN(len(pool))]
			users[u] = true
			fmt.Fprintf(&b, "%s:{SHA512-CRYPT}$6$%d$%d:%d:12::/home/o/imap/d/%s:/bin/false", u, rng.Int64(), rng.Int64(), rng.IntN(9999), u)
			if rng.IntN(4) == 0 {
				b.WriteString("::userdb_x=y:z")
			}
		}
		last := i == n-1
		switch {
		case last && rng.IntN(3) == 0:
		case rng.IntN(2) == 0:
			b.WriteString("\r\n")
		default:
			b.WriteString("\n")
		}
	}
	var list []string
	for u := range users {
		list = append(list, u)
	}
	return b.String(), sorted(list)
}

// expectWithout computes the file minus every entry of the dropped
// users by plain string handling, independently of Parse and Without.
func expectWithout(data string, drop map[string]bool) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(data, "\n") {
		text := strings.TrimRight(line, "\r\n")
		trimmed := strings.TrimLeft(text, " \t")
		key, _, _ := strings.Cut(text, ":")
		if trimmed != "" && !strings.HasPrefix(trimmed, "#") && drop[key] {
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}

// TestPropertyRemoval: for random passwd files and random sets of users
// to remove, the result is the original minus exactly those users'
// lines, in memory and through the whole removal on disk.
func TestPropertyRemoval(t *testing.T) {
	rng := rand.New(rand.NewPCG(42, 7))
	for round := range 2000 {
		data, users := randomPasswd(rng)
		drop := map[string]bool{}
		for _, u := range users {
			if rng.IntN(3) == 0 {
				drop[u] = true
			}
		}
		f, err := Parse("p", []byte(data))
		if err != nil {
			t.Fatalf("round %d: Parse(%q): %v", round, data, err)
		}
		got, removed := f.Without(func(l Line) bool { return drop[l.Key] })
		if want := expectWithout(data, drop); string(got) != want {
			t.Fatalf("round %d: removing %v from\n%q\ngave\n%q\nwant\n%q", round, drop, data, got, want)
		}
		for _, l := range removed {
			if !drop[l.Key] {
				t.Fatalf("round %d: removed line %d of %q", round, l.Num, l.Key)
			}
		}
	}

	dir := t.TempDir()
	for round := range 40 {
		data, users := randomPasswd(rng)
		path := filepath.Join(dir, fmt.Sprintf("users%d", round))
		writeFile(t, path, data, 0o600)
		drop := map[string]bool{}
		var targets []Target
		for _, u := range users {
			if rng.IntN(2) == 0 {
				drop[u] = true
				local, domain := splitUser(u)
				targets = append(targets, Target{Local: local, Domain: domain})
			}
		}
		src := Source{Layout: LayoutDovecot, PasswdFiles: []string{path}, Home: filepath.Join(dir, "nohome")}
		o := ApplyOptions{BackupDir: filepath.Join(dir, "backups"), QuarantineDir: filepath.Join(dir, "q"), MaxShare: 1, Force: true}
		_, res, err := Remove(src, targets, o)
		if err != nil {
			t.Fatalf("round %d: Remove: %v", round, err)
		}
		got, _ := os.ReadFile(path)
		if want := expectWithout(data, drop); string(got) != want {
			t.Fatalf("round %d: on disk, removing %v from\n%q\ngave\n%q\nwant\n%q", round, drop, data, got, want)
		}
		if res.Backup == "" {
			continue // nothing to remove
		}
		if _, err := Restore(res.Backup, RestoreOptions{}); err != nil {
			t.Fatalf("round %d: Restore: %v", round, err)
		}
		if got, _ := os.ReadFile(path); string(got) != data {
			t.Fatalf("round %d: restore gave %q, want %q", round, got, data)
		}
	}
}
