package mailbox

import (
	"cmp"
	"iter"
	"math"
	"slices"
	"strings"
	"time"

	"mailwarden/internal/typo"
)

// Flag is one reason the audit looks twice at a mailbox.
type Flag uint8

const (
	// FlagManyDomains: the local part is on AuditOptions.ManyDomains
	// domains or more.
	FlagManyDomains Flag = 1 << iota
	// FlagNearRole: the local part is a near miss of a role name
	// ("ofice", "servises"), never the role name itself.
	FlagNearRole
	// FlagNew: not in the snapshot.
	FlagNew
	// FlagBurst: created in a burst of new mailboxes.
	FlagBurst
	// FlagDuplicate: the same user is listed more than once in its file.
	FlagDuplicate
	// FlagOddHome: the passwd entry's home is not where DirectAdmin
	// keeps the box's mail, for example another box's directory.
	FlagOddHome
)

// flagNames are the names used in every output, in bit order.
func flagNames() []string {
	return []string{"many_domains", "near_role", "new", "burst", "duplicate", "odd_home"}
}

// Names returns the flags' names.
func (f Flag) Names() []string {
	var out []string
	for i, name := range flagNames() {
		if f&(1<<i) != 0 {
			out = append(out, name)
		}
	}
	return out
}

func (f Flag) String() string { return strings.Join(f.Names(), ",") }

// AuditOptions are the thresholds of an audit (config mailbox:).
type AuditOptions struct {
	ManyDomains int
	RoleNames   []string
	MaxDistance int
	BurstCount  int
	BurstWindow time.Duration
	// Snapshot, if not nil, is an earlier list of the mailboxes: those
	// not on it are new.
	Snapshot *Snapshot
}

// Entry is one mailbox as the audit judged it.
type Entry struct {
	Mailbox
	Flags Flag
	// Role is the role name the local part resembles, Distance how
	// many edits away it is (FlagNearRole).
	Role     string
	Distance int
	// Domains is how many domains have this local part.
	Domains int
	// Suspect marks the mailboxes the audit proposes to remove; see
	// Audit for the rule.
	Suspect bool
}

// Burst is a stretch of time in which BurstCount or more mailboxes were
// created, no more than BurstWindow apart from first to last in each
// window.
type Burst struct {
	Start, End time.Time
	Count      int
}

// LocalPart summarises one flagged local part across domains.
type LocalPart struct {
	Local    string
	Domains  int
	Role     string
	Distance int
	Suspect  int
}

// Report is the result of an audit. Entries are computed on demand from
// a few bytes per mailbox, so a million mailboxes stay affordable.
type Report struct {
	Inventory *Inventory
	Options   AuditOptions
	Bursts    []Burst
	// BurstThreshold is the number of new mailboxes within BurstWindow
	// that made a burst on this server (see findBursts).
	BurstThreshold int
	// LocalParts are the local parts on many domains or near a role name,
	// most suspect first.
	LocalParts []LocalPart
	Suspect    int
	Flagged    int

	marks   []mark
	domains map[string]int
	near    map[string]nearRole
}

type mark struct {
	flags   Flag
	suspect bool
}

type nearRole struct {
	role     string
	distance int
}

// Len returns the number of mailboxes.
func (r *Report) Len() int { return len(r.marks) }

// Entry returns mailbox i as judged.
func (r *Report) Entry(i int) Entry {
	m := r.Inventory.Mailboxes[i]
	lp := strings.ToLower(m.Local)
	n := r.near[lp]
	return Entry{Mailbox: m, Flags: r.marks[i].flags, Role: n.role, Distance: n.distance,
		Domains: r.domains[lp], Suspect: r.marks[i].suspect}
}

// Entries yields every mailbox in inventory order.
func (r *Report) Entries() iter.Seq2[int, Entry] {
	return func(yield func(int, Entry) bool) {
		for i := range r.marks {
			if !yield(i, r.Entry(i)) {
				return
			}
		}
	}
}

// Audit judges every mailbox of inv. A mailbox is flagged for each
// reason in Flag; it is suspect, proposed for removal, when
//
//   - with a snapshot: it is new since then and its local part is on
//     many domains, is a near miss of a role name, or it came in a burst;
//   - without one, when bursts were found: its local part is on many
//     domains or near a role name, and it came in a burst (or its
//     creation time is unknown), so that a real "info" that has existed
//     for years is not proposed with the planted ones;
//   - otherwise: its local part is on many domains or near a role name.
//
// Matching is by exact local part on exact domain; nothing is ever
// proposed by prefix or pattern.
func Audit(inv *Inventory, o AuditOptions) *Report {
	r := &Report{Inventory: inv, Options: o, marks: make([]mark, len(inv.Mailboxes)),
		domains: map[string]int{}, near: map[string]nearRole{}}
	// Mailboxes come file by file, so duplicates and the domains of each
	// local part are counted with maps of one file at a time: a million
	// mailboxes need no million-entry map.
	type key struct{ local, domain string }
	inFile, inLower := map[key]int{}, map[key]bool{}
	file := ""
	for i, m := range inv.Mailboxes {
		if m.File != file {
			file = m.File
			clear(inFile)
			clear(inLower)
		}
		lp := strings.ToLower(m.Local)
		if first, dup := inFile[key{m.Local, m.Domain}]; dup {
			r.marks[first].flags |= FlagDuplicate
			r.marks[i].flags |= FlagDuplicate
		} else {
			inFile[key{m.Local, m.Domain}] = i
		}
		if k := (key{lp, strings.ToLower(m.Domain)}); !inLower[k] {
			inLower[k] = true
			r.domains[lp]++
		}
		if _, done := r.near[lp]; !done {
			role, dist := closestRole(lp, o.RoleNames, o.MaxDistance)
			r.near[lp] = nearRole{role, dist}
		}
		if m.Home != "" && inv.Source.Layout == LayoutDirectAdmin {
			r.marks[i].flags |= FlagOddHome
		}
		if o.Snapshot != nil && !o.Snapshot.Has(m) {
			r.marks[i].flags |= FlagNew
		}
	}
	for i, m := range inv.Mailboxes {
		lp := strings.ToLower(m.Local)
		if o.ManyDomains > 0 && r.domains[lp] >= o.ManyDomains {
			r.marks[i].flags |= FlagManyDomains
		}
		if r.near[lp].role != "" {
			r.marks[i].flags |= FlagNearRole
		}
	}
	r.Bursts = r.findBursts()
	const pattern = FlagManyDomains | FlagNearRole
	for i := range r.marks {
		f := r.marks[i].flags
		var suspect bool
		switch {
		case o.Snapshot != nil:
			suspect = f&FlagNew != 0 && f&(pattern|FlagBurst) != 0
		case len(r.Bursts) > 0:
			suspect = f&pattern != 0 && (f&FlagBurst != 0 || inv.Mailboxes[i].Created.IsZero())
		default:
			suspect = f&pattern != 0
		}
		r.marks[i].suspect = suspect
		if suspect {
			r.Suspect++
		}
		if f != 0 {
			r.Flagged++
		}
	}
	r.LocalParts = r.summarise()
	return r
}

// findBursts marks every mailbox created within BurstWindow of
// threshold-1 others and returns the merged stretches of time. The
// threshold is BurstCount, or five times the number of mailboxes an
// average window of this server's history saw, whichever is larger: a
// host of a million mailboxes creates dozens an hour in the normal run
// of things, and that must not look like one long burst.
func (r *Report) findBursts() []Burst {
	o := r.Options
	if o.BurstCount < 2 || o.BurstWindow <= 0 {
		return nil
	}
	boxes := r.Inventory.Mailboxes
	var idx []int
	for i, m := range boxes {
		if !m.Created.IsZero() {
			idx = append(idx, i)
		}
	}
	slices.SortStableFunc(idx, func(a, b int) int { return boxes[a].Created.Compare(boxes[b].Created) })
	threshold := o.BurstCount
	if len(idx) > 1 {
		if span := boxes[idx[len(idx)-1]].Created.Sub(boxes[idx[0]].Created); span > o.BurstWindow {
			average := float64(len(idx)) * float64(o.BurstWindow) / float64(span)
			threshold = max(threshold, int(math.Ceil(5*average)))
		}
	}
	r.BurstThreshold = threshold
	var bursts []Burst
	marked, j := 0, 0 // idx[:marked] are in a burst already
	for i := range idx {
		start := boxes[idx[i]].Created
		for j < len(idx) && boxes[idx[j]].Created.Sub(start) <= o.BurstWindow {
			j++
		}
		if j-i < threshold {
			continue
		}
		if i >= marked || len(bursts) == 0 {
			bursts = append(bursts, Burst{Start: start})
		}
		b := &bursts[len(bursts)-1]
		for k := max(i, marked); k < j; k++ {
			r.marks[idx[k]].flags |= FlagBurst
			b.Count++
		}
		b.End = boxes[idx[j-1]].Created
		marked = j
	}
	return bursts
}

// summarise lists the local parts on many domains or near a role name.
func (r *Report) summarise() []LocalPart {
	byLocal := map[string]*LocalPart{}
	for i, m := range r.Inventory.Mailboxes {
		if r.marks[i].flags&(FlagManyDomains|FlagNearRole) == 0 {
			continue
		}
		lp := strings.ToLower(m.Local)
		p := byLocal[lp]
		if p == nil {
			n := r.near[lp]
			p = &LocalPart{Local: lp, Domains: r.domains[lp], Role: n.role, Distance: n.distance}
			byLocal[lp] = p
		}
		if r.marks[i].suspect {
			p.Suspect++
		}
	}
	out := make([]LocalPart, 0, len(byLocal))
	for _, p := range byLocal {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b LocalPart) int {
		return cmp.Or(cmp.Compare(b.Suspect, a.Suspect), cmp.Compare(b.Domains, a.Domains), strings.Compare(a.Local, b.Local))
	})
	return out
}

// closestRole returns the role name local is a near miss of and the
// distance, or "" when it is a role name itself or near none. A role
// name allows at most one edit per three letters, so that "info" does
// not match every four-letter name.
func closestRole(local string, roles []string, maxDist int) (string, int) {
	if maxDist <= 0 || slices.Contains(roles, local) {
		return "", 0
	}
	best, bestDist := "", maxDist+1
	for _, r := range roles {
		limit := min(maxDist, len(r)/3)
		if limit == 0 || abs(len(r)-len(local)) > limit {
			continue
		}
		if d := typo.Within(local, r, limit); d > 0 && d <= limit && d < bestDist {
			best, bestDist = r, d
		}
	}
	if best == "" {
		return "", 0
	}
	return best, bestDist
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
