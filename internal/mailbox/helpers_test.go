package mailbox

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/config"
	"mailwarden/internal/mailbox/mailboxtest"
)

// mailUID and mailGID own the generated /etc/virtual files when the
// tests run as root, so that keeping the owner is checked.
const mailUID, mailGID = 8, 12

// attackedTree generates a DirectAdmin tree of domains real mailboxes,
// a snapshot of it, and then the Day B attack.
type attackedTree struct {
	*mailboxtest.Tree
	Source   Source
	Snapshot *Snapshot
	Before   map[string]mailboxtest.Node // the tree after the attack
	Backups  string
	Quarant  string
}

// newAttackedTree generates the tree in a temporary directory; maildirs
// fills each mail directory with a Maildir and a message (slow on a busy
// disk, so only small trees do).
func newAttackedTree(t testing.TB, domains, bogus int, seed uint64, maildirs bool) *attackedTree {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	tr, err := mailboxtest.Generate(filepath.Join(dir, "srv"), mailboxtest.Options{Domains: domains, Seed: seed,
		MailDirs: true, Maildirs: maildirs, UID: mailUID, GID: mailGID, Now: now})
	if err != nil {
		t.Fatalf("generating the tree: %v", err)
	}
	a := &attackedTree{Tree: tr, Source: Source{Layout: LayoutDirectAdmin, Root: tr.Root, Home: tr.Home},
		Backups: filepath.Join(dir, "data", "backups"), Quarant: filepath.Join(dir, "srv", "quarantine")}
	inv := readTree(t, a.Source)
	a.Snapshot = NewSnapshot(inv, nil, now.Add(-time.Hour))
	if bogus > 0 {
		if _, err := tr.Attack(mailboxtest.AttackOptions{Count: bogus, Forwarders: true, At: now.Add(-2 * time.Hour)}); err != nil {
			t.Fatalf("planting mailboxes: %v", err)
		}
	}
	a.Before = capture(t, a)
	return a
}

func capture(t testing.TB, a *attackedTree) map[string]mailboxtest.Node {
	t.Helper()
	c, err := mailboxtest.Capture(a.Root, a.Home)
	if err != nil {
		t.Fatalf("capturing the tree: %v", err)
	}
	return c
}

func readTree(t testing.TB, src Source) *Inventory {
	t.Helper()
	inv, err := Read(src, nil)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if len(inv.Problems) > 0 {
		t.Fatalf("Read found problems: %v", inv.Problems)
	}
	return inv
}

func auditOptions(snap *Snapshot) AuditOptions {
	d := config.Default().Mailbox
	return AuditOptions{ManyDomains: d.ManyDomains, RoleNames: d.RoleNames, MaxDistance: d.MaxDistance,
		BurstCount: d.BurstCount, BurstWindow: d.BurstWindow.D(), Snapshot: snap}
}

func (a *attackedTree) applyOptions(force bool) ApplyOptions {
	return ApplyOptions{BackupDir: a.Backups, QuarantineDir: a.Quarant, MaxShare: 0.5, Force: force}
}

// addresses returns the addresses an inventory lists, sorted.
func addresses(inv *Inventory) []string {
	var out []string
	for _, m := range inv.Mailboxes {
		out = append(out, m.Address())
	}
	slices.Sort(out)
	return out
}

func targetsOf(t testing.TB, addrs []string) []Target {
	t.Helper()
	var out []Target
	for _, a := range addrs {
		x, err := ParseTarget(a)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, x)
	}
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func writeFile(t testing.TB, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

// keysWithout returns data's lines whose key (before ':') is not in
// drop, computed without the package's parser.
func keysWithout(data string, drop map[string]bool) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(data, "\n") {
		key, _, _ := strings.Cut(line, ":")
		if !drop[key] {
			b.WriteString(line)
		}
	}
	return b.String()
}
