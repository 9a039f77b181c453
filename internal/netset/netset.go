// Package netset holds an immutable set of IP networks (internal networks,
// whitelisted client ranges) and answers "is this address in the set?" on
// every request.
package netset

import (
	"net/netip"
	"slices"
)

// Set is an immutable set of IP prefixes. The zero value and a nil *Set
// are empty. A Set is safe for concurrent use.
//
// Prefixes are grouped by length, one hash set per length. Contains masks
// the address to each length present and does one map lookup per length,
// so its cost depends on how many distinct lengths the set holds (at most
// 33 for IPv4 and 129 for IPv6, in practice a handful), not on how many
// prefixes it holds.
type Set struct {
	v4, v6 []group
	n      int
}

// group holds the prefixes of one length.
type group struct {
	bits int
	nets map[netip.Prefix]struct{}
}

// New returns the set of the given prefixes. Each prefix is masked to its
// network address, duplicates count once, and IPv4-mapped IPv6 prefixes
// such as ::ffff:10.0.0.0/104 are stored as the IPv4 prefix they describe.
// Invalid (zero) prefixes are ignored.
func New(prefixes ...netip.Prefix) *Set {
	s := &Set{}
	seen := make(map[netip.Prefix]struct{}, len(prefixes))
	for _, p := range prefixes {
		p, ok := normalize(p)
		if !ok {
			continue
		}
		if _, dup := seen[p]; dup {
			continue
		}
		seen[p] = struct{}{}
		s.n++
		if p.Addr().Is4() {
			s.v4 = add(s.v4, p)
		} else {
			s.v6 = add(s.v6, p)
		}
	}
	// Longest prefixes first: the most specific entries (single hosts) are
	// the most common in whitelists, so a hit is usually found early.
	byBitsDesc := func(a, b group) int { return b.bits - a.bits }
	slices.SortFunc(s.v4, byBitsDesc)
	slices.SortFunc(s.v6, byBitsDesc)
	return s
}

func normalize(p netip.Prefix) (netip.Prefix, bool) {
	if !p.IsValid() {
		return netip.Prefix{}, false
	}
	a, bits := p.Addr(), p.Bits()
	if a.Is4In6() {
		if bits < 96 {
			// Covers more than the mapped range; keep it as IPv6.
			return p.Masked(), true
		}
		a, bits = a.Unmap(), bits-96
	}
	q, err := a.WithZone("").Prefix(bits)
	if err != nil {
		return netip.Prefix{}, false
	}
	return q, true
}

func add(groups []group, p netip.Prefix) []group {
	for i := range groups {
		if groups[i].bits == p.Bits() {
			groups[i].nets[p] = struct{}{}
			return groups
		}
	}
	return append(groups, group{bits: p.Bits(), nets: map[netip.Prefix]struct{}{p: {}}})
}

// Contains reports whether addr lies in one of the set's prefixes. An
// IPv4-mapped IPv6 address (::ffff:192.0.2.1, as a dual-stack listener
// reports IPv4 clients) matches IPv4 prefixes. A nil set, an invalid
// address or an empty set contains nothing.
func (s *Set) Contains(addr netip.Addr) bool {
	if s == nil || !addr.IsValid() {
		return false
	}
	addr = addr.WithZone("")
	groups := s.v6
	if addr.Is4In6() {
		// A short IPv6 prefix such as ::/0 covers the mapped range too.
		if contains(groups, addr) {
			return true
		}
		addr = addr.Unmap()
	}
	if addr.Is4() {
		groups = s.v4
	}
	return contains(groups, addr)
}

func contains(groups []group, addr netip.Addr) bool {
	for _, g := range groups {
		p, err := addr.Prefix(g.bits)
		if err != nil {
			continue
		}
		if _, ok := g.nets[p]; ok {
			return true
		}
	}
	return false
}

// Len returns the number of distinct prefixes in the set.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return s.n
}

// Prefixes returns the set's prefixes, IPv4 before IPv6, each family
// sorted by address and then by length.
func (s *Set) Prefixes() []netip.Prefix {
	if s == nil {
		return nil
	}
	out := make([]netip.Prefix, 0, s.n)
	for _, groups := range [][]group{s.v4, s.v6} {
		for _, g := range groups {
			for p := range g.nets {
				out = append(out, p)
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return out
}

// String lists the set's prefixes separated by spaces, for logs.
func (s *Set) String() string {
	var b []byte
	for i, p := range s.Prefixes() {
		if i > 0 {
			b = append(b, ' ')
		}
		b = p.AppendTo(b)
	}
	return string(b)
}
