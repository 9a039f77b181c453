// Package daemon wires configuration, store, checks and front ends into
// the running mailwarden daemon: start-up, config reload and graceful
// shutdown. It holds no policy logic of its own.
package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"time"

	"mailwarden/internal/config"
	"mailwarden/internal/policy"
	"mailwarden/internal/policy/antivirus"
	"mailwarden/internal/policy/freeze"
	"mailwarden/internal/policy/greylist"
	"mailwarden/internal/policy/latch"
	"mailwarden/internal/policy/ratelimit"
	"mailwarden/internal/policy/sender"
	"mailwarden/internal/sites"
	"mailwarden/internal/store"
)

// Built is what the configuration makes of the check pipeline.
type Built struct {
	// Checks in PRODUCT.md order: freeze, latch, sender policy, rate
	// limits, greylisting.
	Checks []policy.Check
	// Classify marks internal clients and their sites before any check.
	Classify func(*policy.Request)
}

// Deps are what the checks use besides the configuration.
type Deps struct {
	Store store.Store
	// Scanner scans messages when antivirus is enabled.
	Scanner antivirus.Scanner
	Log     *slog.Logger
	Now     func() time.Time
	// Sites is the sites registry of cfg, built once per apply and
	// shared with the host registry; nil builds one.
	Sites *sites.Registry
	// ScanCache is the antivirus scan cache to use when the config turns
	// it on, kept across reloads; nil builds a new one.
	ScanCache *antivirus.Cache
	// SignatureVersion reports clamd's signature version for the scan
	// cache; nil means unknown, so no clean verdict is cached.
	SignatureVersion func() int
	// CacheCounted counts each message's scan cache outcome.
	CacheCounted func(outcome string)
	// SkipBadWhitelistLines makes serve skip, with a warning, whitelist
	// file lines that do not parse, as postgrey does; config check
	// leaves it off and names each one.
	SkipBadWhitelistLines bool
}

// Checks builds the pipeline's checks from cfg. `mailwarden config check`
// calls it too, so a config that passes the check also starts; every
// problem is reported at once.
func Checks(cfg config.Config, deps Deps) (Built, error) {
	st, log, now, reg := deps.Store, deps.Log, deps.Now, deps.Sites
	if reg == nil {
		var err error
		if reg, err = Sites(cfg); err != nil {
			return Built{}, err
		}
	}
	var errs []error
	add := func(c policy.Check, err error) policy.Check {
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		return c
	}
	lc, err := latch.New(latch.Options{
		Store:          st,
		Sites:          reg,
		ReplyText:      cfg.Latch.ReplyText,
		DefaultContact: cfg.Latch.DefaultContact,
		Expiry:         cfg.Latch.Expiry.D(),
		ExemptClients:  prefixes(cfg.Latch.ExemptClients),
		ExemptUsers:    cfg.Latch.ExemptUsers,
		Now:            now,
		Log:            log,
	})
	if err != nil {
		errs = append(errs, err)
	}
	latcher := func(on bool) *latch.Check {
		if on {
			return lc
		}
		return nil
	}
	checks := []policy.Check{
		add(freeze.New(freeze.Options{Store: st, Log: log})),
		lc,
		add(sender.New(sender.Options{
			Sites:             reg,
			SenderDomains:     cfg.SenderPolicy.SenderDomains,
			HeaderFromDomains: cfg.SenderPolicy.HeaderFromDomains,
			AllowNullSender:   cfg.SenderPolicy.AllowNullSender,
			ReplyText:         cfg.SenderPolicy.ReplyText,
			Latch:             latcher(cfg.SenderPolicy.Latch),
			Log:               log,
		})),
	}
	if r := cfg.RateLimits; r.Enabled {
		checks = append(checks, add(ratelimit.New(ratelimit.Options{
			Store:        st,
			User:         limit(r.User),
			Client:       limit(r.Client),
			SenderDomain: limit(r.SenderDomain),
			ReplyText:    r.ReplyText,
			Latch:        latcher(r.LatchOnTrip),
			// The organisation's own relays and webmail hosts send for
			// everyone; a per-client limit would hold them all up.
			ExemptClients: prefixes(cfg.Latch.ExemptClients),
			Now:           now,
			Log:           log,
		})))
	}
	if g := cfg.Greylist; g.Enabled {
		checks = append(checks, add(greylist.New(greylist.Options{
			Store:                   st,
			Delay:                   g.Delay.D(),
			RetryWindow:             g.RetryWindow.D(),
			PassedLifetime:          g.PassedLifetime.D(),
			IPv4Prefix:              g.IPv4Prefix,
			IPv6Prefix:              g.IPv6Prefix,
			AutoWhitelistAfter:      g.AutoWhitelistAfter,
			SkipAuthenticated:       g.SkipAuthenticated,
			SkipInternal:            g.SkipInternal,
			WhitelistClients:        g.WhitelistClients,
			WhitelistRecipients:     g.WhitelistRecipients,
			WhitelistClientFiles:    g.WhitelistClientFiles,
			WhitelistRecipientFiles: g.WhitelistRecipientFiles,
			SkipBadFileLines:        deps.SkipBadWhitelistLines,
			ReplyText:               g.ReplyText,
			AddHeader:               g.AddHeader,
			Hostname:                Hostname(cfg),
			Now:                     now,
			Log:                     log,
		})))
	}
	if a := cfg.Antivirus; a.Enabled {
		var cache *antivirus.Cache
		if a.Cache.Enabled {
			if cache = deps.ScanCache; cache == nil {
				cache = NewScanCache(cfg)
			}
		}
		checks = append(checks, add(antivirus.New(antivirus.Options{
			Scanner:          deps.Scanner,
			Latch:            lc,
			InternalDomains:  InternalDomains(cfg),
			MaxScanSize:      a.MaxScanSize,
			OversizeAction:   a.OversizeAction,
			Inbound:          a.Inbound,
			Outbound:         a.Outbound,
			OnError:          a.OnError,
			AddHeaders:       a.AddHeaders,
			Hostname:         Hostname(cfg),
			Cache:            cache,
			CleanMinSize:     a.Cache.CleanMinSize,
			SignatureVersion: deps.SignatureVersion,
			CacheCounted:     deps.CacheCounted,
			Now:              now,
			Log:              log,
		})))
	}
	if len(errs) > 0 {
		return Built{}, errors.Join(errs...)
	}
	return Built{Checks: checks, Classify: reg.Classify}, nil
}

// NewScanCache returns an empty antivirus scan cache sized by cfg.
func NewScanCache(cfg config.Config) *antivirus.Cache {
	c := cfg.Antivirus.Cache
	return antivirus.NewCache(antivirus.CacheOptions{MaxEntries: c.MaxEntries, TTL: c.TTL.D()})
}

func limit(l config.Limit) ratelimit.Limit {
	return ratelimit.Limit{Messages: l.Messages, Recipients: l.Recipients, Per: l.Per.D()}
}

func prefixes(ps []config.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		out[i] = p.Prefix
	}
	return out
}

func siteList(cfg config.Config) []sites.Site {
	out := make([]sites.Site, len(cfg.Sites))
	for i, s := range cfg.Sites {
		out[i] = sites.Site{Name: s.Name, Networks: prefixes(s.Networks), Contact: s.Contact,
			SenderDomains: s.SenderDomains, HeaderFromDomains: s.HeaderFromDomains}
	}
	return out
}

// Sites builds the sites registry of cfg: the internal networks and
// every site, which the pipeline classifies clients by and the host
// registry names sites with.
func Sites(cfg config.Config) (*sites.Registry, error) {
	reg, err := sites.New(prefixes(cfg.InternalNetworks), siteList(cfg))
	if err != nil {
		return nil, fmt.Errorf("sites: %w", err)
	}
	return reg, nil
}

// InternalDomains are the organisation's own mail domains: the sender
// policy's and every site's. A virus for a recipient there is evidence
// for finding patient zero.
func InternalDomains(cfg config.Config) []string {
	ds := slices.Clone(cfg.SenderPolicy.SenderDomains)
	for _, s := range cfg.Sites {
		ds = append(ds, s.SenderDomains...)
	}
	return ds
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
