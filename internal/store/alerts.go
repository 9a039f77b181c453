package store

import (
	"context"
	"time"
)

// Alert delivery states.
const (
	AlertPending = "pending" // not delivered yet; tried again at NextTry
	AlertSent    = "sent"
	AlertFailed  = "failed" // given up: too old, dropped, or its receiver is gone
)

// Alert is one alert to one receiver: the alert engine's outbox row
// (internal/alert). An alert for two receivers is two rows, so each
// keeps its own delivery state and a restart delivers to each once.
type Alert struct {
	ID       int64 // assigned by the store, increasing
	Created  time.Time
	Kind     string // what it is about: latch, virus, rate_trip, queue, test ...
	Severity string // info, warning or critical
	Receiver string // the receiver's name in the alerts config
	Digest   bool   // true for a window's digest, false for an immediate alert
	Subject  string
	Text     string
	Items    []string // what it names: one line per event
	State    string   // AlertPending, AlertSent or AlertFailed; "" is pending
	Attempts int
	NextTry  time.Time // zero: now
	SentAt   time.Time
	Error    string // the last failed attempt's error
	Expires  time.Time
}

// AlertUpdate is the outcome of delivery attempts for one alert.
type AlertUpdate struct {
	ID       int64
	State    string
	Attempts int
	NextTry  time.Time
	SentAt   time.Time
	Error    string
}

// Alerts is the alert outbox and the alert engine's place in the event
// log. Its writes commit before they return: an alert the engine made
// must survive a crash, and be delivered once after a restart.
type Alerts interface {
	// AddAlerts stores alerts with fresh IDs, in order, and moves the
	// alert cursor (the last event ID the engine has read) to cursor,
	// in one commit, so a restart neither loses nor repeats them. A
	// cursor below the stored one leaves it alone. It returns the IDs
	// given, in the order of alerts.
	AddAlerts(ctx context.Context, alerts []Alert, cursor int64) ([]int64, error)
	// AlertCursor returns the stored cursor, 0 before the first AddAlerts.
	AlertCursor(ctx context.Context) (int64, error)
	// PendingAlerts returns up to limit (0: all) pending alerts, oldest
	// first.
	PendingAlerts(ctx context.Context, limit int) ([]Alert, error)
	// MarkAlert records delivery attempts: u's State, Attempts,
	// NextTry, SentAt and Error replace the alert's. An unknown ID gives
	// ErrNotFound.
	MarkAlert(ctx context.Context, u AlertUpdate) error
	// RecentAlerts returns up to limit (0: all) alerts, newest first.
	RecentAlerts(ctx context.Context, limit int) ([]Alert, error)
}
