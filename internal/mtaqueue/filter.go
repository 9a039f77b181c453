package mtaqueue

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Filter selects messages. Every field that is set must match; the zero
// Filter selects every message. A recipient condition matches a message
// when one of its recipients matches.
type Filter struct {
	// Sender and Recipient are addresses, case-insensitive, where * stands
	// for any run of characters and ? for one ("*@spam.example",
	// "office@*"). "<>" is the null sender.
	Sender, Recipient string
	// SenderDomain and RecipientDomain are domains, case-insensitive.
	SenderDomain, RecipientDomain string
	// SenderRegexp and RecipientRegexp are Go regular expressions (RE2)
	// searched for in the address.
	SenderRegexp, RecipientRegexp string
	// OlderThan and NewerThan compare the message's age with a duration.
	OlderThan, NewerThan time.Duration
	// AuthUser is the authenticated user, exactly (case-insensitive);
	// a message with no recorded user never matches it.
	AuthUser string
	// Queue is one of QueueNames.
	Queue string
	// MinSize and MaxSize bound the message size in bytes; 0: no bound.
	MinSize, MaxSize int64
}

// Matcher is a checked Filter, ready to test messages.
type Matcher struct {
	f                           Filter
	now                         time.Time
	sender, recipient           *regexp.Regexp
	senderRegexp, recipientRegx *regexp.Regexp
}

// Compile checks f and returns its matcher, with ages counted from now.
// An invalid pattern, regular expression, queue name or bound is an
// error, so that nothing runs with a filter that does not mean what was
// typed.
func (f Filter) Compile(now time.Time) (*Matcher, error) {
	m := &Matcher{f: f, now: now}
	var err error
	if m.sender, err = globRegexp(f.Sender); err != nil {
		return nil, fmt.Errorf("sender pattern %q: %w", f.Sender, err)
	}
	if m.recipient, err = globRegexp(f.Recipient); err != nil {
		return nil, fmt.Errorf("recipient pattern %q: %w", f.Recipient, err)
	}
	if f.SenderRegexp != "" {
		if m.senderRegexp, err = regexp.Compile(f.SenderRegexp); err != nil {
			return nil, fmt.Errorf("sender regular expression: %w", err)
		}
	}
	if f.RecipientRegexp != "" {
		if m.recipientRegx, err = regexp.Compile(f.RecipientRegexp); err != nil {
			return nil, fmt.Errorf("recipient regular expression: %w", err)
		}
	}
	for _, d := range []struct{ what, v string }{{"sender domain", f.SenderDomain}, {"recipient domain", f.RecipientDomain}} {
		if strings.ContainsAny(d.v, "@ \t\r\n") {
			return nil, fmt.Errorf("%s %q: want a domain, without @ or spaces", d.what, d.v)
		}
	}
	if f.Queue != "" && !slices.Contains(QueueNames, f.Queue) {
		return nil, fmt.Errorf("queue %q: want one of %s", f.Queue, strings.Join(QueueNames, ", "))
	}
	if strings.ContainsAny(f.AuthUser, "\r\n") {
		return nil, fmt.Errorf("authenticated user %q contains a line break", f.AuthUser)
	}
	if f.OlderThan < 0 || f.NewerThan < 0 {
		return nil, fmt.Errorf("ages must not be negative")
	}
	if f.MinSize < 0 || f.MaxSize < 0 {
		return nil, fmt.Errorf("sizes must not be negative")
	}
	if f.MaxSize > 0 && f.MinSize > f.MaxSize {
		return nil, fmt.Errorf("minimum size %d is more than maximum size %d", f.MinSize, f.MaxSize)
	}
	return m, nil
}

// globRegexp turns an address pattern into an anchored, case-insensitive
// regular expression; "" gives nil (no condition).
func globRegexp(p string) (*regexp.Regexp, error) {
	if p == "" {
		return nil, nil
	}
	if strings.ContainsAny(p, "\r\n") {
		return nil, fmt.Errorf("contains a line break")
	}
	var b strings.Builder
	b.WriteString("(?i)^")
	for _, r := range p {
		switch r {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

// Domain returns the part of an address after its last @, lowercased;
// "" for the null sender or an address without a domain.
func Domain(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(addr[i+1:])
}

// senderAddr is the sender as patterns see it: "<>" for the null sender.
func senderAddr(s string) string {
	if s == "" {
		return "<>"
	}
	return s
}

// Match reports whether msg is selected.
func (m *Matcher) Match(msg Message) bool {
	f := &m.f
	if f.Queue != "" && msg.Queue != f.Queue {
		return false
	}
	if f.AuthUser != "" && !strings.EqualFold(msg.AuthUser, f.AuthUser) {
		return false
	}
	if f.MinSize > 0 && msg.Size < f.MinSize || f.MaxSize > 0 && msg.Size > f.MaxSize {
		return false
	}
	age := m.now.Sub(msg.Arrival)
	if f.OlderThan > 0 && age <= f.OlderThan || f.NewerThan > 0 && age >= f.NewerThan {
		return false
	}
	sender := senderAddr(msg.Sender)
	if m.sender != nil && !m.sender.MatchString(sender) {
		return false
	}
	if m.senderRegexp != nil && !m.senderRegexp.MatchString(sender) {
		return false
	}
	if f.SenderDomain != "" && !strings.EqualFold(Domain(msg.Sender), f.SenderDomain) {
		return false
	}
	return m.anyRecipient(msg, func(a string) bool { return m.recipient == nil || m.recipient.MatchString(a) }) &&
		m.anyRecipient(msg, func(a string) bool { return m.recipientRegx == nil || m.recipientRegx.MatchString(a) }) &&
		m.anyRecipient(msg, func(a string) bool {
			return f.RecipientDomain == "" || strings.EqualFold(Domain(a), f.RecipientDomain)
		})
}

// anyRecipient reports whether one recipient satisfies ok, or whether ok
// holds for any address at all when the message lists none.
func (m *Matcher) anyRecipient(msg Message, ok func(string) bool) bool {
	if len(msg.Recipients) == 0 {
		return ok("")
	}
	for _, r := range msg.Recipients {
		if ok(r.Address) {
			return true
		}
	}
	return false
}
