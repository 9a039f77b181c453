package mailboxtest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// BogusLocals are the attack's 12 local parts, several misspelled, as on
// PRODUCT.md's Day B.
func BogusLocals() []string {
	return []string{"office", "ofice", "services", "servises", "support", "suport",
		"admin", "billing", "sales", "contact", "webmaster", "infos"}
}

// AttackOptions shape the planted mailboxes.
type AttackOptions struct {
	// Count is how many (900 when 0); Domains how many domains they are
	// spread over (80 when 0, or every domain if fewer).
	Count, Domains int
	Locals         []string // BogusLocals() when nil
	// At is when the burst starts; the boxes' mail directories are dated
	// within 40 minutes after it. Zero means now.
	At time.Time
	// Forwarders also gives some planted boxes an aliases line, as a
	// spammer forwarding replies would.
	Forwarders bool
}

// Attack plants mailboxes the way the Day B attacker did, appending to
// each domain's passwd, quota and limit files as the control panel does,
// and returns the new addresses (also appended to t.Bogus).
func (t *Tree) Attack(o AttackOptions) ([]string, error) {
	if o.Count == 0 {
		o.Count = 900
	}
	if o.Domains == 0 {
		o.Domains = 80
	}
	o.Domains = min(o.Domains, len(t.Domains))
	if o.Locals == nil {
		o.Locals = BogusLocals()
	}
	if o.At.IsZero() {
		o.At = time.Now()
	}
	picked := t.rng.Perm(len(t.Domains))[:o.Domains]
	type pair struct{ domain, local int }
	var pairs []pair
	for _, d := range picked {
		for l := range o.Locals {
			pairs = append(pairs, pair{d, l})
		}
	}
	t.rng.Shuffle(len(pairs), func(i, j int) { pairs[i], pairs[j] = pairs[j], pairs[i] })
	var added []string
	for _, p := range pairs {
		if len(added) == o.Count {
			break
		}
		d, local := &t.Domains[p.domain], o.Locals[p.local]
		if slices.Contains(d.Boxes, local) {
			continue // a real box of that name: the panel would refuse
		}
		if err := t.plant(d, local, o, len(added)); err != nil {
			return added, err
		}
		addr := local + "@" + d.Name
		added = append(added, addr)
		t.Bogus = append(t.Bogus, addr)
	}
	if len(added) < o.Count {
		return added, fmt.Errorf("mailboxtest: only room for %d of %d planted mailboxes", len(added), o.Count)
	}
	return added, nil
}

// plant adds one mailbox to a domain.
func (t *Tree) plant(d *Domain, local string, o AttackOptions, i int) error {
	dir := filepath.Join(t.Root, d.Name)
	d.Boxes = append(d.Boxes, local)
	if err := AppendLine(filepath.Join(dir, "passwd"), t.passwdLine(*d, local)); err != nil {
		return err
	}
	if err := AppendLine(filepath.Join(dir, "quota"), local+":0\n"); err != nil {
		return err
	}
	if err := t.writeOwned(filepath.Join(dir, "limit", local), "0\n", 0o644); err != nil {
		return err
	}
	if o.Forwarders && i%7 == 0 {
		if err := AppendLine(filepath.Join(dir, "aliases"), fmt.Sprintf("%s: %s,collect@spam.example\n", local, local)); err != nil {
			return err
		}
	}
	at := o.At.Add(time.Duration(t.rng.Int64N(int64(40 * time.Minute))))
	return t.mailDir(*d, local, at)
}

// AppendLine appends text to an existing file in place, keeping its owner
// and mode, the way a control panel adds a mailbox.
func AppendLine(path, text string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
