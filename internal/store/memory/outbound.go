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

// latchIDSymbols are the symbols of a latch id: upper-case letters and
// digits without 0/O and 1/I, as the SQLite store uses.
const latchIDSymbols = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"

// nextLatchIDLocked spells the next number in latchIDSymbols, eight
// symbols long. Ids are sequential rather than random so that a test
// sees the same ids on every run. An id already taken (an imported
// latch's) is skipped.
func (s *Store) nextLatchIDLocked() string {
	for {
		s.latchSeq++
		var id [8]byte
		v := s.latchSeq
		for i := len(id) - 1; i >= 0; i-- {
			id[i] = latchIDSymbols[v%32]
			v /= 32
		}
		if s.latchLocked(string(id[:])) < 0 {
			return string(id[:])
		}
	}
}

// latchLocked returns the index of the latch id, or -1.
func (s *Store) latchLocked(id string) int {
	return slices.IndexFunc(s.latches, func(l store.Latch) bool { return l.ID == id })
}

// AddLatch counts a violation against kind/key's active latch, or
// creates one.
func (s *Store) AddLatch(ctx context.Context, l store.Latch, now time.Time) (store.Latch, error) {
	if l.Kind == "" || l.Key == "" {
		return store.Latch{}, fmt.Errorf("memory: add latch: kind %q and key %q must both be set", l.Kind, l.Key)
	}
	if err := s.lock(ctx, "add latch"); err != nil {
		return store.Latch{}, err
	}
	defer s.mu.Unlock()
	for i, cur := range s.latches {
		if cur.Kind == l.Kind && cur.Key == l.Key && cur.Active(now) {
			cur.Count++
			cur.LastSeen = now
			cur.Evidence, cur.Reason, cur.Rule = l.Evidence, l.Reason, l.Rule
			s.latches[i] = cur
			return cur, nil
		}
	}
	fresh := store.Latch{
		ID: s.nextLatchIDLocked(), Kind: l.Kind, Key: l.Key, Rule: l.Rule, Reason: l.Reason, Site: l.Site,
		Evidence: l.Evidence, Count: 1, FirstSeen: now, LastSeen: now, Expires: l.Expires,
	}
	s.latches = append(s.latches, fresh)
	return fresh, nil
}

// AddLatchRefusal counts a message the active latch id refused.
func (s *Store) AddLatchRefusal(ctx context.Context, id string, now time.Time) (store.Latch, error) {
	if err := s.lock(ctx, "count a refusal"); err != nil {
		return store.Latch{}, err
	}
	defer s.mu.Unlock()
	i, l, err := s.activeLatchLocked(id, now, "count a refusal by latch "+id)
	if err != nil {
		return store.Latch{}, err
	}
	l.Count++
	l.Refused++
	l.LastSeen = now
	s.latches[i] = l
	return l, nil
}

// ActiveLatch returns the latch active at now for kind/key.
func (s *Store) ActiveLatch(ctx context.Context, kind, key string, now time.Time) (store.Latch, error) {
	if err := s.lock(ctx, "active latch"); err != nil {
		return store.Latch{}, err
	}
	defer s.mu.Unlock()
	for _, l := range s.latches {
		if l.Kind == kind && l.Key == key && l.Active(now) {
			return l, nil
		}
	}
	return store.Latch{}, store.ErrNotFound
}

// GetLatch returns the latch id, active or not.
func (s *Store) GetLatch(ctx context.Context, id string) (store.Latch, error) {
	if err := s.lock(ctx, "get latch"); err != nil {
		return store.Latch{}, err
	}
	defer s.mu.Unlock()
	i := s.latchLocked(id)
	if i < 0 {
		return store.Latch{}, errf("get latch "+id, store.ErrNotFound)
	}
	return s.latches[i], nil
}

// ListLatches returns the latches matching f, newest LastSeen first; of
// latches seen at the same instant, the newer comes first.
func (s *Store) ListLatches(ctx context.Context, f store.LatchFilter, now time.Time) ([]store.Latch, error) {
	if err := s.lock(ctx, "list latches"); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var out []store.Latch
	for i := len(s.latches) - 1; i >= 0; i-- {
		l := s.latches[i]
		if f.Active && !l.Active(now) || f.Kind != "" && l.Kind != f.Kind || f.Key != "" && l.Key != f.Key {
			continue
		}
		out = append(out, l)
	}
	slices.SortStableFunc(out, func(a, b store.Latch) int { return b.LastSeen.Compare(a.LastSeen) })
	return limit(out, f.Limit), nil
}

// ClearLatch ends the active latch id, with the audit ctx carries.
func (s *Store) ClearLatch(ctx context.Context, id, by, note string, now time.Time) (store.Latch, error) {
	if err := s.lock(ctx, "clear latch"); err != nil {
		return store.Latch{}, err
	}
	defer s.mu.Unlock()
	i, l, err := s.activeLatchLocked(id, now, "clear latch "+id)
	if err != nil {
		return store.Latch{}, err
	}
	l.ClearedAt, l.ClearedBy, l.ClearNote = now, by, note
	s.latches[i] = l
	s.auditLocked(ctx)
	return l, nil
}

// SetFreeze adds or replaces the freeze with f's scope and value, with
// the audit ctx carries.
func (s *Store) SetFreeze(ctx context.Context, f store.Freeze) error {
	if f.Scope == "" {
		return fmt.Errorf("memory: set freeze: scope must be set")
	}
	if err := s.lock(ctx, "set freeze"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	s.freezes[freezeKey{f.Scope, f.Value}] = f
	s.auditLocked(ctx)
	return nil
}

// LiftFreeze removes the freeze with scope and value, with the audit ctx
// carries.
func (s *Store) LiftFreeze(ctx context.Context, scope, value string) error {
	if err := s.lock(ctx, "lift freeze"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	k := freezeKey{scope, value}
	if _, ok := s.freezes[k]; !ok {
		return errf(fmt.Sprintf("lift freeze %s %q", scope, value), store.ErrNotFound)
	}
	delete(s.freezes, k)
	s.auditLocked(ctx)
	return nil
}

// ListFreezes returns the freezes by scope, then value, as SQLite does.
func (s *Store) ListFreezes(ctx context.Context) ([]store.Freeze, error) {
	if err := s.lock(ctx, "list freezes"); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	return slices.SortedFunc(maps.Values(s.freezes), func(a, b store.Freeze) int {
		return cmp.Or(cmp.Compare(a.Scope, b.Scope), cmp.Compare(a.Value, b.Value))
	}), nil
}

// TakeRate applies GCRA (ITU-T I.371 annex A, virtual scheduling) as the
// SQLite store does: with emission interval T = period/limit, n units
// fit if the theoretical arrival time after them lies no more than
// period ahead of now.
func (s *Store) TakeRate(ctx context.Context, key string, n, limit int, period time.Duration, now time.Time) (bool, time.Duration, error) {
	if n < 0 || limit < 1 || period <= 0 {
		return false, 0, fmt.Errorf("memory: take rate %s: invalid n %d, limit %d or period %v", key, n, limit, period)
	}
	if err := s.lock(ctx, "take rate"); err != nil {
		return false, 0, err
	}
	defer s.mu.Unlock()
	if n == 0 {
		return true, 0, nil
	}
	if n > limit {
		// Never fits; the period is the longest wait that means anything.
		return false, period, nil
	}
	interval := max(int64(period)/int64(limit), 1)
	nowNS := now.UnixNano()
	tat := max(s.rates[key], nowNS)
	next := tat + int64(n)*interval
	if wait := next - int64(period) - nowNS; wait > 0 {
		return false, time.Duration(wait), nil
	}
	s.rates[key] = next
	return true, 0, nil
}

// AppendEvents stores evs, each with the next ID.
func (s *Store) AppendEvents(ctx context.Context, evs ...store.Event) error {
	if err := s.lock(ctx, "append events"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	for _, e := range evs {
		s.appendLocked(e)
	}
	return nil
}

// appendLocked stores e with the next ID and its own copy of the
// recipients, so a caller reusing its slice changes nothing stored.
func (s *Store) appendLocked(e store.Event) {
	s.eventSeq++
	e.ID = s.eventSeq
	e.Recipients = slices.Clone(e.Recipients)
	s.events = append(s.events, e)
}

// QueryEvents returns the events matching f, newest first (ties by ID),
// or for a tail those after f.AfterID in the order stored, leaving out
// those past retention by the store's clock.
func (s *Store) QueryEvents(ctx context.Context, f store.EventFilter) ([]store.Event, error) {
	if err := s.lock(ctx, "query events"); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	now := s.now()
	var out []store.Event
	for _, e := range s.events {
		if !e.Expires.IsZero() && !now.Before(e.Expires) ||
			!f.Since.IsZero() && e.Time.Before(f.Since) || !f.Until.IsZero() && !e.Time.Before(f.Until) ||
			f.Kind != "" && e.Kind != f.Kind || f.Client != "" && e.Client != f.Client ||
			f.User != "" && e.User != f.User || f.Tail && e.ID <= f.AfterID {
			continue
		}
		e.Recipients = slices.Clone(e.Recipients)
		out = append(out, e)
	}
	if !f.Tail {
		slices.SortFunc(out, func(a, b store.Event) int {
			return cmp.Or(b.Time.Compare(a.Time), cmp.Compare(b.ID, a.ID))
		})
	}
	return limit(out, f.Limit), nil
}

// activeLatchLocked returns the index and the latch id, when it is
// active at now; what names the operation in the error.
func (s *Store) activeLatchLocked(id string, now time.Time, what string) (int, store.Latch, error) {
	i := s.latchLocked(id)
	if i < 0 {
		return -1, store.Latch{}, errf(what, store.ErrNotFound)
	}
	if l := s.latches[i]; l.Active(now) {
		return i, l, nil
	}
	return -1, store.Latch{}, errf(what, store.ErrNotActive)
}
