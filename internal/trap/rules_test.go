package trap

import (
	"errors"
	"flag"
	"net/netip"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/rules.golden")

func exampleRules() RulesOptions {
	return RulesOptions{
		InternalNetworks: []netip.Prefix{
			netip.MustParsePrefix("10.20.0.0/16"),
			netip.MustParsePrefix("192.168.7.9/24"), // host bits are masked
			netip.MustParsePrefix("2001:db8:42::/48"),
		},
		TrapPort:    2525,
		Interface:   "lan0",
		MailServers: []netip.Addr{netip.MustParseAddr("10.20.0.25"), netip.MustParseAddr("2001:db8:42::25")},
	}
}

func TestRulesGolden(t *testing.T) {
	got := Rules(exampleRules())
	const path = "testdata/rules.golden"
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("Rules output differs from %s (run go test -update):\n%s", path, got)
	}
}

func TestRulesNftShape(t *testing.T) {
	for _, o := range []RulesOptions{
		exampleRules(),
		{InternalNetworks: []netip.Prefix{netip.MustParsePrefix("172.16.0.0/12")}, TrapPort: 10025},
		{InternalNetworks: []netip.Prefix{netip.MustParsePrefix("fd00::/8")}, TrapPort: 10025},
	} {
		out := Rules(o)
		nft, ipt, ok := strings.Cut(out, "# --- iptables")
		if !ok {
			t.Fatalf("no iptables part in:\n%s", out)
		}
		depth := 0
		for _, r := range nft {
			switch r {
			case '{':
				depth++
			case '}':
				depth--
			}
			if depth < 0 {
				t.Fatalf("closing brace before opening in:\n%s", nft)
			}
		}
		if depth != 0 {
			t.Errorf("unbalanced braces (%d open) in:\n%s", depth, nft)
		}
		for _, p := range o.InternalNetworks {
			n := p.Masked().String()
			if !strings.Contains(nft, n) || !strings.Contains(ipt, "-s "+n+" ") {
				t.Errorf("network %s missing from:\n%s", n, out)
			}
		}
		for _, a := range o.MailServers {
			if !strings.Contains(ipt, "-s "+a.String()+" -j RETURN") {
				t.Errorf("mail server %s not exempt in:\n%s", a, ipt)
			}
		}
		if !strings.Contains(nft, "table inet mailwarden_trap {") {
			t.Errorf("no mailwarden_trap table in:\n%s", nft)
		}
	}
}

func TestRulesFamiliesKeptApart(t *testing.T) {
	out := Rules(RulesOptions{
		InternalNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		MailServers:      []netip.Addr{netip.MustParseAddr("::ffff:10.0.0.25")},
		TrapPort:         2525,
	})
	if strings.Contains(out, "ip6 saddr") || strings.Contains(out, "ip6tables -t") || !strings.Contains(out, "iptables -t nat -A MAILWARDEN_TRAP -s 10.0.0.25 -j RETURN") {
		t.Errorf("IPv4-only options produced IPv6 rules or lost the mapped server:\n%s", out)
	}
}

func TestRulesValidate(t *testing.T) {
	good := exampleRules()
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(good) = %v", err)
	}
	for _, tc := range []struct {
		edit func(*RulesOptions)
		want error
	}{
		{func(o *RulesOptions) { o.InternalNetworks = nil }, ErrNoNetworks},
		{func(o *RulesOptions) { o.TrapPort = 0 }, ErrBadTrapPort},
		{func(o *RulesOptions) { o.TrapPort = 70000 }, ErrBadTrapPort},
		{func(o *RulesOptions) { o.Interface = "eth0; rm -rf /" }, ErrBadInterface},
		{func(o *RulesOptions) { o.Interface = "averyveryverylongname" }, ErrBadInterface},
		{func(o *RulesOptions) { o.InternalNetworks = append(o.InternalNetworks, netip.Prefix{}) }, ErrBadNetwork},
		{func(o *RulesOptions) { o.MailServers = append(o.MailServers, netip.Addr{}) }, ErrBadMailServer},
	} {
		o := exampleRules()
		tc.edit(&o)
		if err := o.Validate(); !errors.Is(err, tc.want) {
			t.Errorf("Validate(%+v) = %v, want %v", o, err, tc.want)
		}
	}
}
