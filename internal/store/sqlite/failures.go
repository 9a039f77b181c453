package sqlite

import "mailwarden/internal/store/writefail"

// Write kinds, as the write-failure counts name them (writefail). Every
// write the writer runs carries one, so a full disk shows as what it
// cost.
const (
	writeTriplet = writefail.Triplet
	writePass    = writefail.Pass
	writeLatch   = writefail.Latch
	writeFreeze  = writefail.Freeze
	writeRate    = writefail.Rate
	writeEvent   = writefail.Event
	writeHost    = writefail.Host
	writeUser    = writefail.User
	writeExpire  = writefail.Expire
	writeAlert   = writefail.Alert
)

// WriteFailures returns how many writes have failed since the store was
// opened, by kind: the daemon's health monitor reports them as lost
// writes and as the metric mailwarden_store_write_failures_total.
func (s *Store) WriteFailures() map[string]uint64 {
	return s.w.fails.Counts()
}
