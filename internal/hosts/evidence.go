package hosts

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"mailwarden/internal/store"
)

// Evidence kinds: what a host did that only an infected machine does,
// and what followed.
const (
	KindTrap     = "trap"      // connected to the worm trap
	KindForgery  = "forgery"   // sent with a sender or From it may not use
	KindVirus    = "virus"     // sent a message with a virus
	KindRateTrip = "rate_trip" // tripped a rate limit
	KindLatch    = "latch"     // was latched (counts latches, not what set them)
	// KindRefusedLatched counts messages refused because the host was
	// already latched: the consequence of earlier evidence, not another
	// offence of the kind that set the latch.
	KindRefusedLatched = "refused_while_latched"
	KindBackdoor       = "backdoor" // has a backdoor port open
	// KindInboundVirus is a timeline entry only: a virus from outside to
	// internal recipients, the usual way in.
	KindInboundVirus = "inbound_virus"
)

// Kinds lists the evidence kinds a Host counts, in display order.
var Kinds = []string{KindTrap, KindForgery, KindVirus, KindRateTrip, KindLatch, KindRefusedLatched, KindBackdoor}

// latchRules maps the rules of the checks that latch to the evidence
// kind of the violation (internal/policy/sender, ratelimit, antivirus);
// named here so that this package does not depend on the checks.
var latchRules = map[string]string{
	"sender_domain": KindForgery,
	"header_from":   KindForgery,
	"rate_user":     KindRateTrip,
	"rate_client":   KindRateTrip,
	"rate_domain":   KindRateTrip,
	"virus":         KindVirus,
}

// The antivirus check words a virus event's reason "... found in inbound
// message ...; internal recipients a, b" (internal/policy/antivirus).
const (
	inboundMarker   = " in inbound message "
	outboundMarker  = " in outbound message "
	internalRcptsAt = "; internal recipients "
)

// mark is one kind of evidence from one host.
type mark struct {
	count       int
	first, last time.Time
	detail      string // what happened first
}

// facts is the evidence gathered for one client address.
type facts struct {
	client string
	site   string // from the events, when the sites registry is not set
	kinds  map[string]*mark
	// fromLatches counts by kind what the host's latches recorded: the
	// violations that set them and the messages they refused. Latches
	// outlive the events of the same facts.
	fromLatches map[string]int
}

func (f *facts) add(kind string, at time.Time, detail string, n int) {
	if at.IsZero() {
		return
	}
	m := f.kinds[kind]
	if m == nil {
		m = &mark{}
		f.kinds[kind] = m
	}
	m.count += n
	if m.first.IsZero() || at.Before(m.first) {
		m.first, m.detail = at, detail
	}
	if at.After(m.last) {
		m.last = at
	}
}

// span returns the earliest and latest evidence of any kind.
func (f *facts) span() (first, last time.Time) {
	for _, m := range f.kinds {
		if first.IsZero() || m.first.Before(first) {
			first = m.first
		}
		if m.last.After(last) {
			last = m.last
		}
	}
	return first, last
}

// gathered is the evidence of every host, plus the inbound viruses the
// timeline shows.
type gathered struct {
	hosts   map[string]*facts
	inbound []store.Event
}

func (g *gathered) host(client string) *facts {
	f := g.hosts[client]
	if f == nil {
		f = &facts{client: client, kinds: make(map[string]*mark), fromLatches: make(map[string]int)}
		g.hosts[client] = f
	}
	return f
}

// evidenceEvents are the event kinds that may be evidence against their
// client.
var evidenceEvents = []string{store.EventLatch, store.EventReject, store.EventVirus, store.EventRateTrip}

// gather reads the evidence at or after since (zero: all retained) of
// client, or of every client when client is "". Events past retention
// are gone, so latches, trap totals and ports, which are not, are read
// too.
func (r *Registry) gather(ctx context.Context, since time.Time, client string) (*gathered, error) {
	g := &gathered{hosts: make(map[string]*facts)}
	for _, kind := range evidenceEvents {
		evs, err := r.o.Store.QueryEvents(ctx, store.EventFilter{Since: since, Kind: kind, Client: client})
		if err != nil {
			return nil, fmt.Errorf("hosts: reading %s events: %w", kind, err)
		}
		for _, ev := range evs {
			r.classify(g, ev)
		}
	}

	latches, err := r.o.Store.ListLatches(ctx, store.LatchFilter{Kind: store.LatchClient, Key: client}, r.o.Now())
	if err != nil {
		return nil, fmt.Errorf("hosts: reading latches: %w", err)
	}
	for _, l := range latches {
		if l.LastSeen.Before(since) {
			continue
		}
		f := g.host(l.Key)
		f.add(KindLatch, l.FirstSeen, fmt.Sprintf("latched (ref %s): %s", l.ID, l.Reason), 1)
		f.add(KindLatch, l.LastSeen, "", 0)
		if kind := latchRules[l.Rule]; kind != "" {
			f.add(kind, l.FirstSeen, l.Reason, 0)
			f.fromLatches[kind] += l.Count - l.Refused
		}
		if l.Refused > 0 {
			f.add(KindRefusedLatched, l.LastSeen, fmt.Sprintf("refused while latched (ref %s)", l.ID), 0)
			f.fromLatches[KindRefusedLatched] += l.Refused
		}
		if f.site == "" {
			f.site = l.Site
		}
	}

	traps, err := r.o.Store.TrapRecords(ctx, client)
	if err != nil {
		return nil, fmt.Errorf("hosts: reading trap records: %w", err)
	}
	for _, t := range traps {
		if t.LastSeen.Before(since) {
			continue
		}
		f := g.host(t.Client)
		f.add(KindTrap, t.FirstSeen, trapDetail(t), t.Count)
		f.add(KindTrap, t.LastSeen, "", 0)
	}

	ports, err := r.o.Store.OpenPorts(ctx, client)
	if err != nil {
		return nil, fmt.Errorf("hosts: reading open ports: %w", err)
	}
	for _, p := range ports {
		if p.LastChecked.Before(since) {
			continue
		}
		f := g.host(p.Client)
		f.add(KindBackdoor, p.FirstOpen, fmt.Sprintf("port %d open", p.Port), 1)
		f.add(KindBackdoor, p.LastChecked, "", 0)
	}

	// Events and latches record the same violations and refusals; the
	// latches keep them after the events expire, so the larger count is
	// the truer.
	for _, f := range g.hosts {
		for kind, n := range f.fromLatches {
			if m := f.kinds[kind]; m != nil && n > m.count {
				m.count = n
			}
		}
	}
	return g, nil
}

// classify files one event under its client's evidence, or under the
// inbound viruses.
func (r *Registry) classify(g *gathered, ev store.Event) {
	if ev.Client == "" {
		return
	}
	var kind string
	switch ev.Kind {
	case store.EventReject:
		if ev.Check == "sender" {
			kind = KindForgery
		}
	case store.EventLatch:
		// The latch check's latch events are messages refused because
		// the host was latched. Those of the check that latched stand
		// beside its own event (reject, rate_trip, virus), which counts
		// the offence, and the latch list counts the latch.
		if ev.Check == "latch" {
			kind = KindRefusedLatched
		}
	case store.EventRateTrip:
		kind = KindRateTrip
	case store.EventVirus:
		switch {
		case strings.Contains(ev.Reason, inboundMarker):
			if len(inboundRecipients(ev)) > 0 {
				g.inbound = append(g.inbound, ev)
			}
			return
		case strings.Contains(ev.Reason, outboundMarker), r.internal(ev.Client):
			kind = KindVirus
		}
	}
	if kind == "" {
		return
	}
	f := g.host(ev.Client)
	f.add(kind, ev.Time, ev.Reason, 1)
	if f.site == "" {
		f.site = ev.Site
	}
}

// internal reports whether the client address is one of ours.
func (r *Registry) internal(client string) bool {
	ip, err := netip.ParseAddr(client)
	if err != nil {
		return false
	}
	_, in := r.o.Sites().Lookup(ip)
	return in
}

// inboundRecipients returns the internal recipients an inbound virus
// event names in its reason.
func inboundRecipients(ev store.Event) []string {
	_, rest, ok := strings.Cut(ev.Reason, internalRcptsAt)
	if !ok {
		return nil
	}
	rest, _, _ = strings.Cut(rest, ";")
	var out []string
	for r := range strings.SplitSeq(rest, ",") {
		if r = strings.TrimSpace(r); r != "" {
			out = append(out, r)
		}
	}
	return out
}

func trapDetail(t store.TrapRecord) string {
	d := "worm trap hit"
	if t.LastHelo != "" {
		d += ", HELO " + t.LastHelo
	}
	if t.LastMailFrom != "" {
		d += ", MAIL FROM " + t.LastMailFrom
	}
	if t.LastDst != "" {
		d += ", to " + t.LastDst
	}
	return d
}
