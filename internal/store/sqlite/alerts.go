package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"mailwarden/internal/store"
)

// Alerts are committed before AddAlerts and MarkAlert return, unlike
// events: an alert the engine was told is stored is delivered after a
// crash, and one marked sent is not sent again.

const alertCols = `id, created, kind, severity, receiver, digest, subject, text, items, state,
	attempts, next_try, sent_at, error, expires`

// AddAlerts stores alerts and moves the alert cursor in one commit.
func (s *Store) AddAlerts(ctx context.Context, alerts []store.Alert, cursor int64) ([]int64, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	rows := make([][]any, len(alerts))
	for i, a := range alerts {
		rows[i] = alertRow(a)
	}
	var ids []int64
	err := s.w.as(writeAlert).do(ctx, func(w *writer) error {
		// fn may run again if a write batched with it fails.
		ids = ids[:0]
		for _, r := range rows {
			var id int64
			if err := w.conn.QueryRowContext(context.Background(), `INSERT INTO alert
				(created, kind, severity, receiver, digest, subject, text, items, state, attempts,
				 next_try, sent_at, error, expires)
				VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) RETURNING id`,
				r...).Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		_, err := w.conn.ExecContext(context.Background(), `INSERT INTO alert_cursor (one, event_id) VALUES (1, ?1)
			ON CONFLICT (one) DO UPDATE SET event_id = max(event_id, excluded.event_id)`, cursor)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: add alerts: %w", err)
	}
	return ids, nil
}

// alertRow is a's column values after the id, in the order of alertCols.
func alertRow(a store.Alert) []any {
	items := "[]"
	if len(a.Items) > 0 {
		b, _ := json.Marshal(a.Items) // a []string always marshals
		items = string(b)
	}
	state := a.State
	if state == "" {
		state = store.AlertPending
	}
	digest := 0
	if a.Digest {
		digest = 1
	}
	return []any{a.Created.UnixMilli(), a.Kind, a.Severity, a.Receiver, digest, a.Subject, a.Text,
		items, state, a.Attempts, ms(a.NextTry), ms(a.SentAt), a.Error, a.Expires.UnixMilli()}
}

// AlertCursor returns the last event ID the alert engine stored.
func (s *Store) AlertCursor(ctx context.Context) (int64, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	var id int64
	err := s.rdb.QueryRowContext(ctx, `SELECT event_id FROM alert_cursor WHERE one = 1`).Scan(&id)
	if err == sql.ErrNoRows {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sqlite: alert cursor: %w", err)
	}
	return id, nil
}

// MarkAlert records the outcome of delivery attempts.
func (s *Store) MarkAlert(ctx context.Context, u store.AlertUpdate) error {
	if s.closed.Load() {
		return ErrClosed
	}
	var n int64
	err := s.w.as(writeAlert).do(ctx, func(w *writer) error {
		res, err := w.conn.ExecContext(context.Background(), `UPDATE alert SET state = ?2, attempts = ?3,
			next_try = ?4, sent_at = ?5, error = ?6 WHERE id = ?1`,
			u.ID, u.State, u.Attempts, ms(u.NextTry), ms(u.SentAt), u.Error)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: mark alert %d: %w", u.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("sqlite: mark alert %d: %w", u.ID, store.ErrNotFound)
	}
	return nil
}

// PendingAlerts returns the pending alerts, oldest first.
func (s *Store) PendingAlerts(ctx context.Context, limit int) ([]store.Alert, error) {
	return s.queryAlerts(ctx, "pending alerts", `WHERE state = 'pending' ORDER BY id`, limit)
}

// RecentAlerts returns alerts newest first.
func (s *Store) RecentAlerts(ctx context.Context, limit int) ([]store.Alert, error) {
	return s.queryAlerts(ctx, "recent alerts", `ORDER BY id DESC`, limit)
}

func (s *Store) queryAlerts(ctx context.Context, what, tail string, limit int) ([]store.Alert, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	q := `SELECT ` + alertCols + ` FROM alert ` + tail
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	return queryAll(ctx, s.rdb.QueryContext, what, scanAlert, q)
}

func scanAlert(r rowScanner) (store.Alert, error) {
	var a store.Alert
	var created, expires int64
	var digest int
	var items string
	var next, sent sql.NullInt64
	if err := r.Scan(&a.ID, &created, &a.Kind, &a.Severity, &a.Receiver, &digest, &a.Subject, &a.Text,
		&items, &a.State, &a.Attempts, &next, &sent, &a.Error, &expires); err != nil {
		return store.Alert{}, err
	}
	a.Created, a.Expires = time.UnixMilli(created), time.UnixMilli(expires)
	a.NextTry, a.SentAt, a.Digest = fromMS(next), fromMS(sent), digest == 1
	if items != "[]" {
		if err := json.Unmarshal([]byte(items), &a.Items); err != nil {
			return store.Alert{}, fmt.Errorf("items of alert %d: %w", a.ID, err)
		}
	}
	return a, nil
}
