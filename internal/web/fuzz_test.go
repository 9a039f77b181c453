package web

import (
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

// asBrowser resolves a Location the way a browser does: it drops tabs
// and newlines and reads a backslash as a slash (WHATWG URL §4.4).
func asBrowser(base *url.URL, loc string) (*url.URL, error) {
	loc = strings.NewReplacer("\t", "", "\n", "", "\r", "", `\`, "/").Replace(loc)
	u, err := url.Parse(loc)
	if err != nil {
		return nil, err
	}
	return base.ResolveReference(u), nil
}

// FuzzSafeNext checks that whatever a login link carries as next, the
// browser is sent to the dashboard itself.
func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/", "/hosts?status=latched", "//evil.example", `/\evil.example`, "/\t/evil.example",
		"https://evil.example", "javascript:alert(1)", "/%2F/evil.example", "/.//evil.example", " //evil.example"} {
		f.Add(s)
	}
	base, _ := url.Parse("https://dash.example/login")
	f.Fuzz(func(t *testing.T, next string) {
		got := safeNext(next)
		if got != "/" && got != next {
			t.Fatalf("safeNext(%q) = %q: neither the input nor /", next, got)
		}
		u, err := asBrowser(base, got)
		if err != nil {
			return // the browser would not follow it at all
		}
		if u.Host != "dash.example" || u.Scheme != "https" {
			t.Fatalf("safeNext(%q) = %q leads to %s", next, got, u)
		}
	})
}

// FuzzLookupURL checks that no address text can move a look-up link to
// another host or scheme.
func FuzzLookupURL(f *testing.F) {
	for _, s := range []string{"10.1.2.3", "2001:db8::1", `1"><script>`, "a/../../b", "x@evil.example", "%2e%2e", "#frag", "?q=1", "http://evil.example/"} {
		f.Add(s)
	}
	tmpls := []string{"https://x.example/lease?ip={ip}&all=1", "http://x.example/hosts/{ip}/info",
		"https://x.example/{ip}", "https://x.example/a#{ip}"}
	f.Fuzz(func(t *testing.T, ip string) {
		for _, tmpl := range tmpls {
			got, ok := lookupURL(tmpl, ip)
			if !ok {
				continue
			}
			u, err := url.Parse(got)
			if err != nil || u.Host != "x.example" || (u.Scheme != "http" && u.Scheme != "https") {
				t.Fatalf("lookupURL(%q, %q) = %q", tmpl, ip, got)
			}
		}
	})
}

// FuzzEventQuery checks that any events query is either refused with an
// error or gives a filter within bounds.
func FuzzEventQuery(f *testing.F) {
	for _, s := range []string{"", "kind=virus&host=10.1.2.3", "since=2025-01-02T03:04&until=2025-01-03T00:00:00Z",
		"limit=0", "limit=99999999999999999999", "host=fe80::1%25eth0", "since=%00", "kind=all&user=%3Cb%3E"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		filter, form, err := parseEventQuery(q, defaultEventRows)
		if err != nil {
			return
		}
		if filter.Limit < 1 || filter.Limit > maxEventRows || form.Limit != filter.Limit {
			t.Fatalf("%q: limit %d", raw, filter.Limit)
		}
		if filter.Client != "" {
			if a, err := netip.ParseAddr(filter.Client); err != nil || a.String() != filter.Client {
				t.Fatalf("%q: client %q", raw, filter.Client)
			}
		}
		if filter.Kind != "" && !strings.Contains(strings.Join(eventKinds(), " "), filter.Kind) {
			t.Fatalf("%q: kind %q", raw, filter.Kind)
		}
	})
}
