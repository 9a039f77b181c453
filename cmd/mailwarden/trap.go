package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"

	"mailwarden/internal/daemon"
	"mailwarden/internal/trap"
)

const trapUsage = `usage: mailwarden trap rules [--config FILE]
`

// cmdTrap prints the firewall rules that feed the port-25 trap. It works
// offline, from the configuration alone.
func cmdTrap(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "rules" {
		if len(args) > 0 {
			fmt.Fprintf(stderr, "mailwarden trap: unknown command %q (want rules)\n", args[0])
		}
		fmt.Fprint(stderr, trapUsage)
		return 2
	}
	fs := flag.NewFlagSet("trap rules", flag.ContinueOnError)
	configPath := fs.String("config", "", "config `file` whose networks and trap.listen are used")
	pos, err := parseFlags(fs, args[1:], stderr)
	if err != nil {
		return 2
	}
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "mailwarden trap rules: %s\n", fmt.Sprintf(format, args...))
		return 2
	}
	if len(pos) != 0 {
		return fail("takes no arguments, got %q", pos[0])
	}
	cfg, err := daemon.LoadConfig(*configPath, "")
	if err != nil {
		return fail("%v", err)
	}
	host, portText, err := net.SplitHostPort(cfg.Trap.Listen)
	port, perr := strconv.Atoi(portText)
	if err != nil || perr != nil || port < 1 || port > 65535 {
		return fail("trap.listen %q has no port; the redirect rules need the port the trap listens on (e.g. listen: \"0.0.0.0:10025\")", cfg.Trap.Listen)
	}
	o := trap.RulesOptions{TrapPort: port}
	for _, p := range cfg.InternalNetworks {
		o.InternalNetworks = append(o.InternalNetworks, p.Prefix)
	}
	for _, s := range cfg.Sites {
		for _, p := range s.Networks {
			o.InternalNetworks = append(o.InternalNetworks, p.Prefix)
		}
	}
	for _, p := range cfg.Trap.MailServers {
		o.MailServers = append(o.MailServers, p.Addr())
	}
	if err := o.Validate(); err != nil {
		return fail("%v", err)
	}
	// REDIRECT sends to the receiving interface's address, which a trap
	// bound to loopback never sees.
	if a, err := netip.ParseAddr(host); err == nil && a.IsLoopback() {
		fmt.Fprintf(stderr, "mailwarden trap rules: warning: trap.listen %q is a loopback address; redirected connections arrive on the interface's address, so listen on it or on 0.0.0.0\n", cfg.Trap.Listen)
	}
	fmt.Fprint(stdout, trap.Rules(o))
	return 0
}
