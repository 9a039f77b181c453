// Package adminapitest provides the store for tests of the admin API and
// of the commands that use it: the in-memory backend, which passes the
// store conformance suite, wrapped so that a test can make it fail.
package adminapitest

import (
	"context"
	"time"

	"mailwarden/internal/store"
	"mailwarden/internal/store/memory"
	"mailwarden/internal/store/storetest"
)

// Memory is a memory store behind a storetest.Faulty: set faults with
// its FailOn, PanicOn and the like. Its clock for event retention stands
// at the zero time, so every event stays visible: the tests stamp events
// from fixed clocks long past.
type Memory struct {
	*storetest.Faulty
	st *memory.Store
}

// New returns an empty Memory with no faults.
func New() *Memory {
	st := memory.NewWith(memory.Options{Now: func() time.Time { return time.Time{} }})
	return &Memory{Faulty: storetest.WithFaults(st), st: st}
}

// Events returns every stored event, oldest first, past any fault.
func (m *Memory) Events() []store.Event {
	evs, err := m.st.QueryEvents(context.Background(), store.EventFilter{Tail: true})
	if err != nil {
		panic("adminapitest: reading the memory store: " + err.Error())
	}
	return evs
}
