package memory

import (
	"context"
	"fmt"
	"slices"
	"time"

	"mailwarden/internal/store"
)

// AddAlerts stores alerts and moves the alert cursor together.
func (s *Store) AddAlerts(ctx context.Context, alerts []store.Alert, cursor int64) ([]int64, error) {
	if err := s.lock(ctx, "add alerts"); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	ids := make([]int64, len(alerts))
	for i, a := range alerts {
		s.alertSeq++
		a.ID = s.alertSeq
		if a.State == "" {
			a.State = store.AlertPending
		}
		a.Items = slices.Clone(a.Items)
		s.alerts = append(s.alerts, a)
		ids[i] = a.ID
	}
	s.alertCursor = max(s.alertCursor, cursor)
	return ids, nil
}

// AlertCursor returns the stored cursor.
func (s *Store) AlertCursor(ctx context.Context) (int64, error) {
	if err := s.lock(ctx, "alert cursor"); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	return s.alertCursor, nil
}

// MarkAlert records the outcome of delivery attempts.
func (s *Store) MarkAlert(ctx context.Context, u store.AlertUpdate) error {
	if err := s.lock(ctx, "mark alert"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	for i := range s.alerts {
		if a := &s.alerts[i]; a.ID == u.ID {
			a.State, a.Attempts, a.NextTry, a.SentAt, a.Error = u.State, u.Attempts, u.NextTry, u.SentAt, u.Error
			return nil
		}
	}
	return errf(fmt.Sprintf("mark alert %d", u.ID), store.ErrNotFound)
}

// PendingAlerts returns the pending alerts, oldest first.
func (s *Store) PendingAlerts(ctx context.Context, n int) ([]store.Alert, error) {
	if err := s.lock(ctx, "pending alerts"); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var out []store.Alert
	for _, a := range s.alerts {
		if a.State == store.AlertPending {
			out = append(out, cloneAlert(a))
		}
	}
	return limit(out, n), nil
}

// RecentAlerts returns alerts newest first.
func (s *Store) RecentAlerts(ctx context.Context, n int) ([]store.Alert, error) {
	if err := s.lock(ctx, "recent alerts"); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := make([]store.Alert, 0, len(s.alerts))
	for i := len(s.alerts) - 1; i >= 0; i-- {
		out = append(out, cloneAlert(s.alerts[i]))
	}
	return limit(out, n), nil
}

// expireAlertsLocked drops alerts past their expiry and returns how many.
func (s *Store) expireAlertsLocked(now time.Time) int {
	n := len(s.alerts)
	s.alerts = slices.DeleteFunc(s.alerts, func(a store.Alert) bool { return !now.Before(a.Expires) })
	return n - len(s.alerts)
}

func cloneAlert(a store.Alert) store.Alert {
	a.Items = slices.Clone(a.Items)
	return a
}
