package trap

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// RulesOptions describes the firewall redirect that feeds the trap.
type RulesOptions struct {
	// InternalNetworks are the source networks whose outbound port-25
	// traffic is redirected.
	InternalNetworks []netip.Prefix
	// TrapPort is the port the trap listens on.
	TrapPort int
	// Interface, if set, limits the redirect to traffic arriving on it.
	Interface string
	// MailServers are the organisation's own MTAs, which send mail
	// legitimately and are exempt.
	MailServers []netip.Addr
}

// Errors from RulesOptions.Validate.
var (
	ErrNoNetworks    = errors.New("trap: no internal networks to redirect")
	ErrBadTrapPort   = errors.New("trap: trap port out of range 1-65535")
	ErrBadInterface  = errors.New("trap: interface name is not a plain interface name")
	ErrBadNetwork    = errors.New("trap: invalid internal network")
	ErrBadMailServer = errors.New("trap: invalid mail server address")
)

// Validate reports options Rules cannot turn into a working ruleset.
func (o RulesOptions) Validate() error {
	if len(o.InternalNetworks) == 0 {
		return ErrNoNetworks
	}
	for _, p := range o.InternalNetworks {
		if !p.IsValid() {
			return fmt.Errorf("%w: %v", ErrBadNetwork, p)
		}
	}
	for _, a := range o.MailServers {
		if !a.IsValid() {
			return fmt.Errorf("%w: %v", ErrBadMailServer, a)
		}
	}
	if o.TrapPort < 1 || o.TrapPort > 65535 {
		return fmt.Errorf("%w: %d", ErrBadTrapPort, o.TrapPort)
	}
	// Linux interface names are at most 15 bytes (IFNAMSIZ-1); the
	// character set keeps the name safe to paste into a shell or nft.
	if o.Interface != "" {
		if len(o.Interface) > 15 || strings.Trim(o.Interface,
			"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-+@:") != "" {
			return fmt.Errorf("%w: %q", ErrBadInterface, o.Interface)
		}
	}
	return nil
}

// family splits networks and addresses by IP version, IPv4-mapped IPv6
// counting as IPv4, so each rule gets matches of its own family only.
type family struct {
	// nft is the family's keyword in nftables ("ip"), iptables its
	// command ("iptables").
	nft, iptables string
	nets          []string
	servers       []string
}

// split returns the IPv4 family, then the IPv6 one, leaving out a
// family with no internal network: it has nothing to redirect.
func split(o RulesOptions) []*family {
	v4, v6 := &family{nft: "ip", iptables: "iptables"}, &family{nft: "ip6", iptables: "ip6tables"}
	for _, p := range o.InternalNetworks {
		if !p.IsValid() {
			continue
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		p = p.Masked()
		if p.Addr().Is4() {
			v4.nets = append(v4.nets, p.String())
		} else {
			v6.nets = append(v6.nets, p.String())
		}
	}
	for _, a := range o.MailServers {
		if !a.IsValid() {
			continue
		}
		a = a.Unmap().WithZone("")
		if a.Is4() {
			v4.servers = append(v4.servers, a.String())
		} else {
			v6.servers = append(v6.servers, a.String())
		}
	}
	return slices.DeleteFunc([]*family{v4, v6}, func(f *family) bool { return len(f.nets) == 0 })
}

// Rules returns an nftables ruleset and the equivalent iptables and
// ip6tables commands that redirect internal machines' outbound SMTP
// (tcp/25) to the trap. Call Validate first; invalid entries are
// skipped. The nftables part can be loaded as it is with nft -f; the
// iptables part is a shell script.
func Rules(o RulesOptions) string {
	families := split(o)
	// The interface the redirects match on, in each syntax; none: any.
	iif, in := "", ""
	if o.Interface != "" {
		iif, in = fmt.Sprintf("iifname %q ", o.Interface), "-i "+o.Interface+" "
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	w("# mailwarden trap: redirect outbound SMTP (tcp/25) from internal\n")
	w("# networks to the trap listener on port %d, so infected machines that\n", o.TrapPort)
	w("# send mail directly are recorded. REDIRECT rewrites the destination to\n")
	w("# the receiving interface's primary address; the trap must listen there\n")
	w("# (or on the wildcard address) and reads the original destination back\n")
	w("# with SO_ORIGINAL_DST.\n\n")

	w("# --- nftables (nft -f FILE) ---\n")
	w("# Declaring and deleting the table first makes reloading idempotent.\n")
	w("table inet mailwarden_trap\n")
	w("delete table inet mailwarden_trap\n")
	w("table inet mailwarden_trap {\n")
	w("\tchain prerouting {\n")
	w("\t\ttype nat hook prerouting priority dstnat; policy accept;\n")
	for _, f := range families {
		if len(f.servers) > 0 {
			w("\t\t# The organisation's own mail servers send mail legitimately.\n")
			w("\t\t%s saddr { %s } tcp dport 25 return\n", f.nft, strings.Join(f.servers, ", "))
		}
		w("\t\t%s%s saddr { %s } tcp dport 25 redirect to :%d\n",
			iif, f.nft, strings.Join(f.nets, ", "), o.TrapPort)
	}
	w("\t}\n")
	w("}\n\n")

	w("# --- iptables / ip6tables (shell) ---\n")
	w("# A chain of its own keeps the rules easy to list and remove.\n")
	for _, f := range families {
		w("%s -t nat -N MAILWARDEN_TRAP\n", f.iptables)
		for _, s := range f.servers {
			w("%s -t nat -A MAILWARDEN_TRAP -s %s -j RETURN\n", f.iptables, s)
		}
		for _, n := range f.nets {
			w("%s -t nat -A MAILWARDEN_TRAP -s %s -p tcp -j REDIRECT --to-ports %d\n", f.iptables, n, o.TrapPort)
		}
		w("%s -t nat -A PREROUTING %s-p tcp --dport 25 -j MAILWARDEN_TRAP\n", f.iptables, in)
	}
	return b.String()
}
