package main

import (
	"flag"
	"fmt"
	"net/url"

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
		if cfg.Store.Password != "" {
			cfg.Store.Password = "(set, not shown)"
		}
		cfg.Store.URL = hideURLPassword(cfg.Store.URL)
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

// hideURLPassword replaces the password in a redis:// URL, so that the
// printed configuration can be shared.
func hideURLPassword(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); !ok {
		return s
	}
	u.User = url.UserPassword(u.User.Username(), "xxxxx")
	return u.String()
}
