// Package latch refuses mail from clients and users that are latched: a
// machine that forged a sender domain or tripped a rate limit is blocked
// until someone marks it clean (PRODUCT.md §1 Day A). Other checks latch
// through Check.Latch, which knows the exemptions and the expiry.
package latch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"mailwarden/internal/logx"
	"mailwarden/internal/netset"
	"mailwarden/internal/policy"
	"mailwarden/internal/reply"
	"mailwarden/internal/sites"
	"mailwarden/internal/store"
)

// Defaults for zero Options fields; they match config.Default().
const (
	DefaultReplyText = "Mail from {client} is blocked: {reason}. Contact {contact}, ref {id}"
	DefaultContact   = "your mail administrator"
)

// Options configures a Check. Zero ReplyText, DefaultContact, Now and Log
// take the defaults (DefaultReplyText, DefaultContact, time.Now, a
// discarding logger). A zero Expiry means latches never expire.
type Options struct {
	Store store.Latches
	// Sites gives the contact of the client's site; nil: DefaultContact
	// for everyone.
	Sites *sites.Registry
	// ReplyText follows "550 5.7.1" for mail from a latched client or
	// user. {client} becomes the latched address or user name, {reason}
	// the latch's reason, {contact} the site's contact and {id} the
	// latch ID.
	ReplyText      string
	DefaultContact string
	// Expiry ends new latches on their own after this long.
	Expiry time.Duration
	// ExemptClients never latch and are never refused by a client latch
	// (the organisation's own relays, a monitoring host). ExemptUsers
	// likewise for SASL users, compared without regard to case.
	ExemptClients []netip.Prefix
	ExemptUsers   []string
	Now           func() time.Time
	Log           *slog.Logger
}

// Check is the latch check. It is safe for concurrent use.
type Check struct {
	o             Options
	exemptClients *netset.Set
	exemptUsers   map[string]bool
}

// New returns a latch check. The error lists every bad setting.
func New(o Options) (*Check, error) {
	var errs []error
	if o.Store == nil {
		errs = append(errs, errors.New("latch: no store"))
	}
	if o.ReplyText == "" {
		o.ReplyText = DefaultReplyText
	}
	if err := checkText("reply text", o.ReplyText); err != nil {
		errs = append(errs, err)
	}
	if o.DefaultContact == "" {
		o.DefaultContact = DefaultContact
	}
	if err := checkText("default contact", o.DefaultContact); err != nil {
		errs = append(errs, err)
	}
	if o.Expiry < 0 {
		errs = append(errs, fmt.Errorf("latch: expiry %v is negative", o.Expiry))
	}
	for i, p := range o.ExemptClients {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("latch: exempt client %d is not a valid network", i+1))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.Log = logx.Or(o.Log)
	users := make(map[string]bool, len(o.ExemptUsers))
	for _, u := range o.ExemptUsers {
		users[strings.ToLower(u)] = true
	}
	return &Check{o: o, exemptClients: netset.New(o.ExemptClients...), exemptUsers: users}, nil
}

// checkText refuses text that cannot go into one SMTP reply line.
func checkText(what, s string) error {
	if err := reply.Check(s); err != nil {
		return fmt.Errorf("latch: %s: %w", what, err)
	}
	return nil
}

// Name is the check's name in verdicts, events, the mail log and the
// fail_open setting.
const Name = "latch"

// Name returns Name.
func (c *Check) Name() string { return Name }

// Check refuses outbound mail from a latched client address or SASL user
// at MAIL and at every RCPT; other stages and inbound mail continue. The
// client's latch is looked at first: it is the machine that is infected.
//
// Each refused message is counted once on the latch (store.Latch.Refused)
// and recorded as one latch event: at MAIL, or at the first RCPT where
// MAIL is not seen. Its later recipients are refused as plain rejects,
// so a message to ten people is one refusal, not ten.
func (c *Check) Check(ctx context.Context, req *policy.Request) (policy.Verdict, error) {
	if req.Stage != policy.StageMail && req.Stage != policy.StageRcpt || !req.Outbound() {
		return policy.Verdict{}, nil
	}
	now := c.o.Now()
	for _, k := range c.keys(req) {
		l, err := c.o.Store.ActiveLatch(ctx, k.kind, k.key, now)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return policy.Verdict{}, fmt.Errorf("latch: looking up %s %s: %w", k.kind, k.key, err)
		}
		if req.Stage == policy.StageRcpt && req.RcptIndex > 0 {
			v := c.Refusal(req, l)
			v.Event = ""
			return v, nil
		}
		counted, err := c.o.Store.AddLatchRefusal(ctx, l.ID, now)
		if errors.Is(err, store.ErrNotActive) || errors.Is(err, store.ErrNotFound) {
			continue // cleared meanwhile
		}
		if err != nil {
			// The latch is known: it refuses whatever happens to the
			// count of its refusals. Returning the error would let
			// fail_open accept mail from a latched host.
			c.o.Log.Error("latch: counting a refusal failed; refusing anyway", "kind", k.kind, "key", k.key, "id", l.ID, "err", err)
			v := c.Refusal(req, l)
			v.Reason += "; the refusal was not counted: " + err.Error()
			return v, nil
		}
		return c.Refusal(req, counted), nil
	}
	return policy.Verdict{}, nil
}

type latchKey struct{ kind, key string }

// keys returns what may be latched for req, skipping exempt ones.
func (c *Check) keys(req *policy.Request) []latchKey {
	var ks []latchKey
	if req.ClientIP.IsValid() && !c.exemptClients.Contains(req.ClientIP) {
		ks = append(ks, latchKey{store.LatchClient, ClientKey(req.ClientIP)})
	}
	if req.Authenticated() && !c.exemptUsers[strings.ToLower(req.SASLUser)] {
		ks = append(ks, latchKey{store.LatchUser, req.SASLUser})
	}
	return ks
}

// ClientKey is the latch key of a client address: its text without zone,
// with IPv4-mapped IPv6 addresses written as IPv4; "unknown" for an
// invalid address.
func ClientKey(ip netip.Addr) string {
	if !ip.IsValid() {
		return "unknown"
	}
	return ip.Unmap().WithZone("").String()
}

// Refusal is the verdict for mail from the holder of the active latch l:
// 550 5.7.1 with the reply text filled in, recorded as a latch event.
func (c *Check) Refusal(req *policy.Request, l store.Latch) policy.Verdict {
	return policy.Verdict{
		Action: policy.Reject,
		Code:   550,
		Status: "5.7.1",
		Text:   c.Reply(req, l),
		Reason: fmt.Sprintf("latch: %s %s is latched (ref %s, rule %s, %d violations, %d messages refused, since %s): %s",
			l.Kind, l.Key, l.ID, l.Rule, l.Count-l.Refused, l.Refused, l.FirstSeen.UTC().Format(time.RFC3339), l.Reason),
		Check: c.Name(),
		Event: store.EventLatch,
	}
}

// Reply renders the reply text for mail from the holder of l: who is
// blocked, why, whom to call and the ref to quote. It invites no retry,
// since none succeeds until someone clears the latch. Every value put in
// may come from an attacker (a forged domain in the reason), so each is
// made safe for one SMTP reply line.
func (c *Check) Reply(req *policy.Request, l store.Latch) string {
	r := strings.NewReplacer(
		"{client}", reply.Safe(l.Key),
		"{reason}", reply.Safe(replyReason(l)),
		"{contact}", reply.Safe(c.contact(req, l)),
		"{id}", reply.Safe(l.ID),
	)
	text := r.Replace(c.o.ReplyText)
	return text
}

// retryAfter is how rate-limit latches set before the reason stopped
// carrying the trip's retry time ended their reason.
const retryAfter = "; retry after "

// replyReason is l's reason as its holder reads it. Rate-limit latches
// stored by earlier versions end in the retry time at the trip, which a
// latch that holds until cleared must not promise.
func replyReason(l store.Latch) string {
	if strings.HasPrefix(l.Rule, "rate_") {
		if r, _, ok := strings.Cut(l.Reason, retryAfter); ok {
			return r
		}
	}
	return l.Reason
}

// Description is the reason of the latch event recorded when a check
// latches: what was latched, its ref and rule, and why; for a latch that
// was already active, which violation this was.
func Description(l store.Latch) string {
	what := "latched"
	if n := l.Count - l.Refused; n > 1 {
		what = fmt.Sprintf("violation %d on the latch of", n)
	}
	return fmt.Sprintf("%s %s %s (ref %s, rule %s): %s", what, l.Kind, l.Key, l.ID, l.Rule, l.Reason)
}

// contact is whom the holder of l should call: the contact of the site the
// request comes from, else of the site the latch was set at, else the
// default.
func (c *Check) contact(req *policy.Request, l store.Latch) string {
	for _, name := range []string{req.Site, l.Site} {
		if s := c.o.Sites.Site(name); s != nil && s.Contact != "" {
			return s.Contact
		}
	}
	return c.o.Sites.Contact(req.ClientIP, c.o.DefaultContact)
}

// Latch latches whoever sent req: the SASL user if the client
// authenticated, else the client address, unless that user or address is
// exempt. rule names what tripped ("sender_domain", "rate_user" ...),
// reason explains it to a person and evidence is what was tried. It
// returns the latch as stored and whether anything was latched; an
// exempt or address-less sender gives (zero, false, nil).
func (c *Check) Latch(ctx context.Context, req *policy.Request, rule, reason, evidence string) (store.Latch, bool, error) {
	l := store.Latch{Rule: rule, Reason: reason, Site: req.Site, Evidence: evidence}
	switch {
	case req.Authenticated():
		if c.exemptUsers[strings.ToLower(req.SASLUser)] {
			c.o.Log.Info("latch: exempt user not latched", "user", req.SASLUser, "rule", rule, "reason", reason)
			return store.Latch{}, false, nil
		}
		l.Kind, l.Key = store.LatchUser, req.SASLUser
	case !req.ClientIP.IsValid():
		return store.Latch{}, false, nil
	case c.exemptClients.Contains(req.ClientIP):
		c.o.Log.Info("latch: exempt client not latched", "client", req.ClientIP, "rule", rule, "reason", reason)
		return store.Latch{}, false, nil
	default:
		l.Kind, l.Key = store.LatchClient, ClientKey(req.ClientIP)
	}
	now := c.o.Now()
	if c.o.Expiry > 0 {
		l.Expires = now.Add(c.o.Expiry)
	}
	stored, err := c.o.Store.AddLatch(ctx, l, now)
	if err != nil {
		return store.Latch{}, false, fmt.Errorf("latch: latching %s %s: %w", l.Kind, l.Key, err)
	}
	c.o.Log.Warn("latched", "kind", stored.Kind, "key", stored.Key, "id", stored.ID,
		"rule", rule, "reason", reason, "site", req.Site, "count", stored.Count)
	return stored, true, nil
}

// Unwritten turns v, a refusal whose latch could not be stored, into a
// temporary failure. A refusal that left the sender free would let its
// next message out; a tempfailed message stays with the sending MTA,
// whose retry is refused again and latches once the store writes. The
// check has decided, so this is a verdict, not an error: fail_open,
// which is for a check that cannot decide, does not turn it into an
// acceptance.
func Unwritten(v policy.Verdict, err error) policy.Verdict {
	v.Action, v.Code, v.Status = policy.Tempfail, 451, "4.7.1"
	v.Latched = ""
	v.Reason += "; latching failed, so tempfailed for a retry to latch: " + err.Error()
	return v
}
