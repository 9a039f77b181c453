package sqlite

import (
	"context"
	"fmt"
	"time"

	"mailwarden/internal/store"
)

// The imports are committed before they return, like AddAlerts: `store
// copy` counts what arrived right after, and a failed write must fail
// the copy rather than vanish in the write-behind queue. Each replaces
// the record with its key, so a batch the writer runs twice stores it
// once.
//
// Event and alert ids are AUTOINCREMENT: SQLite moves the table's
// sequence past an id inserted explicitly, so AppendEvents and
// AddAlerts continue above the imported ids. Latch ids are random and
// AddLatch draws again on a clash, so imported ones are never reused.

var _ store.Importer = (*Store)(nil)

// ImportLatch stores l as given.
func (s *Store) ImportLatch(ctx context.Context, l store.Latch) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if l.ID == "" || l.Kind == "" || l.Key == "" {
		return fmt.Errorf("sqlite: import latch: id %q, kind %q and key %q must be set", l.ID, l.Kind, l.Key)
	}
	args := []any{l.ID, l.Kind, l.Key, l.Rule, l.Reason, l.Site, l.Evidence, l.Count,
		l.FirstSeen.UnixMilli(), l.LastSeen.UnixMilli(), ms(l.Expires), ms(l.ClearedAt), l.ClearedBy, l.ClearNote, l.Refused}
	err := s.w.as(writeLatch).doCommitted(ctx, func(w *writer) error {
		_, err := w.conn.ExecContext(context.Background(), `INSERT OR REPLACE INTO latch (`+latchCols+`)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)`, args...)
		return err
	}, func() {
		if s.out != nil {
			s.out.importLatch(l)
		}
	})
	if err != nil {
		return fmt.Errorf("sqlite: import latch %s: %w", l.ID, err)
	}
	return nil
}

// importLatch brings an imported latch into the in-memory copy: an
// uncleared, unexpired latch becomes its key's entry unless a latch
// seen later holds it, as reloadOutbound would decide; any other
// replaces nothing but the entry of its own id.
func (m *outMem) importLatch(l store.Latch) {
	l.FirstSeen, l.LastSeen = msTime(l.FirstSeen), msTime(l.LastSeen)
	l.Expires, l.ClearedAt = msTime(l.Expires), msTime(l.ClearedAt)
	m.mu.Lock()
	defer m.mu.Unlock()
	k := latchKey{l.Kind, l.Key}
	cur, ok := m.latches[k]
	if l.Active(time.Now()) {
		if !ok || cur.ID == l.ID || !cur.LastSeen.After(l.LastSeen) {
			m.latches[k] = l
		}
		return
	}
	if ok && cur.ID == l.ID {
		delete(m.latches, k)
	}
}

// ImportEvents stores evs with their ids and expiry, in one commit.
func (s *Store) ImportEvents(ctx context.Context, evs ...store.Event) error {
	if s.closed.Load() {
		return ErrClosed
	}
	rows := make([][]any, len(evs))
	for i, ev := range evs {
		if ev.ID <= 0 {
			return fmt.Errorf("sqlite: import events: event id %d is not positive", ev.ID)
		}
		r := toRow(ev)
		rows[i] = append([]any{ev.ID}, r[:]...)
	}
	err := s.w.as(writeEvent).do(ctx, func(w *writer) error {
		for _, r := range rows {
			if _, err := w.conn.ExecContext(context.Background(), `INSERT OR REPLACE INTO event
				(id, time, kind, check_name, action, client, site, user_name, sender, recipients, queue_id, reason, expires)
				VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)`, r...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: import events: %w", err)
	}
	return nil
}

// ImportAlerts stores alerts with their ids and moves the alert cursor
// to at least cursor, in one commit.
func (s *Store) ImportAlerts(ctx context.Context, alerts []store.Alert, cursor int64) error {
	if s.closed.Load() {
		return ErrClosed
	}
	rows := make([][]any, len(alerts))
	for i, a := range alerts {
		if a.ID <= 0 {
			return fmt.Errorf("sqlite: import alerts: alert id %d is not positive", a.ID)
		}
		rows[i] = append([]any{a.ID}, alertRow(a)...)
	}
	err := s.w.as(writeAlert).do(ctx, func(w *writer) error {
		for _, r := range rows {
			if _, err := w.conn.ExecContext(context.Background(), `INSERT OR REPLACE INTO alert (`+alertCols+`)
				VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)`, r...); err != nil {
				return err
			}
		}
		_, err := w.conn.ExecContext(context.Background(), `INSERT INTO alert_cursor (one, event_id) VALUES (1, ?1)
			ON CONFLICT (one) DO UPDATE SET event_id = max(event_id, excluded.event_id)`, cursor)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: import alerts: %w", err)
	}
	return nil
}

// ImportClientPass sets p.Client's pass count and expiry.
func (s *Store) ImportClientPass(ctx context.Context, p store.ClientPass) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if p.Client == "" {
		return fmt.Errorf("sqlite: import client pass: client must be set")
	}
	err := s.w.as(writePass).doCommitted(ctx, func(w *writer) error {
		_, err := w.setClientPass.ExecContext(context.Background(), p.Client, p.Passes, p.Expires.UnixMilli())
		return err
	}, func() {
		if s.mirror != nil {
			s.mirror.setPass(p)
		}
	})
	if err != nil {
		return fmt.Errorf("sqlite: import client pass of %s: %w", p.Client, err)
	}
	return nil
}

// setPass sets a client's pass record as imported.
func (m *mirror) setPass(p store.ClientPass) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clients[p.Client] = clientPass{passes: p.Passes, expires: msTime(p.Expires)}
}

// ImportUser stores u as given, replacing a user of the same name.
func (s *Store) ImportUser(ctx context.Context, u store.User) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := u.Check(); err != nil {
		return fmt.Errorf("sqlite: import user %q: %w", u.Name, err)
	}
	err := s.w.as(writeUser).do(ctx, func(w *writer) error {
		_, err := w.conn.ExecContext(context.Background(), `INSERT OR REPLACE INTO web_user (`+userCols+`)
			VALUES (?1, ?2, ?3, ?4, ?5)`, u.Name, u.Role, u.Hash, u.Created.UnixMilli(), u.Changed.UnixMilli())
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: import user %q: %w", u.Name, err)
	}
	return nil
}

// ImportPort stores one port state as given.
func (s *Store) ImportPort(ctx context.Context, p store.PortState) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if p.Client == "" || p.Port <= 0 || p.LastChecked.IsZero() {
		return fmt.Errorf("sqlite: import port: client %q, port %d and last check must be set", p.Client, p.Port)
	}
	err := s.w.as(writeHost).do(ctx, func(w *writer) error {
		_, err := w.conn.ExecContext(context.Background(), `INSERT OR REPLACE INTO host_port (`+portCols+`)
			VALUES (?1, ?2, ?3, ?4, ?5)`, p.Client, p.Port, p.Open, ms(p.FirstOpen), p.LastChecked.UnixMilli())
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: import port %s:%d: %w", p.Client, p.Port, err)
	}
	return nil
}

// AllPorts returns every kept port state, by client and port.
func (s *Store) AllPorts(ctx context.Context) ([]store.PortState, error) {
	return queryAll(ctx, s.hostQuery, "all ports", scanPort, `SELECT `+portCols+` FROM host_port ORDER BY client, port`)
}
