// Package freeze holds outbound mail while an administrator has frozen
// it: every matching message is tempfailed, so nothing is lost, and since
// the freeze lives in mailwarden's store a control panel that restarts
// the MTA cannot undo it (PRODUCT.md §1 Day B).
package freeze

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"mailwarden/internal/logx"
	"mailwarden/internal/policy"
	"mailwarden/internal/sites"
	"mailwarden/internal/store"
)

// ReplyText follows "451 4.7.0" for frozen mail.
const ReplyText = "Outbound mail is frozen by the administrator, please try again later"

// Options configures a Check.
type Options struct {
	Store store.Freezes
	Log   *slog.Logger
}

// Check is the outbound freeze check. It is safe for concurrent use.
type Check struct {
	o Options
}

// New returns a freeze check.
func New(o Options) (*Check, error) {
	if o.Store == nil {
		return nil, errors.New("freeze: no store")
	}
	o.Log = logx.Or(o.Log)
	return &Check{o: o}, nil
}

// Name is the check's name in verdicts, events, the mail log and the
// fail_open setting.
const Name = "freeze"

// Name returns Name.
func (c *Check) Name() string { return Name }

// Check tempfails outbound mail that a freeze matches, at every RCPT and
// again at DATA (the policy server's; the milter does not ask the MTA for
// DATA) and end of message, so mail already past RCPT when the freeze
// was set is held too. The freezes are read on every call; the
// store answers from memory.
func (c *Check) Check(ctx context.Context, req *policy.Request) (policy.Verdict, error) {
	switch req.Stage {
	case policy.StageRcpt, policy.StageData, policy.StageEOM:
	default:
		return policy.Verdict{}, nil
	}
	if !req.Outbound() {
		return policy.Verdict{}, nil
	}
	fs, err := c.o.Store.ListFreezes(ctx)
	if err != nil {
		return policy.Verdict{}, fmt.Errorf("freeze: listing freezes: %w", err)
	}
	for _, f := range fs {
		if !c.matches(f, req) {
			continue
		}
		return policy.Verdict{
			Action: policy.Tempfail,
			Code:   451,
			Status: "4.7.0",
			Text:   ReplyText,
			Reason: "freeze: held by " + Describe(f),
			Check:  c.Name(),
			Event:  store.EventFreeze,
		}, nil
	}
	return policy.Verdict{}, nil
}

// matches reports whether freeze f holds req. A freeze the check cannot
// understand (a bad network, an unknown scope) holds nothing and is
// logged: refusing all mail for it would be a guess.
func (c *Check) matches(f store.Freeze, req *policy.Request) bool {
	switch f.Scope {
	case store.FreezeAll:
		return true
	case store.FreezeDomain:
		return sites.InDomain(policy.Domain(req.Sender), f.Value)
	case store.FreezeUser:
		return req.Authenticated() && strings.EqualFold(req.SASLUser, f.Value)
	case store.FreezeNetwork:
		p, err := ParseNetwork(f.Value)
		if err != nil {
			c.o.Log.Warn("freeze: ignoring freeze with a bad network", "value", f.Value, "err", err)
			return false
		}
		return req.ClientIP.IsValid() && p.Contains(req.ClientIP.Unmap().WithZone(""))
	}
	c.o.Log.Warn("freeze: ignoring freeze with an unknown scope", "scope", f.Scope, "value", f.Value)
	return false
}

// ParseNetwork parses a network freeze's value: CIDR notation or a bare
// address, meaning that one host. IPv4-mapped IPv6 networks are read as
// the IPv4 network they describe, since client addresses are matched
// unmapped.
func ParseNetwork(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("freeze: invalid network %q", s)
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// Describe names a freeze for logs and listings, e.g. "freeze of domain
// example.org by alice since 2026-03-02T10:00:00Z (spam run)".
func Describe(f store.Freeze) string {
	s := "freeze of all outbound mail"
	if f.Scope != store.FreezeAll {
		s = fmt.Sprintf("freeze of %s %s", f.Scope, f.Value)
	}
	if f.By != "" {
		s += " by " + f.By
	}
	if !f.Since.IsZero() {
		s += " since " + f.Since.UTC().Format(time.RFC3339)
	}
	if f.Note != "" {
		s += " (" + f.Note + ")"
	}
	return s
}
