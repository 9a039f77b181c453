package config

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"

	"mailwarden/internal/reply"
)

// validateOutbound checks the outbound-protection settings: sites, the
// sender policy, latches, rate limits and the admin socket.
func (c *Config) validateOutbound(add func(key, format string, args ...any)) {
	names := map[string]int{}
	owner := map[netip.Prefix]int{} // network -> index of its site
	for i, s := range c.Sites {
		key := fmt.Sprintf("sites[%d]", i)
		switch j, dup := names[s.Name]; {
		case strings.TrimSpace(s.Name) == "":
			add(key+".name", "must not be empty")
		case hasControl(s.Name):
			add(key+".name", "must not contain control characters")
		case dup:
			add(key+".name", "site %q is already defined as sites[%d]", s.Name, j)
		default:
			names[s.Name] = i
		}
		if len(s.Networks) == 0 {
			add(key+".networks", "must list at least one network")
		}
		for j, p := range s.Networks {
			nk := fmt.Sprintf("%s.networks[%d]", key, j)
			if !p.IsValid() {
				add(nk, "invalid network")
				continue
			}
			// Most specific wins between nested networks, but the same
			// network in two sites has no answer.
			if other, dup := owner[p.Prefix]; dup && other != i {
				add(nk, "%s is already a network of site %q (sites[%d])", p, c.Sites[other].Name, other)
				continue
			}
			owner[p.Prefix] = i
		}
		if hasControl(s.Contact) {
			add(key+".contact", "must be a single line without control characters")
		}
		checkDomains(add, key+".sender_domains", s.SenderDomains)
		checkDomains(add, key+".header_from_domains", s.HeaderFromDomains)
	}

	sp := &c.SenderPolicy
	checkDomains(add, "sender_policy.sender_domains", sp.SenderDomains)
	checkDomains(add, "sender_policy.header_from_domains", sp.HeaderFromDomains)
	if msg := checkReplyText(sp.ReplyText); msg != "" {
		add("sender_policy.reply_text", "%s", msg)
	}

	l := &c.Latch
	if msg := checkReplyText(l.ReplyText); msg != "" {
		add("latch.reply_text", "%s", msg)
	}
	if hasControl(l.DefaultContact) {
		add("latch.default_contact", "must be a single line without control characters")
	}
	for i, p := range l.ExemptClients {
		if !p.IsValid() {
			add(fmt.Sprintf("latch.exempt_clients[%d]", i), "invalid network")
		}
	}
	for i, u := range l.ExemptUsers {
		if strings.TrimSpace(u) == "" {
			add(fmt.Sprintf("latch.exempt_users[%d]", i), "empty list entry")
		}
	}

	r := &c.RateLimits
	for _, lim := range []struct {
		key string
		l   Limit
	}{
		{"rate_limits.user", r.User},
		{"rate_limits.client", r.Client},
		{"rate_limits.sender_domain", r.SenderDomain},
	} {
		if lim.l.Messages < 0 {
			add(lim.key+".messages", "%d must be 0 (off) or more", lim.l.Messages)
		}
		if lim.l.Recipients < 0 {
			add(lim.key+".recipients", "%d must be 0 (off) or more", lim.l.Recipients)
		}
		if (lim.l.Messages > 0 || lim.l.Recipients > 0) && lim.l.Per <= 0 {
			add(lim.key+".per", "must be longer than 0s when messages or recipients is set")
		}
	}
	if msg := checkReplyText(r.ReplyText); msg != "" {
		add("rate_limits.reply_text", "%s", msg)
	}

	if a := c.Admin.Socket; a != "" && !filepath.IsAbs(a) {
		add("admin.socket", "path %q must be absolute", a)
	}
	if msg := checkMode(c.Admin.Mode); msg != "" {
		add("admin.mode", "%s", msg)
	}
}

// checkReplyText returns what is wrong with a reply text, or "". The text
// goes into one SMTP reply line and one policy protocol attribute, where
// a line break would end it early (RFC 5321 §4.2).
func checkReplyText(s string) string {
	switch err := reply.Check(s); {
	case err == nil:
		return ""
	case errors.Is(err, reply.ErrMultiline):
		return "must be a single line"
	case errors.Is(err, reply.ErrControl):
		return "must not contain control characters"
	}
	return fmt.Sprintf("is %d bytes long; at most %d fit in an SMTP reply", len(s), reply.MaxText)
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f })
}

// checkDomains reports entries of a domain list that are not host names.
// Domains are compared without regard to case, so any case is accepted
// here and kept as written.
func checkDomains(add func(key, format string, args ...any), key string, list []string) {
	for i, d := range list {
		k := fmt.Sprintf("%s[%d]", key, i)
		switch {
		case strings.TrimSpace(d) == "":
			add(k, "empty list entry")
		case strings.HasPrefix(d, "*.") || strings.HasPrefix(d, "."):
			add(k, "%q is not a domain name (subdomains are always included: write %q)", d, strings.TrimLeft(d, "*."))
		case strings.HasPrefix(d, "@"):
			add(k, "%q is not a domain name (write %q)", d, d[1:])
		case !validDomain(d):
			add(k, "%q is not a valid domain name", d)
		}
	}
}

// validDomain accepts a DNS host name (RFC 1123 §2.1), not an address.
func validDomain(d string) bool {
	if _, err := netip.ParseAddr(d); err == nil {
		return false
	}
	return d != "" && d != "." && validHost(d)
}

// checkMode returns what is wrong with a unix socket mode, or "".
func checkMode(s string) string {
	if s == "" {
		return `must be an octal mode such as "0660"`
	}
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || strings.TrimLeft(s, "01234567") != "" {
		return fmt.Sprintf("%q is not an octal mode such as \"0660\"", s)
	}
	if m > 0o777 {
		return fmt.Sprintf("%q sets bits above 0777 (setuid, setgid or sticky), which mean nothing on a socket", s)
	}
	// Whoever can connect to the admin socket can clear latches and lift
	// freezes; other local users must not.
	if m&0o007 != 0 {
		return fmt.Sprintf("%q lets every local user use the admin API; use 0660 or 0600", s)
	}
	return ""
}
