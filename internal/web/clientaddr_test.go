package web

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"mailwarden/internal/config"
	"mailwarden/internal/store"
)

func TestClientAddr(t *testing.T) {
	proxies := []config.Prefix{config.MustPrefix("127.0.0.1/32"), config.MustPrefix("10.9.0.0/16"), config.MustPrefix("2001:db8:ff::/48")}
	for _, c := range []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"no proxies configured", "192.0.2.1:4000", []string{"198.51.100.7"}, "192.0.2.1"},
		{"untrusted peer's header is ignored", "192.0.2.1:4000", []string{"198.51.100.7"}, "192.0.2.1"},
		{"trusted peer, one hop", "127.0.0.1:4000", []string{"198.51.100.7"}, "198.51.100.7"},
		{"client-written entries on the left are skipped", "127.0.0.1:4000", []string{"1.1.1.1, 2.2.2.2, 198.51.100.7"}, "198.51.100.7"},
		{"trusted hops on the right are skipped", "127.0.0.1:4000", []string{"6.6.6.6, 198.51.100.7, 10.9.1.1"}, "198.51.100.7"},
		{"several header lines read as one list", "127.0.0.1:4000", []string{"6.6.6.6, 198.51.100.7", "10.9.1.1"}, "198.51.100.7"},
		{"no header: the proxy itself", "127.0.0.1:4000", nil, "127.0.0.1"},
		{"garbage last: the proxy itself", "127.0.0.1:4000", []string{"198.51.100.7, not-an-ip"}, "127.0.0.1"},
		{"garbage behind a trusted hop: that hop", "127.0.0.1:4000", []string{"junk, 10.9.1.1"}, "10.9.1.1"},
		{"all trusted: the farthest", "127.0.0.1:4000", []string{"10.9.1.2, 10.9.1.1"}, "10.9.1.2"},
		{"entry with a port", "127.0.0.1:4000", []string{"198.51.100.7:5555"}, "198.51.100.7"},
		{"IPv6 entry", "[2001:db8:ff::1]:4000", []string{"2001:db8::7"}, "2001:db8::7"},
		{"bracketed IPv6 with port", "127.0.0.1:4000", []string{"[2001:db8::7]:443"}, "2001:db8::7"},
		{"mapped IPv4 is IPv4", "127.0.0.1:4000", []string{"::ffff:198.51.100.7"}, "198.51.100.7"},
		{"zone is refused", "127.0.0.1:4000", []string{"fe80::1%eth0"}, "127.0.0.1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			trusted := proxies
			if c.name == "no proxies configured" {
				trusted = nil
			}
			if got := clientAddr(c.peer, c.xff, trusted); got != c.want {
				t.Errorf("clientAddr(%q, %q) = %q, want %q", c.peer, c.xff, got, c.want)
			}
		})
	}
	long := strings.Repeat("10.9.1.1,", 1000) + "10.9.1.1"
	if got := clientAddr("127.0.0.1:1", []string{long}, proxies); got != "10.9.1.1" {
		t.Errorf("a thousand trusted hops: %q", got)
	}
}

// behindProxy makes the fixture's dashboard trust the proxy at 127.0.0.1.
func behindProxy(f *fixture, _ *Options) {
	f.cfg.Web.TrustedProxies = []config.Prefix{config.MustPrefix("127.0.0.1/32")}
}

// viaProxy returns a client whose requests reach the dashboard through
// the proxy on 127.0.0.1, which says they came from ip.
func (f *fixture) viaProxy(ip string) *client {
	c := f.anon()
	c.ip = "127.0.0.1"
	c.header.Set("X-Forwarded-For", ip)
	return c
}

// TestLoginThrottleBehindProxy: one client guessing behind a reverse
// proxy locks itself out, not every user of the proxy.
func TestLoginThrottleBehindProxy(t *testing.T) {
	f := newFixture(t, behindProxy)
	guesser := f.viaProxy("203.0.113.7")
	for i := range f.cfg.Web.LoginMaxFailures {
		name := fmt.Sprintf("user%d", i)
		f.addUser(name, store.RoleViewer)
		guesser.post("/login", loginForm(name, "wrong password!"))
	}
	if r := guesser.post("/login", loginForm(adminName, password)); r.Code != http.StatusTooManyRequests {
		t.Errorf("right password from the locked client: %d, want 429", r.Code)
	}
	// The guesser cannot escape by writing its own X-Forwarded-For: the
	// proxy appends the address it saw.
	guesser.header.Set("X-Forwarded-For", "198.51.100.99, 203.0.113.7")
	if r := guesser.post("/login", loginForm(adminName, password)); r.Code != http.StatusTooManyRequests {
		t.Errorf("locked client with a forged entry: %d, want 429", r.Code)
	}
	if r := f.viaProxy("203.0.113.8").post("/login", loginForm(adminName, password)); r.Code != http.StatusSeeOther {
		t.Errorf("another client behind the same proxy: %d, want 303", r.Code)
	}
	var seen bool
	for _, e := range f.adminEvents() {
		if e.Check == "web login" && e.Client == "203.0.113.8" {
			seen = true
		}
	}
	if !seen {
		t.Errorf("the audit log does not name the client behind the proxy: %+v", f.adminEvents())
	}
}

// TestForwardedForIgnoredWithoutTrust: a client that is not a trusted
// proxy cannot pick its address with X-Forwarded-For.
func TestForwardedForIgnoredWithoutTrust(t *testing.T) {
	f := newFixture(t, behindProxy)
	c := f.anon()
	c.ip = "203.0.113.7"
	for i := range f.cfg.Web.LoginMaxFailures {
		c.header.Set("X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i))
		c.post("/login", loginForm(fmt.Sprintf("nobody%d", i), "wrong password!"))
	}
	c.header.Set("X-Forwarded-For", "198.51.100.200")
	if r := c.post("/login", loginForm(adminName, password)); r.Code != http.StatusTooManyRequests {
		t.Errorf("a direct client rotating X-Forwarded-For: %d, want 429", r.Code)
	}
}

// FuzzClientAddr checks that whatever X-Forwarded-For a request carries,
// the client address is the peer or an address from the header, and
// never one of the header's entries when the peer is not trusted.
func FuzzClientAddr(f *testing.F) {
	for _, s := range []string{"198.51.100.7", "1.1.1.1, 198.51.100.7, 127.0.0.1", "[2001:db8::1]:80", ",,,", " , 10.0.0.1",
		"fe80::1%eth0", "::ffff:1.2.3.4", "unknown", strings.Repeat("127.0.0.1,", 40)} {
		f.Add("127.0.0.1:4000", s)
		f.Add("192.0.2.1:4000", s)
	}
	trusted := []config.Prefix{config.MustPrefix("127.0.0.0/8"), config.MustPrefix("::1/128")}
	f.Fuzz(func(t *testing.T, peer, xff string) {
		got := clientAddr(peer, []string{xff}, trusted)
		host := peer
		if h, _, err := net.SplitHostPort(peer); err == nil {
			host = h
		}
		if got == host {
			return
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !isTrusted(a, trusted) {
			t.Fatalf("clientAddr(%q, %q) = %q from an untrusted peer", peer, xff, got)
		}
		if _, err := netip.ParseAddr(got); err != nil {
			t.Fatalf("clientAddr(%q, %q) = %q: not an address", peer, xff, got)
		}
	})
}
