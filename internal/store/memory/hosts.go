package memory

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"mailwarden/internal/store"
)

// AddTrapHits merges each record into its client's running total by the
// rules of store.Hosts. A record without FirstSeen counts as first seen
// at its LastSeen, as in SQLite.
func (s *Store) AddTrapHits(ctx context.Context, recs ...store.TrapRecord) error {
	for _, r := range recs {
		if r.Client == "" || r.LastSeen.IsZero() {
			return fmt.Errorf("memory: add trap hits: client %q and its LastSeen must be set", r.Client)
		}
	}
	if err := s.lock(ctx, "add trap hits"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	for _, r := range recs {
		s.traps[r.Client] = store.MergeTrap(s.traps[r.Client], r)
	}
	return nil
}

// TrapRecords returns client's total, or every client's for "", newest
// LastSeen first, then by client.
func (s *Store) TrapRecords(ctx context.Context, client string) ([]store.TrapRecord, error) {
	if err := s.lock(ctx, "trap records"); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var out []store.TrapRecord
	for c, r := range s.traps {
		if client == "" || c == client {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b store.TrapRecord) int {
		return cmp.Or(b.LastSeen.Compare(a.LastSeen), cmp.Compare(a.Client, b.Client))
	})
	return out, nil
}

// RecordPort keeps the newest state of f's port; an older finding only
// moves FirstOpen back, and a closed port never seen open is not kept.
func (s *Store) RecordPort(ctx context.Context, f store.PortFinding) error {
	if f.Client == "" || f.Port <= 0 || f.Time.IsZero() {
		return fmt.Errorf("memory: record port: client %q, port %d and time must be set", f.Client, f.Port)
	}
	if err := s.lock(ctx, "record port"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	k := portKey{f.Client, f.Port}
	p, ok := s.ports[k]
	if !ok {
		if f.Open {
			s.ports[k] = store.PortState{Client: f.Client, Port: f.Port, Open: true, FirstOpen: f.Time, LastChecked: f.Time}
		}
		return nil
	}
	if !f.Time.Before(p.LastChecked) {
		p.Open, p.LastChecked = f.Open, f.Time
	}
	if f.Open && (p.FirstOpen.IsZero() || f.Time.Before(p.FirstOpen)) {
		p.FirstOpen = f.Time
	}
	s.ports[k] = p
	return nil
}

// Ports returns every kept state of client's ports, by port.
func (s *Store) Ports(ctx context.Context, client string) ([]store.PortState, error) {
	return s.portStates(ctx, client, false)
}

// OpenPorts returns the open ports of client, or of every client for "",
// by client and port.
func (s *Store) OpenPorts(ctx context.Context, client string) ([]store.PortState, error) {
	return s.portStates(ctx, client, true)
}

func (s *Store) portStates(ctx context.Context, client string, openOnly bool) ([]store.PortState, error) {
	if err := s.lock(ctx, "port states"); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var out []store.PortState
	for _, p := range s.ports {
		if (client == "" && openOnly || p.Client == client) && (p.Open || !openOnly) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b store.PortState) int {
		return cmp.Or(cmp.Compare(a.Client, b.Client), cmp.Compare(a.Port, b.Port))
	})
	return out, nil
}

// RecordLogin keeps l if it is the newest login from its client.
func (s *Store) RecordLogin(ctx context.Context, l store.MailLogin) error {
	if l.Client == "" || l.Time.IsZero() {
		return fmt.Errorf("memory: record login: client %q and time must be set", l.Client)
	}
	if err := s.lock(ctx, "record login"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if old, ok := s.logins[l.Client]; !ok || !l.Time.Before(old.Time) {
		s.logins[l.Client] = l
	}
	return nil
}

// LastLogin returns the newest login from client.
func (s *Store) LastLogin(ctx context.Context, client string) (store.MailLogin, error) {
	if err := s.lock(ctx, "last login"); err != nil {
		return store.MailLogin{}, err
	}
	defer s.mu.Unlock()
	l, ok := s.logins[client]
	if !ok {
		return store.MailLogin{}, errf("last login from "+client, store.ErrNotFound)
	}
	return l, nil
}

// LastLogins returns every client's newest login, by client.
func (s *Store) LastLogins(ctx context.Context) ([]store.MailLogin, error) {
	if err := s.lock(ctx, "last logins"); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	return slices.SortedFunc(maps.Values(s.logins), func(a, b store.MailLogin) int { return cmp.Compare(a.Client, b.Client) }), nil
}

// AddHostNote stores n with the audit ctx carries.
func (s *Store) AddHostNote(ctx context.Context, n store.HostNote) error {
	return addHostRecord(ctx, s, &s.notes, n, "add note on", n.Client, n.Time)
}

// HostNotes returns client's notes, or every client's for "", by client
// and then oldest first.
func (s *Store) HostNotes(ctx context.Context, client string) ([]store.HostNote, error) {
	return hostRecords(ctx, s, &s.notes, "notes", client, func(n store.HostNote) (string, time.Time) { return n.Client, n.Time })
}

// AddDisinfection stores d with the audit ctx carries.
func (s *Store) AddDisinfection(ctx context.Context, d store.Disinfection) error {
	return addHostRecord(ctx, s, &s.disinf, d, "add disinfection of", d.Client, d.Time)
}

// Disinfections returns client's disinfections, or every client's for
// "", as HostNotes orders notes.
func (s *Store) Disinfections(ctx context.Context, client string) ([]store.Disinfection, error) {
	return hostRecords(ctx, s, &s.disinf, "disinfections", client, func(d store.Disinfection) (string, time.Time) { return d.Client, d.Time })
}

// addHostRecord appends rec, of client at a time, to *list with the
// audit ctx carries.
func addHostRecord[T any](ctx context.Context, s *Store, list *[]T, rec T, what, client string, at time.Time) error {
	if client == "" || at.IsZero() {
		return fmt.Errorf("memory: %s %s: client and time must be set", what, client)
	}
	if err := s.lock(ctx, what); err != nil {
		return err
	}
	defer s.mu.Unlock()
	*list = append(*list, rec)
	s.auditLocked(ctx)
	return nil
}

// hostRecords returns the records of *list that key says are client's,
// or all of them for "", by client and then oldest first.
func hostRecords[T any](ctx context.Context, s *Store, list *[]T, what, client string, key func(T) (string, time.Time)) ([]T, error) {
	if err := s.lock(ctx, what); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var out []T
	for _, r := range *list {
		if c, _ := key(r); client == "" || c == client {
			out = append(out, r)
		}
	}
	slices.SortStableFunc(out, func(a, b T) int {
		ca, ta := key(a)
		cb, tb := key(b)
		return cmp.Or(cmp.Compare(ca, cb), ta.Compare(tb))
	})
	return out, nil
}
