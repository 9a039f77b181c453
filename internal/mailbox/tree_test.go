package mailbox

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"mailwarden/internal/mailbox/mailboxtest"
)

// TestDayB is PRODUCT.md's Day B over a generated DirectAdmin tree: 300
// domains of real mailboxes, then about 900 planted ones over 12 local
// parts, some misspelled, beside real boxes that resemble them. The audit
// proposes exactly the planted ones, with a snapshot or without; the
// removal refuses to gut files until forced, then takes out exactly
// those lines and moves their mail to the quarantine, every other byte
// unchanged; restore gives back the identical tree.
func TestDayB(t *testing.T) {
	a := newAttackedTree(t, 300, 900, 1, false)
	if len(a.Bogus) != 900 {
		t.Fatalf("planted %d mailboxes, want 900", len(a.Bogus))
	}
	inv := readTree(t, a.Source)
	if got, want := len(inv.Mailboxes), len(a.Legit)+len(a.Bogus); got != want {
		t.Fatalf("read %d mailboxes, want %d", got, want)
	}
	if inv.Domains != 300 {
		t.Errorf("read %d domains, want 300 (usage/ and majordomo/ are not domains)", inv.Domains)
	}

	for name, snap := range map[string]*Snapshot{"with snapshot": a.Snapshot, "without snapshot": nil} {
		t.Run("audit "+name, func(t *testing.T) {
			r := Audit(inv, auditOptions(snap))
			if got := suspects(r); !slices.Equal(sorted(got), sorted(a.Bogus)) {
				t.Fatalf("%d suspects, want the %d planted boxes; extra or missing: %q", len(got), len(a.Bogus), symDiff(got, a.Bogus))
			}
			byAddr := map[string]Entry{}
			for _, e := range r.Entries() {
				byAddr[e.Address()] = e
			}
			real := a.Domains[7].Name
			if e := byAddr["office@"+real]; e.Suspect || e.Flags&FlagManyDomains == 0 {
				t.Errorf("the real office@%s: suspect %v flags %v; want flagged for many domains but not suspect", real, e.Suspect, e.Flags)
			}
			if e := byAddr["sales2@"+a.Domains[11].Name]; e.Suspect || e.Role != "sales" {
				t.Errorf("the real sales2: suspect %v near %q", e.Suspect, e.Role)
			}
			for _, b := range a.Bogus {
				if strings.HasPrefix(b, "ofice@") || strings.HasPrefix(b, "servises@") {
					if e := byAddr[b]; e.Flags&FlagNearRole == 0 {
						t.Errorf("misspelled %s not flagged near_role: %v", b, e.Flags)
					}
				}
			}
		})
	}

	targets := targetsOf(t, a.Bogus)
	t.Run("dry run changes nothing", func(t *testing.T) {
		p, err := BuildPlan(a.Source, targets, a.Quarant)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.NotFound) != 0 || len(p.Errors) != 0 {
			t.Fatalf("not found %v, errors %v", p.NotFound, p.Errors)
		}
		gone := 0
		for _, c := range p.Changes {
			if c.Passwd {
				gone += len(c.Removed)
			}
		}
		if gone != 900 {
			t.Errorf("plan removes %d passwd lines, want 900", gone)
		}
		if d := mailboxtest.Diff(a.Before, capture(t, a), 10); len(d) > 0 {
			t.Errorf("planning changed the tree: %q", d)
		}
	})

	t.Run("guards refuse to gut files", func(t *testing.T) {
		_, _, err := Remove(a.Source, targets, a.applyOptions(false))
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "max_remove_share 50%") {
			t.Fatalf("Remove without --force: %v, want a refusal naming max_remove_share", err)
		}
		if d := mailboxtest.Diff(a.Before, capture(t, a), 10); len(d) > 0 {
			t.Errorf("a refused removal changed the tree: %q", d)
		}
	})

	var res *Result
	t.Run("remove", func(t *testing.T) {
		var err error
		_, res, err = Remove(a.Source, targets, a.applyOptions(true))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Failed) != 0 {
			t.Fatalf("failures: %v", res.Failed)
		}
		after := readTree(t, a.Source)
		if got := addresses(after); !slices.Equal(got, sorted(a.Legit)) {
			t.Fatalf("after removal %d mailboxes, want the %d real ones; difference %q", len(got), len(a.Legit), symDiff(got, a.Legit))
		}
		a.checkOnlyPlantedGone(t, res)
		if st := readState(res.Backup); !strings.HasPrefix(st, StateComplete) {
			t.Errorf("backup state %q", st)
		}
	})
	if res == nil {
		t.FailNow()
	}

	t.Run("restore", func(t *testing.T) {
		dir, err := FindBackup(a.Backups, "latest")
		if err != nil || dir != res.Backup {
			t.Fatalf("FindBackup(latest) = %q, %v; want %q", dir, err, res.Backup)
		}
		rr, err := Restore(dir, RestoreOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rr.Restored) != len(res.Edited) || len(rr.MovedBack) != len(res.Moved) {
			t.Errorf("restored %d files and %d moves; the removal made %d and %d", len(rr.Restored), len(rr.MovedBack), len(res.Edited), len(res.Moved))
		}
		if d := mailboxtest.Diff(a.Before, capture(t, a), 20); len(d) > 0 {
			t.Fatalf("restore did not give back the identical tree:\n%s", strings.Join(d, "\n"))
		}
		// Again: nothing left to do, nothing changes.
		rr, err = Restore(dir, RestoreOptions{})
		if err != nil || len(rr.Restored) != 0 || len(rr.Unchanged) != len(res.Edited) {
			t.Errorf("second restore: %+v, %v", rr, err)
		}
		if d := mailboxtest.Diff(a.Before, capture(t, a), 20); len(d) > 0 {
			t.Errorf("a second restore changed the tree: %q", d)
		}
	})
}

// checkOnlyPlantedGone compares the tree with the one before the removal:
// each changed file is the old one minus exactly the planted boxes'
// lines (computed here without the package's parser), owner and mode
// kept; the moved paths are the planted boxes' mail directories and
// per-box files, now in the quarantine with their content; nothing
// else differs by a byte.
func (a *attackedTree) checkOnlyPlantedGone(t *testing.T, res *Result) {
	t.Helper()
	now := capture(t, a)
	planted := map[string]map[string]bool{} // domain -> local parts
	for _, b := range a.Bogus {
		local, domain, _ := strings.Cut(b, "@")
		if planted[domain] == nil {
			planted[domain] = map[string]bool{}
		}
		planted[domain][local] = true
	}
	moved := map[string]bool{}
	for _, m := range res.Moved {
		moved[m.From] = true
		if _, err := os.Lstat(m.To); err != nil {
			t.Errorf("%s not in the quarantine: %v", m.From, err)
		}
	}
	edited := 0
	for path, old := range a.Before {
		cur, ok := now[path]
		inMoved := false
		for dir := path; dir != "/" && dir != "."; dir = filepath.Dir(dir) {
			if moved[dir] {
				inMoved = true
			}
		}
		switch {
		case inMoved:
			if ok {
				t.Errorf("%s was quarantined but is still there", path)
			}
			continue
		case !ok:
			t.Errorf("%s is gone but was not quarantined", path)
			continue
		case old == cur:
			continue
		}
		if old.Mode.IsDir() && cur.Mode == old.Mode && cur.UID == old.UID {
			continue // a directory whose entries moved
		}
		domain := filepath.Base(filepath.Dir(path))
		want := keysWithout(old.Data, planted[domain])
		if cur.Data != want || cur.Mode != old.Mode || cur.UID != old.UID || cur.GID != old.GID {
			t.Errorf("%s changed beyond its planted lines (mode %v→%v, owner %d:%d→%d:%d)", path, old.Mode, cur.Mode, old.UID, old.GID, cur.UID, cur.GID)
		}
		edited++
	}
	for path := range now {
		if _, ok := a.Before[path]; !ok {
			t.Errorf("new file %s", path)
		}
	}
	if edited != len(res.Edited) {
		t.Errorf("%d files differ, the removal reports %d edited", edited, len(res.Edited))
	}
	for _, b := range a.Bogus {
		local, domain, _ := strings.Cut(b, "@")
		d, _ := a.Domain(domain)
		if !moved[filepath.Join(a.Home, d.Owner, "imap", domain, local)] {
			t.Errorf("the mail directory of %s was not quarantined", b)
		}
	}
}

// symDiff returns what is in one list and not the other, at most 10.
func symDiff(a, b []string) []string {
	in := func(s []string) map[string]bool {
		m := map[string]bool{}
		for _, x := range s {
			m[x] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out []string
	for x := range ma {
		if !mb[x] {
			out = append(out, "+"+x)
		}
	}
	for x := range mb {
		if !ma[x] {
			out = append(out, "-"+x)
		}
	}
	slices.Sort(out)
	return out[:min(len(out), 10)]
}
