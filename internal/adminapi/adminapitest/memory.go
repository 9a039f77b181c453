// Package adminapitest provides an in-memory adminapi.Backend for tests
// of the admin API and the commands that use it.
package adminapitest

import (
	"context"
	"slices"
	"sync"

	"mailwarden/internal/policy/latch/latchtest"
	"mailwarden/internal/store"
)

// Memory keeps latches, freezes and events in memory, following the
// store interfaces' contracts. The zero value is ready to use.
type Memory struct {
	// Latches come from the latch package's fake, which follows the
	// store contract; freezes and events are kept here.
	latchtest.Store
	mu      sync.Mutex
	freezes []store.Freeze
	events  []store.Event
	// AppendErr, if set, is returned by AppendEvents (to test what the
	// API does when the audit record cannot be written).
	AppendErr error
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
