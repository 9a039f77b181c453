package netset

import (
	"net/netip"
	"slices"
	"testing"
)

func prefixes(t *testing.T, ss ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestContains(t *testing.T) {
	s := New(prefixes(t,
		"10.0.0.0/8",
		"192.0.2.7/32",
		"198.51.100.0/24",
		"2001:db8:1::/48",
		"::1/128",
	)...)
	tests := []struct {
		addr string
		want bool
	}{
		{"10.0.0.1", true},
		{"10.255.255.255", true},
		{"11.0.0.1", false},
		{"192.0.2.7", true},
		{"192.0.2.8", false},
		{"198.51.100.200", true},
		{"198.51.101.1", false},
		{"2001:db8:1::25", true},
		{"2001:db8:1:ffff::1", true},
		{"2001:db8:2::1", false},
		{"::1", true},
		{"::2", false},
		// A dual-stack listener reports IPv4 clients as mapped addresses.
		{"::ffff:10.1.2.3", true},
		{"::ffff:192.0.2.7", true},
		{"::ffff:192.0.2.8", false},
		// Zones do not change membership.
		{"fe80::1%eth0", false},
		{"2001:db8:1::1%eth0", true},
	}
	for _, tt := range tests {
		if got := s.Contains(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("Contains(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

func TestNilAndEmpty(t *testing.T) {
	var nilSet *Set
	a := netip.MustParseAddr("10.0.0.1")
	if nilSet.Contains(a) {
		t.Error("nil set contains an address")
	}
	if nilSet.Len() != 0 {
		t.Errorf("nil set Len = %d", nilSet.Len())
	}
	if nilSet.String() != "" {
		t.Errorf("nil set String = %q", nilSet.String())
	}
	empty := New()
	if empty.Contains(a) || empty.Len() != 0 {
		t.Error("empty set is not empty")
	}
	var zero Set
	if zero.Contains(a) {
		t.Error("zero Set contains an address")
	}
	if New(prefixes(t, "0.0.0.0/0")...).Contains(netip.Addr{}) {
		t.Error("invalid address is contained")
	}
}

func TestMappedPrefixIsIPv4(t *testing.T) {
	s := New(prefixes(t, "::ffff:10.0.0.0/104")...)
	if !s.Contains(netip.MustParseAddr("10.9.8.7")) {
		t.Error("IPv4 address not in ::ffff:10.0.0.0/104")
	}
	if got := s.String(); got != "10.0.0.0/8" {
		t.Errorf("String = %q, want 10.0.0.0/8", got)
	}
}

func TestShortIPv6PrefixCoversMapped(t *testing.T) {
	s := New(prefixes(t, "::/0")...)
	if !s.Contains(netip.MustParseAddr("::ffff:192.0.2.1")) {
		t.Error("::/0 does not contain a mapped address")
	}
	if s.Contains(netip.MustParseAddr("192.0.2.1")) {
		t.Error("::/0 contains a plain IPv4 address")
	}
}

func TestLenAndPrefixes(t *testing.T) {
	s := New(append(prefixes(t,
		"2001:db8::/32",
		"10.1.2.3/8", // host bits are masked away: same as 10.0.0.0/8
		"10.0.0.0/8",
		"192.0.2.0/24",
		"10.0.0.0/16",
	), netip.Prefix{})...)
	if s.Len() != 4 {
		t.Errorf("Len = %d, want 4", s.Len())
	}
	want := prefixes(t, "10.0.0.0/8", "10.0.0.0/16", "192.0.2.0/24", "2001:db8::/32")
	if got := s.Prefixes(); !slices.Equal(got, want) {
		t.Errorf("Prefixes = %v, want %v", got, want)
	}
	if got := s.String(); got != "10.0.0.0/8 10.0.0.0/16 192.0.2.0/24 2001:db8::/32" {
		t.Errorf("String = %q", got)
	}
}

func BenchmarkContains(b *testing.B) {
	var ps []netip.Prefix
	for i := range 200 {
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 16))
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 32))
	}
	s := New(ps...)
	a := netip.MustParseAddr("203.0.113.9")
	for b.Loop() {
		s.Contains(a)
	}
}
