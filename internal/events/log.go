package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"mailwarden/internal/config"
	"mailwarden/internal/logx"
	"mailwarden/internal/store"
)

// kinds is every event kind, in the order filters offer them. It is the
// one list: the CLI's --kind, the admin API's filter check and the
// dashboard's events page all read Kinds.
var kinds = []string{store.EventReject, store.EventTempfail, store.EventLatch, store.EventRateTrip,
	store.EventFreeze, store.EventAdmin, store.EventGreylist, store.EventVirus, store.EventSignatures,
	store.EventMailbox, store.EventStore, store.EventTrap}

// Kinds returns every event kind.
func Kinds() []string { return slices.Clone(kinds) }

// KnownKind reports whether kind is an event kind.
func KnownKind(kind string) bool { return slices.Contains(kinds, kind) }

// ErrUnknownKind refuses an event whose kind is not in Kinds.
var ErrUnknownKind = errors.New("events: unknown event kind")

// ErrUnrecorded says an admin change was made but its audit entry could
// not be stored.
var ErrUnrecorded = errors.New("events: recording the admin event failed")

// LogOptions configure a Log.
type LogOptions struct {
	Store store.Events
	// Settings returns the live events settings (retention, whether
	// greylist deferrals are events); nil means the defaults. A reload
	// applies to the next event.
	Settings func() config.Events
	Now      func() time.Time
	Log      *slog.Logger
}

// Log is the event log: the only writer of events. It owns the list of
// kinds, fills each event's time and expiry from the live retention,
// refuses unknown kinds, and records admin actions together with the
// change they made. The pipeline, the admin API, the dashboard, the host
// registry, the clamd watcher, the mailbox watch and the CLI all write
// through it; alerts will read it by ID (After).
type Log struct {
	o LogOptions
}

// NewLog returns the event log over o.Store.
func NewLog(o LogOptions) *Log {
	o.Log = logx.Or(o.Log)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Settings == nil {
		def := config.Default().Events
		o.Settings = func() config.Events { return def }
	}
	return &Log{o: o}
}

// retention is how long an event of kind recorded now is kept. Admin
// events are the audit trail: they have their own, much longer
// retention (events.audit_retention), never shorter than the others'.
func (l *Log) retention(kind string) time.Duration {
	set, def := l.o.Settings(), config.Default().Events
	r := set.Retention.D()
	if r <= 0 {
		r = def.Retention.D()
	}
	if kind != store.EventAdmin {
		return r
	}
	a := set.AuditRetention.D()
	if a <= 0 {
		a = def.AuditRetention.D()
	}
	return max(a, r)
}

// Record stores evs. An event without a time happens now; every event
// expires after the retention in force. An unknown kind refuses the
// whole call, so a typo cannot write events no filter finds.
func (l *Log) Record(ctx context.Context, evs ...store.Event) error {
	if len(evs) == 0 {
		return nil
	}
	now := l.o.Now()
	out := make([]store.Event, len(evs))
	for i, ev := range evs {
		if !KnownKind(ev.Kind) {
			return fmt.Errorf("%w %q", ErrUnknownKind, ev.Kind)
		}
		if ev.Time.IsZero() {
			ev.Time = now
		}
		ev.Expires = ev.Time.Add(l.retention(ev.Kind))
		out[i] = ev
	}
	if err := l.o.Store.AppendEvents(ctx, out...); err != nil {
		return fmt.Errorf("events: recording %s event: %w", out[0].Kind, err)
	}
	return nil
}

// Admin names an administrator's action for the audit log.
type Admin struct {
	// Who made the change: the OS user from the admin socket's peer
	// credentials, or "web:NAME" for a dashboard user.
	Who string
	// Action is the command, as the CLI names it: "latch clear",
	// "freeze on", "user add", "web login".
	Action string
	// Client and Site are the host concerned, or the address a login
	// came from.
	Client, Site string
	// Reason says what was done and why (the --note).
	Reason string
	// From says where the change came from: "admin socket", "dashboard
	// 192.0.2.7", "command line". Empty takes it from the context
	// (WithFrom). It is stored in the entry's Action field, which admin
	// entries have no other use for.
	From string
}

type fromKey struct{}

// WithFrom marks ctx as a request that came from where (see Admin.From),
// for the entries Audit records under it.
func WithFrom(ctx context.Context, where string) context.Context {
	return context.WithValue(ctx, fromKey{}, where)
}

// From returns where ctx's request came from (WithFrom), or "".
func From(ctx context.Context) string {
	s, _ := ctx.Value(fromKey{}).(string)
	return s
}

// Audit runs change and records a as an admin event. The store commits
// the event in the same transaction as change's first write (see
// store.WithAudit), so a crash cannot keep the change and lose its
// record; a change that fails records nothing. change may be nil (a
// login, a scan): the event is then simply recorded. When the change
// was made and its record could not be, the error wraps ErrUnrecorded.
// change may edit the entry's reason before its first write, through
// store.AuditFrom(ctx).Event.Reason.
func (l *Log) Audit(ctx context.Context, a Admin, change func(ctx context.Context) error) error {
	now := l.o.Now()
	if a.From == "" {
		a.From = From(ctx)
	}
	au := &store.Audit{Event: store.Event{Time: now, Kind: store.EventAdmin, Check: a.Action, Action: a.From, User: a.Who,
		Client: a.Client, Site: a.Site, Reason: a.Reason, Expires: now.Add(l.retention(store.EventAdmin))}}
	if change != nil {
		if err := change(store.WithAudit(ctx, au)); err != nil {
			return err
		}
	}
	ev := au.Event
	l.o.Log.Info("admin: "+ev.Check, "by", ev.User, "from", ev.Action, "client", ev.Client, "reason", ev.Reason)
	if au.Stored() {
		return nil
	}
	if err := l.o.Store.AppendEvents(ctx, ev); err != nil {
		l.o.Log.Error("admin: recording the admin event failed", "action", ev.Check, "err", err)
		return fmt.Errorf("%w: %v", ErrUnrecorded, err)
	}
	return nil
}

// Query returns the events matching f, newest first.
func (l *Log) Query(ctx context.Context, f store.EventFilter) ([]store.Event, error) {
	return l.o.Store.QueryEvents(ctx, f)
}

// After returns up to limit events with an ID above id, oldest first:
// what a reader that tails the log (alerts, another process) has not
// seen yet.
func (l *Log) After(ctx context.Context, id int64, limit int) ([]store.Event, error) {
	return l.o.Store.QueryEvents(ctx, store.EventFilter{Tail: true, AfterID: id, Limit: limit})
}
