package daemon

import (
	"context"

	"mailwarden/internal/alert"
	"mailwarden/internal/config"
	"mailwarden/internal/mtaqueue"
	"mailwarden/internal/store"
)

// newAlerts makes the alert engine (internal/alert) and registers its
// metrics. It reads the event log from the store, the live config, and
// the queue watcher's last listing; the store health monitor tells it
// at once when the store stops writing. Its settings are live: a reload
// applies to the next alert.
func (d *Daemon) newAlerts(queue *mtaqueue.Watcher) {
	m := alert.NewMetrics()
	d.metrics.reg.MustRegister(m.Collectors()...)
	o := alert.Options{
		Store:   d.store,
		Events:  d.events.After,
		Last:    d.lastEventID,
		Config:  func() config.Config { return *d.cfg.Load() },
		Metrics: m,
		Log:     d.log,
	}
	if queue != nil {
		o.Queue = queue.Latest
	}
	d.alerts = alert.New(o)
}

// lastEventID is the newest event's ID, where alerts start on a store
// that has never had them.
func (d *Daemon) lastEventID(ctx context.Context) (int64, error) {
	evs, err := d.events.Query(ctx, store.EventFilter{Limit: 1})
	if err != nil || len(evs) == 0 {
		return 0, err
	}
	return evs[0].ID, nil
}

// runAlerts runs the engine until ctx ends. Shutdown waits for it, so
// open digests reach the outbox before the store closes.
func (d *Daemon) runAlerts(ctx context.Context) {
	// Loaded before anything is served, so the first events of this
	// run are not taken for history.
	d.alerts.Load(ctx)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.alerts.Run(ctx)
	}()
}
