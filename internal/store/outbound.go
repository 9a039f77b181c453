package store

import (
	"context"
	"time"
)

// Latch keys name what is latched: a client address or a SASL user.
const (
	LatchClient = "client" // Key is an IP address, e.g. "10.1.2.3"
	LatchUser   = "user"   // Key is a SASL user name
)

// Latch is a block on a client or user that tried something only an
// infected or hijacked machine does (PRODUCT.md §1 Day A). It holds until
// someone clears it, or until Expires when that is set.
type Latch struct {
	ID        string // short id a user can quote, e.g. "L7K2Q9XW"; unique
	Kind      string // LatchClient or LatchUser
	Key       string // the address or user name
	Rule      string // what tripped it: "sender_domain", "rate_user", "virus" ...
	Reason    string // human explanation, e.g. "envelope sender domain evil.example not allowed for site lincoln"
	Site      string // site name of the client, if known
	Evidence  string // what was tried, e.g. the sender address or virus name
	Count     int    // violations and refused messages recorded against this latch
	Refused   int    // of Count, the messages refused while it held; Count - Refused are violations
	FirstSeen time.Time
	LastSeen  time.Time
	Expires   time.Time // zero: never
	ClearedAt time.Time // zero while active
	ClearedBy string
	ClearNote string
}

// Active reports whether the latch blocks at now.
func (l Latch) Active(now time.Time) bool {
	return l.ClearedAt.IsZero() && (l.Expires.IsZero() || now.Before(l.Expires))
}

// LatchFilter selects latches for listing.
type LatchFilter struct {
	Active bool // only latches active now
	Kind   string
	Key    string
	Limit  int // newest LastSeen first; 0 means no limit
}

// Latches stores latches. At most one latch per (Kind, Key) is active.
type Latches interface {
	// AddLatch records a violation by l.Kind/l.Key at now. If an active
	// latch exists for that key, its Count is increased, LastSeen set to
	// now and Evidence/Reason/Rule replaced by l's; otherwise a new latch
	// is created from l with a fresh ID, Count 1 and FirstSeen = LastSeen
	// = now. It returns the active latch as stored.
	AddLatch(ctx context.Context, l Latch, now time.Time) (Latch, error)
	// AddLatchRefusal records that the active latch id refused a message
	// at now: its Count and Refused go up by one and LastSeen becomes
	// now; nothing else changes. It returns the latch as stored. A latch
	// no longer active gives an error wrapping ErrNotActive; an unknown
	// id, ErrNotFound.
	AddLatchRefusal(ctx context.Context, id string, now time.Time) (Latch, error)
	// ActiveLatch returns the latch active at now for kind/key, or
	// ErrNotFound. It is called for every message and must be fast.
	ActiveLatch(ctx context.Context, kind, key string, now time.Time) (Latch, error)
	// GetLatch returns a latch by ID, active or not, or ErrNotFound.
	GetLatch(ctx context.Context, id string) (Latch, error)
	ListLatches(ctx context.Context, f LatchFilter, now time.Time) ([]Latch, error)
	// ClearLatch ends the latch id, recording who and why. Clearing a
	// latch that is not active is an error wrapping ErrNotActive; an
	// unknown id, ErrNotFound.
	ClearLatch(ctx context.Context, id, by, note string, now time.Time) (Latch, error)
}

// Freeze scopes.
const (
	FreezeAll     = "all"     // every outbound message; Value is ""
	FreezeDomain  = "domain"  // Value is a sender domain
	FreezeUser    = "user"    // Value is a SASL user
	FreezeNetwork = "network" // Value is a CIDR
)

// Freeze is one outbound freeze: matching mail is tempfailed until it is
// lifted, so nothing is lost and restarting the MTA cannot undo it.
type Freeze struct {
	Scope string
	Value string
	Since time.Time
	By    string
	Note  string
}

// Freezes stores the outbound freezes. There are few; the daemon reads
// them for every message, so backends should answer from memory.
type Freezes interface {
	// SetFreeze adds or replaces the freeze with f's Scope and Value.
	SetFreeze(ctx context.Context, f Freeze) error
	// LiftFreeze removes it; ErrNotFound if there is none.
	LiftFreeze(ctx context.Context, scope, value string) error
	ListFreezes(ctx context.Context) ([]Freeze, error)
}

// Rates keeps rate-limiter state.
type Rates interface {
	// TakeRate applies the generic cell rate algorithm (GCRA) to key:
	// limit units per period, with a burst of the whole limit, taking n
	// units at now. It reports whether they were allowed and, if not,
	// how long until they would be. A refused take changes nothing.
	TakeRate(ctx context.Context, key string, n, limit int, period time.Duration, now time.Time) (allowed bool, retryAfter time.Duration, err error)
}

// Event kinds.
const (
	EventReject   = "reject"
	EventTempfail = "tempfail"
	// EventLatch: from the check that latched (sender, ratelimit,
	// antivirus), a latch was set or a violation added to one, beside
	// that check's own event for the message; from the latch check, a
	// message refused because its client or user is latched.
	EventLatch    = "latch"
	EventRateTrip = "rate_trip" // a rate limit refused a message
	EventFreeze   = "freeze"    // a freeze held a message
	EventAdmin    = "admin"     // an administrator changed something
	EventGreylist = "greylist"  // a greylist deferral (recorded only if configured)
	EventVirus    = "virus"     // a virus was found in a message
	// EventSignatures: clamd's signatures are stale, or a clamd went down
	// or came back (internal/avstatus).
	EventSignatures = "signatures"
	// EventMailbox: a burst of new mailboxes in the passwd files
	// (internal/mailbox).
	EventMailbox = "mailbox"
	// EventStore: the store could not write for a while, and could
	// again (the daemon's store health monitor).
	EventStore = "store"
	// EventTrap: an internal machine tried direct port-25 connections
	// to the trap; one event per client per trap flush interval, however
	// many connections it made (internal/trap aggregates them).
	EventTrap = "trap"
)

// Event is one non-trivial decision or admin action.
type Event struct {
	ID         int64 // assigned by the store, increasing
	Time       time.Time
	Kind       string
	Check      string // the deciding check, or the admin command
	Action     string // policy action: reject, tempfail, discard ...; for admin events, where the change came from (events.Admin.From)
	Client     string // client IP text
	Site       string
	User       string // SASL user, or the administrator for admin events
	Sender     string
	Recipients []string
	QueueID    string
	Reason     string
	Expires    time.Time // retention: the event is gone after this
}

// EventFilter selects events; zero fields do not filter.
type EventFilter struct {
	Since, Until time.Time // Since inclusive, Until exclusive
	Kind         string
	Client       string
	User         string
	Limit        int // newest first; 0 means no limit
	// Tail reads the log as a reader that follows it does: the events
	// with an ID above AfterID, oldest first (Limit then keeps the
	// oldest). IDs start at 1, so AfterID 0 reads from the start.
	Tail    bool
	AfterID int64
}

// Events is the event log.
type Events interface {
	// AppendEvents stores events; each gets an increasing ID when it is
	// stored (the ID field of evs is ignored). A backend may write behind,
	// as with PutTriplet; QueryEvents in the same process sees them.
	AppendEvents(ctx context.Context, evs ...Event) error
	QueryEvents(ctx context.Context, f EventFilter) ([]Event, error)
}
