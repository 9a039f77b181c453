package sites

import (
	"net/netip"
	"strings"
	"testing"

	"mailwarden/internal/policy"
)

func pfx(ss ...string) []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range ss {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}

// district is a school district: one internal /8, a district office /16
// with a school's /24 inside it, and a site outside internal_networks.
func district(t *testing.T) *Registry {
	t.Helper()
	r, err := New(pfx("10.0.0.0/8", "::1/128"), []Site{
		{Name: "office", Networks: pfx("10.1.0.0/16"), Contact: "helpdesk x100", SenderDomains: []string{"District.EXAMPLE."}},
		{Name: "lincoln", Networks: pfx("10.1.2.0/24", "2001:db8:12::/48"), Contact: "Ms Smith x212"},
		{Name: "annex", Networks: pfx("192.0.2.0/28")},
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

func TestLookup(t *testing.T) {
	r := district(t)
	for _, tc := range []struct {
		ip       string
		site     string
		internal bool
	}{
		{"10.1.2.3", "lincoln", true}, // the /24 inside the /16 wins
		{"10.1.9.9", "office", true},
		{"::ffff:10.1.2.3", "lincoln", true},  // as a dual-stack listener reports it
		{"2001:db8:12:5::1", "lincoln", true}, // IPv6 network
		{"10.200.0.1", "", true},              // internal, no site
		{"::1", "", true},                     // internal, no site
		{"192.0.2.5", "annex", true},          // a site is internal without internal_networks
		{"192.0.2.16", "", false},             // just outside the annex
		{"198.51.100.7", "", false},           // the Internet
		{"2001:db8:13::1", "", false},
	} {
		s, internal := r.Lookup(netip.MustParseAddr(tc.ip))
		name := ""
		if s != nil {
			name = s.Name
		}
		if name != tc.site || internal != tc.internal {
			t.Errorf("Lookup(%s) = (%q, %v), want (%q, %v)", tc.ip, name, internal, tc.site, tc.internal)
		}
	}
	if s, internal := r.Lookup(netip.Addr{}); s != nil || internal {
		t.Errorf("Lookup(invalid) = (%v, %v), want (nil, false)", s, internal)
	}
}

func TestClassify(t *testing.T) {
	r := district(t)
	req := &policy.Request{ClientIP: netip.MustParseAddr("10.1.2.3")}
	r.Classify(req)
	if !req.Internal || req.Site != "lincoln" || !req.Outbound() {
		t.Errorf("after Classify: Internal=%v Site=%q", req.Internal, req.Site)
	}
	// A reused request is reclassified, not left with stale values.
	req.ClientIP = netip.MustParseAddr("198.51.100.7")
	r.Classify(req)
	if req.Internal || req.Site != "" || req.Outbound() {
		t.Errorf("external after Classify: Internal=%v Site=%q", req.Internal, req.Site)
	}
}

func TestContactAndSite(t *testing.T) {
	r := district(t)
	for ip, want := range map[string]string{
		"10.1.2.3":     "Ms Smith x212",
		"10.1.9.9":     "helpdesk x100",
		"192.0.2.5":    "the admins", // annex has no contact
		"10.200.0.1":   "the admins",
		"198.51.100.7": "the admins",
	} {
		if got := r.Contact(netip.MustParseAddr(ip), "the admins"); got != want {
			t.Errorf("Contact(%s) = %q, want %q", ip, got, want)
		}
	}
	s := r.Site("office")
	if s == nil || len(s.SenderDomains) != 1 || s.SenderDomains[0] != "district.example" {
		t.Errorf("Site(office) = %+v, want sender domain normalized to district.example", s)
	}
	if r.Site("nowhere") != nil || r.Site("") != nil {
		t.Error("Site of an unknown or empty name is not nil")
	}
	if n := len(r.Sites()); n != 3 {
		t.Errorf("Sites() has %d sites, want 3", n)
	}
}

func TestNilRegistry(t *testing.T) {
	var r *Registry
	if s, internal := r.Lookup(netip.MustParseAddr("10.1.2.3")); s != nil || internal {
		t.Error("nil registry finds a site")
	}
	if r.Site("x") != nil || r.Sites() != nil || r.Contact(netip.MustParseAddr("10.1.2.3"), "d") != "d" {
		t.Error("nil registry is not empty")
	}
	req := &policy.Request{ClientIP: netip.MustParseAddr("10.1.2.3"), Internal: true, Site: "x"}
	r.Classify(req)
	if req.Internal || req.Site != "" {
		t.Error("nil registry classifies as internal")
	}
}

func TestNewErrors(t *testing.T) {
	_, err := New(pfx("10.0.0.0/8"), []Site{
		{Name: "", Networks: pfx("10.9.0.0/16")},
		{Name: "a", Networks: pfx("10.1.0.0/16")},
		{Name: "a", Networks: pfx("10.2.0.0/16")},
		{Name: "b"},
		{Name: "c", Networks: []netip.Prefix{{}}},
		{Name: "d", Networks: pfx("10.1.0.0/16")},
		{Name: "e", Networks: pfx("10.5.0.0/16"), SenderDomains: []string{" "}},
	})
	if err == nil {
		t.Fatal("New accepted bad sites")
	}
	for _, want := range []string{
		"site 1 has no name",
		`site "a" is defined twice`,
		`site "b" has no networks`,
		`site "c": network 1 is invalid`,
		`site "d": network 10.1.0.0/16 already belongs to site "a"`,
		`site "e": empty domain`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
}

func TestNewCopiesInput(t *testing.T) {
	in := []Site{{Name: "a", Networks: pfx("10.1.0.0/16"), SenderDomains: []string{"A.example"}}}
	r, err := New(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	in[0].Networks[0] = netip.MustParsePrefix("172.16.0.0/12")
	if in[0].SenderDomains[0] != "A.example" {
		t.Error("New modified the caller's domain list")
	}
	if s, _ := r.Lookup(netip.MustParseAddr("10.1.0.1")); s == nil {
		t.Error("changing the caller's slice changed the registry")
	}
}

func TestInDomain(t *testing.T) {
	for _, tc := range []struct {
		domain, parent string
		want           bool
	}{
		{"example.org", "example.org", true},
		{"mail.example.org", "example.org", true},
		{"Mail.Example.ORG.", "example.org", true},
		{"example.org", "Example.Org.", true},
		{"notexample.org", "example.org", false},
		{"example.org.evil.test", "example.org", false},
		{"org", "example.org", false},
		{"", "example.org", false},
		{"example.org", "", false},
	} {
		if got := InDomain(tc.domain, tc.parent); got != tc.want {
			t.Errorf("InDomain(%q, %q) = %v, want %v", tc.domain, tc.parent, got, tc.want)
		}
	}
}
