package mailbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// Layouts a Source can describe.
const (
	// LayoutDirectAdmin is /etc/virtual/<domain>/passwd with quota,
	// aliases, limit/ and usage/ beside it, /etc/virtual/domainowners
	// mapping each domain to its account, and mail in
	// /home/<owner>/imap/<domain>/<box>.
	LayoutDirectAdmin = "directadmin"
	// LayoutDovecot is a list of Dovecot passwd-files whose users are
	// "local@domain" (or bare names).
	LayoutDovecot = "dovecot"
)

// Source says where the mailboxes are listed.
type Source struct {
	Layout string
	// Root is DirectAdmin's /etc/virtual.
	Root string
	// Home holds DirectAdmin's mail directories; with the dovecot layout
	// a home directory is quarantined only when it lies inside Home.
	Home string
	// PasswdFiles are the Dovecot passwd-files.
	PasswdFiles []string
}

// Mailbox is one entry of a passwd file.
type Mailbox struct {
	Local  string // the user, or the part before the last '@'
	Domain string // "" for a bare Dovecot user name
	Owner  string // the DirectAdmin account owning the domain
	File   string // the passwd file
	Line   int
	// Home is the entry's home field when it is not the mail directory
	// expected for a DirectAdmin box (always, with the dovecot layout);
	// "" too when the domain's owner is unknown.
	Home string
	// Created is when the mail directory appeared, as far as the file
	// system tells (see fileTimes); zero when there is none.
	Created time.Time
}

// Address returns "local@domain", or the bare user name.
func (m Mailbox) Address() string {
	if m.Domain == "" {
		return m.Local
	}
	return m.Local + "@" + m.Domain
}

// Inventory is every mailbox of a Source.
type Inventory struct {
	Source    Source
	Mailboxes []Mailbox
	Domains   int
	// Problems are passwd files that could not be read or were refused;
	// the rest of the tree was read.
	Problems []error
	// Notes are lesser trouble, such as a domain without an owner in
	// domainowners: its boxes are listed, their mail directories not
	// looked at.
	Notes []error
}

// Read lists every mailbox of src in a stable order (domain, then line).
// progress, if not nil, is called with the number of files read so far.
// An error means nothing could be read at all.
func Read(src Source, progress func(done, total int)) (*Inventory, error) {
	switch src.Layout {
	case LayoutDirectAdmin:
		return readDirectAdmin(src, progress)
	case LayoutDovecot:
		return readDovecot(src, progress)
	}
	return nil, fmt.Errorf("mailbox: unknown layout %q (want %s or %s)", src.Layout, LayoutDirectAdmin, LayoutDovecot)
}

// daDomain is one domain directory under /etc/virtual.
type daDomain struct {
	Name, Owner, Dir string
}

// passwd returns the domain's passwd file.
func (d daDomain) passwd() string { return filepath.Join(d.Dir, "passwd") }

// mailDir returns where DirectAdmin keeps box's mail, or "" when the
// owner is unknown or a name could escape the home directory.
// With box "" it returns the directory of the domain's boxes.
func (s Source) mailDir(d daDomain, box string) string {
	if s.Home == "" || !safeName(d.Owner) || !safeName(d.Name) || (box != "" && !safeName(box)) {
		return ""
	}
	return filepath.Join(s.Home, d.Owner, "imap", d.Name, box)
}

// safeName reports whether s can be one path component: the names come
// from files an attacker may have written.
func safeName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\x00")
}

// daDomains lists the domains under src.Root that have a passwd file,
// sorted by name, with their owners from domainowners.
func (s Source) daDomains() ([]daDomain, []error, error) {
	entries, err := os.ReadDir(s.Root)
	if err != nil {
		return nil, nil, fmt.Errorf("mailbox: reading the DirectAdmin tree: %w", err)
	}
	owners, problems := readDomainOwners(filepath.Join(s.Root, "domainowners"))
	var out []daDomain
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		d := daDomain{Name: e.Name(), Dir: filepath.Join(s.Root, e.Name())}
		if _, err := os.Lstat(d.passwd()); err != nil {
			continue // not a mail domain (DirectAdmin keeps other directories here)
		}
		d.Owner = owners[strings.ToLower(d.Name)]
		if d.Owner == "" {
			problems = append(problems, fmt.Errorf("mailbox: %s has no owner in domainowners; its mail directories are not looked at", d.Name))
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b daDomain) int { return strings.Compare(a.Name, b.Name) })
	return out, problems, nil
}

// readDomainOwners reads /etc/virtual/domainowners ("domain: owner").
func readDomainOwners(path string) (map[string]string, []error) {
	owners := map[string]string{}
	data, err := os.ReadFile(path)
	if err != nil {
		return owners, []error{fmt.Errorf("mailbox: reading domain owners: %w", err)}
	}
	return parseDomainOwners(path, data)
}

// parseDomainOwners parses domainowners ("domain: owner" lines). Bad lines
// are reported and skipped: their domains' mail directories are then
// not looked at, which is safe.
func parseDomainOwners(path string, data []byte) (map[string]string, []error) {
	owners := map[string]string{}
	var problems []error
	err := listLines(data, func(n int, line string) {
		domain, owner, ok := strings.Cut(line, ":")
		domain, owner = strings.TrimSpace(domain), strings.TrimSpace(owner)
		if !ok || !safeName(domain) || !safeName(owner) || strings.ContainsAny(owner, " \t") {
			problems = append(problems, &ParseError{Path: path, Line: n, Msg: fmt.Sprintf("%q is not \"domain: owner\"", clip(line))})
			return
		}
		owners[strings.ToLower(domain)] = owner
	})
	if err != nil {
		problems = append(problems, fmt.Errorf("mailbox: reading %s: %w", path, err))
	}
	return owners, problems
}

// readFile reads and parses one passwd-style file, refusing symbolic
// links and anything but a regular file.
func readFile(path string) (*File, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, &ParseError{Path: path, Msg: fmt.Sprintf("is not a regular file (%s)", st.Mode().Type())}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	return Parse(path, data)
}

func readDirectAdmin(src Source, progress func(done, total int)) (*Inventory, error) {
	domains, notes, err := src.daDomains()
	if err != nil {
		return nil, err
	}
	inv := &Inventory{Source: src, Notes: notes, Domains: len(domains)}
	results := make([][]Mailbox, len(domains))
	errs := make([]error, len(domains))
	forEach(len(domains), progress, func(i int) {
		results[i], errs[i] = readDomain(src, domains[i])
	})
	total := 0
	for i := range domains {
		total += len(results[i])
	}
	inv.Mailboxes = make([]Mailbox, 0, total)
	for i := range domains {
		if errs[i] != nil {
			inv.Problems = append(inv.Problems, errs[i])
		}
		inv.Mailboxes = append(inv.Mailboxes, results[i]...)
		results[i] = nil
	}
	return inv, nil
}

// readDomain lists one domain's boxes with their mail directories' times.
func readDomain(src Source, d daDomain) ([]Mailbox, error) {
	f, err := readFile(d.passwd())
	if err != nil {
		return nil, err
	}
	out := make([]Mailbox, 0, f.Entries())
	imap := src.mailDir(d, "")
	timeOf, done := func(string) time.Time { return time.Time{} }, func() {}
	if imap != "" {
		timeOf, done = createdIn(imap)
	}
	defer done()
	prefix := imap + string(filepath.Separator)
	for _, l := range f.Lines {
		if l.Key == "" {
			continue
		}
		m := Mailbox{Local: l.Key, Domain: d.Name, Owner: d.Owner, File: f.Path, Line: l.Num}
		known := imap != "" && safeName(l.Key)
		// The home is compared in place with imap/box: a million boxes
		// need not build a million paths that are all as expected.
		home := homeBytes(f.Data[l.Start:l.End])
		if known && (len(home) != len(prefix)+len(l.Key) || string(home[:len(prefix)]) != prefix || string(home[len(prefix):]) != l.Key) {
			m.Home = string(home)
		}
		if known {
			m.Created = timeOf(l.Key)
		}
		out = append(out, m)
	}
	return out, nil
}

func readDovecot(src Source, progress func(done, total int)) (*Inventory, error) {
	if len(src.PasswdFiles) == 0 {
		return nil, errors.New("mailbox: no passwd-files given for the dovecot layout")
	}
	inv := &Inventory{Source: src}
	results := make([][]Mailbox, len(src.PasswdFiles))
	errs := make([]error, len(src.PasswdFiles))
	forEach(len(src.PasswdFiles), progress, func(i int) {
		f, err := readFile(src.PasswdFiles[i])
		if err != nil {
			errs[i] = err
			return
		}
		for _, l := range f.Lines {
			if l.Key == "" {
				continue
			}
			m := Mailbox{File: f.Path, Line: l.Num, Home: homeField(f.Fields(l))}
			m.Local, m.Domain = splitUser(l.Key)
			if filepath.IsAbs(m.Home) {
				m.Created = created(m.Home)
			}
			results[i] = append(results[i], m)
		}
	})
	domains := map[string]bool{}
	for i := range results {
		if errs[i] != nil {
			inv.Problems = append(inv.Problems, errs[i])
		}
		for _, m := range results[i] {
			domains[m.Domain] = true
		}
		inv.Mailboxes = append(inv.Mailboxes, results[i]...)
	}
	inv.Domains = len(domains)
	if len(inv.Problems) == len(src.PasswdFiles) {
		return nil, errors.Join(inv.Problems...)
	}
	return inv, nil
}

// splitUser splits a Dovecot user name at its last '@'; the domain is
// lowercased, as domains compare without case.
func splitUser(user string) (local, domain string) {
	if i := strings.LastIndexByte(user, '@'); i > 0 {
		return user[:i], strings.ToLower(user[i+1:])
	}
	return user, ""
}

// created returns when the mail directory at path appeared: the earlier
// of its birth time (when the file system records one) and its
// modification time, which a restore from backup may have set back to
// the original. A DirectAdmin box directory holds only Maildir, so its
// modification time rarely moves after creation. Zero if path is not a
// directory.
func created(path string) time.Time {
	mtime, btime, isDir, err := fileTimes(path)
	if err != nil {
		return time.Time{}
	}
	return earliest(mtime, btime, isDir)
}

// earliest is created's choice between the two times.
func earliest(mtime, btime time.Time, isDir bool) time.Time {
	switch {
	case !isDir:
		return time.Time{}
	case !btime.IsZero() && btime.Before(mtime):
		return btime
	}
	return mtime
}

// forEach runs fn(0..n-1) on a few goroutines (reading is mostly waiting
// for the disk) and reports progress from the calling goroutine.
func forEach(n int, progress func(done, total int), fn func(i int)) {
	workers := min(n, 4*runtime.GOMAXPROCS(0))
	jobs := make(chan int)
	done := make(chan struct{}, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				fn(i)
				done <- struct{}{}
			}
		})
	}
	go func() {
		for i := range n {
			jobs <- i
		}
		close(jobs)
	}()
	for k := 1; k <= n; k++ {
		<-done
		if progress != nil {
			progress(k, n)
		}
	}
	wg.Wait()
}

// isNotExist reports a missing file, for callers that treat it as empty.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
