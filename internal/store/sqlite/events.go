package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"mailwarden/internal/store"
)

// eventRow is an event's column values, computed before the write is
// queued so that the caller may reuse its slices at once.
type eventRow [12]any

func toRow(ev store.Event) eventRow {
	rcpts := "[]"
	if len(ev.Recipients) > 0 {
		b, _ := json.Marshal(ev.Recipients) // a []string always marshals
		rcpts = string(b)
	}
	return eventRow{ev.Time.UnixMilli(), ev.Kind, ev.Check, ev.Action, ev.Client, ev.Site, ev.User,
		ev.Sender, rcpts, ev.QueueID, ev.Reason, ms(ev.Expires)}
}

// AppendEvents stores evs, each with the next id. It returns once they
// are queued, not committed, like PutTriplet: decisions are not held up
// by the disk, and a crash loses at most the last moments of events.
// QueryEvents commits what is queued before it reads. An event with a
// zero Expires is kept until deleted by hand.
func (s *Store) AppendEvents(ctx context.Context, evs ...store.Event) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sqlite: append events: %w", err)
	}
	if len(evs) == 0 {
		return nil
	}
	rows := make([]eventRow, len(evs))
	for i, ev := range evs {
		rows[i] = toRow(ev)
	}
	err := s.w.as(writeEvent).async(func(w *writer) error {
		for _, r := range rows {
			if _, err := w.out.insertEvent.ExecContext(context.Background(), r[:]...); err != nil {
				return err
			}
		}
		return nil
	}, func(err error) {
		if err != nil {
			s.log.Debug("events not saved", "events", len(rows), "err", err)
		}
	})
	if err != nil {
		return fmt.Errorf("sqlite: append events: %w", err)
	}
	return nil
}

// QueryEvents returns the events matching f, newest first, leaving out
// those whose Expires has passed by the real clock.
func (s *Store) QueryEvents(ctx context.Context, f store.EventFilter) ([]store.Event, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if err := s.w.flush(ctx); err != nil {
		return nil, fmt.Errorf("sqlite: query events: %w", err)
	}
	var q strings.Builder
	q.WriteString(`SELECT id, time, kind, check_name, action, client, site, user_name, sender,
		recipients, queue_id, reason, expires FROM event WHERE (expires IS NULL OR expires > ?)`)
	args := []any{time.Now().UnixMilli()}
	cond := func(sql string, arg any) {
		q.WriteString(sql)
		args = append(args, arg)
	}
	if !f.Since.IsZero() {
		cond(` AND time >= ?`, f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		cond(` AND time < ?`, f.Until.UnixMilli())
	}
	if f.Kind != "" {
		cond(` AND kind = ?`, f.Kind)
	}
	if f.Client != "" {
		cond(` AND client = ?`, f.Client)
	}
	if f.User != "" {
		cond(` AND user_name = ?`, f.User)
	}
	if f.Tail {
		// A tail reads in the order events were stored.
		cond(` AND id > ? ORDER BY id`, f.AfterID)
	} else {
		// Ids break ties between events of the same millisecond, in the
		// order they were appended.
		q.WriteString(` ORDER BY time DESC, id DESC`)
	}
	if f.Limit > 0 {
		fmt.Fprintf(&q, " LIMIT %d", f.Limit)
	}
	rows, err := s.rdb.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: query events: %w", err)
	}
	defer rows.Close()
	var out []store.Event
	for rows.Next() {
		var ev store.Event
		var at int64
		var rcpts string
		var expires sql.NullInt64
		if err := rows.Scan(&ev.ID, &at, &ev.Kind, &ev.Check, &ev.Action, &ev.Client, &ev.Site, &ev.User,
			&ev.Sender, &rcpts, &ev.QueueID, &ev.Reason, &expires); err != nil {
			return nil, fmt.Errorf("sqlite: query events: %w", err)
		}
		ev.Time, ev.Expires = time.UnixMilli(at), fromMS(expires)
		if rcpts != "[]" {
			if err := json.Unmarshal([]byte(rcpts), &ev.Recipients); err != nil {
				return nil, fmt.Errorf("sqlite: query events: recipients of event %d: %w", ev.ID, err)
			}
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: query events: %w", err)
	}
	return out, nil
}

// pendingAudit returns the audit event ctx carries for the change being
// made, as a row, or nil.
func pendingAudit(ctx context.Context) (*store.Audit, *eventRow) {
	a := store.AuditFrom(ctx)
	if a == nil {
		return nil, nil
	}
	r := toRow(a.Event)
	return a, &r
}

// insertAudit stores the audit row inside the writer's transaction, if
// there is one, so the change and its record commit together.
func (w *writer) insertAudit(r *eventRow) error {
	if r == nil {
		return nil
	}
	_, err := w.out.insertEvent.ExecContext(context.Background(), r[:]...)
	return err
}

// markAudit marks a stored once the transaction committed.
func markAudit(a *store.Audit, err error) {
	if a != nil && err == nil {
		a.MarkStored()
	}
}
