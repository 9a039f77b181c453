package mailbox

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"mailwarden/internal/config"
)

func TestClosestRole(t *testing.T) {
	roles := config.DefaultRoleNames()
	cases := []struct {
		local, role string
		dist        int
	}{
		{"ofice", "office", 1},
		{"offices", "office", 1},
		{"servises", "services", 1},
		{"servicess", "services", 1},
		{"suport", "support", 1},
		{"infos", "info", 1},
		{"sales2", "sales", 1},
		{"webmastr", "webmaster", 1},
		{"ofiice", "office", 1},
		{"offcei", "office", 2},
		// Role names themselves and ordinary names are not near misses.
		{"office", "", 0},
		{"info", "", 0},
		{"james", "", 0},
		{"helen", "", 0},
		{"anna.smith", "", 0},
		// "info" allows one edit only: two is a different name.
		{"inf", "info", 1},
		{"ino2", "", 0},
	}
	for _, c := range cases {
		role, dist := closestRole(c.local, roles, 2)
		if role != c.role || dist != c.dist {
			t.Errorf("closestRole(%q) = %q, %d; want %q, %d", c.local, role, dist, c.role, c.dist)
		}
	}
	if role, _ := closestRole("ofice", roles, 0); role != "" {
		t.Errorf("max_distance 0 still matched %q", role)
	}
}

// boxes builds an inventory of a@d mailboxes created at the given times.
func boxes(specs ...string) *Inventory {
	inv := &Inventory{Source: Source{Layout: LayoutDirectAdmin}}
	domains := map[string]bool{}
	for i, s := range specs {
		local, domain := splitUser(s)
		inv.Mailboxes = append(inv.Mailboxes, Mailbox{Local: local, Domain: domain, File: "/v/" + domain + "/passwd", Line: i + 1})
		domains[domain] = true
	}
	inv.Domains = len(domains)
	return inv
}

func suspects(r *Report) []string {
	var out []string
	for _, e := range r.Entries() {
		if e.Suspect {
			out = append(out, e.Address())
		}
	}
	return out
}

func TestAuditBurstsAndSuspects(t *testing.T) {
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var specs []string
	for i := range 12 {
		specs = append(specs, fmt.Sprintf("info@d%d.example", i)) // old, on many domains
	}
	for i := range 6 {
		specs = append(specs, fmt.Sprintf("ofice@d%d.example", i)) // planted, misspelled
	}
	specs = append(specs, "anna@d1.example", "bob@d2.example", "office@d3.example")
	inv := boxes(specs...)
	for i := range inv.Mailboxes {
		switch m := &inv.Mailboxes[i]; m.Local {
		case "info":
			m.Created = base.AddDate(-2, 0, i) // one a day, years ago
		case "ofice":
			m.Created = base.Add(time.Duration(i) * time.Minute) // six within minutes
		case "anna":
			m.Created = base.Add(10 * time.Minute) // a real hire on the same day
		default:
			m.Created = base.AddDate(-1, 0, 0)
		}
	}
	o := AuditOptions{ManyDomains: 10, RoleNames: config.DefaultRoleNames(), MaxDistance: 2, BurstCount: 5, BurstWindow: time.Hour}

	r := Audit(inv, o)
	if len(r.Bursts) != 1 || r.Bursts[0].Count != 7 {
		t.Fatalf("bursts %+v, want one of 7 (six planted, one real hire)", r.Bursts)
	}
	want := []string{"ofice@d0.example", "ofice@d1.example", "ofice@d2.example", "ofice@d3.example", "ofice@d4.example", "ofice@d5.example"}
	if got := suspects(r); !slices.Equal(got, want) {
		t.Errorf("suspects %q, want %q: the old info boxes on many domains and the real hire in the burst are not", got, want)
	}
	info := r.Entry(0)
	if info.Flags != FlagManyDomains || info.Domains != 12 || info.Suspect {
		t.Errorf("old info box: %+v", info)
	}
	ofice := r.Entry(12)
	if ofice.Flags != FlagNearRole|FlagBurst || ofice.Role != "office" || ofice.Distance != 1 {
		t.Errorf("planted ofice: flags %v role %q distance %d", ofice.Flags, ofice.Role, ofice.Distance)
	}
	if r.LocalParts[0].Local != "ofice" || r.LocalParts[0].Suspect != 6 {
		t.Errorf("most suspect local part first: %+v", r.LocalParts)
	}

	// With a snapshot listing everything but the planted boxes and the
	// new hire, exactly the planted boxes are suspect; the new hire is
	// new and in the burst too, so it is proposed: a reviewer sees it.
	snapInv := &Inventory{}
	for _, m := range inv.Mailboxes {
		if m.Local != "ofice" && m.Local != "anna" {
			snapInv.Mailboxes = append(snapInv.Mailboxes, m)
		}
	}
	o.Snapshot = NewSnapshot(snapInv, nil, base.AddDate(0, 0, -1))
	r = Audit(inv, o)
	if got := suspects(r); !slices.Equal(got, append(slices.Clone(want), "anna@d1.example")) {
		t.Errorf("with snapshot, suspects %q", got)
	}

	// Without times or snapshot, the pattern alone decides.
	for i := range inv.Mailboxes {
		inv.Mailboxes[i].Created = time.Time{}
	}
	o.Snapshot = nil
	r = Audit(inv, o)
	if len(r.Bursts) != 0 || r.Suspect != 18 {
		t.Errorf("no times: %d bursts, %d suspects; want 0 and 18 (info on 12 domains, ofice on 6)", len(r.Bursts), r.Suspect)
	}
}

func TestAuditBurstsMerge(t *testing.T) {
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var specs []string
	for i := range 30 {
		specs = append(specs, fmt.Sprintf("u%d@d.example", i))
	}
	inv := boxes(specs...)
	for i := range inv.Mailboxes {
		switch {
		case i < 10: // 10 boxes in 9 minutes
			inv.Mailboxes[i].Created = base.Add(time.Duration(i) * time.Minute)
		case i < 20: // a long gap, then 10 more, one every 50 minutes
			inv.Mailboxes[i].Created = base.Add(48*time.Hour + time.Duration(i-10)*50*time.Minute)
		default: // and 10 within a minute, days later
			inv.Mailboxes[i].Created = base.Add(96*time.Hour + time.Duration(i-20)*time.Second)
		}
	}
	r := Audit(inv, AuditOptions{BurstCount: 5, BurstWindow: time.Hour})
	if len(r.Bursts) != 2 || r.Bursts[0].Count != 10 || r.Bursts[1].Count != 10 {
		t.Fatalf("bursts %+v, want two of 10", r.Bursts)
	}
	if !r.Bursts[0].Start.Equal(base) || !r.Bursts[0].End.Equal(base.Add(9*time.Minute)) {
		t.Errorf("first burst %v to %v", r.Bursts[0].Start, r.Bursts[0].End)
	}
	for i := 10; i < 20; i++ {
		if r.Entry(i).Flags&FlagBurst != 0 {
			t.Errorf("box %d, one every 50 minutes, is marked as a burst", i)
		}
	}
}

func TestAuditDuplicatesAndOddHome(t *testing.T) {
	inv := boxes("a@d.example", "b@d.example", "a@d.example")
	inv.Mailboxes[1].Home = "/home/other/imap/x.example/ceo"
	r := Audit(inv, AuditOptions{})
	if r.Entry(0).Flags != FlagDuplicate || r.Entry(2).Flags != FlagDuplicate {
		t.Errorf("duplicate flags %v %v", r.Entry(0).Flags, r.Entry(2).Flags)
	}
	if r.Entry(1).Flags != FlagOddHome {
		t.Errorf("odd home flag %v", r.Entry(1).Flags)
	}
	if got := (FlagNew | FlagBurst).String(); got != "new,burst" {
		t.Errorf("flag names %q", got)
	}
}

// TestAuditBurstsScaleWithTheServer: a big host that creates 40
// mailboxes an hour as a matter of course has no burst in that, but 300
// in half an hour are one.
func TestAuditBurstsScaleWithTheServer(t *testing.T) {
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var specs []string
	for i := range 4000 + 300 {
		specs = append(specs, fmt.Sprintf("u%d@d%d.example", i, i%50))
	}
	inv := boxes(specs...)
	for i := range inv.Mailboxes {
		if i < 4000 {
			inv.Mailboxes[i].Created = base.Add(time.Duration(i) * 90 * time.Second) // 40 an hour, 100 hours
		} else {
			inv.Mailboxes[i].Created = base.Add(50*time.Hour + time.Duration(i-4000)*6*time.Second)
		}
	}
	r := Audit(inv, AuditOptions{BurstCount: 20, BurstWindow: time.Hour})
	if len(r.Bursts) != 1 || r.BurstThreshold < 200 {
		t.Fatalf("bursts %+v with threshold %d; want one, above five times the usual 43 an hour", r.Bursts, r.BurstThreshold)
	}
	if b := r.Bursts[0]; b.Count < 300 || b.Count > 300+80 {
		t.Errorf("burst of %d, want the 300 (and the steady ones around them)", b.Count)
	}
	for i := range 4000 {
		if in := r.Entry(i).Flags&FlagBurst != 0; in && (i < 1900 || i > 2100) {
			t.Fatalf("steady box %d, far from the burst, marked as in it", i)
		}
	}
}
