package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/config"
	"mailwarden/internal/events"
	"mailwarden/internal/store"
)

// A store can go on answering reads (store.Ping) while every write
// fails: a full disk, immutable files, a filesystem remounted read-only,
// a database file removed under the daemon. Mail is still decided from
// what the daemon holds in memory, but what it writes is lost. The store
// health monitor finds this out with a write probe and shows it in
// /-/ready, `mailwarden status`, the metrics and the event log.
const (
	// storeProbeEvery is how often the probe runs while the store
	// writes.
	storeProbeEvery = 5 * time.Second
	// storeRecheckEvery is how often the monitor looks for new write
	// failures, probing at once when there are some, and how often it
	// probes while the store cannot write, so recovery shows quickly.
	storeRecheckEvery = time.Second
	// storeProbeTimeout bounds one probe: a writer stuck longer than
	// SQLite's busy timeout behind another process's lock cannot write
	// either.
	storeProbeTimeout = 10 * time.Second
	// storeSettingsEvery is how often a store that checks its server's
	// settings (Redis: the eviction policy, the hash settings) reads
	// them again, so that a change made with CONFIG SET shows in
	// `mailwarden status` without a restart.
	storeSettingsEvery = time.Minute
)

// writeFailureCounter is a store that counts its failed writes by kind
// (sqlite.Store).
type writeFailureCounter interface {
	WriteFailures() map[string]uint64
}

// storeHealth runs the write probe and keeps what it found.
type storeHealth struct {
	st      store.Store
	events  *events.Log
	log     *slog.Logger
	now     func() time.Time
	backend string
	// failures returns the backend's failed writes by kind; nil when
	// the backend does not count them.
	failures                func() map[string]uint64
	every, recheck, timeout time.Duration
	settingsEvery           time.Duration
	settingsChecked         time.Time // under checking

	// checking makes checks one at a time, so an outage is recorded once.
	checking sync.Mutex

	mu        sync.Mutex
	up        bool
	since     time.Time // when the current state began
	checked   time.Time
	lastErr   string // the most recent failed probe's error
	lastErrAt time.Time
	downErr   string            // the error the store went down with
	base      map[string]uint64 // failed writes at the last good probe
	seen      uint64            // failed writes at the last look
	// failingSince is when a look first found failed writes since the
	// last good probe: the outage began then rather than at the probe.
	failingSince  time.Time
	probeFailures uint64
	// unrecorded holds store events that could not be recorded yet.
	unrecorded []store.Event
	// notify, if set, is told at once when the store stops writing and
	// when it writes again: the alert engine, which cannot learn it
	// from the event log while the store cannot record events.
	notify func(kind, text string)

	upDesc, failDesc, probeDesc *prometheus.Desc
}

func newStoreHealth(st store.Store, ev *events.Log, log *slog.Logger, backend string) *storeHealth {
	h := &storeHealth{st: st, events: ev, log: log, now: time.Now, backend: backend,
		every: storeProbeEvery, recheck: storeRecheckEvery, timeout: storeProbeTimeout,
		settingsEvery: storeSettingsEvery, up: true, base: map[string]uint64{},
		upDesc: prometheus.NewDesc("mailwarden_store_up",
			"1 if the store's write probe last succeeded, 0 while the store cannot write.", nil, nil),
		failDesc: prometheus.NewDesc("mailwarden_store_write_failures_total",
			"Writes the store failed to make since the start, by kind of record (triplet, event, latch ...).", []string{"kind"}, nil),
		probeDesc: prometheus.NewDesc("mailwarden_store_probe_failures_total",
			"Store write probes that failed since the start.", nil, nil),
	}
	if c, ok := st.(writeFailureCounter); ok {
		h.failures = c.WriteFailures
	}
	h.since = h.now()
	h.settingsChecked = h.since // the store checked them as it opened
	h.base = h.failed()
	return h
}

// startStoreHealth makes the monitor, registers its metrics and runs
// the first probe at once, so a store that cannot write at the start
// shows before anything is served.
func (d *Daemon) startStoreHealth(backend string) {
	d.health = newStoreHealth(d.store, d.events, d.log, backend)
	d.health.notify = d.alerts.Notify
	d.metrics.reg.MustRegister(d.health)
	d.health.check(context.Background())
}

// failed returns the backend's failed writes by kind (empty when it does
// not count them).
func (h *storeHealth) failed() map[string]uint64 {
	if h.failures == nil {
		return map[string]uint64{}
	}
	return h.failures()
}

func total(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// run probes until ctx ends: every storeProbeEvery while the store
// writes, every storeRecheckEvery while it does not, and at the next
// look after a write failed.
func (h *storeHealth) run(ctx context.Context) {
	tick := time.NewTicker(h.recheck)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if h.due() {
			h.check(ctx)
		}
	}
}

func (h *storeHealth) due() bool {
	n := total(h.failed())
	h.mu.Lock()
	defer h.mu.Unlock()
	grew := n > h.seen
	h.seen = n
	now := h.now()
	if grew && h.up && h.failingSince.IsZero() {
		h.failingSince = now
	}
	return !h.up || grew || now.Sub(h.checked) >= h.every
}

// check runs the probe once and acts on a change: it logs at once when
// the store cannot write, and when it can again records what happened
// as two events, the first stamped with when it went down (it could not
// be stored then).
func (h *storeHealth) check(ctx context.Context) {
	h.checking.Lock()
	defer h.checking.Unlock()
	pctx, cancel := context.WithTimeout(ctx, h.timeout)
	err := h.st.Probe(pctx)
	cancel()
	if ctx.Err() != nil {
		return // stopping: the probe was cut short, not failed
	}
	failed := h.failed()
	now := h.now()

	h.mu.Lock()
	h.checked = now
	wasUp, downSince, downErr, base := h.up, h.since, h.downErr, h.base
	if err != nil {
		h.probeFailures++
		h.lastErr, h.lastErrAt = err.Error(), now
		if wasUp {
			h.up, h.since, h.downErr = false, now, err.Error()
			if !h.failingSince.IsZero() {
				h.since = h.failingSince
			}
		}
	} else {
		h.base, h.failingSince = failed, time.Time{}
		if !wasUp {
			h.up, h.since, h.downErr = true, now, ""
			h.unrecorded = append(h.unrecorded, outageEvents(downSince, now, downErr, lost(failed, base))...)
		}
	}
	pending := h.unrecorded
	h.mu.Unlock()

	if h.notify != nil {
		switch {
		case err != nil && wasUp:
			h.notify(config.AlertStore, fmt.Sprintf("the %s store cannot write: %v; mail is still decided from memory, "+
				"but what is written now is lost", h.backend, err))
		case err == nil && !wasUp:
			h.notify(config.AlertStore, fmt.Sprintf("the %s store writes again after %s; %d writes lost (%s)", h.backend,
				now.Sub(downSince).Round(time.Second), total(lost(failed, base)), formatCounts(lost(failed, base))))
		}
	}
	switch {
	case err != nil && wasUp:
		h.log.Error("store cannot write: mail is still decided from memory, but what is written now is lost; "+
			"/-/ready answers 503 until it can", "backend", h.backend, "err", err,
			"writes_lost", total(lost(failed, base)))
	case err == nil && !wasUp:
		l := lost(failed, base)
		h.log.Warn("store writes again", "backend", h.backend, "down_for", now.Sub(downSince).Round(time.Second),
			"writes_lost", total(l), "by_kind", formatCounts(l), "err_while_down", downErr)
	}
	if err == nil && len(pending) > 0 {
		h.record(ctx, pending)
	}
	if err == nil {
		h.recheckSettings(ctx, now)
	}
}

// serverChecker is a store that can read its server's settings again
// (redis.Store) and tell what it newly found that may let mail through.
type serverChecker interface {
	CheckServer(ctx context.Context) []string
}

// recheckSettings has the store read its server's settings again every
// settingsEvery; the store logs what changed. A newly found setting
// that may let mail through (Redis evicting latches) is also alerted:
// someone changed the server under a running daemon.
func (h *storeHealth) recheckSettings(ctx context.Context, now time.Time) {
	r, ok := h.st.(serverChecker)
	if !ok || now.Sub(h.settingsChecked) < h.settingsEvery {
		return
	}
	h.settingsChecked = now
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	severe := r.CheckServer(ctx)
	cancel()
	if h.notify == nil {
		return
	}
	for _, text := range severe {
		h.notify(config.AlertStore, fmt.Sprintf("the %s store's server settings changed: %s", h.backend, text))
	}
}

// record stores the outage events, keeping them for the next good probe
// if they cannot be stored now.
func (h *storeHealth) record(ctx context.Context, evs []store.Event) {
	if err := h.events.Record(ctx, evs...); err != nil {
		h.log.Error("recording the store outage failed; trying again at the next probe", "err", err)
		return
	}
	h.mu.Lock()
	h.unrecorded = h.unrecorded[len(evs):]
	h.mu.Unlock()
}

// lost returns the failed writes counted since base, by kind, leaving
// out kinds with none.
func lost(now, base map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, n := range now {
		if n > base[k] {
			out[k] = n - base[k]
		}
	}
	return out
}

// formatCounts writes counts as "event=3 triplet=12", kinds sorted, or
// "none".
func formatCounts(m map[string]uint64) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// outageEvents are the two events of an outage from down to up: one
// when it began, one when it ended, both written once the store could
// write again.
func outageEvents(down, up time.Time, errText string, lostWrites map[string]uint64) []store.Event {
	took := up.Sub(down).Round(time.Second)
	n := total(lostWrites)
	detail := fmt.Sprintf("%d writes lost", n)
	if n > 0 {
		detail += " (" + formatCounts(lostWrites) + ")"
	}
	return []store.Event{
		{Time: down, Kind: store.EventStore, Check: "store",
			Reason: fmt.Sprintf("store could not write from %s to %s (%s): %s; %s",
				down.UTC().Format(time.RFC3339), up.UTC().Format(time.RFC3339), took, errText, detail)},
		{Time: up, Kind: store.EventStore, Check: "store",
			Reason: fmt.Sprintf("store writes again after %s; %s while it could not", took, detail)},
	}
}

// ready is the store's part of /-/ready: an error while the probe fails.
func (h *storeHealth) ready() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.up {
		return nil
	}
	return fmt.Errorf("store cannot write since %s (%s): %s", h.since.UTC().Format(time.RFC3339),
		h.now().Sub(h.since).Round(time.Second), h.lastErr)
}

// status is the store's part of `mailwarden status`.
func (h *storeHealth) status() adminapi.StoreStatus {
	failed := h.failed()
	h.mu.Lock()
	defer h.mu.Unlock()
	st := adminapi.StoreStatus{Backend: h.backend, Up: h.up, Since: h.since, Checked: h.checked,
		LastError: h.lastErr, LastErrorAt: h.lastErrAt, LostWrites: total(failed)}
	if h.failures != nil {
		st.WriteFailures = failed
	}
	if w, ok := h.st.(serverWarner); ok {
		st.Warnings = w.ServerWarnings()
	}
	return st
}

// serverWarner is a store that found something wrong with its server's
// settings at its last look (redis.Store: an eviction policy that may
// drop latches, hash settings that cost memory).
type serverWarner interface {
	ServerWarnings() []string
}

func (h *storeHealth) Describe(ch chan<- *prometheus.Desc) {
	ch <- h.upDesc
	ch <- h.failDesc
	ch <- h.probeDesc
}

func (h *storeHealth) Collect(ch chan<- prometheus.Metric) {
	failed := h.failed()
	h.mu.Lock()
	up, probes := 0.0, h.probeFailures
	if h.up {
		up = 1
	}
	h.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(h.upDesc, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(h.probeDesc, prometheus.CounterValue, float64(probes))
	for kind, n := range failed {
		ch <- prometheus.MustNewConstMetric(h.failDesc, prometheus.CounterValue, float64(n), kind)
	}
}

// ready is /-/ready: the store answers reads and can write.
func (d *Daemon) ready(ctx context.Context) error {
	if err := d.store.Ping(ctx); err != nil {
		return err
	}
	return d.health.ready()
}
