// Package ratelimit limits outbound mail per SASL user, client address
// and sender domain, counting messages and recipients with the generic
// cell rate algorithm in the store. A hijacked account or an infected
// machine sends far more than a person does (PRODUCT.md §1 Day B); a trip
// tempfails, so a person over the limit loses nothing.
package ratelimit

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
	"mailwarden/internal/policy/latch"
	"mailwarden/internal/reply"
	"mailwarden/internal/store"
)

// DefaultReplyText is used when Options.ReplyText is empty; it matches
// config.Default().
const DefaultReplyText = "Too much mail from {what}, please try again later"

// Limit is a rate: at most Messages messages and Recipients recipients
// per Per. A zero count does not limit.
type Limit struct {
	Messages   int
	Recipients int
	Per        time.Duration
}

func (l Limit) set() bool { return l.Messages > 0 || l.Recipients > 0 }

// Options configures a Check. Zero ReplyText, Now and Log take the
// defaults (DefaultReplyText, time.Now, a discarding logger).
type Options struct {
	Store store.Rates
	// User limits each SASL user, Client each client address and
	// SenderDomain each envelope-sender domain.
	User, Client, SenderDomain Limit
	// ReplyText follows "451 4.7.1"; {what} becomes what tripped, e.g.
	// "user alice", "client 10.1.2.3" or "domain example.org".
	ReplyText string
	// Latch, if set, latches the user or client that tripped a limit
	// (rate_limits.latch_on_trip).
	Latch *latch.Check
	// ExemptClients are not limited per client address: a relay or
	// webmail host sends for many people. The user and domain limits
	// still apply to their mail.
	ExemptClients []netip.Prefix
	Now           func() time.Time
	Log           *slog.Logger
}

// Check is the rate-limit check. It is safe for concurrent use.
type Check struct {
	o       Options
	exempt  *netset.Set
	refused *memo
}

// New returns a rate-limit check. The error lists every bad setting.
func New(o Options) (*Check, error) {
	var errs []error
	if o.Store == nil {
		errs = append(errs, errors.New("ratelimit: no store"))
	}
	for _, l := range []struct {
		name string
		l    Limit
	}{{"user", o.User}, {"client", o.Client}, {"sender domain", o.SenderDomain}} {
		if l.l.Messages < 0 || l.l.Recipients < 0 {
			errs = append(errs, fmt.Errorf("ratelimit: %s limit has a negative count", l.name))
		}
		if l.l.set() && l.l.Per <= 0 {
			errs = append(errs, fmt.Errorf("ratelimit: %s limit has no period", l.name))
		}
	}
	if o.ReplyText == "" {
		o.ReplyText = DefaultReplyText
	}
	if err := reply.Check(o.ReplyText); err != nil {
		errs = append(errs, fmt.Errorf("ratelimit: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.Log = logx.Or(o.Log)
	return &Check{o: o, exempt: netset.New(o.ExemptClients...), refused: newMemo()}, nil
}

// Name is the check's name in verdicts, events, the mail log and the
// fail_open setting.
const Name = "ratelimit"

// Name returns Name.
func (c *Check) Name() string { return Name }

// bucket is one rate to charge: a key in the store and its limit.
type bucket struct {
	key   string // e.g. "user:msg:alice"
	what  string // for the reply, e.g. "user alice"
	unit  string // "messages" or "recipients"
	rule  string // latch rule, e.g. "rate_user"
	limit int
	per   time.Duration
}

// Check charges outbound mail at every RCPT: one recipient, and at the
// first recipient one message, against each configured limit in a fixed
// order (user, client, sender domain; messages before recipients). The
// first refusal tempfails and nothing later is charged.
//
// A message refused at its first recipient stays refused for its other
// recipients: an MTA asks about each one even after refusing one, and
// they would otherwise pass the message limit uncharged.
func (c *Check) Check(ctx context.Context, req *policy.Request) (policy.Verdict, error) {
	if req.Stage != policy.StageRcpt || !req.Outbound() {
		return policy.Verdict{}, nil
	}
	now := c.o.Now()
	mk := messageKey(req)
	if req.RcptIndex > 0 {
		if t, ok := c.refused.get(mk, now); ok {
			return c.tempfail(t.what, "ratelimit: message already refused at its first recipient: "+t.reason), nil
		}
	} else {
		c.refused.forget(mk)
	}
	for _, b := range c.buckets(req) {
		allowed, retry, err := c.o.Store.TakeRate(ctx, b.key, 1, b.limit, b.per, now)
		if err != nil {
			return policy.Verdict{}, fmt.Errorf("ratelimit: taking from %s: %w", b.key, err)
		}
		if !allowed {
			return c.trip(ctx, req, b, retry, mk, now)
		}
	}
	return policy.Verdict{}, nil
}

// buckets lists what req is charged against, in checking order.
func (c *Check) buckets(req *policy.Request) []bucket {
	var bs []bucket
	addLimit := func(kind, name, what, rule string, l Limit) {
		if req.RcptIndex == 0 && l.Messages > 0 {
			bs = append(bs, bucket{kind + ":msg:" + name, what, "messages", rule, l.Messages, l.Per})
		}
		if l.Recipients > 0 {
			bs = append(bs, bucket{kind + ":rcpt:" + name, what, "recipients", rule, l.Recipients, l.Per})
		}
	}
	if req.Authenticated() {
		// SASL names are compared without case, or "Alice" and "alice"
		// would be two budgets for one mailbox.
		u := strings.ToLower(req.SASLUser)
		addLimit("user", u, "user "+u, "rate_user", c.o.User)
	}
	if req.ClientIP.IsValid() && !c.exempt.Contains(req.ClientIP) {
		ip := latch.ClientKey(req.ClientIP)
		addLimit("client", ip, "client "+ip, "rate_client", c.o.Client)
	}
	if d := policy.Domain(req.Sender); d != "" {
		addLimit("domain", d, "domain "+d, "rate_domain", c.o.SenderDomain)
	}
	return bs
}

// trip builds the tempfail for a refused bucket, latches if configured,
// and remembers a refused message for its later recipients. The trip is
// a rate_trip event either way; a latch it sets is a latch event beside
// it.
//
// A trip that latches still tempfails, so the message stays with the
// sender rather than bouncing, but its reply is the latch's: the sender
// is blocked until someone clears the latch, so the reply gives the ref
// and whom to call instead of inviting a retry that cannot succeed.
func (c *Check) trip(ctx context.Context, req *policy.Request, b bucket, retry time.Duration, mk string, now time.Time) (policy.Verdict, error) {
	over := fmt.Sprintf("%s over %d %s per %s", b.what, b.limit, b.unit, b.per)
	reason := fmt.Sprintf("%s; retry after %s", over, retry.Round(time.Second))
	remember := func(reason string) {
		if b.unit == "messages" {
			c.refused.put(mk, trip{at: now, what: b.what, reason: reason})
		}
	}
	remember(reason)
	v := c.tempfail(b.what, "ratelimit: "+reason)
	v.Event = store.EventRateTrip
	c.o.Log.Warn("rate limit tripped", "key", b.key, "limit", b.limit, "per", b.per,
		"client", req.ClientIP, "user", req.SASLUser, "sender", req.Sender)
	if c.o.Latch != nil {
		// The latch holds until cleared and its reason is in every later
		// reply, so the reason says what tripped, not when to retry.
		l, latched, err := c.o.Latch.Latch(ctx, req, b.rule, over, "sender "+req.Sender)
		if err != nil {
			c.o.Log.Error("ratelimit: latching failed; the trip still tempfails", "client", req.ClientIP, "user", req.SASLUser, "err", err)
			return latch.Unwritten(v, err), nil
		}
		if latched {
			reason = fmt.Sprintf("%s; latched %s %s (ref %s)", over, l.Kind, l.Key, l.ID)
			v.Reason = "ratelimit: " + reason
			v.Text = c.o.Latch.Reply(req, l)
			v.Latched = latch.Description(l)
			remember(reason)
		}
	}
	return v, nil
}

func (c *Check) tempfail(what, reason string) policy.Verdict {
	text := strings.ReplaceAll(c.o.ReplyText, "{what}", reply.Safe(what))
	return policy.Verdict{
		Action: policy.Tempfail,
		Code:   451,
		Status: "4.7.1",
		Text:   text,
		Reason: reason,
		Check:  c.Name(),
	}
}
