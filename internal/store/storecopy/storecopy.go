// Package storecopy moves the contents of one store to another, of the
// same backend or another (`mailwarden store copy`): a site that
// outgrows the embedded store moves to Redis, or back, keeping its
// latches, greylist history, users, host evidence, alerts and audit
// trail. It only reads the source and writes the target through
// store.Importer, so any pair of backends works.
package storecopy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"mailwarden/internal/store"
)

// ErrNotEmpty says the target already holds records: a copy into it
// would mix two stores' latches and users, and could not be verified.
var ErrNotEmpty = errors.New("storecopy: the target store is not empty")

// ErrNoImporter says the target backend cannot take records as they
// were (store.Importer).
var ErrNoImporter = errors.New("storecopy: the target backend cannot import records")

// ErrMismatch says the records counted after the copy differ from those
// copied.
var ErrMismatch = errors.New("storecopy: the stores differ after the copy")

// Record kinds, in the order Copy copies them. What holds mail back and
// who may log in come first; the audit trail comes last, so the last
// entry of a complete copy's trail is the record of the copy itself
// (written by the caller), and a copy cut short lacks it.
const (
	Freezes       = "freezes"
	Latches       = "latches"
	Users         = "users"
	Triplets      = "triplets"
	ClientPasses  = "client_passes"
	TrapRecords   = "trap_records"
	Ports         = "ports"
	Logins        = "logins"
	HostNotes     = "host_notes"
	Disinfections = "disinfections"
	Alerts        = "alerts"
	Events        = "events"
)

// batch is how many events or alerts go to the target in one import,
// so a large log is neither held in memory whole nor written in one
// transaction.
const batch = 1000

// Count is what happened to one kind of record.
type Count struct {
	Kind   string `json:"kind"`
	Copied int    `json:"copied"` // read from the source and written to the target
	Source int    `json:"source"` // counted in the source after the copy
	Target int    `json:"target"` // counted in the target after the copy
}

// OK reports whether the three numbers agree.
func (c Count) OK() bool { return c.Copied == c.Source && c.Source == c.Target }

// Counts are the kinds in copy order.
type Counts []Count

// Total is the number of records copied.
func (cs Counts) Total() int {
	n := 0
	for _, c := range cs {
		n += c.Copied
	}
	return n
}

// portLister is the part of store.Importer a source needs: store.Hosts
// lists ports by client only, and a closed port of a client with no
// other evidence would be missed.
type portLister interface {
	AllPorts(ctx context.Context) ([]store.PortState, error)
}

// target is what Copy writes to.
type target interface {
	store.Store
	store.Importer
}

// kind copies and counts one kind of record.
type kind struct {
	name string
	// copy copies the records of from to to and returns how many, as
	// far as it got.
	copy func(ctx context.Context, from store.Store, to target, now time.Time, add func(int)) error
	// count counts the records Copy would copy from s.
	count func(ctx context.Context, s store.Store, now time.Time) (int, error)
}

// Copy copies every unexpired record of from to to, which must be
// empty and implement store.Importer, then counts both again to verify.
// now decides what has expired: expired triplets, pass counts, events
// and alerts are not copied; latches are, expired or cleared, since
// they are the audit trail. Rate limiter state is not copied: it
// refills within one period. progress, if set, is called as records
// are written, with the kind and how many of it so far.
//
// Copy never writes to from. On an error the counts say how far it
// got, and the target holds part of the source: it must be emptied (or
// thrown away) before trying again, which Copy enforces by refusing a
// target that is not empty.
func Copy(ctx context.Context, from, to store.Store, now time.Time, progress func(kind string, n int)) (Counts, error) {
	imp, ok := to.(target)
	if !ok {
		return nil, fmt.Errorf("%w (%T)", ErrNoImporter, to)
	}
	if _, ok := from.(portLister); !ok {
		return nil, fmt.Errorf("storecopy: the source backend (%T) cannot list every port state", from)
	}
	if err := CheckEmpty(ctx, to, now); err != nil {
		return nil, err
	}
	var counts Counts
	for _, k := range kinds {
		c := Count{Kind: k.name}
		err := k.copy(ctx, from, imp, now, func(n int) {
			c.Copied += n
			if progress != nil && n > 0 {
				progress(k.name, c.Copied)
			}
		})
		counts = append(counts, c)
		if err != nil {
			return counts, fmt.Errorf("copying %s (%d copied): %w", k.name, c.Copied, err)
		}
	}
	var bad []string
	for i := range counts {
		k := kinds[i]
		var err error
		if counts[i].Source, err = k.count(ctx, from, now); err != nil {
			return counts, fmt.Errorf("verifying: counting the source's %s: %w", k.name, err)
		}
		if counts[i].Target, err = k.count(ctx, to, now); err != nil {
			return counts, fmt.Errorf("verifying: counting the target's %s: %w", k.name, err)
		}
		if c := counts[i]; !c.OK() {
			bad = append(bad, fmt.Sprintf("%s: %d copied, source %d, target %d", c.Kind, c.Copied, c.Source, c.Target))
		}
	}
	if err := checkCursor(ctx, from, to); err != nil {
		bad = append(bad, err.Error())
	}
	if bad != nil {
		return counts, fmt.Errorf("%w: %s", ErrMismatch, strings.Join(bad, "; "))
	}
	return counts, nil
}

// Survey counts what Copy would copy from s at now, without copying.
func Survey(ctx context.Context, s store.Store, now time.Time) (Counts, error) {
	var counts Counts
	for _, k := range kinds {
		n, err := k.count(ctx, s, now)
		if err != nil {
			return counts, fmt.Errorf("counting %s: %w", k.name, err)
		}
		counts = append(counts, Count{Kind: k.name, Source: n})
	}
	return counts, nil
}

// CheckEmpty returns an error wrapping ErrNotEmpty, naming what s
// holds, unless s holds no record of any kind Copy copies.
func CheckEmpty(ctx context.Context, s store.Store, now time.Time) error {
	var held []string
	for _, k := range kinds {
		n, err := k.count(ctx, s, now)
		if err != nil {
			return fmt.Errorf("storecopy: checking the target is empty: counting %s: %w", k.name, err)
		}
		if n > 0 {
			held = append(held, fmt.Sprintf("%d %s", n, k.name))
		}
	}
	if held != nil {
		return fmt.Errorf("%w: it holds %s", ErrNotEmpty, strings.Join(held, ", "))
	}
	return nil
}

// checkCursor checks that the target's alert cursor is at least the
// source's, so the alert engine neither repeats nor skips events.
func checkCursor(ctx context.Context, from, to store.Store) error {
	src, err := from.AlertCursor(ctx)
	if err != nil {
		return fmt.Errorf("reading the source's alert cursor: %w", err)
	}
	dst, err := to.AlertCursor(ctx)
	if err != nil {
		return fmt.Errorf("reading the target's alert cursor: %w", err)
	}
	if dst < src {
		return fmt.Errorf("alert cursor: source %d, target %d", src, dst)
	}
	return nil
}

// kinds are the record kinds in copy order.
var kinds = []kind{
	each(Freezes, func(ctx context.Context, s store.Store, _ time.Time) ([]store.Freeze, error) {
		return s.ListFreezes(ctx)
	}, target.SetFreeze),
	// Oldest first, so a backend that keeps creation order keeps it.
	each(Latches, func(ctx context.Context, s store.Store, now time.Time) ([]store.Latch, error) {
		ls, err := s.ListLatches(ctx, store.LatchFilter{}, now)
		slices.Reverse(ls)
		return ls, err
	}, target.ImportLatch),
	each(Users, func(ctx context.Context, s store.Store, _ time.Time) ([]store.User, error) {
		return s.ListUsers(ctx)
	}, target.ImportUser),
	each(Triplets, func(ctx context.Context, s store.Store, now time.Time) ([]store.Triplet, error) {
		return s.ListTriplets(ctx, store.TripletFilter{}, now)
	}, target.PutTriplet),
	each(ClientPasses, func(ctx context.Context, s store.Store, now time.Time) ([]store.ClientPass, error) {
		return s.ListClientPasses(ctx, now, 0, 0)
	}, target.ImportClientPass),
	// Into an empty target, merging a client's total into nothing keeps
	// it as it is.
	each(TrapRecords, func(ctx context.Context, s store.Store, _ time.Time) ([]store.TrapRecord, error) {
		return s.TrapRecords(ctx, "")
	}, func(to target, ctx context.Context, r store.TrapRecord) error { return to.AddTrapHits(ctx, r) }),
	each(Ports, func(ctx context.Context, s store.Store, _ time.Time) ([]store.PortState, error) {
		pl, ok := s.(portLister)
		if !ok {
			return nil, fmt.Errorf("the backend (%T) cannot list every port state", s)
		}
		return pl.AllPorts(ctx)
	}, target.ImportPort),
	each(Logins, func(ctx context.Context, s store.Store, _ time.Time) ([]store.MailLogin, error) {
		return s.LastLogins(ctx)
	}, target.RecordLogin),
	each(HostNotes, func(ctx context.Context, s store.Store, _ time.Time) ([]store.HostNote, error) {
		return s.HostNotes(ctx, "")
	}, target.AddHostNote),
	each(Disinfections, func(ctx context.Context, s store.Store, _ time.Time) ([]store.Disinfection, error) {
		return s.Disinfections(ctx, "")
	}, target.AddDisinfection),
	{name: Alerts, copy: copyAlerts, count: countAlerts},
	{name: Events, copy: copyEvents, count: countEvents},
}

// each is a kind whose records list reads whole and put writes one at a
// time; it counts them by listing.
func each[T any](name string, list func(context.Context, store.Store, time.Time) ([]T, error),
	put func(target, context.Context, T) error) kind {
	return kind{
		name: name,
		copy: func(ctx context.Context, from store.Store, to target, now time.Time, add func(int)) error {
			recs, err := list(ctx, from, now)
			if err != nil {
				return fmt.Errorf("reading the source: %w", err)
			}
			for _, r := range recs {
				if err := put(to, ctx, r); err != nil {
					return fmt.Errorf("writing the target: %w", err)
				}
				add(1)
			}
			return nil
		},
		count: func(ctx context.Context, s store.Store, now time.Time) (int, error) {
			recs, err := list(ctx, s, now)
			return len(recs), err
		},
	}
}

// liveAlerts returns s's alerts not expired at now, oldest first.
func liveAlerts(ctx context.Context, s store.Store, now time.Time) ([]store.Alert, error) {
	all, err := s.RecentAlerts(ctx, 0)
	if err != nil {
		return nil, err
	}
	all = slices.DeleteFunc(all, func(a store.Alert) bool { return !now.Before(a.Expires) })
	slices.Reverse(all)
	return all, nil
}

func countAlerts(ctx context.Context, s store.Store, now time.Time) (int, error) {
	as, err := liveAlerts(ctx, s, now)
	return len(as), err
}

// copyAlerts copies the unexpired alerts with their ids and states, and
// the alert cursor with them: alerts pending in the source are
// delivered from the target, once.
func copyAlerts(ctx context.Context, from store.Store, to target, now time.Time, add func(int)) error {
	cursor, err := from.AlertCursor(ctx)
	if err != nil {
		return fmt.Errorf("reading the source's alert cursor: %w", err)
	}
	as, err := liveAlerts(ctx, from, now)
	if err != nil {
		return fmt.Errorf("reading the source: %w", err)
	}
	// One import at least, so that the cursor arrives without alerts.
	for {
		n := min(batch, len(as))
		if err := to.ImportAlerts(ctx, as[:n], cursor); err != nil {
			return fmt.Errorf("writing the target: %w", err)
		}
		add(n)
		if as = as[n:]; len(as) == 0 {
			return nil
		}
	}
}

// eachEvents calls fn with s's events in ID order, a batch at a time,
// as a reader following the log does (store.EventFilter.Tail). Events
// past retention are left out by the store.
func eachEvents(ctx context.Context, s store.Store, fn func([]store.Event) error) error {
	var after int64
	for {
		evs, err := s.QueryEvents(ctx, store.EventFilter{Tail: true, AfterID: after, Limit: batch})
		if err != nil || len(evs) == 0 {
			return err
		}
		if err := fn(evs); err != nil {
			return err
		}
		after = evs[len(evs)-1].ID
	}
}

func countEvents(ctx context.Context, s store.Store, _ time.Time) (int, error) {
	n := 0
	err := eachEvents(ctx, s, func(evs []store.Event) error {
		n += len(evs)
		return nil
	})
	return n, err
}

// copyEvents copies the event log, audit trail included, with its ids,
// oldest first.
func copyEvents(ctx context.Context, from store.Store, to target, _ time.Time, add func(int)) error {
	var werr error
	err := eachEvents(ctx, from, func(evs []store.Event) error {
		if werr = to.ImportEvents(ctx, evs...); werr != nil {
			return werr
		}
		add(len(evs))
		return nil
	})
	switch {
	case werr != nil:
		return fmt.Errorf("writing the target: %w", werr)
	case err != nil:
		return fmt.Errorf("reading the source: %w", err)
	}
	return nil
}
