// Package hosts is the registry of suspect hosts: for every internal
// client address that did something only an infected machine does, it
// combines the evidence the store holds (events, latches, worm trap hits,
// open backdoor ports), who last read mail from it, and what
// administrators noted and cleaned. Its timeline orders the first
// evidence of every host, so an outbreak's patient zero reads off the top.
package hosts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"mailwarden/internal/logx"
	"mailwarden/internal/sites"
	"mailwarden/internal/store"
)

// Host statuses.
const (
	StatusSuspect     = "suspect"     // evidence, no active latch
	StatusLatched     = "latched"     // an active latch blocks its mail
	StatusDisinfected = "disinfected" // declared clean after its last evidence
)

// recentEvents is how many of a host's newest events Get returns.
const recentEvents = 50

// ErrUnknownHost is returned by Get for an address with no evidence, no
// notes and no disinfections.
var ErrUnknownHost = errors.New("hosts: no evidence for this host")

// Options configures a Registry.
type Options struct {
	Store store.Store
	// Sites returns the sites registry in force, which names the site
	// of each address; it changes on reload. Nil, or a nil registry,
	// knows none, and the site recorded with the evidence is shown.
	Sites func() *sites.Registry
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Log is the logger; nil discards.
	Log *slog.Logger
}

// Registry answers questions about suspect hosts. It keeps nothing in
// memory: every answer is read from the store, so the daemon and the CLI
// agree.
type Registry struct {
	o Options
}

// New returns a registry over o.Store.
func New(o Options) (*Registry, error) {
	if o.Store == nil {
		return nil, errors.New("hosts: a store is required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.Log = logx.Or(o.Log)
	if o.Sites == nil {
		o.Sites = func() *sites.Registry { return nil }
	}
	return &Registry{o: o}, nil
}

// Host is everything known about one client address.
type Host struct {
	IP       netip.Addr
	Site     string // "" when the address is in no site
	Internal bool   // in the internal networks (always false without Sites)
	Status   string // StatusSuspect, StatusLatched or StatusDisinfected
	// FirstSeen and LastSeen span the evidence of every kind.
	FirstSeen, LastSeen time.Time
	// Evidence counts by kind (the Kind constants); kinds never seen are
	// absent. Trap counts hits, backdoor open ports, latch latches set,
	// refused_while_latched messages refused because of a latch, the
	// others offences (from events, or from the latches they set once
	// the events have expired).
	Evidence      map[string]int
	Trap          store.TrapRecord  // zero Count when never trapped
	OpenPorts     []store.PortState // open as of their last check
	ActiveLatches []store.Latch
	LastLogin     store.MailLogin // zero User when nobody read mail from it
	Notes         []store.HostNote
	Disinfections []store.Disinfection
	// Events are its newest events of any kind, newest first; List
	// leaves them out.
	Events []store.Event
}

// Get returns what is known about ip.
func (r *Registry) Get(ctx context.Context, ip netip.Addr) (Host, error) {
	if !ip.IsValid() {
		return Host{}, errors.New("hosts: get: invalid address")
	}
	client := ip.String()
	g, err := r.gather(ctx, time.Time{}, client)
	if err != nil {
		return Host{}, err
	}
	f := g.hosts[client]
	if f == nil {
		f = &facts{client: client, kinds: map[string]*mark{}}
	}
	rec, err := r.readRecords(ctx, client)
	if err != nil {
		return Host{}, err
	}
	h := r.build(ip, f, rec)
	if len(f.kinds) == 0 && len(h.Notes) == 0 && len(h.Disinfections) == 0 {
		return Host{}, fmt.Errorf("hosts: get %s: %w", client, ErrUnknownHost)
	}
	h.Events, err = r.o.Store.QueryEvents(ctx, store.EventFilter{Client: client, Limit: recentEvents})
	if err != nil {
		return Host{}, fmt.Errorf("hosts: get %s: reading events: %w", client, err)
	}
	return h, nil
}

// records are the per-host records build completes a Host with, read
// once for a whole list rather than once per host.
type records struct {
	traps         map[string]store.TrapRecord
	ports         map[string][]store.PortState
	latches       map[string][]store.Latch // active client latches
	logins        map[string]store.MailLogin
	notes         map[string][]store.HostNote
	disinfections map[string][]store.Disinfection
}

// readRecords reads the records of client, or of every client for "".
func (r *Registry) readRecords(ctx context.Context, client string) (*records, error) {
	rec := &records{}
	fail := func(what string, err error) (*records, error) {
		return nil, fmt.Errorf("hosts: reading %s: %w", what, err)
	}
	traps, err := r.o.Store.TrapRecords(ctx, client)
	if err != nil {
		return fail("trap records", err)
	}
	rec.traps = latest(traps, func(t store.TrapRecord) string { return t.Client })
	ports, err := r.o.Store.OpenPorts(ctx, client)
	if err != nil {
		return fail("open ports", err)
	}
	rec.ports = group(ports, func(p store.PortState) string { return p.Client })
	ls, err := r.o.Store.ListLatches(ctx, store.LatchFilter{Active: true, Kind: store.LatchClient, Key: client}, r.o.Now())
	if err != nil {
		return fail("latches", err)
	}
	rec.latches = group(ls, func(l store.Latch) string { return l.Key })
	var logins []store.MailLogin
	if client == "" {
		logins, err = r.o.Store.LastLogins(ctx)
	} else {
		var l store.MailLogin
		if l, err = r.o.Store.LastLogin(ctx, client); err == nil {
			logins = []store.MailLogin{l}
		} else if errors.Is(err, store.ErrNotFound) {
			err = nil
		}
	}
	if err != nil {
		return fail("last logins", err)
	}
	rec.logins = latest(logins, func(l store.MailLogin) string { return l.Client })
	notes, err := r.o.Store.HostNotes(ctx, client)
	if err != nil {
		return fail("notes", err)
	}
	rec.notes = group(notes, func(n store.HostNote) string { return n.Client })
	ds, err := r.o.Store.Disinfections(ctx, client)
	if err != nil {
		return fail("disinfections", err)
	}
	rec.disinfections = group(ds, func(d store.Disinfection) string { return d.Client })
	return rec, nil
}

// group returns xs by key, each group in the order of xs.
func group[T any](xs []T, key func(T) string) map[string][]T {
	m := make(map[string][]T)
	for _, x := range xs {
		m[key(x)] = append(m[key(x)], x)
	}
	return m
}

// latest returns xs by key, the last of xs with a key standing for it.
func latest[T any](xs []T, key func(T) string) map[string]T {
	m := make(map[string]T)
	for _, x := range xs {
		m[key(x)] = x
	}
	return m
}

// build completes a Host from its gathered evidence with the records
// kept per host.
func (r *Registry) build(ip netip.Addr, f *facts, rec *records) Host {
	client := ip.String()
	h := Host{IP: ip, Site: f.site, Evidence: make(map[string]int)}
	if site, in := r.o.Sites().Lookup(ip); site != nil || in {
		h.Internal, h.Site = in, ""
		if site != nil {
			h.Site = site.Name
		}
	}
	h.FirstSeen, h.LastSeen = f.span()
	for kind, m := range f.kinds {
		h.Evidence[kind] = m.count
	}
	h.Trap = rec.traps[client]
	h.OpenPorts = rec.ports[client]
	h.ActiveLatches = rec.latches[client]
	h.LastLogin = rec.logins[client]
	h.Notes = rec.notes[client]
	h.Disinfections = rec.disinfections[client]
	h.Status = StatusSuspect
	switch {
	case len(h.ActiveLatches) > 0:
		h.Status = StatusLatched
	case len(h.Disinfections) > 0 && h.Disinfections[len(h.Disinfections)-1].Time.After(h.LastSeen):
		h.Status = StatusDisinfected
	}
	return h
}

// HostFilter selects hosts for List; zero fields do not filter.
type HostFilter struct {
	Site   string
	Status string
	Since  time.Time // evidence at or after
	Limit  int       // newest LastSeen first
}

// List returns every host with evidence matching f, newest LastSeen
// first. It reads the events in the retention window and groups them in
// memory, which suits a network of some thousands of machines.
func (r *Registry) List(ctx context.Context, f HostFilter) ([]Host, error) {
	g, err := r.gather(ctx, f.Since, "")
	if err != nil {
		return nil, err
	}
	rec, err := r.readRecords(ctx, "")
	if err != nil {
		return nil, err
	}
	var out []Host
	for client, fa := range g.hosts {
		ip, err := netip.ParseAddr(client)
		if err != nil {
			r.o.Log.Debug("hosts: evidence for an unparsable client address left out", "client", client)
			continue
		}
		h := r.build(ip, fa, rec)
		if (f.Site != "" && h.Site != f.Site) || (f.Status != "" && h.Status != f.Status) {
			continue
		}
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b Host) int {
		if c := b.LastSeen.Compare(a.LastSeen); c != 0 {
			return c
		}
		return a.IP.Compare(b.IP)
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// Note adds an administrator's note to ip.
func (r *Registry) Note(ctx context.Context, ip netip.Addr, by, text string) error {
	if !ip.IsValid() || strings.TrimSpace(text) == "" {
		return errors.New("hosts: note: an address and a text are required")
	}
	n := store.HostNote{Client: ip.String(), By: by, Text: text, Time: r.o.Now()}
	if err := r.o.Store.AddHostNote(ctx, n); err != nil {
		return fmt.Errorf("hosts: note on %s: %w", ip, err)
	}
	return nil
}

// Disinfect declares ip clean: it records the disinfection, clears
// every active latch on the address with by and note, and returns the
// latches it cleared. Evidence after now makes the host a suspect again.
// The caller audits it (events.Log.Audit): the reason of the audit entry
// in ctx is completed with the latches to clear and the host's site
// before the first write, so the record commits with the disinfection.
func (r *Registry) Disinfect(ctx context.Context, ip netip.Addr, by, note string) ([]store.Latch, error) {
	if !ip.IsValid() {
		return nil, errors.New("hosts: disinfect: invalid address")
	}
	client, now := ip.String(), r.o.Now()
	active, err := r.o.Store.ListLatches(ctx, store.LatchFilter{Active: true, Kind: store.LatchClient, Key: client}, now)
	if err != nil {
		return nil, fmt.Errorf("hosts: disinfect %s: reading latches: %w", client, err)
	}
	ids := make([]string, len(active))
	for i, l := range active {
		ids[i] = l.ID
	}
	if a := store.AuditFrom(ctx); a != nil {
		if len(ids) > 0 {
			a.Event.Reason += "; cleared latches " + strings.Join(ids, ", ")
		}
		if site, _ := r.o.Sites().Lookup(ip); site != nil {
			a.Event.Site = site.Name
		}
	}
	if err := r.o.Store.AddDisinfection(ctx, store.Disinfection{Client: client, By: by, Note: note, Time: now}); err != nil {
		return nil, fmt.Errorf("hosts: disinfect %s: recording it: %w", client, err)
	}
	var cleared []store.Latch
	for _, l := range active {
		c, err := r.o.Store.ClearLatch(ctx, l.ID, by, note, now)
		if errors.Is(err, store.ErrNotActive) {
			continue // cleared by someone else meanwhile
		}
		if err != nil {
			return cleared, fmt.Errorf("hosts: disinfect %s: clearing latch %s: %w", client, l.ID, err)
		}
		cleared = append(cleared, c)
	}
	r.o.Log.Info("hosts: host disinfected", "client", client, "by", by, "note", note, "cleared_latches", ids)
	return cleared, nil
}
