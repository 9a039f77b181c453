// Package memory is a store.Store that keeps everything in memory and
// loses it on Close. It passes the same conformance suite as the
// embedded SQLite store (store/storetest), so tests of the checks, the
// admin API and the dashboard run against the real contract instead of
// a hand-written partial fake, and `config check` builds its checks on
// an empty one. It is not a config choice: a daemon that forgets its
// latches on restart would let an infected machine send again.
package memory

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"mailwarden/internal/store"
)

// ErrClosed is returned by every operation on a closed Store.
var ErrClosed = errors.New("memory: store is closed")

// Options tunes a Store.
type Options struct {
	// Now is the clock QueryEvents leaves out events past retention by,
	// since it takes no now of its own; nil means time.Now. A test that
	// stores events from a fake clock sets it to that clock.
	Now func() time.Time
}

// Store is the in-memory store. One mutex guards everything: it is made
// for tests and offline checks, where simplicity beats throughput, and
// it makes every admin change and its audit event one atomic step.
type Store struct {
	now func() time.Time

	mu       sync.Mutex
	closed   bool
	triplets map[tripletKey]store.Triplet
	passes   map[string]store.ClientPass
	latches  []store.Latch // in creation order
	latchSeq uint64
	freezes  map[freezeKey]store.Freeze
	rates    map[string]int64 // GCRA theoretical arrival time, unix ns
	events   []store.Event    // in ID order
	eventSeq int64
	traps    map[string]store.TrapRecord
	ports    map[portKey]store.PortState
	logins   map[string]store.MailLogin
	notes    []store.HostNote     // in insertion order
	disinf   []store.Disinfection // in insertion order
	users    map[string]store.User
	alerts   []store.Alert // in ID order
	alertSeq int64
	// alertCursor is the last event the alert engine has read.
	alertCursor int64
}

type tripletKey struct{ client, sender, recipient string }

type freezeKey struct{ scope, value string }

type portKey struct {
	client string
	port   int
}

// New returns an empty Store on the real clock.
func New() *Store { return NewWith(Options{}) }

// NewWith returns an empty Store with options.
func NewWith(o Options) *Store {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Store{
		now:      o.Now,
		triplets: make(map[tripletKey]store.Triplet),
		passes:   make(map[string]store.ClientPass),
		freezes:  make(map[freezeKey]store.Freeze),
		rates:    make(map[string]int64),
		traps:    make(map[string]store.TrapRecord),
		ports:    make(map[portKey]store.PortState),
		logins:   make(map[string]store.MailLogin),
		users:    make(map[string]store.User),
	}
}

var _ store.Store = (*Store)(nil)

// lock takes the store's lock for an operation named op, unless ctx is
// done or the store closed: the contract wants a canceled context to
// fail every call, and a closed store refuses work as SQLite's does. The
// caller unlocks only when lock returned nil.
func (s *Store) lock(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return errf(op, err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	return nil
}

// auditLocked stores the audit event ctx carries, if any, beside a
// change just made under the same lock (store.WithAudit): no reader can
// see the change without its record.
func (s *Store) auditLocked(ctx context.Context) {
	if a := store.AuditFrom(ctx); a != nil {
		s.appendLocked(a.Event)
		a.MarkStored()
	}
}

// limit cuts a sorted list to n entries; n <= 0 means no limit.
func limit[T any](xs []T, n int) []T {
	if n > 0 && len(xs) > n {
		return xs[:n]
	}
	return xs
}

// errf wraps err with the operation, as the SQLite store does, so
// messages read alike whichever backend a test uses.
func errf(op string, err error) error { return fmt.Errorf("memory: %s: %w", op, err) }

// Close forgets everything; later calls return ErrClosed. Calling it
// again does nothing and returns nil.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	clear(s.triplets)
	clear(s.passes)
	s.latches = nil
	clear(s.freezes)
	clear(s.rates)
	s.events = nil
	clear(s.traps)
	clear(s.ports)
	clear(s.logins)
	s.notes, s.disinf = nil, nil
	clear(s.users)
	return nil
}

// Ping reports whether the store is open.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.lock(ctx, "ping"); err != nil {
		return err
	}
	s.mu.Unlock()
	return nil
}

// Probe reports whether the store is open: memory always takes a write.
func (s *Store) Probe(ctx context.Context) error {
	if err := s.lock(ctx, "probe"); err != nil {
		return err
	}
	s.mu.Unlock()
	return nil
}

// Expire deletes the triplets, pass counts and events whose expiry is at
// or before now and returns how many went. Rate state that no longer
// limits anything is dropped uncounted; latches are kept.
func (s *Store) Expire(ctx context.Context, now time.Time) (int, error) {
	if err := s.lock(ctx, "expire"); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	n := 0
	for k, t := range s.triplets {
		if !now.Before(t.Expires) {
			delete(s.triplets, k)
			n++
		}
	}
	for k, p := range s.passes {
		if !now.Before(p.Expires) {
			delete(s.passes, k)
			n++
		}
	}
	kept := s.events[:0]
	for _, e := range s.events {
		if !e.Expires.IsZero() && !now.Before(e.Expires) {
			n++
			continue
		}
		kept = append(kept, e)
	}
	clear(s.events[len(kept):])
	s.events = kept
	n += s.expireAlertsLocked(now)
	for k, tat := range s.rates {
		if tat <= now.UnixNano() {
			delete(s.rates, k)
		}
	}
	return n, nil
}
