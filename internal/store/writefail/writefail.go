// Package writefail counts a store's failed writes by kind and keeps
// the log to one line at the first failure and then one summary line per
// interval while failures go on. The SQLite and Redis stores share it,
// so a full disk and an unreachable Redis show the same way: as the
// daemon's lost-write counts and mailwarden_store_write_failures_total.
package writefail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// Write kinds, as the counts name them: triplets (write-behind in
// SQLite, kept in memory until the next restart), events (lost),
// latches and freezes (their callers are told), and so on.
const (
	Triplet = "triplet"
	Pass    = "client_pass"
	Latch   = "latch"
	Freeze  = "freeze"
	Rate    = "rate"
	Event   = "event"
	Host    = "host"
	User    = "user"
	Expire  = "expire"
	Alert   = "alert"
)

// Kinds are counted from zero, so a metric shows every kind before the
// first failure.
var Kinds = []string{Triplet, Pass, Latch, Freeze, Rate, Event, Host, User, Expire, Alert}

// SummaryEvery is how often repeated write failures are summarised in
// the log: a full disk fails every write, and one line per write buries
// everything else.
const SummaryEvery = 30 * time.Second

// Counter counts failed writes by kind and keeps the log to one
// line at the first failure and then at most one summary line per
// interval while failures go on.
type Counter struct {
	log   *slog.Logger
	every time.Duration

	mu    sync.Mutex
	total map[string]uint64
	// held counts the failures since the last line; timer is set while a
	// summary interval runs.
	held    map[string]uint64
	heldErr error
	timer   *time.Timer
	stopped bool
}

// New returns a Counter that logs to log and summarises every every.
func New(log *slog.Logger, every time.Duration) *Counter {
	f := &Counter{log: log, every: every, total: make(map[string]uint64), held: make(map[string]uint64)}
	for _, k := range Kinds {
		f.total[k] = 0
	}
	return f
}

// Add counts a write of kind that ended with err. A success, a write
// of no kind (a flush, the probe) and a caller that gave up are not
// failures of the store.
func (f *Counter) Add(kind string, err error) {
	if err == nil || kind == "" || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.total[kind]++
	if f.stopped {
		return
	}
	if f.timer == nil {
		f.log.Warn(fmt.Sprintf("store write failed; further failures are summarised every %s", f.every),
			"kind", kind, "err", err)
		f.timer = time.AfterFunc(f.every, f.Summarise)
		return
	}
	f.held[kind]++
	f.heldErr = err
}

// Summarise ends an interval: it logs the failures held back, if any,
// and starts another interval, or else lets the next failure be logged
// at once.
func (f *Counter) Summarise() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped || f.timer == nil {
		return
	}
	if len(f.held) == 0 {
		f.timer = nil
		return
	}
	f.logHeld(fmt.Sprintf("store writes failed in the last %s", f.every))
	f.timer.Reset(f.every)
}

func (f *Counter) logHeld(msg string) {
	var n uint64
	for _, c := range f.held {
		n += c
	}
	f.log.Warn(msg, "failed", n, "by_kind", formatCounts(f.held), "last_err", f.heldErr)
	clear(f.held)
	f.heldErr = nil
}

// Stop logs what is held back and ends the summaries; counting goes on.
func (f *Counter) Stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return
	}
	f.stopped = true
	if f.timer != nil {
		f.timer.Stop()
		f.timer = nil
	}
	if len(f.held) > 0 {
		f.logHeld("store writes failed since the last line about them")
	}
}

// Counts returns the failures since New, by kind.
func (f *Counter) Counts() map[string]uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.total)
}

// formatCounts writes counts as "event=3 triplet=12", kinds sorted.
func formatCounts(m map[string]uint64) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	return b.String()
}
