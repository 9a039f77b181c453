// Package sites knows the organisation's own networks: which client
// addresses are internal, and which named site (a school, an office) owns
// each one. The policy pipeline asks it about every request, so outbound
// checks know whose client they are looking at and whom to tell.
package sites

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"mailwarden/internal/netset"
	"mailwarden/internal/policy"
)

// Site is a named part of the internal network. It is sites' own type,
// not config's, so that this package does not depend on config; the
// daemon converts.
type Site struct {
	Name     string
	Networks []netip.Prefix
	// Contact is who a latched user at this site should call.
	Contact string
	// SenderDomains and HeaderFromDomains, if set, replace the global
	// sender policy lists for this site's clients. New lowercases them
	// and drops a trailing dot.
	SenderDomains     []string
	HeaderFromDomains []string
}

// Registry answers which site, if any, owns a client address, and whether
// the address is internal. It is immutable and safe for concurrent use.
// A nil *Registry knows no networks: every address is external.
type Registry struct {
	internal *netset.Set
	// v4 and v6 hold the sites' networks grouped by prefix length,
	// longest first, so the first hit is the most specific site.
	v4, v6 []group
	byName map[string]*Site
	sites  []*Site
}

// group holds the site networks of one prefix length.
type group struct {
	bits int
	nets map[netip.Prefix]*Site
}

// New returns the registry of the given internal networks and sites.
// Addresses in a site's networks are internal too, whether or not
// internal lists them. It returns every problem at once: a site without a
// name or networks, two sites with one name, an invalid network, the same
// network in two sites, an empty domain. Nested networks are fine: the
// most specific (longest prefix) wins.
func New(internal []netip.Prefix, sites []Site) (*Registry, error) {
	var errs []error
	for i, p := range internal {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("sites: internal network %d is invalid", i+1))
		}
	}
	r := &Registry{internal: netset.New(internal...), byName: map[string]*Site{}}
	owner := map[netip.Prefix]string{}
	for i, in := range sites {
		s := copySite(in)
		label := fmt.Sprintf("site %q", s.Name)
		if s.Name == "" {
			label = fmt.Sprintf("site %d", i+1)
			errs = append(errs, fmt.Errorf("sites: %s has no name", label))
		} else if _, dup := r.byName[s.Name]; dup {
			errs = append(errs, fmt.Errorf("sites: %s is defined twice", label))
		}
		if len(s.Networks) == 0 {
			errs = append(errs, fmt.Errorf("sites: %s has no networks", label))
		}
		for j, p := range s.Networks {
			q, ok := normalize(p)
			if !ok {
				errs = append(errs, fmt.Errorf("sites: %s: network %d is invalid", label, j+1))
				continue
			}
			if other, dup := owner[q]; dup {
				if other != s.Name {
					errs = append(errs, fmt.Errorf("sites: %s: network %s already belongs to site %q", label, q, other))
				}
				continue
			}
			owner[q] = s.Name
			s.Networks[j] = q
			if q.Addr().Is4() {
				r.v4 = add(r.v4, q, s)
			} else {
				r.v6 = add(r.v6, q, s)
			}
		}
		for _, list := range [][]string{s.SenderDomains, s.HeaderFromDomains} {
			for k, d := range list {
				list[k] = NormalizeDomain(d)
				if list[k] == "" {
					errs = append(errs, fmt.Errorf("sites: %s: empty domain in a domain list", label))
				}
			}
		}
		if s.Name != "" {
			if _, dup := r.byName[s.Name]; !dup {
				r.byName[s.Name] = s
			}
		}
		r.sites = append(r.sites, s)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	byBitsDesc := func(a, b group) int { return b.bits - a.bits }
	slices.SortFunc(r.v4, byBitsDesc)
	slices.SortFunc(r.v6, byBitsDesc)
	return r, nil
}

// copySite copies s so that the caller's slices are never shared.
func copySite(s Site) *Site {
	return &Site{
		Name:              s.Name,
		Networks:          slices.Clone(s.Networks),
		Contact:           s.Contact,
		SenderDomains:     slices.Clone(s.SenderDomains),
		HeaderFromDomains: slices.Clone(s.HeaderFromDomains),
	}
}

// normalize masks p and stores an IPv4-mapped IPv6 prefix as the IPv4
// prefix it describes, as netset does, so lookups of either form agree.
func normalize(p netip.Prefix) (netip.Prefix, bool) {
	if !p.IsValid() {
		return netip.Prefix{}, false
	}
	a, bits := p.Addr().WithZone(""), p.Bits()
	if a.Is4In6() && bits >= 96 {
		a, bits = a.Unmap(), bits-96
	}
	q, err := a.Prefix(bits)
	return q, err == nil
}

func add(groups []group, p netip.Prefix, s *Site) []group {
	for i := range groups {
		if groups[i].bits == p.Bits() {
			groups[i].nets[p] = s
			return groups
		}
	}
	return append(groups, group{bits: p.Bits(), nets: map[netip.Prefix]*Site{p: s}})
}

// Lookup returns the site owning ip (the one with the longest matching
// network) and whether ip is internal. An address in internal_networks
// but in no site is internal with a nil site. The returned Site is
// shared: callers must not modify it.
func (r *Registry) Lookup(ip netip.Addr) (site *Site, internal bool) {
	if r == nil || !ip.IsValid() {
		return nil, false
	}
	a := ip.Unmap().WithZone("")
	groups := r.v6
	if a.Is4() {
		groups = r.v4
	}
	for _, g := range groups {
		p, err := a.Prefix(g.bits)
		if err != nil {
			continue
		}
		if s, ok := g.nets[p]; ok {
			return s, true
		}
	}
	return nil, r.internal.Contains(ip)
}

// Site returns the site called name, or nil.
func (r *Registry) Site(name string) *Site {
	if r == nil || name == "" {
		return nil
	}
	return r.byName[name]
}

// Sites returns every site in configuration order. The Sites are shared:
// callers must not modify them.
func (r *Registry) Sites() []*Site {
	if r == nil {
		return nil
	}
	return slices.Clone(r.sites)
}

// Contact returns whom a user at ip should contact: the contact of ip's
// site when it has one, else fallback.
func (r *Registry) Contact(ip netip.Addr, fallback string) string {
	if s, _ := r.Lookup(ip); s != nil && s.Contact != "" {
		return s.Contact
	}
	return fallback
}

// Classify sets req.Internal and req.Site from the client address. It is
// meant as policy.PipelineOptions.Classify, so every check sees the same
// answer.
func (r *Registry) Classify(req *policy.Request) {
	s, internal := r.Lookup(req.ClientIP)
	req.Internal = internal
	req.Site = ""
	if s != nil {
		req.Site = s.Name
	}
}

// NormalizeDomain lowercases a domain name and drops a trailing dot, the
// form in which domains are compared (RFC 5321 §2.4: domain names are
// case-insensitive).
func NormalizeDomain(d string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
}

// InDomain reports whether domain equals parent or is a subdomain of it,
// ignoring case and a trailing dot. An empty domain or parent is in no
// domain.
func InDomain(domain, parent string) bool {
	domain, parent = NormalizeDomain(domain), NormalizeDomain(parent)
	if domain == "" || parent == "" {
		return false
	}
	return domain == parent || strings.HasSuffix(domain, "."+parent)
}
