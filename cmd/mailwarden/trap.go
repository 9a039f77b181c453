package main

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"mailwarden/internal/daemon"
	"mailwarden/internal/trap"
)

// trapRules prints the firewall rules that feed the port-25 trap. It
// works offline, from the configuration alone.
func trapRules(fs *flag.FlagSet) runFunc {
	configPath := fs.String("config", "", "config `file` whose networks and trap.listen are used")
	return func(c *call) int { return printTrapRules(c, *configPath) }
}

func printTrapRules(c *call, configPath string) int {
	cfg, err := daemon.LoadConfig(configPath, "")
	if err != nil {
		return c.usage("%v", err)
	}
	host, portText, err := net.SplitHostPort(cfg.Trap.Listen)
	port, perr := strconv.Atoi(portText)
	if err != nil || perr != nil || port < 1 || port > 65535 {
		return c.usage("trap.listen %q has no port; the redirect rules need the port the trap listens on (e.g. listen: \"0.0.0.0:10025\")", cfg.Trap.Listen)
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
		return c.usage("%v", err)
	}
	// REDIRECT sends to the receiving interface's address, which a trap
	// bound to loopback never sees.
	if a, err := netip.ParseAddr(host); err == nil && a.IsLoopback() {
		fmt.Fprintf(c.stderr, "mailwarden trap rules: warning: trap.listen %q is a loopback address; redirected connections arrive on the interface's address, so listen on it or on 0.0.0.0\n", cfg.Trap.Listen)
	}
	fmt.Fprint(c.stdout, trap.Rules(o))
	return 0
}
