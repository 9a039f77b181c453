// Package mailboxtest generates DirectAdmin mail trees for the mailbox
// tools' tests and benchmarks: hundreds of domains with real-looking
// mailboxes, then, on request, the Day B attack of PRODUCT.md: about 900
// planted mailboxes over 12 local parts, several misspelled. The output
// depends only on the seed.
package mailboxtest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Options shape a generated tree.
type Options struct {
	// Domains is the number of domains (300 when 0).
	Domains int
	// MinBoxes and MaxBoxes bound the real mailboxes per domain (3 and
	// 25 when 0).
	MinBoxes, MaxBoxes int
	Seed               uint64
	// MailDirs creates each box's mail directory; Maildirs adds
	// Maildir/{cur,new,tmp} and a message inside it.
	MailDirs, Maildirs bool
	// UID and GID own the files under /etc/virtual when running as root
	// (the mail user); -1 leaves them.
	UID, GID int
	// Now is "today": real mail directories get times in the three years
	// before the day before it.
	Now time.Time
}

// Tree is a generated DirectAdmin tree.
type Tree struct {
	Root string // <dir>/etc/virtual
	Home string // <dir>/home
	// Domains in name order, with owners and real boxes.
	Domains []Domain
	// Legit and Bogus are addresses (local@domain).
	Legit, Bogus []string
	rng          *rand.Rand
	o            Options
}

// Domain is one generated domain.
type Domain struct {
	Name, Owner string
	UID         int
	Boxes       []string
}

// Generate writes a tree under dir.
func Generate(dir string, o Options) (*Tree, error) {
	if o.Domains == 0 {
		o.Domains = 300
	}
	if o.MinBoxes == 0 {
		o.MinBoxes = 3
	}
	if o.MaxBoxes < o.MinBoxes {
		o.MaxBoxes = max(25, o.MinBoxes)
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	t := &Tree{Root: filepath.Join(dir, "etc", "virtual"), Home: filepath.Join(dir, "home"),
		rng: rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15)), o: o}
	if err := os.MkdirAll(t.Root, 0o755); err != nil {
		return nil, err
	}
	// DirectAdmin keeps directories that are not domains here too.
	for _, d := range []string{"usage", "majordomo"} {
		if err := os.MkdirAll(filepath.Join(t.Root, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(t.Root, "usage", "admin.bytes"), []byte("0\n"), 0o644); err != nil {
		return nil, err
	}
	owners := t.owners(max(1, o.Domains/12))
	names := t.domainNames(o.Domains)
	var owned strings.Builder
	var domains strings.Builder
	for i, name := range names {
		d := Domain{Name: name, Owner: owners[i%len(owners)], UID: 1001 + i%len(owners)}
		d.Boxes = t.realBoxes(i, o.MinBoxes+t.rng.IntN(o.MaxBoxes-o.MinBoxes+1))
		if err := t.writeDomain(d); err != nil {
			return nil, err
		}
		t.Domains = append(t.Domains, d)
		for _, b := range d.Boxes {
			t.Legit = append(t.Legit, b+"@"+name)
		}
		fmt.Fprintf(&owned, "%s: %s\n", name, d.Owner)
		fmt.Fprintf(&domains, "%s\n", name)
	}
	if err := t.writeOwned(filepath.Join(t.Root, "domainowners"), owned.String(), 0o644); err != nil {
		return nil, err
	}
	if err := t.writeOwned(filepath.Join(t.Root, "domains"), domains.String(), 0o644); err != nil {
		return nil, err
	}
	return t, nil
}

// realBoxes returns n real-looking local parts for domain i: people, and
// the role boxes real organisations have, including the one real
// "office" and a real "sales2", which resemble the attack.
func (t *Tree) realBoxes(i, n int) []string {
	var boxes []string
	add := func(b string) {
		if !slices.Contains(boxes, b) {
			boxes = append(boxes, b)
		}
	}
	switch {
	case i == 7:
		add("office")
	case i == 11:
		add("sales2")
	}
	if i%5 == 0 {
		add("info") // common enough to be on many domains
	}
	if i%40 == 3 {
		add("support")
	}
	if i%60 == 9 {
		add("billing")
	}
	for len(boxes) < n {
		first := firstNames()[t.rng.IntN(len(firstNames()))]
		last := lastNames()[t.rng.IntN(len(lastNames()))]
		switch t.rng.IntN(4) {
		case 0:
			add(first)
		case 1:
			add(first + "." + last)
		case 2:
			add(first[:1] + last)
		default:
			add(first + last[:1])
		}
	}
	return boxes
}

func (t *Tree) owners(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s%d", []string{"acct", "web", "host", "client"}[i%4], i+1))
	}
	return out
}

func (t *Tree) domainNames(n int) []string {
	seen := map[string]bool{}
	var out []string
	words, tlds := domainWords(), []string{"com", "org", "net", "co.uk", "de", "nl", "edu"}
	for len(out) < n {
		name := words[t.rng.IntN(len(words))] + "-" + words[t.rng.IntN(len(words))] + "." + tlds[t.rng.IntN(len(tlds))]
		if len(out) >= len(words)*len(words)/2 {
			name = fmt.Sprintf("site%d.example", len(out))
		}
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// passwdLine is a DirectAdmin passwd entry (Dovecot passwd-file format).
func (t *Tree) passwdLine(d Domain, box string) string {
	return fmt.Sprintf("%s:{SHA512-CRYPT}$6$%s$%s:%d:12::%s:/bin/false\n", box, t.random(16), t.random(86), d.UID,
		filepath.Join(t.Home, d.Owner, "imap", d.Name, box))
}

func (t *Tree) random(n int) string {
	const alphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[t.rng.IntN(len(alphabet))]
	}
	return string(b)
}

func (t *Tree) writeDomain(d Domain) error {
	dir := filepath.Join(t.Root, d.Name)
	for _, sub := range []string{"", "limit", "usage", "reply"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
	}
	var passwd, quota, aliases strings.Builder
	for _, b := range d.Boxes {
		passwd.WriteString(t.passwdLine(d, b))
		fmt.Fprintf(&quota, "%s:%d\n", b, []int{0, 104857600, 524288000}[t.rng.IntN(3)])
	}
	// Real forwarders, one pointing at a real box.
	fmt.Fprintf(&aliases, "abuse: %s\n", d.Boxes[0])
	fmt.Fprintf(&aliases, "hostmaster: %s@%s\n", d.Boxes[len(d.Boxes)-1], d.Name)
	files := []struct {
		name, data string
		mode       os.FileMode
	}{{"passwd", passwd.String(), 0o640}, {"quota", quota.String(), 0o644}, {"aliases", aliases.String(), 0o644}}
	for _, f := range files {
		if err := t.writeOwned(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	for i, b := range d.Boxes {
		if i%3 == 0 {
			if err := t.writeOwned(filepath.Join(dir, "limit", b), "200\n", 0o644); err != nil {
				return err
			}
		}
		// Real boxes came over the years, none in the last day.
		created := t.o.Now.Add(-24*time.Hour - time.Duration(t.rng.Int64N(int64(3*365*24*time.Hour))))
		if err := t.mailDir(d, b, created); err != nil {
			return err
		}
	}
	return nil
}

// mailDir creates a box's mail directory, dated created.
func (t *Tree) mailDir(d Domain, box string, created time.Time) error {
	if !t.o.MailDirs {
		return nil
	}
	dir := filepath.Join(t.Home, d.Owner, "imap", d.Name, box)
	if t.o.Maildirs {
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(dir, "Maildir", sub), 0o700); err != nil {
				return err
			}
		}
		msg := fmt.Sprintf("From: someone@example.net\r\nTo: %s@%s\r\nSubject: hello\r\n\r\nmail for %s\r\n", box, d.Name, box)
		if err := os.WriteFile(filepath.Join(dir, "Maildir", "cur", "1700000000.M1P1.host:2,S"), []byte(msg), 0o600); err != nil {
			return err
		}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// Last, as creating entries inside moves the time.
	return os.Chtimes(dir, created, created)
}

// writeOwned writes a file under /etc/virtual with the configured owner.
func (t *Tree) writeOwned(path, data string, mode os.FileMode) error {
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		return err
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		return err
	}
	if t.o.UID >= 0 && os.Geteuid() == 0 {
		return os.Chown(path, t.o.UID, t.o.GID)
	}
	return nil
}

// Domain returns the generated domain called name.
func (t *Tree) Domain(name string) (Domain, bool) {
	for _, d := range t.Domains {
		if d.Name == name {
			return d, true
		}
	}
	return Domain{}, false
}
