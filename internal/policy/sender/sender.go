// Package sender enforces the sender-domain policy for internal clients:
// each network or site may use only its own envelope-sender (and,
// optionally, header From) domains. A worm relaying through the
// organisation's servers forges other domains; such mail is refused and
// the client latched (PRODUCT.md §1 Day A).
package sender

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"mailwarden/internal/logx"
	"mailwarden/internal/policy"
	"mailwarden/internal/policy/latch"
	"mailwarden/internal/reply"
	"mailwarden/internal/sites"
	"mailwarden/internal/store"
)

// DefaultReplyText is used when Options.ReplyText is empty; it matches
// config.Default().
const DefaultReplyText = "Sender domain {domain} is not allowed from {client}"

// Rules, as recorded in latches.
const (
	RuleSenderDomain = "sender_domain"
	RuleHeaderFrom   = "header_from"
)

// Options configures a Check.
type Options struct {
	// Sites gives each site's own domain lists; nil: only the global ones.
	Sites *sites.Registry
	// SenderDomains are the envelope-sender domains internal clients may
	// use, subdomains included; a site's own list replaces it. With no
	// list for a client, its envelope sender is not checked.
	SenderDomains []string
	// HeaderFromDomains likewise for the header From, checked at end of
	// message (the milter sees headers; the policy server does not).
	HeaderFromDomains []string
	// AllowNullSender lets internal clients send bounces (MAIL FROM:<>).
	AllowNullSender bool
	// ReplyText follows "550 5.7.1"; {domain} becomes the refused domain
	// and {client} the client address.
	ReplyText string
	// Latch, if set, latches the client or user on a violation.
	Latch *latch.Check
	Log   *slog.Logger
}

// Check is the sender-domain policy check. It is safe for concurrent use.
type Check struct {
	o Options
}

// New returns a sender check. The error lists every bad setting.
func New(o Options) (*Check, error) {
	var errs []error
	if o.ReplyText == "" {
		o.ReplyText = DefaultReplyText
	}
	if err := reply.Check(o.ReplyText); err != nil {
		errs = append(errs, fmt.Errorf("sender: %w", err))
	}
	for _, list := range []*[]string{&o.SenderDomains, &o.HeaderFromDomains} {
		norm := make([]string, 0, len(*list))
		for _, d := range *list {
			n := sites.NormalizeDomain(d)
			if n == "" {
				errs = append(errs, errors.New("sender: empty domain in a domain list"))
				continue
			}
			norm = append(norm, n)
		}
		*list = norm
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	o.Log = logx.Or(o.Log)
	return &Check{o: o}, nil
}

// Name is the check's name in verdicts, events, the mail log and the
// fail_open setting.
const Name = "sender"

// Name returns Name.
func (c *Check) Name() string { return Name }

// Check applies the policy to internal clients: the envelope sender at
// every RCPT and the header From at end of message. Clients that are only
// authenticated are not bound by a network's policy, and inbound mail is
// never checked.
//
// The envelope sender is judged at every RCPT, not only the first: an
// MTA asks about each recipient even after refusing one, and a refusal
// of the first alone would let the rest through. Latching and its event
// happen once per message, at the first recipient.
func (c *Check) Check(ctx context.Context, req *policy.Request) (policy.Verdict, error) {
	if !req.Internal {
		return policy.Verdict{}, nil
	}
	site := c.o.Sites.Site(req.Site)
	switch req.Stage {
	case policy.StageRcpt:
		allowed := c.o.SenderDomains
		if site != nil && len(site.SenderDomains) > 0 {
			allowed = site.SenderDomains
		}
		if len(allowed) == 0 {
			return policy.Verdict{}, nil
		}
		if req.Sender == "" {
			if c.o.AllowNullSender {
				return policy.Verdict{}, nil
			}
			return c.violation(ctx, req, RuleSenderDomain, "<>", "the null sender is not allowed", nil, req.Sender)
		}
		domain := policy.Domain(req.Sender)
		if allowedDomain(domain, allowed) {
			return policy.Verdict{}, nil
		}
		shown := domain
		if shown == "" {
			shown = req.Sender
		}
		return c.violation(ctx, req, RuleSenderDomain, shown,
			fmt.Sprintf("envelope sender domain %q is not allowed for %s", domain, where(req)), allowed, req.Sender)
	case policy.StageEOM:
		allowed := c.o.HeaderFromDomains
		if site != nil && len(site.HeaderFromDomains) > 0 {
			allowed = site.HeaderFromDomains
		}
		// An empty HeaderFrom means the front end did not see the
		// header (the policy server never does), not that it is absent.
		if len(allowed) == 0 || req.HeaderFrom == "" {
			return policy.Verdict{}, nil
		}
		domains, ok := FromDomains(req.HeaderFrom)
		if !ok {
			return c.violation(ctx, req, RuleHeaderFrom, "(unreadable From)",
				"the header From names no readable address", allowed, "From: "+req.HeaderFrom)
		}
		for _, d := range domains {
			if !allowedDomain(d, allowed) {
				return c.violation(ctx, req, RuleHeaderFrom, d,
					fmt.Sprintf("header From domain %q is not allowed for %s", d, where(req)), allowed, "From: "+req.HeaderFrom)
			}
		}
	}
	return policy.Verdict{}, nil
}

// where names the client's site or says it has none, for reasons.
func where(req *policy.Request) string {
	if req.Site != "" {
		return "site " + req.Site
	}
	return "internal network"
}

// allowedDomain reports whether domain is one of allowed or a subdomain
// of one.
func allowedDomain(domain string, allowed []string) bool {
	for _, a := range allowed {
		if sites.InDomain(domain, a) {
			return true
		}
	}
	return false
}

// violation refuses req and, once per message, latches its sender. The
// refusal is a reject event, and a latch set is a latch event beside it.
// why becomes the latch's reason, which the user sees in later replies;
// the log also gets the allowed domains and the evidence.
func (c *Check) violation(ctx context.Context, req *policy.Request, rule, domain, why string, allowed []string, evidence string) (policy.Verdict, error) {
	reason := fmt.Sprintf("sender: rule %s: %s", rule, why)
	if len(allowed) > 0 {
		reason += fmt.Sprintf(" (allowed: %s; evidence %q)", strings.Join(allowed, ", "), evidence)
	}
	v := policy.Verdict{
		Action: policy.Reject,
		Code:   550,
		Status: "5.7.1",
		Text:   c.replyText(domain, req),
		Reason: reason,
		Check:  c.Name(),
		Event:  store.EventReject,
	}
	// The first recipient, or end of message, decides for the message.
	if c.o.Latch == nil || req.Stage == policy.StageRcpt && req.RcptIndex > 0 {
		return v, nil
	}
	l, latched, err := c.o.Latch.Latch(ctx, req, rule, why, evidence)
	if err != nil {
		c.o.Log.Error("sender: latching a forger failed; tempfailing its message", "client", req.ClientIP, "user", req.SASLUser, "err", err)
		return latch.Unwritten(v, err), nil
	}
	if latched {
		// Still a reject, the forgery it was; the latch is its own event.
		v.Latched = latch.Description(l)
		v.Reason += fmt.Sprintf("; latched %s %s (ref %s)", l.Kind, l.Key, l.ID)
	}
	return v, nil
}

// replyText renders the reply text. The domain comes from the attacker,
// so it is made safe for one SMTP reply line (RFC 5321 §4.2).
func (c *Check) replyText(domain string, req *policy.Request) string {
	return strings.NewReplacer("{domain}", reply.Safe(domain), "{client}", reply.Safe(latch.ClientKey(req.ClientIP))).Replace(c.o.ReplyText)
}
