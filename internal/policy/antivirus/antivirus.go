// Package antivirus scans every message at end of message through clamd
// and refuses, discards or quarantines infected ones (PRODUCT.md §1 Day A).
// A virus sent by an internal client or an authenticated user latches
// that sender; a virus arriving for an internal recipient is recorded so
// that the first infected message can be found later.
package antivirus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"mailwarden/internal/clamd"
	"mailwarden/internal/logx"
	"mailwarden/internal/policy"
	"mailwarden/internal/policy/latch"
	"mailwarden/internal/reply"
	"mailwarden/internal/sites"
	"mailwarden/internal/store"
)

// Scanner scans a message; the clamd client implements it. open returns a
// fresh reader over the whole message each time it is called, so that a
// scan can be retried on another server; size is the message's length.
type Scanner interface {
	ScanOpen(ctx context.Context, open func() (io.ReadCloser, error), size int64) (clamd.Result, error)
}

// Actions, as named in the configuration.
const (
	ActionAccept     = "accept"
	ActionTempfail   = "tempfail"
	ActionReject     = "reject"
	ActionDiscard    = "discard"
	ActionQuarantine = "quarantine"
)

// Header fields added when Options.AddHeaders is set.
const (
	HeaderScanned = "X-Virus-Scanned"
	HeaderStatus  = "X-Virus-Status"
)

// RuleVirus is the latch rule for a sender of a virus.
const RuleVirus = "virus"

// Options configures a Check.
type Options struct {
	Scanner Scanner
	// Latch, if set, latches an internal client or authenticated user
	// that sent a virus.
	Latch *latch.Check
	// InternalDomains are the organisation's own mail domains,
	// subdomains included: a virus arriving for one of them is named in
	// the event so patient zero can be found.
	InternalDomains []string
	// MaxScanSize is the largest message sent to clamd; larger ones get
	// OversizeAction: "accept", "tempfail" or "reject".
	MaxScanSize    int64
	OversizeAction string
	// Inbound and Outbound are what is done with an infected message:
	// "reject", "discard" or "quarantine".
	Inbound, Outbound string
	// OnError is what a failed scan does: "tempfail" or "accept".
	OnError string
	// AddHeaders adds X-Virus-Scanned and X-Virus-Status to messages
	// that are passed on.
	AddHeaders bool
	// Hostname names this host in X-Virus-Scanned.
	Hostname string
	// Cache, if set, remembers clamd's verdicts per decoded MIME part
	// (cached.go). CleanMinSize is the smallest decoded part whose clean
	// verdict it keeps.
	Cache        *Cache
	CleanMinSize int64
	// SignatureVersion reports clamd's signature database version, 0
	// when unknown; the cache is dropped when it changes.
	SignatureVersion func() int
	// CacheCounted, if set, is told what each scanned message found in
	// the cache: CacheHitInfected, CacheHitClean or CacheMiss.
	CacheCounted func(outcome string)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	Log *slog.Logger
}

// Check is the antivirus check. It is safe for concurrent use.
type Check struct {
	o       Options
	domains []string
	scanned string // the X-Virus-Scanned value
}

// New returns an antivirus check. The error lists every bad setting.
func New(o Options) (*Check, error) {
	var errs []error
	if o.Scanner == nil {
		errs = append(errs, errors.New("antivirus: no scanner"))
	}
	if o.MaxScanSize <= 0 {
		errs = append(errs, fmt.Errorf("antivirus: max scan size %d must be positive", o.MaxScanSize))
	}
	for _, a := range []struct {
		what, val string
		allowed   []string
	}{
		{"oversize action", o.OversizeAction, []string{ActionAccept, ActionTempfail, ActionReject}},
		{"inbound action", o.Inbound, []string{ActionReject, ActionDiscard, ActionQuarantine}},
		{"outbound action", o.Outbound, []string{ActionReject, ActionDiscard, ActionQuarantine}},
		{"on-error action", o.OnError, []string{ActionTempfail, ActionAccept}},
	} {
		if !slices.Contains(a.allowed, a.val) {
			errs = append(errs, fmt.Errorf("antivirus: %s %q is not one of %s", a.what, a.val, strings.Join(a.allowed, ", ")))
		}
	}
	var domains []string
	for _, d := range o.InternalDomains {
		n := sites.NormalizeDomain(d)
		if n == "" {
			errs = append(errs, errors.New("antivirus: empty internal domain"))
			continue
		}
		domains = append(domains, n)
	}
	if o.CleanMinSize < 0 {
		errs = append(errs, fmt.Errorf("antivirus: cache clean minimum size %d is negative", o.CleanMinSize))
	}
	if strings.ContainsFunc(o.Hostname, func(r rune) bool { return r <= ' ' || r > '~' }) {
		// It goes into a header field value, which must not break.
		errs = append(errs, fmt.Errorf("antivirus: hostname %q contains spaces or control characters", o.Hostname))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.Log = logx.Or(o.Log)
	scanned := "clamav via mailwarden"
	if o.Hostname != "" {
		scanned += " at " + o.Hostname
	}
	return &Check{o: o, domains: domains, scanned: scanned}, nil
}

// Name is the check's name in verdicts, events, the mail log and the
// fail_open setting.
const Name = "antivirus"

// Name returns Name.
func (c *Check) Name() string { return Name }

// OwnedHeaders are the X-Virus fields when the check adds them: a
// sender's "X-Virus-Status: Clean" must never reach a mailbox.
func (c *Check) OwnedHeaders() []string {
	if c.o.AddHeaders {
		return []string{HeaderScanned, HeaderStatus}
	}
	return nil
}

// Check scans the message at end of message. A virus the MTA's own scan
// found and reported (req.Virus, Exim behind the policy server) is
// treated exactly as one clamd found here: the same action, event and
// latch. Other stages, and requests without a message or a report (the
// policy server, a milter with no spool), pass.
func (c *Check) Check(ctx context.Context, req *policy.Request) (policy.Verdict, error) {
	if req.Stage != policy.StageEOM {
		return policy.Verdict{}, nil
	}
	if req.Virus != "" {
		return c.infected(ctx, req, req.Virus, "the MTA's own scan (reported to the policy server)"), nil
	}
	if req.Message == nil {
		return policy.Verdict{}, nil
	}
	size := req.Message.Size()
	if size > c.o.MaxScanSize {
		return c.oversize(fmt.Sprintf("message of %d bytes is over the scan limit of %d bytes", size, c.o.MaxScanSize)), nil
	}
	start := c.o.Now()
	r := c.scan(ctx, req, size)
	res, err := r.res, r.err
	took := c.o.Now().Sub(start)
	switch {
	case r.hit == CacheHitInfected:
		return c.infected(ctx, req, res.Virus, "the scan cache (clamd found the same MIME part infected before)"), nil
	case r.hit == CacheHitClean:
		c.o.Log.Debug("antivirus: clean, every MIME part found clean before (scan cache)", "size", size, "took", took, "queue_id", req.QueueID)
		return policy.Verdict{Headers: c.headers("Clean", true)}, nil
	case errors.Is(err, clamd.ErrTooLarge):
		// clamd's StreamMaxLength is below max_scan_size.
		return c.oversize(fmt.Sprintf("clamd refused the message of %d bytes as too large (is StreamMaxLength below max_scan_size?): %v", size, err)), nil
	case err != nil:
		return c.scanError(ctx, req, err), nil
	case res.Infected:
		return c.infected(ctx, req, res.Virus, "clamd "+res.Server), nil
	}
	c.o.Log.Debug("antivirus: clean", "server", res.Server, "size", size, "took", took, "queue_id", req.QueueID)
	return policy.Verdict{Headers: c.headers("Clean", true)}, nil
}

// scan scans the message, through the cache when there is one, and
// says whether the cache decided without clamd.
func (c *Check) scan(ctx context.Context, req *policy.Request, size int64) cached {
	if c.o.Cache == nil {
		res, err := c.o.Scanner.ScanOpen(ctx, req.Message.Open, size)
		return cached{res: res, err: err}
	}
	r := c.scanCached(ctx, req, size)
	if c.o.CacheCounted != nil {
		c.o.CacheCounted(r.hit)
	}
	return r
}

// headers returns the header fields for a message passed on with the
// given status, or none when they are off.
func (c *Check) headers(status string, scanned bool) []policy.Header {
	if !c.o.AddHeaders {
		return nil
	}
	var h []policy.Header
	if scanned {
		h = append(h, policy.Header{Name: HeaderScanned, Value: c.scanned})
	}
	return append(h, policy.Header{Name: HeaderStatus, Value: status})
}

// oversize applies OversizeAction to a message too large to scan.
func (c *Check) oversize(why string) policy.Verdict {
	reason := "antivirus: " + why
	switch c.o.OversizeAction {
	case ActionReject:
		return policy.Verdict{Action: policy.Reject, Code: 552, Status: "5.3.4",
			Text: "Message too large to scan", Reason: reason, Check: c.Name()}
	case ActionTempfail:
		return policy.Verdict{Action: policy.Tempfail, Code: 451, Status: "4.7.1",
			Text: "Message too large to scan, please try again later", Reason: reason, Check: c.Name()}
	}
	return policy.Verdict{Reason: reason + "; accepted unscanned", Check: c.Name(),
		Headers: c.headers("Unscanned (too large)", false)}
}

// scanError applies OnError to a scan that did not finish: clamd down,
// a timeout, an answer that is not a result.
//
// A scan that failed at once because clamd is known not to answer
// (clamd.ErrDown) is logged at debug level only: the clamd client logs
// the outage once and counts the scans it costs, and the mail log has
// each message.
func (c *Check) scanError(ctx context.Context, req *policy.Request, err error) policy.Verdict {
	if c.o.OnError == ActionAccept {
		level := slog.LevelWarn
		if errors.Is(err, clamd.ErrDown) {
			level = slog.LevelDebug
		}
		c.o.Log.Log(ctx, level, "antivirus: scan failed, accepting unscanned (on_error: accept)",
			"err", err, "client", req.ClientIP, "queue_id", req.QueueID)
		return policy.Verdict{Reason: fmt.Sprintf("antivirus: scan failed, accepted unscanned: %v", err),
			Check: c.Name(), Headers: c.headers("Unscanned (scan error)", false)}
	}
	return policy.Verdict{Action: policy.Tempfail, Code: 451, Status: "4.7.1",
		Text:   "Virus scan temporarily unavailable, please try again later",
		Reason: fmt.Sprintf("antivirus: scan failed: %v", err), Check: c.Name()}
}

// infected applies the inbound or outbound action to a message infected
// with virus, found by the scanner named in by, and records who sent or
// was to receive it.
func (c *Check) infected(ctx context.Context, req *policy.Request, virus, by string) policy.Verdict {
	name := safe(virus)
	if name == "" {
		name = "unknown"
	}
	v := policy.Verdict{Check: c.Name(), Event: store.EventVirus}
	direction, action := "inbound", c.o.Inbound
	if req.Outbound() {
		direction, action = "outbound", c.o.Outbound
	}
	reason := fmt.Sprintf("antivirus: virus %s found in %s message by %s", name, direction, by)
	switch action {
	case ActionDiscard:
		v.Action = policy.Discard
	case ActionQuarantine:
		v.Action, v.Text = policy.Quarantine, "virus "+name
	default:
		v.Action, v.Code, v.Status, v.Text = policy.Reject, 554, "5.7.1", "Virus found: "+name
	}
	reason += "; " + action

	if direction == "inbound" {
		if rcpts := c.internalRecipients(req.Recipients); len(rcpts) > 0 {
			reason += "; internal recipients " + strings.Join(rcpts, ", ")
		}
	} else if c.o.Latch != nil {
		l, latched, err := c.o.Latch.Latch(ctx, req, RuleVirus, "sent a message infected with "+name, name)
		switch {
		case err != nil:
			// The virus is never let through; but refused with the
			// sender left free, its next message would go out. It is
			// tempfailed instead, and the retry is scanned, refused and
			// latched once the store writes.
			c.o.Log.Error("antivirus: latching the sender of a virus failed; tempfailing the message", "err", err, "client", req.ClientIP, "user", req.SASLUser, "virus", name)
			v.Reason = reason
			v = latch.Unwritten(v, err)
			reason = v.Reason
		case latched:
			// Still a virus event, so `events --kind virus` finds every
			// infected message, outbound ones first among them; the
			// latch is a latch event of its own and in the latch list.
			v.Latched = latch.Description(l)
			reason += fmt.Sprintf("; latched %s %s (ref %s)", l.Kind, l.Key, l.ID)
		}
	}
	v.Reason = reason
	c.o.Log.Warn("antivirus: virus found", "virus", name, "direction", direction, "action", action,
		"by", by, "client", req.ClientIP, "user", req.SASLUser, "sender", req.Sender, "queue_id", req.QueueID)
	return v
}

// internalRecipients returns the recipients in the organisation's own
// domains.
func (c *Check) internalRecipients(rcpts []string) []string {
	var out []string
	for _, r := range rcpts {
		d := policy.Domain(r)
		for _, own := range c.domains {
			if sites.InDomain(d, own) {
				out = append(out, r)
				break
			}
		}
	}
	return out
}

// safe makes a signature name fit one SMTP reply line (RFC 5321 §4.2:
// printable US-ASCII) and a quarantine reason.
func safe(s string) string {
	s = reply.Safe(strings.TrimSpace(s))
	if len(s) > policy.MaxVirusName {
		s = s[:policy.MaxVirusName]
	}
	return s
}
