package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"mailwarden/internal/store"
)

// The merge rules of store.Hosts are written as upserts, so that records
// added at once by the daemon and the CLI both count. In an UPDATE's SET
// clause every column name means the row's value before the update.
const (
	// pickLast takes a Last* column from the newer record unless one side
	// is empty; ?3 is the added record's last_seen.
	upsertTrapSQL = `INSERT INTO trap_host
		(client, first_seen, last_seen, count, last_dst, last_helo, last_mail_from)
		VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
		ON CONFLICT (client) DO UPDATE SET
			count = count + excluded.count,
			first_seen = min(first_seen, excluded.first_seen),
			last_seen = max(last_seen, excluded.last_seen),
			last_dst = ` + pickLastDst + `,
			last_helo = ` + pickLastHelo + `,
			last_mail_from = ` + pickLastMailFrom
	pickLastDst      = `CASE WHEN last_dst = '' OR (excluded.last_dst <> '' AND excluded.last_seen >= last_seen) THEN excluded.last_dst ELSE last_dst END`
	pickLastHelo     = `CASE WHEN last_helo = '' OR (excluded.last_helo <> '' AND excluded.last_seen >= last_seen) THEN excluded.last_helo ELSE last_helo END`
	pickLastMailFrom = `CASE WHEN last_mail_from = '' OR (excluded.last_mail_from <> '' AND excluded.last_seen >= last_seen) THEN excluded.last_mail_from ELSE last_mail_from END`

	// An open finding creates the row; an older finding than the kept
	// one only moves first_open earlier.
	upsertOpenPortSQL = `INSERT INTO host_port (client, port, open, first_open, last_checked)
		VALUES (?1, ?2, 1, ?3, ?3)
		ON CONFLICT (client, port) DO UPDATE SET
			open = CASE WHEN excluded.last_checked >= last_checked THEN 1 ELSE open END,
			last_checked = max(last_checked, excluded.last_checked),
			first_open = CASE WHEN first_open IS NULL THEN excluded.first_open
				ELSE min(first_open, excluded.first_open) END`
	closePortSQL = `UPDATE host_port SET
			open = CASE WHEN ?3 >= last_checked THEN 0 ELSE open END,
			last_checked = max(last_checked, ?3)
		WHERE client = ?1 AND port = ?2`

	upsertLoginSQL = `INSERT INTO host_login (client, user_name, service, time) VALUES (?1, ?2, ?3, ?4)
		ON CONFLICT (client) DO UPDATE SET
			user_name = excluded.user_name, service = excluded.service, time = excluded.time
		WHERE excluded.time >= host_login.time`

	trapCols = `client, first_seen, last_seen, count, last_dst, last_helo, last_mail_from`
	portCols = `client, port, open, first_open, last_checked`
)

// AddTrapHits merges recs into the clients' trap totals in one
// transaction. A record without FirstSeen counts as first seen at its
// LastSeen.
func (s *Store) AddTrapHits(ctx context.Context, recs ...store.TrapRecord) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if len(recs) == 0 {
		return ctx.Err()
	}
	rows := make([][]any, len(recs))
	for i, r := range recs {
		if r.Client == "" || r.LastSeen.IsZero() {
			return fmt.Errorf("sqlite: add trap hits: client %q and its LastSeen must be set", r.Client)
		}
		first := r.FirstSeen
		if first.IsZero() || first.After(r.LastSeen) {
			first = r.LastSeen
		}
		rows[i] = []any{r.Client, first.UnixMilli(), r.LastSeen.UnixMilli(), r.Count,
			r.LastDst, r.LastHelo, r.LastMailFrom}
	}
	err := s.w.as(writeHost).do(ctx, func(w *writer) error {
		for _, r := range rows {
			if _, err := w.conn.ExecContext(context.Background(), upsertTrapSQL, r...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: add trap hits for %d clients: %w", len(recs), err)
	}
	return nil
}

// TrapRecords returns client's trap total, or every client's for "".
func (s *Store) TrapRecords(ctx context.Context, client string) ([]store.TrapRecord, error) {
	q := `SELECT ` + trapCols + ` FROM trap_host WHERE ?1 = '' OR client = ?1 ORDER BY last_seen DESC, client`
	return queryAll(ctx, s.hostQuery, "trap records", scanTrap, q, client)
}

func scanTrap(row rowScanner) (store.TrapRecord, error) {
	var r store.TrapRecord
	var first, last int64
	err := row.Scan(&r.Client, &first, &last, &r.Count, &r.LastDst, &r.LastHelo, &r.LastMailFrom)
	r.FirstSeen, r.LastSeen = time.UnixMilli(first), time.UnixMilli(last)
	return r, err
}

// RecordPort keeps f if it is the newest finding for its port. It
// returns once f is queued, like PutTriplet: a scan reports thousands of
// findings, and losing the last moments of them to a crash only waits
// for the next scan.
func (s *Store) RecordPort(ctx context.Context, f store.PortFinding) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sqlite: record port: %w", err)
	}
	if f.Client == "" || f.Port <= 0 || f.Time.IsZero() {
		return fmt.Errorf("sqlite: record port: client %q, port %d and time must be set", f.Client, f.Port)
	}
	q := closePortSQL
	if f.Open {
		q = upsertOpenPortSQL
	}
	args := []any{f.Client, f.Port, f.Time.UnixMilli()}
	err := s.w.as(writeHost).async(func(w *writer) error {
		_, err := w.conn.ExecContext(context.Background(), q, args...)
		return err
	}, func(err error) {
		if err != nil {
			s.log.Debug("port finding not saved", "client", f.Client, "port", f.Port, "err", err)
		}
	})
	if err != nil {
		return fmt.Errorf("sqlite: record port %s:%d: %w", f.Client, f.Port, err)
	}
	return nil
}

// Ports returns every kept state of client's ports.
func (s *Store) Ports(ctx context.Context, client string) ([]store.PortState, error) {
	return s.portStates(ctx, `SELECT `+portCols+` FROM host_port WHERE client = ?1 ORDER BY port`, client)
}

// OpenPorts returns the open ports of client, or of every client for "".
func (s *Store) OpenPorts(ctx context.Context, client string) ([]store.PortState, error) {
	return s.portStates(ctx, `SELECT `+portCols+` FROM host_port
		WHERE open = 1 AND (?1 = '' OR client = ?1) ORDER BY client, port`, client)
}

func (s *Store) portStates(ctx context.Context, q, client string) ([]store.PortState, error) {
	return queryAll(ctx, s.hostQuery, "port states", scanPort, q, client)
}

func scanPort(r rowScanner) (store.PortState, error) {
	var p store.PortState
	var first sql.NullInt64
	var checked int64
	err := r.Scan(&p.Client, &p.Port, &p.Open, &first, &checked)
	p.FirstOpen, p.LastChecked = fromMS(first), time.UnixMilli(checked)
	return p, err
}

// RecordLogin keeps l if it is the newest login from its client. It is
// written behind, like RecordPort: logins come by the thousand.
func (s *Store) RecordLogin(ctx context.Context, l store.MailLogin) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sqlite: record login: %w", err)
	}
	if l.Client == "" || l.Time.IsZero() {
		return fmt.Errorf("sqlite: record login: client %q and time must be set", l.Client)
	}
	args := []any{l.Client, l.User, l.Service, l.Time.UnixMilli()}
	err := s.w.as(writeHost).async(func(w *writer) error {
		_, err := w.conn.ExecContext(context.Background(), upsertLoginSQL, args...)
		return err
	}, func(err error) {
		if err != nil {
			s.log.Debug("mail login not saved", "client", l.Client, "user", l.User, "err", err)
		}
	})
	if err != nil {
		return fmt.Errorf("sqlite: record login from %s: %w", l.Client, err)
	}
	return nil
}

// LastLogin returns the newest login from client.
func (s *Store) LastLogin(ctx context.Context, client string) (store.MailLogin, error) {
	// The client is the table's key: one row at most.
	ls, err := queryAll(ctx, s.hostQuery, "last login from "+client, scanLogin,
		`SELECT client, user_name, service, time FROM host_login WHERE client = ?1`, client)
	if err != nil {
		return store.MailLogin{}, err
	}
	if len(ls) == 0 {
		return store.MailLogin{}, fmt.Errorf("sqlite: last login from %s: %w", client, store.ErrNotFound)
	}
	return ls[0], nil
}

// LastLogins returns every client's newest login, by client.
func (s *Store) LastLogins(ctx context.Context) ([]store.MailLogin, error) {
	return queryAll(ctx, s.hostQuery, "last logins", scanLogin,
		`SELECT client, user_name, service, time FROM host_login ORDER BY client`)
}

func scanLogin(r rowScanner) (store.MailLogin, error) {
	var l store.MailLogin
	var at int64
	err := r.Scan(&l.Client, &l.User, &l.Service, &at)
	l.Time = time.UnixMilli(at)
	return l, err
}

// AddHostNote stores n once it is committed: an administrator was told
// it is saved.
func (s *Store) AddHostNote(ctx context.Context, n store.HostNote) error {
	if err := s.addHostRecord(ctx, `INSERT INTO host_note (client, by_name, text, time) VALUES (?1, ?2, ?3, ?4)`,
		n.Client, n.By, n.Text, n.Time); err != nil {
		return fmt.Errorf("sqlite: add note on %s: %w", n.Client, err)
	}
	return nil
}

// HostNotes returns client's notes, oldest first.
func (s *Store) HostNotes(ctx context.Context, client string) ([]store.HostNote, error) {
	var out []store.HostNote
	err := s.hostRecords(ctx, `SELECT client, by_name, text, time FROM host_note
		WHERE ?1 = '' OR client = ?1 ORDER BY client, time, id`,
		client, func(c, by, text string, at time.Time) {
			out = append(out, store.HostNote{Client: c, By: by, Text: text, Time: at})
		})
	if err != nil {
		return nil, fmt.Errorf("sqlite: notes on %s: %w", client, err)
	}
	return out, nil
}

// AddDisinfection stores d once it is committed.
func (s *Store) AddDisinfection(ctx context.Context, d store.Disinfection) error {
	if err := s.addHostRecord(ctx, `INSERT INTO host_disinfection (client, by_name, note, time) VALUES (?1, ?2, ?3, ?4)`,
		d.Client, d.By, d.Note, d.Time); err != nil {
		return fmt.Errorf("sqlite: add disinfection of %s: %w", d.Client, err)
	}
	return nil
}

// Disinfections returns client's disinfections, oldest first.
func (s *Store) Disinfections(ctx context.Context, client string) ([]store.Disinfection, error) {
	var out []store.Disinfection
	err := s.hostRecords(ctx, `SELECT client, by_name, note, time FROM host_disinfection
		WHERE ?1 = '' OR client = ?1 ORDER BY client, time, id`,
		client, func(c, by, note string, at time.Time) {
			out = append(out, store.Disinfection{Client: c, By: by, Note: note, Time: at})
		})
	if err != nil {
		return nil, fmt.Errorf("sqlite: disinfections of %s: %w", client, err)
	}
	return out, nil
}

func (s *Store) addHostRecord(ctx context.Context, q, client, by, text string, at time.Time) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if client == "" || at.IsZero() {
		return errors.New("client and time must be set")
	}
	audit, row := pendingAudit(ctx)
	err := s.w.as(writeHost).do(ctx, func(w *writer) error {
		if _, err := w.conn.ExecContext(context.Background(), q, client, by, text, at.UnixMilli()); err != nil {
			return err
		}
		return w.insertAudit(row)
	})
	markAudit(audit, err)
	return err
}

func (s *Store) hostRecords(ctx context.Context, q, client string, add func(client, by, text string, at time.Time)) error {
	rows, err := s.hostQuery(ctx, q, client)
	if err != nil {
		return err
	}
	return eachRow(rows, func(r rowScanner) error {
		var c, by, text string
		var at int64
		if err := r.Scan(&c, &by, &text, &at); err != nil {
			return err
		}
		add(c, by, text, time.UnixMilli(at))
		return nil
	})
}

// hostQuery commits the queued writes (logins and ports are written
// behind) and runs q on the read pool.
func (s *Store) hostQuery(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if err := s.w.flush(ctx); err != nil {
		return nil, err
	}
	return s.rdb.QueryContext(ctx, q, args...)
}
