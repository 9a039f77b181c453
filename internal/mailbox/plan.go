package mailbox

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Plan is everything a removal would change, worked out from the files
// as they are now and changing nothing. A dry run prints it; Remove
// applies it.
type Plan struct {
	Source  Source
	Targets []Target
	// Changes are the files to rewrite, grouped by unit with the passwd
	// file first in each.
	Changes []Change
	// Moves are the mail directories and per-box files to quarantine.
	Moves []Move
	// NotFound are targets with no passwd entry.
	NotFound []Target
	// Notes are things the administrator should know: duplicate entries,
	// forwarders left pointing at a removed box, homes elsewhere.
	Notes []string
	// Errors are files that cannot be edited safely; a plan with errors
	// is never applied.
	Errors []error

	files map[string]*File // parsed while planning, by path
}

// Change is one file to rewrite without some of its lines.
type Change struct {
	Path string
	// Unit is the domain (DirectAdmin) or passwd-file (Dovecot) the file
	// belongs to; when one file of a unit fails, the unit's remaining
	// changes are skipped.
	Unit string
	// Passwd marks the list of mailboxes itself, which the guards watch.
	Passwd   bool
	Meta     fileMeta
	Old, New []byte
	Removed  []Removed
	// Entries is how many entries the file had.
	Entries int

	file *File // Old, parsed
}

// Removed is one line a change leaves out.
type Removed struct {
	Line   int
	Key    string
	Target Target
}

// Move is a directory or file moved to the quarantine.
type Move struct {
	Path   string
	Unit   string
	Dir    bool
	Target Target
	What   string // "mail directory", "home directory", "sending limit" …
	// Problem, if set, says why it will be left in place.
	Problem string
}

// keyedFiles are DirectAdmin's per-domain files with one "box:…" line
// per mailbox, besides passwd; only lines whose key is a removed box go.
func keyedFiles() []string {
	return []string{"quota", "aliases", "autoresponder.conf", "vacation.conf"}
}

// boxFiles are DirectAdmin's per-box files: directory, name suffix, what.
func boxFiles() [][3]string {
	return [][3]string{{"limit", "", "sending limit"}, {"usage", "", "usage count"}, {"reply", ".msg", "autoresponder message"}}
}

// BuildPlan works out what removing targets from src would change. It
// reads the files and changes nothing; quarantineDir is only looked at
// to tell whether mail directories can be moved there.
func BuildPlan(src Source, targets []Target, quarantineDir string) (*Plan, error) {
	// A file listed twice would be planned, and rewritten, twice.
	var files []string
	for _, f := range src.PasswdFiles {
		if !slices.Contains(files, f) {
			files = append(files, f)
		}
	}
	src.PasswdFiles = files
	p := &Plan{Source: src, Targets: dedupe(targets), files: map[string]*File{}}
	switch src.Layout {
	case LayoutDirectAdmin:
		if err := p.planDirectAdmin(); err != nil {
			return nil, err
		}
	case LayoutDovecot:
		p.planDovecot()
	default:
		return nil, fmt.Errorf("mailbox: unknown layout %q", src.Layout)
	}
	p.checkMoves(quarantineDir)
	return p, nil
}

func (p *Plan) planDirectAdmin() error {
	domains, _, err := p.Source.daDomains()
	if err != nil {
		return err
	}
	byName := map[string]daDomain{}
	for _, d := range domains {
		byName[strings.ToLower(d.Name)] = d
	}
	byDomain := map[string][]Target{}
	var order []string
	for _, t := range p.Targets {
		d, ok := byName[t.Domain]
		if !ok {
			p.NotFound = append(p.NotFound, t)
			continue
		}
		if byDomain[d.Name] == nil {
			order = append(order, d.Name)
		}
		byDomain[d.Name] = append(byDomain[d.Name], t)
	}
	slices.Sort(order)
	for _, name := range order {
		p.planDomain(byName[strings.ToLower(name)], byDomain[name])
	}
	return nil
}

// planDomain plans one DirectAdmin domain: its passwd lines, the lines of
// the files beside it keyed by a removed box, the per-box files and the
// mail directories.
func (p *Plan) planDomain(d daDomain, targets []Target) {
	c, found, ok := p.planFile(d.passwd(), d.Name, true, targets, func(key string) (string, string) { return key, d.Name })
	if !ok || len(found) == 0 {
		return
	}
	removed := map[string]Target{}
	for _, t := range found {
		removed[t.Local] = t
	}
	for _, name := range keyedFiles() {
		path := filepath.Join(d.Dir, name)
		if _, err := os.Lstat(path); err != nil {
			continue
		}
		p.planFile(path, d.Name, false, found, func(key string) (string, string) { return key, d.Name })
		if name == "aliases" {
			p.noteForwarders(path, d.Name, removed)
		}
	}
	homes := map[string]string{}
	for _, r := range c.Removed {
		if f := c.home(r); f != "" {
			homes[r.Key] = f
		}
	}
	for _, t := range found {
		for _, bf := range boxFiles() {
			path := filepath.Join(d.Dir, bf[0], t.Local+bf[1])
			if !safeName(t.Local) {
				continue
			}
			if st, err := os.Lstat(path); err == nil {
				m := Move{Path: path, Unit: d.Name, Target: t, What: bf[2]}
				if !st.Mode().IsRegular() {
					m.Problem = "not a regular file"
				}
				p.Moves = append(p.Moves, m)
			}
		}
		dir := p.Source.mailDir(d, t.Local)
		if dir == "" {
			p.Notes = append(p.Notes, fmt.Sprintf("%s: no mail directory looked for (owner of %s unknown, or an unsafe name)", t, d.Name))
			continue
		}
		if h := homes[t.Local]; h != "" && filepath.Clean(h) != dir {
			p.Notes = append(p.Notes, fmt.Sprintf("%s: its passwd entry names the home %q, not %s; only %s is quarantined", t, h, dir, dir))
		}
		p.addDirMove(dir, d.Name, t, "mail directory")
	}
}

// planFile plans the removal of targets' lines from one file. split
// turns a line's key into local part and domain. It returns the
// targets found and whether the file could be planned at all.
func (p *Plan) planFile(path, unit string, passwd bool, targets []Target, split func(string) (string, string)) (*Change, []Target, bool) {
	meta, err := statMeta(path)
	if err != nil {
		p.Errors = append(p.Errors, fmt.Errorf("mailbox: cannot edit %s: %w", path, err))
		return nil, nil, false
	}
	f, err := readFile(path)
	if err != nil {
		if !passwd {
			// The mailboxes go from passwd all the same; a junk line in,
			// say, aliases must not keep planted boxes alive.
			p.Notes = append(p.Notes, fmt.Sprintf("%v; that file is left as it is: remove the boxes' lines from it by hand", err))
			return nil, nil, true
		}
		p.Errors = append(p.Errors, err)
		return nil, nil, false
	}
	p.files[path] = f
	wanted := make(map[Target]bool, len(targets))
	for _, t := range targets {
		wanted[t] = true
	}
	lines := map[Target][]int{}
	newData, removed := f.Without(func(l Line) bool {
		local, domain := split(l.Key)
		t := Target{Local: local, Domain: strings.ToLower(domain)}
		if wanted[t] {
			lines[t] = append(lines[t], l.Num)
			return true
		}
		return false
	})
	var found, missing []Target
	for _, t := range targets {
		switch n := lines[t]; {
		case len(n) == 0 && passwd:
			missing = append(missing, t)
		case len(n) > 1:
			p.Notes = append(p.Notes, fmt.Sprintf("%s is listed %d times in %s (lines %s); every one of those lines goes", t, len(n), path, joinInts(n)))
			found = append(found, t)
		case len(n) == 1:
			found = append(found, t)
		}
	}
	p.NotFound = append(p.NotFound, missing...)
	p.noteCase(f, path, missing, split)
	if len(removed) == 0 {
		return nil, found, true
	}
	c := Change{Path: path, Unit: unit, Passwd: passwd, Meta: meta, Old: f.Data, New: newData, Entries: f.Entries(), file: f}
	for _, l := range removed {
		local, domain := split(l.Key)
		c.Removed = append(c.Removed, Removed{Line: l.Num, Key: l.Key, Target: Target{Local: local, Domain: strings.ToLower(domain)}})
	}
	p.Changes = append(p.Changes, c)
	// A copy: later appends may move p.Changes.
	return &c, found, true
}

// noteCase tells, for targets not found, about entries that differ only
// in case: names are matched exactly, and the administrator should know.
func (p *Plan) noteCase(f *File, path string, missing []Target, split func(string) (string, string)) {
	if len(missing) == 0 {
		return
	}
	folded := map[string][]string{}
	for _, l := range f.Lines {
		if l.Key != "" {
			local, domain := split(l.Key)
			k := strings.ToLower(local) + "@" + strings.ToLower(domain)
			folded[k] = append(folded[k], l.Key)
		}
	}
	for _, t := range missing {
		for _, key := range folded[strings.ToLower(t.Local)+"@"+t.Domain] {
			p.Notes = append(p.Notes, fmt.Sprintf("%s is not in %s, but %q is (names are matched exactly)", t, path, key))
		}
	}
}

// noteForwarders notes aliases lines that are not a removed box's own
// but forward to one: they are left in place, for the administrator.
func (p *Plan) noteForwarders(path, domain string, removed map[string]Target) {
	f, err := readFile(path)
	if err != nil {
		return
	}
	for _, l := range f.Lines {
		if l.Key == "" {
			continue
		}
		if _, own := removed[l.Key]; own {
			continue
		}
		_, dests, _ := strings.Cut(f.Text(l), ":")
		for d := range strings.SplitSeq(dests, ",") {
			d = strings.TrimSpace(d)
			local, dom := splitUser(d)
			if t, ok := removed[local]; ok && (dom == "" || strings.EqualFold(dom, domain)) {
				p.Notes = append(p.Notes, fmt.Sprintf("%s:%d: forwarder %q points at %s; left in place", path, l.Num, l.Key, t))
			}
		}
	}
}

func (p *Plan) planDovecot() {
	if len(p.Source.PasswdFiles) == 0 {
		p.Errors = append(p.Errors, errors.New("mailbox: no passwd-files given for the dovecot layout"))
		return
	}
	found := map[Target]bool{}
	for _, path := range p.Source.PasswdFiles {
		_, ts, _ := p.planFile(path, path, true, p.Targets, splitUser)
		for _, t := range ts {
			found[t] = true
		}
	}
	// planFile counts a target missing from each file it is not in;
	// only those in no file at all are not found.
	var missing []Target
	for _, t := range p.NotFound {
		if !found[t] && !slices.Contains(missing, t) {
			missing = append(missing, t)
		}
	}
	p.NotFound = missing
	kept := p.keptHomes()
	sorted := slices.Sorted(maps.Keys(kept))
	for i := range p.Changes {
		for _, r := range p.Changes[i].Removed {
			p.planHome(&p.Changes[i], r, kept, sorted)
		}
	}
}

// keptHomes returns the homes of every user the plan keeps, by home.
func (p *Plan) keptHomes() map[string]string {
	removing := map[string]map[int]bool{}
	for _, c := range p.Changes {
		removing[c.Path] = map[int]bool{}
		for _, r := range c.Removed {
			removing[c.Path][r.Line] = true
		}
	}
	kept := map[string]string{}
	for path, f := range p.files {
		for _, l := range f.Lines {
			if l.Key == "" || removing[path][l.Num] {
				continue
			}
			if h := homeField(f.Fields(l)); filepath.IsAbs(h) {
				kept[filepath.Clean(h)] = l.Key
			}
		}
	}
	return kept
}

// planHome quarantines a removed Dovecot user's home directory, but only
// when it lies inside Source.Home and no user who stays has it, a
// directory inside it, or a directory around it as home.
func (p *Plan) planHome(c *Change, r Removed, kept map[string]string, sorted []string) {
	home := c.home(r)
	if home == "" || !filepath.IsAbs(home) {
		return
	}
	home = filepath.Clean(home)
	root := filepath.Clean(p.Source.Home)
	if p.Source.Home == "" || !strings.HasPrefix(home, root+string(filepath.Separator)) {
		p.Notes = append(p.Notes, fmt.Sprintf("%s: home %s is outside %s; left in place", r.Target, home, p.Source.Home))
		return
	}
	for dir := home; dir != root && dir != "/"; dir = filepath.Dir(dir) {
		if user, ok := kept[dir]; ok {
			p.Notes = append(p.Notes, fmt.Sprintf("%s: home %s is shared with %s, who stays; left in place", r.Target, home, user))
			return
		}
	}
	// Homes inside this one sort right after home+"/".
	if i, _ := slices.BinarySearch(sorted, home+"/"); i < len(sorted) && strings.HasPrefix(sorted[i], home+"/") {
		p.Notes = append(p.Notes, fmt.Sprintf("%s: home %s holds the home of %s, who stays; left in place", r.Target, home, kept[sorted[i]]))
		return
	}
	p.addDirMove(home, c.Unit, r.Target, "home directory")
}

// home returns the home field of a removed line.
func (c *Change) home(r Removed) string {
	if c.file == nil || r.Line < 1 || r.Line > len(c.file.Lines) {
		return ""
	}
	return homeField(c.file.Fields(c.file.Lines[r.Line-1]))
}

// addDirMove plans moving a directory, if there is one.
func (p *Plan) addDirMove(dir, unit string, t Target, what string) {
	st, err := os.Lstat(dir)
	switch {
	case err != nil:
		return
	case st.Mode()&os.ModeSymlink != 0:
		p.Moves = append(p.Moves, Move{Path: dir, Unit: unit, Dir: true, Target: t, What: what, Problem: "a symbolic link, not a directory"})
	case !st.IsDir():
		p.Moves = append(p.Moves, Move{Path: dir, Unit: unit, Dir: true, Target: t, What: what, Problem: "not a directory"})
	default:
		p.Moves = append(p.Moves, Move{Path: dir, Unit: unit, Dir: true, Target: t, What: what})
	}
}

// checkMoves marks moves that cannot be renamed into quarantineDir
// because it is on another file system: mail is moved, never copied.
func (p *Plan) checkMoves(quarantineDir string) {
	qdev, ok := deviceOf(quarantineDir)
	if !ok {
		return
	}
	for i := range p.Moves {
		m := &p.Moves[i]
		if m.Problem != "" {
			continue
		}
		if dev, ok := deviceOf(filepath.Dir(m.Path)); ok && dev != qdev {
			m.Problem = fmt.Sprintf("on another file system than the quarantine %s; set mailbox.quarantine_dir to a directory on the same file system", quarantineDir)
		}
	}
}

// deviceOf returns the device of dir or of its nearest existing parent.
func deviceOf(dir string) (uint64, bool) {
	for dir != "" {
		if st, err := os.Stat(dir); err == nil {
			return ownerOf(st).dev, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return 0, false
}

// Refusal is a guard that stops a removal unless forced.
type Refusal struct {
	Path string
	Msg  string
}

func (r Refusal) String() string { return r.Path + ": " + r.Msg }

// Refusals returns the guards this plan trips: a passwd file left with
// no mailbox, or losing more than maxShare of its mailboxes.
func (p *Plan) Refusals(maxShare float64) []Refusal {
	var out []Refusal
	for _, c := range p.Changes {
		if !c.Passwd {
			continue
		}
		gone := len(c.Removed)
		switch {
		case gone >= c.Entries:
			out = append(out, Refusal{c.Path, fmt.Sprintf("would remove all %d mailboxes and leave the file empty", c.Entries)})
		case float64(gone) > maxShare*float64(c.Entries):
			out = append(out, Refusal{c.Path, fmt.Sprintf("would remove %d of %d mailboxes (%.0f%%), more than max_remove_share %.0f%%",
				gone, c.Entries, 100*float64(gone)/float64(c.Entries), 100*maxShare)})
		}
	}
	return out
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}
