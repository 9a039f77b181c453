// Package latchtest provides an in-memory store.Latches for tests of the
// checks that latch.
package latchtest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"mailwarden/internal/store"
)

// Store is an in-memory store.Latches following the interface's contract.
// Setting Err makes every call fail with it. It is safe for concurrent
// use.
type Store struct {
	mu      sync.Mutex
	latches []store.Latch
	Err     error
}

// AddLatch implements store.Latches.
func (s *Store) AddLatch(_ context.Context, l store.Latch, now time.Time) (store.Latch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Err != nil {
		return store.Latch{}, s.Err
	}
	for i, old := range s.latches {
		if old.Kind == l.Kind && old.Key == l.Key && old.Active(now) {
			old.Count++
			old.LastSeen = now
			old.Evidence, old.Reason, old.Rule = l.Evidence, l.Reason, l.Rule
			s.latches[i] = old
			return old, nil
		}
	}
	l.ID = fmt.Sprintf("L%07d", len(s.latches)+1)
	l.Count, l.Refused = 1, 0
	l.FirstSeen, l.LastSeen = now, now
	l.ClearedAt, l.ClearedBy, l.ClearNote = time.Time{}, "", ""
	s.latches = append(s.latches, l)
	return l, nil
}

// AddLatchRefusal implements store.Latches.
func (s *Store) AddLatchRefusal(_ context.Context, id string, now time.Time) (store.Latch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Err != nil {
		return store.Latch{}, s.Err
	}
	for i, l := range s.latches {
		if l.ID != id {
			continue
		}
		if !l.Active(now) {
			return store.Latch{}, fmt.Errorf("latchtest: refusal by %s: %w", id, store.ErrNotActive)
		}
		l.Count++
		l.Refused++
		l.LastSeen = now
		s.latches[i] = l
		return l, nil
	}
	return store.Latch{}, fmt.Errorf("latchtest: refusal by %s: %w", id, store.ErrNotFound)
}

// ActiveLatch implements store.Latches.
func (s *Store) ActiveLatch(_ context.Context, kind, key string, now time.Time) (store.Latch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Err != nil {
		return store.Latch{}, s.Err
	}
	for _, l := range s.latches {
		if l.Kind == kind && l.Key == key && l.Active(now) {
			return l, nil
		}
	}
	return store.Latch{}, store.ErrNotFound
}

// GetLatch implements store.Latches.
func (s *Store) GetLatch(_ context.Context, id string) (store.Latch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Err != nil {
		return store.Latch{}, s.Err
	}
	for _, l := range s.latches {
		if l.ID == id {
			return l, nil
		}
	}
	return store.Latch{}, store.ErrNotFound
}

// ListLatches implements store.Latches.
func (s *Store) ListLatches(_ context.Context, f store.LatchFilter, now time.Time) ([]store.Latch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Err != nil {
		return nil, s.Err
	}
	var out []store.Latch
	for _, l := range s.latches {
		if f.Active && !l.Active(now) || f.Kind != "" && l.Kind != f.Kind || f.Key != "" && l.Key != f.Key {
			continue
		}
		out = append(out, l)
	}
	slices.SortStableFunc(out, func(a, b store.Latch) int { return b.LastSeen.Compare(a.LastSeen) })
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// ClearLatch implements store.Latches.
func (s *Store) ClearLatch(_ context.Context, id, by, note string, now time.Time) (store.Latch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Err != nil {
		return store.Latch{}, s.Err
	}
	for i, l := range s.latches {
		if l.ID != id {
			continue
		}
		if !l.Active(now) {
			return store.Latch{}, fmt.Errorf("latchtest: clearing %s: %w", id, store.ErrNotActive)
		}
		l.ClearedAt, l.ClearedBy, l.ClearNote = now, by, note
		s.latches[i] = l
		return l, nil
	}
	return store.Latch{}, fmt.Errorf("latchtest: clearing %s: %w", id, store.ErrNotFound)
}
