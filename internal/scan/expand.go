package scan

import (
	"fmt"
	"net/netip"
	"slices"
)

// expand checks targets against the allowed ranges and the probe budget and
// returns the distinct addresses to probe, sorted. It dials nothing; every
// refusal happens here, before the first connection attempt.
func (s *Scanner) expand(targets []netip.Prefix) ([]netip.Addr, error) {
	norm := make([]netip.Prefix, 0, len(targets))
	var outside []netip.Prefix
	for _, t := range targets {
		n, ok := normalize(t)
		if !ok {
			return nil, fmt.Errorf("%w: %q is not a valid IP prefix", ErrInvalidTarget, t)
		}
		// A target that only partly overlaps an allowed range is refused
		// whole: scanning the overlap silently would hide a config mistake.
		if !s.contained(n) {
			outside = append(outside, n)
			continue
		}
		norm = append(norm, n)
	}
	if len(outside) > 0 {
		return nil, fmt.Errorf("%w: %s not inside the allowed ranges %s; nothing was scanned",
			ErrOutsideRange, prefixList(outside), prefixList(s.allowed))
	}

	// The address budget is checked while expanding so that memory stays
	// bounded by MaxAddresses whatever the targets.
	maxAddrs := s.maxProbes / len(s.ports)
	seen := make(map[netip.Addr]struct{})
	for _, t := range norm {
		first, count := hostRange(t)
		a := first
		for range count {
			if _, dup := seen[a]; !dup {
				if len(seen) >= maxAddrs {
					return nil, fmt.Errorf("%w: targets %s on %d port(s) make more than the %d probes allowed; nothing was scanned",
						ErrTooLarge, prefixList(norm), len(s.ports), s.maxProbes)
				}
				seen[a] = struct{}{}
			}
			a = a.Next()
		}
	}
	addrs := make([]netip.Addr, 0, len(seen))
	for a := range seen {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return addrs, nil
}

// hostRange returns the first address to probe in p and how many follow.
// The network and broadcast addresses of IPv4 prefixes shorter than /31
// are left out (RFC 3021 §2.1 makes both addresses of a /31 hosts). p is
// at most 2^16 addresses, being inside an allowed range.
func hostRange(p netip.Prefix) (netip.Addr, int) {
	host := p.Addr().BitLen() - p.Bits()
	count := 1 << host
	if p.Addr().Is4() && p.Bits() < 31 {
		return p.Addr().Next(), count - 2
	}
	return p.Addr(), count
}
