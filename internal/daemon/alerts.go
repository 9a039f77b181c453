package daemon

import (
	"context"
	"strconv"
	"time"

	"mailwarden/internal/adminapi"
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

// openAlertsWindow is how far back the incident report's alerts reach;
// an alert not yet delivered is open however old it is.
const openAlertsWindow = time.Hour

// incidentAlerts is the incident report's alerts section, read from the
// outbox: the alerts raised in the last hour and those still waiting to
// be delivered, one line per alert (not per receiver), newest first.
type incidentAlerts struct {
	store store.Store
	cfg   func() config.Config
}

// OpenAlerts implements adminapi.AlertSource. With no receiver
// configured it says so through the report's own note.
func (a incidentAlerts) OpenAlerts(ctx context.Context, now time.Time) ([]adminapi.IncidentAlert, []string, error) {
	if len(a.cfg().Alerts.Receivers) == 0 {
		return nil, nil, adminapi.ErrAlertsOff
	}
	recent, err := a.store.RecentAlerts(ctx, 500)
	if err != nil {
		return nil, nil, err
	}
	var out []adminapi.IncidentAlert
	seen := map[string]bool{}
	undelivered := false
	for _, al := range recent {
		open := al.State != store.AlertSent
		if !open && now.Sub(al.Created) > openAlertsWindow {
			continue
		}
		undelivered = undelivered || open
		key := al.Created.String() + "\x00" + al.Kind + "\x00" + al.Subject
		if seen[key] {
			continue
		}
		seen[key] = true
		summary := al.Subject
		if open {
			summary += " (not delivered yet to " + al.Receiver + ")"
		}
		out = append(out, adminapi.IncidentAlert{ID: strconv.FormatInt(al.ID, 10), Time: al.Created, Kind: al.Kind,
			Summary: summary, Count: len(al.Items)})
	}
	actions := []string{"mailwarden alerts list"}
	if undelivered {
		actions = append(actions, "mailwarden alerts test --config /etc/mailwarden/mailwarden.yaml")
	}
	return out, actions, nil
}
