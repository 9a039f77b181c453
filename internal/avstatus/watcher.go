// Package avstatus watches the clamd servers' health and the age of
// their signatures: it records an event when signatures go stale or a
// server goes down or comes back, and exports both as Prometheus
// metrics. Stale signatures are the quiet failure of virus scanning:
// every message is scanned and passes, against last week's viruses.
package avstatus

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"mailwarden/internal/clamd"
	"mailwarden/internal/defaults"
	"mailwarden/internal/events"
	"mailwarden/internal/logx"
	"mailwarden/internal/store"
)

// ClamdStatus is what the watcher needs of the clamd client: each
// server as its health checks last saw it.
type ClamdStatus interface {
	Status() []clamd.ServerStatus
}

// notifier is a ClamdStatus that also announces each change of a server
// between up and down, as clamd.Client does: its breaker can take a
// server down and bring it back within seconds, between two of the
// watcher's looks.
type notifier interface {
	// Changed returns a channel closed at the next change.
	Changed() <-chan struct{}
}

// Defaults for Options left zero.
const (
	// DefaultInterval is how often the watcher looks at the servers.
	DefaultInterval = time.Minute
	// DefaultFirstCheck lets the clamd client's first health check
	// (every antivirus.health_interval, 10s by default) run before the
	// watcher's first look, so a server is not reported as unchecked.
	DefaultFirstCheck = 15 * time.Second
	// RepeatStale is how long a server whose signatures stay stale, at
	// the same version, goes without another event: a stale day yields
	// one event per server, not one a minute.
	RepeatStale = 24 * time.Hour
)

// Options configure a Watcher.
type Options struct {
	// Clamd reports the servers; nil means there is nothing to watch.
	Clamd ClamdStatus
	// MaxAge is the signature age over which signatures are stale
	// (antivirus.signature_max_age); 0 turns the staleness check off.
	MaxAge time.Duration
	// Events records the watcher's events; nil records none.
	Events *events.Log
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	Log *slog.Logger
	// Interval and FirstCheck time Run; 0 means DefaultInterval and
	// DefaultFirstCheck.
	Interval, FirstCheck time.Duration
}

// Watcher checks the clamd servers periodically; see Run. It is also a
// prometheus.Collector (collector.go).
type Watcher struct {
	log      *slog.Logger
	now      func() time.Time
	events   *events.Log
	interval time.Duration
	first    time.Duration
	desc     descs

	mu      sync.Mutex // guards clamd and maxAge, which Update changes
	clamd   ClamdStatus
	maxAge  time.Duration
	updated chan struct{} // wakes Run after Update

	checkMu sync.Mutex // serialises Check; guards seen
	seen    map[string]*server
}

// server is what the watcher remembers of one clamd between checks.
type server struct {
	up bool
	// staleAt is when stale signatures were last reported (zero: they
	// are not stale, or the report has not been recorded yet), and
	// staleVersion the signature version reported then.
	staleAt      time.Time
	staleVersion int
}

// New returns a watcher for o; it checks once Run is called.
func New(o Options) *Watcher {
	w := &Watcher{log: o.Log, now: o.Now, events: o.Events,
		interval: o.Interval, first: o.FirstCheck, clamd: o.Clamd, maxAge: o.MaxAge,
		seen: map[string]*server{}, desc: newDescs(), updated: make(chan struct{}, 1)}
	w.log = logx.Or(w.log)
	if w.now == nil {
		w.now = time.Now
	}
	w.interval = defaults.Positive(w.interval, DefaultInterval)
	w.first = defaults.Positive(w.first, DefaultFirstCheck)
	return w
}

// Update applies a reloaded configuration: a new clamd client (nil:
// nothing to watch) and signature age limit. What the watcher remembers
// of each server is kept, so a reload does not repeat its events.
func (w *Watcher) Update(c ClamdStatus, maxAge time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.clamd, w.maxAge = c, maxAge
	select {
	case w.updated <- struct{}{}:
	default:
	}
}

// current returns the clamd client and age limit in force.
func (w *Watcher) current() (ClamdStatus, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.clamd, w.maxAge
}

// changes returns the clamd client's channel for the next change, or
// nil (never ready) when it does not announce changes.
func (w *Watcher) changes() <-chan struct{} {
	c, _ := w.current()
	if n, ok := c.(notifier); ok {
		return n.Changed()
	}
	return nil
}

// Run checks after FirstCheck and then every Interval until ctx ends,
// and at once whenever the clamd client announces that a server went
// down or came back, so that even a short outage gets its two events.
func (w *Watcher) Run(ctx context.Context) {
	t := time.NewTimer(w.first)
	defer t.Stop()
	changed := w.changes()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			t.Reset(w.interval)
		case <-changed:
		case <-w.updated:
		}
		// Taken before Check reads the status, so that a change while
		// it runs brings another check.
		changed = w.changes()
		w.Check(ctx)
	}
}

// Check looks at every server once, recording an event for each server
// that went down, came back, or whose signatures are newly stale.
// Servers the clamd client has not checked yet are skipped.
func (w *Watcher) Check(ctx context.Context) {
	c, maxAge := w.current()
	w.checkMu.Lock()
	defer w.checkMu.Unlock()
	var sts []clamd.ServerStatus
	if c != nil {
		sts = c.Status()
	}
	now := w.now()
	present := map[string]bool{}
	for _, st := range sts {
		if st.Checked.IsZero() || present[st.Addr] {
			continue
		}
		present[st.Addr] = true
		w.checkServer(ctx, st, maxAge, now)
	}
	// A server removed by a reload is forgotten; if it is added back,
	// it starts afresh.
	for addr := range w.seen {
		if !present[addr] {
			delete(w.seen, addr)
		}
	}
}

func (w *Watcher) checkServer(ctx context.Context, st clamd.ServerStatus, maxAge time.Duration, now time.Time) {
	s, known := w.seen[st.Addr]
	if !known {
		// A server first seen up is the normal start; first seen down is
		// worth an event, as a later fall would be.
		s = &server{up: true}
		w.seen[st.Addr] = s
	}
	switch {
	case s.up && !st.Up:
		// The clamd client logs the change itself; the watcher records it.
		reason := fmt.Sprintf("clamd at %s is down: %s", st.Addr, orUnknown(st.LastError))
		w.log.Debug("recording clamd down", "server", st.Addr, "err", st.LastError)
		if w.record(ctx, now, reason) {
			s.up = false
		}
	case !s.up && st.Up:
		reason := fmt.Sprintf("clamd at %s is up again (%s)", st.Addr, describe(st.Version))
		w.log.Debug("recording clamd up again", "server", st.Addr, "engine", st.Version.Engine,
			"signatures", st.Version.DBVersion)
		if w.record(ctx, now, reason) {
			s.up = true
		}
	}
	if !st.Up {
		return
	}
	age, stale := Age(st.Version, maxAge, now)
	if !stale {
		if !s.staleAt.IsZero() {
			w.log.Info("clamd signatures are current again", "server", st.Addr,
				"version", st.Version.DBVersion, "age", FormatDuration(age))
		}
		s.staleAt = time.Time{}
		return
	}
	if !s.staleAt.IsZero() && s.staleVersion == st.Version.DBVersion && now.Sub(s.staleAt) < RepeatStale {
		return
	}
	reason := fmt.Sprintf("clamd at %s signatures are %s old (%s); the limit is %s",
		st.Addr, FormatDuration(age), describeSignatures(st.Version), FormatLimit(maxAge))
	w.log.Warn("clamd signatures are stale: is freshclam running?", "server", st.Addr,
		"version", st.Version.DBVersion, "date", st.Version.DBTime, "age", FormatDuration(age),
		"limit", FormatLimit(maxAge))
	if w.record(ctx, now, reason) {
		s.staleAt, s.staleVersion = now, st.Version.DBVersion
	}
}

// record appends one event and reports whether it was stored; when it
// was not, the state is left unchanged so the next check tries again.
func (w *Watcher) record(ctx context.Context, now time.Time, reason string) bool {
	if w.events == nil {
		return true
	}
	ev := store.Event{Time: now, Kind: store.EventSignatures, Check: "clamd", Reason: reason}
	if err := w.events.Record(ctx, ev); err != nil {
		w.log.Error("recording clamd event failed", "reason", reason, "err", err)
		return false
	}
	return true
}

// Age returns how old v's signatures are at now and whether that is
// over maxAge. Unknown signature dates and a maxAge of 0 are never
// stale. The CLI, the admin API and the events all judge by it.
func Age(v clamd.Version, maxAge time.Duration, now time.Time) (age time.Duration, stale bool) {
	if v.DBTime.IsZero() {
		return 0, false
	}
	age = now.Sub(v.DBTime)
	return age, maxAge > 0 && age > maxAge
}

// describe summarises a server's version for an event.
func describe(v clamd.Version) string {
	if v.Engine == "" {
		return describeSignatures(v)
	}
	return v.Engine + ", " + describeSignatures(v)
}

// describeSignatures says "version 27463 of 2026-11-18".
func describeSignatures(v clamd.Version) string {
	switch {
	case v.DBVersion == 0 && v.DBTime.IsZero():
		return "signature version unknown"
	case v.DBTime.IsZero():
		return "version " + strconv.Itoa(v.DBVersion)
	case v.DBVersion == 0:
		return "signatures of " + v.DBTime.Format(time.DateOnly)
	}
	return "version " + strconv.Itoa(v.DBVersion) + " of " + v.DBTime.Format(time.DateOnly)
}

func orUnknown(s string) string {
	if s == "" {
		return "no error reported"
	}
	return s
}

// FormatDuration rounds d to its two largest units, as the CLI prints
// ages: "45s", "2h5m", "3d4h".
func FormatDuration(d time.Duration) string {
	if d < 0 {
		return "-" + FormatDuration(-d)
	}
	two := func(a int64, ua string, b int64, ub string) string {
		if b == 0 {
			return strconv.FormatInt(a, 10) + ua
		}
		return strconv.FormatInt(a, 10) + ua + strconv.FormatInt(b, 10) + ub
	}
	switch {
	case d < time.Minute:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	case d < time.Hour:
		return two(int64(d/time.Minute), "m", int64(d%time.Minute/time.Second), "s")
	case d < 24*time.Hour:
		return two(int64(d/time.Hour), "h", int64(d%time.Hour/time.Minute), "m")
	}
	return two(int64(d/(24*time.Hour)), "d", int64(d%(24*time.Hour)/time.Hour), "h")
}

// FormatLimit prints a configured duration as it would be written in
// the config: "72h", "90m", "1h30m".
func FormatLimit(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// SignatureVersion returns the signature database version the clamd
// servers report now, as their health checks last saw it, or 0 when it
// is unknown: no server has reported one, or they report different
// ones. A server that is down keeps the version it last reported. The
// scan cache drops its entries when this changes.
func (w *Watcher) SignatureVersion() int {
	c, _ := w.current()
	if c == nil {
		return 0
	}
	return SignatureVersion(c.Status())
}

// SignatureVersion is the version all servers in sts agree on, or 0;
// servers not yet checked, or that did not report one, are left out.
func SignatureVersion(sts []clamd.ServerStatus) int {
	v := 0
	for _, st := range sts {
		switch {
		case st.Version.DBVersion <= 0:
		case v == 0:
			v = st.Version.DBVersion
		case v != st.Version.DBVersion:
			// Servers mid-update: a verdict could come from either.
			return 0
		}
	}
	return v
}
