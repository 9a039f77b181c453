package store

import (
	"context"
	"sync/atomic"
)

// Audit is an admin event waiting to be committed with the change it
// records: a crash must not keep a cleared latch and lose who cleared it
// and why. The event log (internal/events) makes one for every admin
// action and hands it to the store in the context of the change.
type Audit struct {
	Event  Event
	stored atomic.Bool
}

// MarkStored records that a backend stored the event.
func (a *Audit) MarkStored() { a.stored.Store(true) }

// Stored reports whether a backend stored the event with a change.
func (a *Audit) Stored() bool { return a.stored.Load() }

type auditKey struct{}

// WithAudit returns ctx carrying a. A backend method that changes state
// an administrator changes (ClearLatch, SetFreeze, LiftFreeze,
// AddHostNote, AddDisinfection, PutTriplet, AddUser, UpdateUser,
// DeleteUser) stores a.Event as an event in the same
// transaction as its change, if the change is made, and then calls
// a.MarkStored; a change that fails stores neither. Only the first such
// method called with ctx stores it.
func WithAudit(ctx context.Context, a *Audit) context.Context {
	return context.WithValue(ctx, auditKey{}, a)
}

// AuditFrom returns the audit ctx carries that no backend has stored
// yet, or nil.
func AuditFrom(ctx context.Context) *Audit {
	a, _ := ctx.Value(auditKey{}).(*Audit)
	if a == nil || a.Stored() {
		return nil
	}
	return a
}
