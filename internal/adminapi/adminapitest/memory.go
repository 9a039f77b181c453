// Package adminapitest provides an in-memory adminapi.Backend for tests
// of the admin API and the commands that use it.
package adminapitest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"mailwarden/internal/store"
)

// Memory keeps latches, freezes and events in memory, following the
// store interfaces' contracts. The zero value is ready to use.
type Memory struct {
	mu      sync.Mutex
	latches []store.Latch // in creation order
	freezes []store.Freeze
	events  []store.Event
	nextID  int
	// AppendErr, if set, is returned by AppendEvents (to test what the
	// API does when the audit record cannot be written).
	AppendErr error
}

// AddLatch implements store.Latches.
func (m *Memory) AddLatch(_ context.Context, l store.Latch, now time.Time) (store.Latch, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.latches {
		a := &m.latches[i]
		if a.Kind == l.Kind && a.Key == l.Key && a.Active(now) {
			a.Count++
			a.LastSeen = now
			a.Evidence, a.Reason, a.Rule = l.Evidence, l.Reason, l.Rule
			return *a, nil
		}
	}
	m.nextID++
	l.ID = fmt.Sprintf("L%07d", m.nextID)
	l.Count, l.FirstSeen, l.LastSeen = 1, now, now
	l.ClearedAt, l.ClearedBy, l.ClearNote = time.Time{}, "", ""
	m.latches = append(m.latches, l)
	return l, nil
}

// ActiveLatch implements store.Latches.
func (m *Memory) ActiveLatch(_ context.Context, kind, key string, now time.Time) (store.Latch, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range m.latches {
		if l.Kind == kind && l.Key == key && l.Active(now) {
			return l, nil
		}
	}
	return store.Latch{}, store.ErrNotFound
}

// GetLatch implements store.Latches.
func (m *Memory) GetLatch(_ context.Context, id string) (store.Latch, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range m.latches {
		if l.ID == id {
			return l, nil
		}
	}
	return store.Latch{}, store.ErrNotFound
}

// ListLatches implements store.Latches.
func (m *Memory) ListLatches(_ context.Context, f store.LatchFilter, now time.Time) ([]store.Latch, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Latch
	for _, l := range m.latches {
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
func (m *Memory) ClearLatch(_ context.Context, id, by, note string, now time.Time) (store.Latch, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.latches {
		l := &m.latches[i]
		if l.ID != id {
			continue
		}
		if !l.Active(now) {
			return store.Latch{}, fmt.Errorf("clearing latch %s: %w", id, store.ErrNotActive)
		}
		l.ClearedAt, l.ClearedBy, l.ClearNote = now, by, note
		return *l, nil
	}
	return store.Latch{}, store.ErrNotFound
}

// SetFreeze implements store.Freezes.
func (m *Memory) SetFreeze(_ context.Context, f store.Freeze) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.freezes {
		if m.freezes[i].Scope == f.Scope && m.freezes[i].Value == f.Value {
			m.freezes[i] = f
			return nil
		}
	}
	m.freezes = append(m.freezes, f)
	return nil
}

// LiftFreeze implements store.Freezes.
func (m *Memory) LiftFreeze(_ context.Context, scope, value string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, f := range m.freezes {
		if f.Scope == scope && f.Value == value {
			m.freezes = slices.Delete(m.freezes, i, i+1)
			return nil
		}
	}
	return store.ErrNotFound
}

// ListFreezes implements store.Freezes.
func (m *Memory) ListFreezes(context.Context) ([]store.Freeze, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.freezes), nil
}

// AppendEvents implements store.Events.
func (m *Memory) AppendEvents(_ context.Context, evs ...store.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.AppendErr != nil {
		return m.AppendErr
	}
	for _, e := range evs {
		e.ID = int64(len(m.events) + 1)
		m.events = append(m.events, e)
	}
	return nil
}

// QueryEvents implements store.Events.
func (m *Memory) QueryEvents(_ context.Context, f store.EventFilter) ([]store.Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Event
	for i := len(m.events) - 1; i >= 0; i-- {
		e := m.events[i]
		if !f.Since.IsZero() && e.Time.Before(f.Since) || !f.Until.IsZero() && !e.Time.Before(f.Until) ||
			f.Kind != "" && e.Kind != f.Kind || f.Client != "" && e.Client != f.Client ||
			f.User != "" && e.User != f.User {
			continue
		}
		out = append(out, e)
		if f.Limit > 0 && len(out) == f.Limit {
			break
		}
	}
	return out, nil
}

// Events returns every stored event, oldest first.
func (m *Memory) Events() []store.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.events)
}
