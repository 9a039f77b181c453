// Package greylist implements greylisting (RFC 6647) with postgrey's
// behaviour and defaults: a new (client netblock, sender, recipient)
// triplet is refused with a temporary failure; a retry after the delay and
// within the retry window passes, and the triplet then passes freely for
// a lifetime renewed by every use. Clients that passed often enough are
// auto-whitelisted, and postgrey's whitelist files are accepted.
package greylist

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"mailwarden/internal/defaults"
	"mailwarden/internal/logx"
	"mailwarden/internal/policy"
	"mailwarden/internal/reply"
	"mailwarden/internal/store"
)

// Defaults used for zero Options fields; they are postgrey's (PRODUCT.md §3).
const (
	DefaultDelay          = 5 * time.Minute
	DefaultRetryWindow    = 48 * time.Hour
	DefaultPassedLifetime = 35 * 24 * time.Hour
	DefaultIPv4Prefix     = 24
	DefaultIPv6Prefix     = 64
	DefaultReplyText      = "Greylisted, please try again in {delay}"
)

// unknownClient is the client key for a request without a usable client
// address. Such requests are still greylisted, but never auto-whitelisted:
// every address-less client would share the one record.
const unknownClient = "unknown"

// Options configures a Check. Zero durations, prefix lengths, ReplyText,
// Hostname, Now and Log take the defaults above (os.Hostname, time.Now,
// a discarding logger). AutoWhitelistAfter 0 turns auto-whitelisting off.
type Options struct {
	Store store.Greylist
	// Delay is how long a new triplet is refused.
	Delay time.Duration
	// RetryWindow is how long after the first attempt a retry still
	// passes; a later retry starts over.
	RetryWindow time.Duration
	// PassedLifetime is how long a passed triplet (and a client's pass
	// count) is remembered after its last use.
	PassedLifetime time.Duration
	// IPv4Prefix and IPv6Prefix aggregate clients into netblocks, because
	// big senders retry from another address of the same pool.
	IPv4Prefix, IPv6Prefix int
	// AutoWhitelistAfter skips greylisting for a client netblock with at
	// least this many passed deliveries.
	AutoWhitelistAfter int
	SkipAuthenticated  bool
	// SkipInternal skips clients the pipeline classified as internal
	// (req.Internal, from the sites registry).
	SkipInternal bool
	// WhitelistClients and WhitelistRecipients are inline entries in
	// postgrey's formats; the *Files options name postgrey whitelist files.
	WhitelistClients, WhitelistRecipients         []string
	WhitelistClientFiles, WhitelistRecipientFiles []string
	// SkipBadFileLines logs a whitelist file line that does not parse
	// (a Perl-only regexp in a file shared with postgrey) as a warning
	// and skips it, as postgrey does, instead of failing. Inline entries
	// in the configuration are always errors; `config check` leaves this
	// off so that it names every such line.
	SkipBadFileLines bool
	// ReplyText follows "451 4.7.1"; "{delay}" is replaced by the
	// remaining wait in words, e.g. "4 minutes 52 seconds".
	ReplyText string
	// AddHeader adds X-Greylist to a message that passed after a delay.
	AddHeader bool
	// Hostname names this host in the X-Greylist header.
	Hostname string
	Now      func() time.Time
	Log      *slog.Logger
}

// Check is the greylisting check. It is safe for concurrent use.
type Check struct {
	o       Options
	clients *clientList
	rcpts   *recipientList
	passes  passCache

	// headerMu guards recent: the queue IDs that last got an X-Greylist
	// header, so a message with several delayed recipients gets one header
	// (postgrey keeps the last instances for the same reason).
	headerMu sync.Mutex
	recent   [20]string
	next     int
}

// withDefaults fills zero fields and checks the rest. It reports every
// problem at once.
func withDefaults(o Options) (Options, error) {
	var errs []error
	def := func(d *time.Duration, v time.Duration, name string) {
		switch {
		case *d == 0:
			*d = v
		case *d < 0:
			errs = append(errs, fmt.Errorf("greylist: %s %v is negative", name, *d))
		}
	}
	def(&o.Delay, DefaultDelay, "delay")
	def(&o.RetryWindow, DefaultRetryWindow, "retry window")
	def(&o.PassedLifetime, DefaultPassedLifetime, "passed lifetime")
	if o.Delay > 0 && o.RetryWindow > 0 && o.Delay >= o.RetryWindow {
		errs = append(errs, fmt.Errorf("greylist: delay %v must be shorter than the retry window %v, or no retry could ever pass", o.Delay, o.RetryWindow))
	}
	bits := func(b *int, v, maxBits int, name string) {
		switch {
		case *b == 0:
			*b = v
		case *b < 0 || *b > maxBits:
			errs = append(errs, fmt.Errorf("greylist: %s %d is not between 1 and %d", name, *b, maxBits))
		}
	}
	bits(&o.IPv4Prefix, DefaultIPv4Prefix, 32, "IPv4 prefix length")
	bits(&o.IPv6Prefix, DefaultIPv6Prefix, 128, "IPv6 prefix length")
	if o.AutoWhitelistAfter < 0 {
		errs = append(errs, fmt.Errorf("greylist: auto-whitelist count %d is negative", o.AutoWhitelistAfter))
	}
	if o.ReplyText == "" {
		o.ReplyText = DefaultReplyText
	}
	if err := reply.Check(o.ReplyText); err != nil {
		errs = append(errs, fmt.Errorf("greylist: %w", err))
	}
	if o.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		o.Hostname = h
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.Log = logx.Or(o.Log)
	return o, errors.Join(errs...)
}

// Validate reports every problem New would report for o except a missing
// Store: bad settings, unreadable whitelist files and invalid whitelist
// entries. It serves `mailwarden config check`.
func Validate(o Options) error {
	_, err := withDefaults(o)
	_, _, werr := loadWhitelists(o)
	return errors.Join(err, werr)
}

// New returns a Check, having read every whitelist file. The error lists
// every bad setting, unreadable file and invalid entry (FILE:LINE: ...).
func New(o Options) (*Check, error) {
	o, err := withDefaults(o)
	if o.Store == nil {
		err = errors.Join(err, errors.New("greylist: no store"))
	}
	clients, rcpts, werr := loadWhitelists(o)
	if err := errors.Join(err, werr); err != nil {
		return nil, err
	}
	o.Log.Info("greylist whitelists loaded",
		"clients", clients.len(), "recipients", rcpts.len(),
		"client_files", len(o.WhitelistClientFiles), "recipient_files", len(o.WhitelistRecipientFiles))
	c := &Check{o: o, clients: clients, rcpts: rcpts}
	if m, ok := o.Store.(passesInMemory); ok && m.PassesInMemory() {
		c.passes.skipNone = true
	}
	return c, nil
}

// passesInMemory is a store that may read pass counts from memory (the
// SQLite store's copy of its tables): the pass cache then keeps only
// clients with passes, for the hourly recount, and not every new one.
type passesInMemory interface {
	PassesInMemory() bool
}

// Name is the check's name in verdicts, events, the mail log and the
// fail_open setting.
const Name = "greylist"

// Name returns Name.
func (c *Check) Name() string { return Name }

// Netblock returns the client key for ip: its network at v4 (IPv4) or v6
// (IPv6) bits as prefix text, e.g. "192.0.2.0/24". IPv4-mapped IPv6
// addresses count as IPv4. An invalid or unspecified address gives
// "unknown". Lengths outside the address size are clamped to it.
func Netblock(ip netip.Addr, v4, v6 int) string {
	if !ip.IsValid() || ip.IsUnspecified() {
		return unknownClient
	}
	ip = ip.Unmap().WithZone("")
	bits := v6
	if ip.Is4() {
		bits = v4
	}
	bits = min(max(bits, 0), ip.BitLen())
	p, err := ip.Prefix(bits)
	if err != nil {
		return unknownClient
	}
	return p.String()
}

// Check greylists at the RCPT stage, where the triplet is complete
// (RFC 6647 §2.2); other stages continue.
func (c *Check) Check(ctx context.Context, req *policy.Request) (policy.Verdict, error) {
	if req.Stage != policy.StageRcpt {
		return policy.Verdict{}, nil
	}
	if why, ok := c.skip(req); ok {
		return policy.Verdict{Action: policy.Continue, Reason: "greylist: skipped: " + why}, nil
	}
	now := c.o.Now()
	client := Netblock(req.ClientIP, c.o.IPv4Prefix, c.o.IPv6Prefix)
	if c.o.AutoWhitelistAfter > 0 && client != unknownClient {
		n, err := c.clientPasses(ctx, client, now)
		if err != nil {
			return policy.Verdict{}, err
		}
		if n >= c.o.AutoWhitelistAfter {
			// Count this delivery too so that a client that keeps sending
			// stays whitelisted past PassedLifetime, as in postgrey.
			if err := c.countPass(ctx, client, now); err != nil {
				return policy.Verdict{}, err
			}
			return policy.Verdict{Action: policy.Continue,
				Reason: fmt.Sprintf("greylist: skipped: auto-whitelisted client %s (%d passes)", client, n)}, nil
		}
	}
	return c.triplet(ctx, req, client, now)
}

// skip reports whether req is exempt from greylisting, and why.
func (c *Check) skip(req *policy.Request) (string, bool) {
	if c.o.SkipAuthenticated && req.Authenticated() {
		return "authenticated", true
	}
	if c.o.SkipInternal && req.Internal {
		return "internal client", true
	}
	if text, ok := c.rcpts.match(req.Recipient); ok {
		return "whitelisted recipient " + text, true
	}
	if text, ok := c.clients.match(req.ClientIP, req.ClientName); ok {
		return "whitelisted client " + text, true
	}
	return "", false
}

// triplet runs greylisting proper for one (client, sender, recipient).
func (c *Check) triplet(ctx context.Context, req *policy.Request, client string, now time.Time) (policy.Verdict, error) {
	st := c.o.Store
	sender, rcpt := strings.ToLower(req.Sender), strings.ToLower(req.Recipient)
	t, err := st.GetTriplet(ctx, client, sender, rcpt, now)
	switch {
	case errors.Is(err, store.ErrNotFound):
		t = store.Triplet{Client: client, Sender: sender, Recipient: rcpt}
		return c.start(ctx, t, now, "greylist: new triplet")
	case err != nil:
		return policy.Verdict{}, fmt.Errorf("greylist: looking up triplet: %w", err)
	case t.Passed():
		return c.passAgain(ctx, t, now)
	case now.After(t.FirstSeen.Add(c.o.RetryWindow)):
		// RFC 6647 §2.2: a retry outside the window is not a retry.
		return c.start(ctx, t, now, "greylist: new triplet (the retry came after the retry window)")
	case now.Before(t.FirstSeen.Add(c.o.Delay)):
		t.LastSeen = now
		t.Attempts++
		if err := st.PutTriplet(ctx, t); err != nil {
			return policy.Verdict{}, fmt.Errorf("greylist: storing triplet: %w", err)
		}
		wait := t.FirstSeen.Add(c.o.Delay).Sub(now)
		return c.tempfail(wait, fmt.Sprintf("greylist: early retry, %s left", formatWait(wait))), nil
	}
	return c.passFirst(ctx, req, t, now)
}

// start records t as first seen now and refuses it.
func (c *Check) start(ctx context.Context, t store.Triplet, now time.Time, reason string) (policy.Verdict, error) {
	t.FirstSeen, t.LastSeen, t.PassedAt = now, now, time.Time{}
	t.Attempts = 1
	t.Expires = now.Add(c.o.RetryWindow)
	if err := c.o.Store.PutTriplet(ctx, t); err != nil {
		return policy.Verdict{}, fmt.Errorf("greylist: storing new triplet: %w", err)
	}
	return c.tempfail(c.o.Delay, reason), nil
}

func (c *Check) tempfail(wait time.Duration, reason string) policy.Verdict {
	return policy.Verdict{
		Action: policy.Tempfail,
		Code:   451,
		Status: "4.7.1",
		Text:   strings.ReplaceAll(c.o.ReplyText, "{delay}", formatWait(wait)),
		Reason: reason,
		Check:  c.Name(),
		Event:  store.EventGreylist,
	}
}

// OwnedHeaders is X-Greylist when the check adds it: a sender's own copy
// would claim a delay that never happened here.
func (c *Check) OwnedHeaders() []string {
	if c.o.AddHeader {
		return []string{"X-Greylist"}
	}
	return nil
}

// passFirst lets a pending triplet through: its retry came after the delay.
func (c *Check) passFirst(ctx context.Context, req *policy.Request, t store.Triplet, now time.Time) (policy.Verdict, error) {
	delayed := int64(now.Sub(t.FirstSeen) / time.Second)
	t.PassedAt, t.LastSeen = now, now
	t.Attempts++
	t.Expires = now.Add(c.o.PassedLifetime)
	if err := c.o.Store.PutTriplet(ctx, t); err != nil {
		return policy.Verdict{}, fmt.Errorf("greylist: storing passed triplet: %w", err)
	}
	if err := c.countPass(ctx, t.Client, now); err != nil {
		return policy.Verdict{}, err
	}
	v := policy.Verdict{Action: policy.Continue, Reason: fmt.Sprintf("greylist: passed after %ds", delayed)}
	if c.o.AddHeader && c.firstHeader(req.QueueID) {
		// Postgrey's header, so existing filters and habits keep working.
		v.Headers = []policy.Header{{
			Name: "X-Greylist",
			Value: fmt.Sprintf("delayed %d seconds by mailwarden at %s; %s",
				delayed, c.o.Hostname, now.Format(time.RFC1123Z)),
		}}
	}
	return v, nil
}

// passAgain lets an already passed triplet through and renews it. Routine
// passes carry no reason, so they are not logged as decisions.
func (c *Check) passAgain(ctx context.Context, t store.Triplet, now time.Time) (policy.Verdict, error) {
	t.LastSeen = now
	t.Attempts++
	t.Expires = now.Add(c.o.PassedLifetime)
	if err := c.o.Store.PutTriplet(ctx, t); err != nil {
		return policy.Verdict{}, fmt.Errorf("greylist: renewing passed triplet: %w", err)
	}
	if err := c.countPass(ctx, t.Client, now); err != nil {
		return policy.Verdict{}, err
	}
	return policy.Verdict{Action: policy.Continue}, nil
}

// clientPasses returns client's pass count, from the cache when fresh.
func (c *Check) clientPasses(ctx context.Context, client string, now time.Time) (int, error) {
	if e, ok := c.passes.get(client, now); ok {
		return e.n, nil
	}
	n, err := c.o.Store.ClientPasses(ctx, client, now)
	if err != nil {
		return 0, fmt.Errorf("greylist: looking up passes of client %s: %w", client, err)
	}
	c.passes.set(client, n, now, false)
	return n, nil
}

// countPass adds one pass for client toward auto-whitelisting. A client
// already whitelisted is counted at most once per recountAfter.
func (c *Check) countPass(ctx context.Context, client string, now time.Time) error {
	if client == unknownClient {
		return nil
	}
	if e, ok := c.passes.get(client, now); ok && c.o.AutoWhitelistAfter > 0 &&
		e.n >= c.o.AutoWhitelistAfter && e.counted != 0 && now.UnixNano()-e.counted < int64(recountAfter) {
		return nil
	}
	n, err := c.o.Store.AddClientPass(ctx, client, now, now.Add(c.o.PassedLifetime))
	if err != nil {
		return fmt.Errorf("greylist: counting pass of client %s: %w", client, err)
	}
	c.passes.set(client, n, now, true)
	if c.o.AutoWhitelistAfter > 0 && n == c.o.AutoWhitelistAfter {
		c.o.Log.Info("greylist: client auto-whitelisted", "client", client, "passes", n)
	}
	return nil
}

// firstHeader reports whether the message with this queue ID has not had
// an X-Greylist header yet, and remembers it. Without a queue ID every
// passing recipient gets one.
func (c *Check) firstHeader(queueID string) bool {
	if queueID == "" {
		return true
	}
	c.headerMu.Lock()
	defer c.headerMu.Unlock()
	for _, id := range c.recent {
		if id == queueID {
			return false
		}
	}
	c.recent[c.next] = queueID
	c.next = (c.next + 1) % len(c.recent)
	return true
}

// Allow marks the pending triplet (client's netblock, sender, recipient)
// as passed now, for `mailwarden greylist allow`. See the function Allow.
func (c *Check) Allow(ctx context.Context, client netip.Addr, sender, recipient string) error {
	nb := Netblock(client, c.o.IPv4Prefix, c.o.IPv6Prefix)
	return Allow(ctx, c.o.Store, nb, sender, recipient, c.o.Now(), c.o.PassedLifetime)
}

// Allow marks the triplet (netblock, sender, recipient) in st as passed at
// now, to be remembered for lifetime (DefaultPassedLifetime if not
// positive); an already passed triplet has its lifetime renewed. Sender
// and recipient are lowercased as Check stores them. It returns an error
// wrapping store.ErrNotFound if there is no such triplet.
func Allow(ctx context.Context, st store.Greylist, netblock, sender, recipient string, now time.Time, lifetime time.Duration) error {
	lifetime = defaults.Positive(lifetime, DefaultPassedLifetime)
	sender, recipient = strings.ToLower(sender), strings.ToLower(recipient)
	t, err := st.GetTriplet(ctx, netblock, sender, recipient, now)
	if err != nil {
		return fmt.Errorf("greylist: allowing triplet %s <%s> <%s>: %w", netblock, sender, recipient, err)
	}
	if !t.Passed() {
		t.PassedAt = now
	}
	t.Expires = now.Add(lifetime)
	if err := st.PutTriplet(ctx, t); err != nil {
		return fmt.Errorf("greylist: allowing triplet %s <%s> <%s>: %w", netblock, sender, recipient, err)
	}
	return nil
}

// formatWait renders a wait for an SMTP reply that a sending site's
// administrator reads: rounded up to a whole second, in words, e.g.
// "5 minutes" or "4 minutes 52 seconds".
func formatWait(d time.Duration) string {
	secs := int64((d + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	h, m, s := secs/3600, secs/60%60, secs%60
	var parts []string
	unit := func(n int64, name string) {
		switch {
		case n == 1:
			parts = append(parts, "1 "+name)
		case n > 1:
			parts = append(parts, fmt.Sprintf("%d %ss", n, name))
		}
	}
	unit(h, "hour")
	unit(m, "minute")
	unit(s, "second")
	return strings.Join(parts, " ")
}
