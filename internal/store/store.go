// Package store defines the small storage interfaces that mailwarden's
// checks depend on. The embedded SQLite backend (store/sqlite) is the
// default, opened by store/backend from the config for the daemon and
// every offline command; store/memory keeps everything in memory for
// tests and `config check`. Every backend must pass the conformance
// suite in store/storetest.
package store

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned when a record does not exist (or has expired).
var ErrNotFound = errors.New("store: not found")

// ErrNotActive is returned when clearing a latch that is already cleared
// or expired.
var ErrNotActive = errors.New("store: latch not active")

// Triplet is one greylisting triplet (RFC 6647 §2.2): client netblock,
// envelope sender and recipient, plus what happened to it.
type Triplet struct {
	Client    string // client netblock as text, e.g. "192.0.2.0/24"
	Sender    string // lowercased envelope sender, "" for the null sender
	Recipient string // lowercased envelope recipient
	FirstSeen time.Time
	LastSeen  time.Time
	PassedAt  time.Time // zero while the triplet is still pending
	Attempts  int       // delivery attempts seen, including the first
	Expires   time.Time // after this instant the triplet is gone
}

// Passed reports whether the triplet has passed greylisting.
func (t Triplet) Passed() bool { return !t.PassedAt.IsZero() }

// TripletFilter selects triplets for listing.
type TripletFilter struct {
	Pending bool   // only triplets that have not passed
	Passed  bool   // only triplets that have passed
	Client  string // exact client netblock, if set
	Limit   int    // at most this many, newest LastSeen first; 0 means no limit
}

// GreylistStats summarises the greylist state at an instant.
type GreylistStats struct {
	Pending            int // unexpired triplets still waiting
	Passed             int // unexpired triplets that passed
	WhitelistedClients int // clients with at least the given number of passes
}

// Greylist stores triplets and per-client pass counts for auto-whitelisting.
// Records past their expiry instant behave as absent even before Expire
// deletes them.
type Greylist interface {
	// GetTriplet returns the triplet (client, sender, recipient), or
	// ErrNotFound.
	GetTriplet(ctx context.Context, client, sender, recipient string, now time.Time) (Triplet, error)
	// PutTriplet stores t, replacing any triplet with the same three keys.
	// Reads through the same Store see t at once. A backend may return
	// before t is durable (write-behind): a crash may lose the last
	// moments of puts, which only delays those senders once more, while a
	// clean Close keeps them.
	PutTriplet(ctx context.Context, t Triplet) error
	// DeleteTriplet removes a triplet; removing a missing one is no error.
	DeleteTriplet(ctx context.Context, client, sender, recipient string) error
	// ListTriplets returns unexpired triplets matching f.
	ListTriplets(ctx context.Context, f TripletFilter, now time.Time) ([]Triplet, error)
	// AddClientPass counts one more passed delivery from client, sets the
	// record's expiry to expires and returns the new count.
	AddClientPass(ctx context.Context, client string, now, expires time.Time) (int, error)
	// ClientPasses returns the unexpired pass count for client (0 if none).
	ClientPasses(ctx context.Context, client string, now time.Time) (int, error)
	// GreylistStats counts unexpired records; clients with at least
	// whitelistAfter passes count as whitelisted.
	GreylistStats(ctx context.Context, now time.Time, whitelistAfter int) (GreylistStats, error)
	ClientPassLister
}

// Store is everything a backend provides.
type Store interface {
	Greylist
	Latches
	Freezes
	Rates
	Events
	Hosts
	Users
	Alerts
	// Expire deletes records (triplets, pass counts, events past
	// retention, alerts past their Expires) whose expiry is at or
	// before now and returns how many it deleted. Latches are never deleted: they are the audit trail. A
	// backend may also drop rate state that no longer limits anything at
	// now, without counting it.
	Expire(ctx context.Context, now time.Time) (int, error)
	// Ping reports whether the backend can serve requests (readiness).
	Ping(ctx context.Context) error
	// Probe writes and commits a small record through the same path as
	// every other write and reports whether it could: the daemon's
	// store health monitor asks it every few seconds, since a store can
	// go on reading (Ping) with a full disk or a read-only filesystem.
	// What it writes is never read back.
	Probe(ctx context.Context) error
	Close() error
}
