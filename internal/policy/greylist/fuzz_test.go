package greylist

import (
	"net/netip"
	"testing"

	"mailwarden/internal/netset"
)

// The seed corpora live in testdata/fuzz/. Run with, e.g.:
//   go test ./internal/policy/greylist -fuzz FuzzParseClientEntry -fuzztime 30s

// FuzzParseClientEntry checks that no entry crashes the parser and that
// an accepted entry matches what it names.
func FuzzParseClientEntry(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		e, err := parseClientEntry(s)
		if err != nil {
			return
		}
		l := newClientList()
		l.add(e)
		switch e.kind {
		case kindDomain:
			if _, ok := l.match(netip.Addr{}, e.domain); !ok {
				t.Errorf("entry %q does not match %q", s, e.domain)
			}
			if _, ok := l.match(netip.Addr{}, "host."+e.domain); !ok {
				t.Errorf("entry %q does not match a subdomain", s)
			}
		case kindSubdomains:
			if _, ok := l.match(netip.Addr{}, "host."+e.domain); !ok {
				t.Errorf("entry %q does not match a subdomain", s)
			}
		case kindNetwork:
			l.nets = netset.New(l.prefixes...)
			if _, ok := l.match(e.prefix.Addr(), "unknown"); !ok {
				t.Errorf("entry %q does not contain %v", s, e.prefix.Addr())
			}
		case kindRegexp:
			if e.re == nil {
				t.Errorf("entry %q has no compiled regexp", s)
			}
		default:
			t.Errorf("entry %q has kind %d, not a client kind", s, e.kind)
		}
	})
}

// FuzzParseRecipientEntry checks that no entry crashes the parser and that
// an accepted entry matches an address it describes.
func FuzzParseRecipientEntry(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		e, err := parseRecipientEntry(s)
		if err != nil {
			return
		}
		l := newRecipientList()
		l.add(e)
		var addrs []string
		switch e.kind {
		case kindUser:
			addrs = []string{e.user + "@example.com", e.user + "+tag@example.com"}
		case kindAddress:
			addrs = []string{e.user + "@" + e.domain, e.user + "+tag@" + e.domain}
		case kindAtDomain:
			addrs = []string{"someone@" + e.domain}
		case kindDomain:
			addrs = []string{"someone@" + e.domain, "someone@sub." + e.domain}
		case kindSubdomains:
			addrs = []string{"someone@sub." + e.domain}
		case kindRegexp:
			if e.re == nil {
				t.Errorf("entry %q has no compiled regexp", s)
			}
		default:
			t.Errorf("entry %q has kind %d, not a recipient kind", s, e.kind)
		}
		for _, a := range addrs {
			if _, ok := l.match(a); !ok {
				t.Errorf("entry %q does not match %q", s, a)
			}
		}
	})
}
