package config

import (
	"fmt"
	"math"
	"net/netip"
	"path/filepath"

	"mailwarden/internal/human"
)

// Largest scan ranges accepted: a /16 is 65,534 IPv4 hosts, a /112 as
// many IPv6 addresses. Anything larger is a typo, not a school network.
const (
	maxScanBits4 = 16
	maxScanBits6 = 112
)

// validateHosts checks the settings that gather evidence about internal
// hosts: the port-25 trap, the backdoor scanner and the mail-login log.
// They are checked when the features are off too, so that turning one
// on later does not meet old mistakes.
func (c *Config) validateHosts(add func(key, format string, args ...any)) {
	t := &c.Trap
	if msg := checkListen(t.Listen, false); msg != "" {
		add("trap.listen", "%s", msg)
	} else if t.Listen == "" && t.Enabled {
		add("trap.listen", "must be set when trap.enabled is true")
	}
	positiveInts(add, []named[int]{
		{"trap.max_conns", t.MaxConns},
		{"trap.max_per_ip", t.MaxPerIP},
		{"scan.concurrency", c.Scan.Concurrency},
	})
	positiveDurations(add, []named[Duration]{
		{"trap.read_timeout", t.ReadTimeout},
		{"trap.session_timeout", t.SessionTimeout},
		{"trap.flush_interval", t.FlushInterval},
		{"scan.timeout", c.Scan.Timeout},
		{"mail_login.poll", c.MailLogin.Poll},
	})
	// The redirect rules exempt mail servers by address (nft "saddr"),
	// so each entry must name one host.
	for i, p := range t.MailServers {
		switch {
		case !p.IsValid():
			add(fmt.Sprintf("trap.mail_servers[%d]", i), "invalid address")
		case !p.IsSingleIP():
			add(fmt.Sprintf("trap.mail_servers[%d]", i), "%s is a network; list each mail server's address", p)
		}
	}

	s := &c.Scan
	internal := c.internalPrefixes()
	for i, p := range s.Ranges {
		key := fmt.Sprintf("scan.ranges[%d]", i)
		switch {
		case !p.IsValid():
			add(key, "invalid network")
		case p.Addr().Is4() && p.Bits() < maxScanBits4:
			add(key, "%s is larger than /%d; split it into smaller ranges", p, maxScanBits4)
		case p.Addr().Is6() && p.Bits() < maxScanBits6:
			add(key, "%s is larger than /%d; split it into smaller ranges", p, maxScanBits6)
		case !containedIn(p.Prefix, internal):
			// The scanner refuses anything outside the configured
			// internal ranges: probing other people's hosts is abuse.
			add(key, "%s is not inside internal_networks or a site's networks", p)
		}
	}
	for i, port := range s.Ports {
		if port < 1 || port > 65535 {
			add(fmt.Sprintf("scan.ports[%d]", i), "port %d is out of range 1-65535", port)
		}
	}
	if !(s.Rate > 0) || math.IsInf(s.Rate, 0) {
		add("scan.rate", "%g must be more than 0 connections per second", s.Rate)
	}
	if s.Interval < 0 {
		add("scan.interval", "must be 0 (off) or longer, got %s", human.Setting(s.Interval.D()))
	}

	if l := c.MailLogin.Log; l != "" && !filepath.IsAbs(l) {
		add("mail_login.log", "path %q must be absolute", l)
	}
}

// internalPrefixes returns internal_networks and every site's networks.
func (c *Config) internalPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, p := range c.InternalNetworks {
		out = append(out, p.Prefix)
	}
	for _, s := range c.Sites {
		for _, p := range s.Networks {
			out = append(out, p.Prefix)
		}
	}
	return out
}

// containedIn reports whether p lies wholly inside one of nets.
func containedIn(p netip.Prefix, nets []netip.Prefix) bool {
	for _, n := range nets {
		if n.IsValid() && n.Addr().Is4() == p.Addr().Is4() && n.Bits() <= p.Bits() && n.Contains(p.Addr()) {
			return true
		}
	}
	return false
}
