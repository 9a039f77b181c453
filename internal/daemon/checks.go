// Package daemon wires configuration, store, checks and front ends into
// the running mailwarden daemon: start-up, config reload and graceful
// shutdown. It holds no policy logic of its own.
package daemon

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"mailwarden/internal/config"
	"mailwarden/internal/netset"
	"mailwarden/internal/policy"
	"mailwarden/internal/policy/greylist"
	"mailwarden/internal/store"
)

// Checks builds the check pipeline's checks, in PRODUCT.md order, from
// cfg. `mailwarden config check` calls it too, so a config that passes the
// check also starts.
func Checks(cfg config.Config, st store.Store, log *slog.Logger, now func() time.Time) ([]policy.Check, error) {
	var checks []policy.Check
	if cfg.Greylist.Enabled {
		g := cfg.Greylist
		gl, err := greylist.New(greylist.Options{
			Store:                   st,
			Delay:                   g.Delay.D(),
			RetryWindow:             g.RetryWindow.D(),
			PassedLifetime:          g.PassedLifetime.D(),
			IPv4Prefix:              g.IPv4Prefix,
			IPv6Prefix:              g.IPv6Prefix,
			AutoWhitelistAfter:      g.AutoWhitelistAfter,
			SkipAuthenticated:       g.SkipAuthenticated,
			SkipInternal:            g.SkipInternal,
			Internal:                InternalNetworks(cfg),
			WhitelistClients:        g.WhitelistClients,
			WhitelistRecipients:     g.WhitelistRecipients,
			WhitelistClientFiles:    g.WhitelistClientFiles,
			WhitelistRecipientFiles: g.WhitelistRecipientFiles,
			ReplyText:               g.ReplyText,
			AddHeader:               g.AddHeader,
			Hostname:                Hostname(cfg),
			Now:                     now,
			Log:                     log,
		})
		if err != nil {
			return nil, fmt.Errorf("greylist: %w", err)
		}
		checks = append(checks, gl)
	}
	return checks, nil
}

// InternalNetworks returns the configured internal networks as a set.
func InternalNetworks(cfg config.Config) *netset.Set {
	ps := make([]netip.Prefix, len(cfg.InternalNetworks))
	for i, p := range cfg.InternalNetworks {
		ps[i] = p.Prefix
	}
	return netset.New(ps...)
}

// Hostname is the configured hostname, else the system's.
func Hostname(cfg config.Config) string {
	if cfg.Hostname != "" {
		return cfg.Hostname
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return "localhost"
}

// FailOpen returns the configured fail-open check names as a set.
func FailOpen(cfg config.Config) map[string]bool {
	m := make(map[string]bool, len(cfg.FailOpen))
	for _, n := range cfg.FailOpen {
		m[n] = true
	}
	return m
}
