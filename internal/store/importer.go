package store

import "context"

// Importer is what `mailwarden store copy` needs beyond Store to move a
// store's contents to another backend unchanged: records as they were,
// with their IDs, counts and times, rather than as new things happening
// now. Triplets, freezes, trap records, logins, host notes and
// disinfections go through the ordinary methods (PutTriplet, SetFreeze,
// AddTrapHits, RecordLogin, AddHostNote, AddDisinfection), which keep
// what they are given. Rate limiter state is not copied: it refills
// within one period.
//
// Every persistent backend implements Importer; the copy refuses a
// target that does not, and a target that is not empty.
type Importer interface {
	// ImportLatch stores l as given: ID, counts, times and clearing
	// included. A latch with the same ID is replaced. Latch IDs that
	// AddLatch makes later never collide with imported ones.
	ImportLatch(ctx context.Context, l Latch) error
	// ImportEvents stores evs with their IDs and expiry. IDs that
	// AppendEvents gives later are above the largest imported.
	ImportEvents(ctx context.Context, evs ...Event) error
	// ImportAlerts stores alerts as given (IDs, states, attempts, times)
	// and moves the alert cursor to at least cursor. IDs that AddAlerts
	// gives later are above the largest imported.
	ImportAlerts(ctx context.Context, alerts []Alert, cursor int64) error
	// ImportClientPass sets p.Client's pass count and expiry.
	ImportClientPass(ctx context.Context, p ClientPass) error
	// ImportUser stores u as given (hash and times), replacing a user of
	// the same name.
	ImportUser(ctx context.Context, u User) error
	// ImportPort stores one port state as given (FirstOpen and
	// LastChecked included), replacing the state of the same port.
	ImportPort(ctx context.Context, p PortState) error
	// AllPorts returns every kept port state of every client, ordered by
	// client and port: Ports names one client only.
	AllPorts(ctx context.Context) ([]PortState, error)
}
