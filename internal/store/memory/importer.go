package memory

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"mailwarden/internal/store"
)

var _ store.Importer = (*Store)(nil)

// ImportLatch stores l as given, replacing a latch with its ID. The
// latch sequence moves past an ID spelled as one of its own, and
// nextLatchIDLocked skips any ID in use, so AddLatch never reuses one.
func (s *Store) ImportLatch(ctx context.Context, l store.Latch) error {
	if l.ID == "" || l.Kind == "" || l.Key == "" {
		return fmt.Errorf("memory: import latch: id %q, kind %q and key %q must be set", l.ID, l.Kind, l.Key)
	}
	if err := s.lock(ctx, "import latch"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if seq, ok := latchSeqOf(l.ID); ok {
		s.latchSeq = max(s.latchSeq, seq)
	}
	if i := s.latchLocked(l.ID); i >= 0 {
		s.latches[i] = l
		return nil
	}
	s.latches = append(s.latches, l)
	return nil
}

// latchSeqOf reads id as a number spelled in latchIDSymbols, as
// nextLatchIDLocked spells them; ok is false for any other id.
func latchSeqOf(id string) (uint64, bool) {
	if len(id) != 8 {
		return 0, false
	}
	var v uint64
	for _, c := range []byte(id) {
		d := strings.IndexByte(latchIDSymbols, c)
		if d < 0 {
			return 0, false
		}
		v = v*32 + uint64(d)
	}
	return v, true
}

// ImportEvents stores evs with their IDs, replacing events with the
// same IDs, and keeps the log in ID order; later appends get IDs above
// every imported one.
func (s *Store) ImportEvents(ctx context.Context, evs ...store.Event) error {
	for _, e := range evs {
		if e.ID <= 0 {
			return fmt.Errorf("memory: import events: event id %d is not positive", e.ID)
		}
	}
	if err := s.lock(ctx, "import events"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	for _, e := range evs {
		e.Recipients = slices.Clone(e.Recipients)
		s.events = insertByID(s.events, e, func(e store.Event) int64 { return e.ID })
		s.eventSeq = max(s.eventSeq, e.ID)
	}
	return nil
}

// ImportAlerts stores alerts with their IDs, replacing alerts with the
// same IDs, and moves the cursor to at least cursor.
func (s *Store) ImportAlerts(ctx context.Context, alerts []store.Alert, cursor int64) error {
	for _, a := range alerts {
		if a.ID <= 0 {
			return fmt.Errorf("memory: import alerts: alert id %d is not positive", a.ID)
		}
	}
	if err := s.lock(ctx, "import alerts"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	for _, a := range alerts {
		if a.State == "" {
			a.State = store.AlertPending
		}
		a.Items = slices.Clone(a.Items)
		s.alerts = insertByID(s.alerts, a, func(a store.Alert) int64 { return a.ID })
		s.alertSeq = max(s.alertSeq, a.ID)
	}
	s.alertCursor = max(s.alertCursor, cursor)
	return nil
}

// insertByID puts x into xs, kept in ID order, replacing the entry with
// its ID. Imports come oldest first, so this is almost always an append.
func insertByID[T any](xs []T, x T, id func(T) int64) []T {
	i, found := slices.BinarySearchFunc(xs, id(x), func(e T, want int64) int { return cmp.Compare(id(e), want) })
	if found {
		xs[i] = x
		return xs
	}
	return slices.Insert(xs, i, x)
}

// ImportClientPass sets p.Client's pass count and expiry.
func (s *Store) ImportClientPass(ctx context.Context, p store.ClientPass) error {
	if p.Client == "" {
		return fmt.Errorf("memory: import client pass: client must be set")
	}
	if err := s.lock(ctx, "import client pass"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	s.passes[p.Client] = p
	return nil
}

// ImportUser stores u as given, replacing a user of the same name.
func (s *Store) ImportUser(ctx context.Context, u store.User) error {
	if err := u.Check(); err != nil {
		return fmt.Errorf("memory: import user %q: %w", u.Name, err)
	}
	if err := s.lock(ctx, "import user"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	u.Hash = slices.Clone(u.Hash)
	s.users[u.Name] = u
	return nil
}

// ImportPort stores one port state as given.
func (s *Store) ImportPort(ctx context.Context, p store.PortState) error {
	if p.Client == "" || p.Port <= 0 || p.LastChecked.IsZero() {
		return fmt.Errorf("memory: import port: client %q, port %d and last check must be set", p.Client, p.Port)
	}
	if err := s.lock(ctx, "import port"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	s.ports[portKey{p.Client, p.Port}] = p
	return nil
}

// AllPorts returns every kept port state, by client and port.
func (s *Store) AllPorts(ctx context.Context) ([]store.PortState, error) {
	if err := s.lock(ctx, "all ports"); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := make([]store.PortState, 0, len(s.ports))
	for _, p := range s.ports {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b store.PortState) int {
		return cmp.Or(cmp.Compare(a.Client, b.Client), cmp.Compare(a.Port, b.Port))
	})
	return out, nil
}
