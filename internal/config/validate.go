package config

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"mailwarden/internal/human"
	"mailwarden/internal/policy/antivirus"
	"mailwarden/internal/policy/freeze"
	"mailwarden/internal/policy/greylist"
	"mailwarden/internal/policy/latch"
	"mailwarden/internal/policy/ratelimit"
	"mailwarden/internal/policy/sender"
)

// failOpenChecks returns the check names fail_open accepts.
func failOpenChecks() []string {
	return []string{freeze.Name, latch.Name, sender.Name, ratelimit.Name, greylist.Name, antivirus.Name}
}

// Validate checks settings that each hold a well-typed value but may not
// make sense, alone or together. It returns every problem found, keyed by
// dotted YAML path and without line numbers; Parse adds those.
func (c *Config) Validate() []Error {
	var errs []Error
	add := func(key, format string, args ...any) {
		errs = append(errs, Error{Key: key, Msg: fmt.Sprintf(format, args...)})
	}

	if c.DataDir == "" {
		add("data_dir", "must not be empty")
	}
	// The hostname goes into X-Greylist and X-Virus-Scanned headers and
	// the trap's banner, whatever is enabled today.
	if c.Hostname != "" && !validHost(c.Hostname) {
		add("hostname", "%q is not a host name (letters, digits, hyphens and dots, labels of 1 to 63 characters)", c.Hostname)
	}
	for _, l := range []struct {
		key, addr string
		unix      bool
	}{
		{"listen.policy", c.Listen.Policy, true},
		{"listen.milter", c.Listen.Milter, true},
		{"listen.http", c.Listen.HTTP, false},
	} {
		if msg := checkListen(l.addr, l.unix); msg != "" {
			add(l.key, "%s", msg)
		}
	}

	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		add("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	if !slices.Contains([]string{"text", "json"}, c.Log.Format) {
		add("log.format", "%q is not one of text, json", c.Log.Format)
	}

	c.validateStore(add)

	positiveDurations(add, []named[Duration]{
		{"store.expire_interval", c.Store.ExpireInterval},
		{"milter.read_timeout", c.Milter.ReadTimeout},
		{"milter.write_timeout", c.Milter.WriteTimeout},
		{"policy_server.idle_timeout", c.PolicyServer.IdleTimeout},
		{"policy_server.request_timeout", c.PolicyServer.RequestTimeout},
		{"greylist.delay", c.Greylist.Delay},
		{"greylist.retry_window", c.Greylist.RetryWindow},
		{"greylist.passed_lifetime", c.Greylist.PassedLifetime},
		{"events.retention", c.Events.Retention},
		{"events.audit_retention", c.Events.AuditRetention},
	})
	if a, r := c.Events.AuditRetention, c.Events.Retention; a > 0 && a < r {
		add("events.audit_retention", "%s is shorter than events.retention (%s): the audit trail must outlive the other events",
			human.Setting(time.Duration(a)), human.Setting(time.Duration(r)))
	}

	if n := c.PolicyServer.MaxRequestBytes; n < 1024 || n > 1<<20 {
		add("policy_server.max_request_bytes", "%d is out of range 1024-1048576", n)
	}
	for _, l := range []struct {
		section          string
		total, perClient int
	}{
		{"policy_server", c.PolicyServer.MaxConns, c.PolicyServer.MaxConnsPerClient},
		{"milter", c.Milter.MaxConns, c.Milter.MaxConnsPerClient},
		{"web", c.Web.MaxConns, c.Web.MaxConnsPerClient},
	} {
		if l.total <= 0 {
			add(l.section+".max_conns", "%d must be more than 0", l.total)
		}
		if l.perClient <= 0 {
			add(l.section+".max_conns_per_client", "%d must be more than 0", l.perClient)
		} else if l.total > 0 && l.perClient > l.total {
			add(l.section+".max_conns_per_client", "%d must not be more than %s.max_conns (%d)", l.perClient, l.section, l.total)
		}
	}

	for i, p := range c.InternalNetworks {
		if !p.IsValid() {
			add(fmt.Sprintf("internal_networks[%d]", i), "invalid network")
		}
	}
	for i, name := range c.FailOpen {
		if known := failOpenChecks(); !slices.Contains(known, name) {
			add(fmt.Sprintf("fail_open[%d]", i), "unknown check %q (known: %s)", name, strings.Join(known, ", "))
		}
	}

	g := &c.Greylist
	if g.IPv4Prefix < 0 || g.IPv4Prefix > 32 {
		add("greylist.ipv4_prefix", "%d is out of range 0-32", g.IPv4Prefix)
	}
	if g.IPv6Prefix < 0 || g.IPv6Prefix > 128 {
		add("greylist.ipv6_prefix", "%d is out of range 0-128", g.IPv6Prefix)
	}
	// A retry passes only after the delay and within the window, so a
	// delay as long as the window would refuse every new sender forever.
	if g.Delay > 0 && g.RetryWindow > 0 && g.Delay >= g.RetryWindow {
		add("greylist.delay", "%s must be shorter than greylist.retry_window (%s)",
			human.Setting(g.Delay.D()), human.Setting(g.RetryWindow.D()))
	}
	if g.AutoWhitelistAfter < 0 {
		add("greylist.auto_whitelist_after", "%d must be 0 (off) or more", g.AutoWhitelistAfter)
	}
	if msg := checkReplyText(g.ReplyText); msg != "" {
		add("greylist.reply_text", "%s", msg)
	}
	for _, list := range []struct {
		key     string
		entries []string
	}{
		{"greylist.whitelist_clients", g.WhitelistClients},
		{"greylist.whitelist_client_files", g.WhitelistClientFiles},
		{"greylist.whitelist_recipients", g.WhitelistRecipients},
		{"greylist.whitelist_recipient_files", g.WhitelistRecipientFiles},
	} {
		for i, e := range list.entries {
			if strings.TrimSpace(e) == "" {
				add(fmt.Sprintf("%s[%d]", list.key, i), "empty list entry")
			}
		}
	}
	c.validateOutbound(add)
	c.validateAntivirus(add)
	c.validateHosts(add)
	c.validateWeb(add)
	c.validateMailbox(add)
	c.validateQueue(add)
	c.validateAlerts(add)
	return errs
}

// checkListen returns what is wrong with a listen address, or "". An
// empty address disables the listener.
func checkListen(addr string, unixOK bool) string {
	if addr == "" {
		return ""
	}
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if !unixOK {
			return fmt.Sprintf("%q: unix sockets are not supported here; use host:port", addr)
		}
		if !filepath.IsAbs(path) {
			return fmt.Sprintf("unix socket path %q must be absolute", path)
		}
		return ""
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		if unixOK {
			return fmt.Sprintf("%q is not host:port or unix:/absolute/path", addr)
		}
		return fmt.Sprintf("%q is not host:port", addr)
	}
	return checkHostPort(addr, host, port)
}

// checkHostPort checks the host (an IP address or a host name; "" for
// any) and port (1-65535) split from addr.
func checkHostPort(addr, host, port string) string {
	if host != "" && !validHost(host) {
		return fmt.Sprintf("%q: host %q is neither an IP address nor a host name", addr, host)
	}
	n, err := strconv.Atoi(port)
	if err != nil || strings.TrimLeft(port, "0123456789") != "" {
		return fmt.Sprintf("%q: port %q is not a number", addr, port)
	}
	if n < 1 || n > 65535 {
		return fmt.Sprintf("%q: port %d is out of range 1-65535", addr, n)
	}
	return ""
}

// validHost accepts an IP address or a DNS host name (RFC 1123 §2.1).
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// named is one setting's key and value, for the checks many share.
type named[T any] struct {
	key string
	val T
}

// positiveDurations reports each duration that is not more than 0.
func positiveDurations(add func(key, format string, args ...any), ds []named[Duration]) {
	for _, d := range ds {
		if d.val <= 0 {
			add(d.key, "must be longer than 0s, got %s", human.Setting(time.Duration(d.val)))
		}
	}
}

// positiveInts reports each number that is not more than 0.
func positiveInts(add func(key, format string, args ...any), ns []named[int]) {
	for _, n := range ns {
		if n.val <= 0 {
			add(n.key, "%d must be more than 0", n.val)
		}
	}
}
