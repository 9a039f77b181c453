package hosts

import (
	"cmp"
	"context"
	"net/netip"
	"slices"
	"strings"
	"time"

	"mailwarden/internal/store"
)

// Entry is one line of the outbreak timeline.
type Entry struct {
	Time time.Time
	IP   string // the host; for KindInboundVirus the sending MTA
	Site string
	Kind string // a Kind constant
	// Detail says what happened, from the event's reason or the trap.
	Detail string
	// User is who last read mail from the host, the likely owner.
	User string
	// Recipients are the internal recipients of an inbound virus.
	Recipients []string
}

// Timeline returns, oldest first, each host's earliest evidence of every
// kind (trap hit, forgery, virus sent, rate trip, open port) at or after
// since, together with every inbound virus to internal recipients: the
// first infection and how it spread read from the top. A latch, and mail
// refused while latched, are consequences of other evidence, so they are
// left out. limit > 0 keeps the earliest limit entries.
func (r *Registry) Timeline(ctx context.Context, since time.Time, limit int) ([]Entry, error) {
	g, err := r.gather(ctx, since, "")
	if err != nil {
		return nil, err
	}
	var out []Entry
	for client, f := range g.hosts {
		site, user := r.describe(ctx, client, f)
		for kind, m := range f.kinds {
			if kind == KindLatch || kind == KindRefusedLatched || m.first.Before(since) {
				continue
			}
			out = append(out, Entry{Time: m.first, IP: client, Site: site, Kind: kind, Detail: m.detail, User: user})
		}
	}
	for _, ev := range g.inbound {
		site := ev.Site
		if ip, err := netip.ParseAddr(ev.Client); err == nil {
			if s, _ := r.o.Sites().Lookup(ip); s != nil {
				site = s.Name
			}
		}
		rcpts := inboundRecipients(ev)
		out = append(out, Entry{Time: ev.Time, IP: ev.Client, Site: site, Kind: KindInboundVirus,
			Detail: inboundDetail(ev, rcpts), Recipients: rcpts})
	}
	slices.SortFunc(out, func(a, b Entry) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.IP, b.IP), cmp.Compare(a.Kind, b.Kind))
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// describe returns a host's site and last mail user for the timeline. A
// failed login look-up only loses the user, so it is logged.
func (r *Registry) describe(ctx context.Context, client string, f *facts) (site, user string) {
	site = f.site
	if ip, err := netip.ParseAddr(client); err == nil {
		if s, in := r.o.Sites().Lookup(ip); s != nil {
			site = s.Name
		} else if in {
			site = ""
		}
	}
	if l, err := r.o.Store.LastLogin(ctx, client); err == nil {
		user = l.User
	}
	return site, user
}

// inboundDetail names the virus and its internal recipients.
func inboundDetail(ev store.Event, rcpts []string) string {
	name := "virus"
	if _, rest, ok := strings.Cut(ev.Reason, "virus "); ok {
		if v, _, ok := strings.Cut(rest, " found"+inboundMarker); ok {
			name = "virus " + v
		}
	}
	return name + " delivered to " + strings.Join(rcpts, ", ")
}
