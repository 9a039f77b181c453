package main

import (
	"flag"
	"fmt"

	"mailwarden/internal/config"
	"mailwarden/internal/daemon"
)

func configCheck(fs *flag.FlagSet) runFunc {
	print := fs.Bool("print", false, "print the effective configuration, defaults included")
	return func(c *call) int { return checkConfig(c, c.pos[0], *print) }
}

// checkConfig checks the config file path and prints it with print.
func checkConfig(c *call, path string, print bool) int {
	// The same loader and check construction as serve: whitelist files
	// are read and their entries parsed here too.
	cfg, err := config.Load(path)
	if err == nil {
		err = daemon.Validate(cfg)
	}
	if err != nil {
		fmt.Fprintf(c.stderr, "%v\n", err)
		return 1
	}
	if print {
		// Printed configs end up in tickets and chat: a webhook's
		// signing secret is shown as set, not shown.
		for i := range cfg.Alerts.Receivers {
			if cfg.Alerts.Receivers[i].Webhook.Secret != "" {
				cfg.Alerts.Receivers[i].Webhook.Secret = "(set, not shown)"
			}
		}
		b, err := cfg.YAML()
		if err != nil {
			return c.fail(err)
		}
		c.stdout.Write(b)
		return 0
	}
	fmt.Fprintf(c.stdout, "%s: OK\n", path)
	return 0
}
