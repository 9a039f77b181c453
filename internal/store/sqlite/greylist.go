package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"mailwarden/internal/store"
)

var _ store.Store = (*Store)(nil)

// readStmts are prepared once on the read pool; database/sql prepares
// each again on every pool connection the first time it is used there.
type readStmts struct {
	ping          *sql.Stmt
	getTriplet    *sql.Stmt
	clientPasses  *sql.Stmt
	tripletCounts *sql.Stmt
	whitelisted   *sql.Stmt
}

func (r *readStmts) prepare(ctx context.Context, db *sql.DB) error {
	stmts := []struct {
		dst **sql.Stmt
		sql string
	}{
		{&r.ping, "SELECT 1"},
		{&r.getTriplet, `SELECT first_seen, last_seen, passed_at, attempts, expires FROM triplet
			WHERE client = ?1 AND sender = ?2 AND recipient = ?3 AND expires > ?4`},
		{&r.clientPasses, `SELECT passes FROM client_pass WHERE client = ?1 AND expires > ?2`},
		{&r.tripletCounts, `SELECT count(*) FILTER (WHERE passed_at IS NULL),
			count(*) FILTER (WHERE passed_at IS NOT NULL) FROM triplet WHERE expires > ?1`},
		{&r.whitelisted, `SELECT count(*) FROM client_pass WHERE expires > ?1 AND passes >= ?2`},
	}
	for _, s := range stmts {
		st, err := db.PrepareContext(ctx, s.sql)
		if err != nil {
			return fmt.Errorf("prepare read statement: %w", err)
		}
		*s.dst = st
	}
	return nil
}

func (r *readStmts) close() {
	for _, st := range []*sql.Stmt{r.ping, r.getTriplet, r.clientPasses, r.tripletCounts, r.whitelisted} {
		if st != nil {
			_ = st.Close()
		}
	}
}

// ms converts a time to unix milliseconds; the zero time is stored as
// NULL so that it round-trips (PassedAt is zero while pending).
func ms(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

func fromMS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64)
}

// GetTriplet returns the unexpired triplet with the given keys, or
// store.ErrNotFound.
func (s *Store) GetTriplet(ctx context.Context, client, sender, recipient string, now time.Time) (store.Triplet, error) {
	if s.closed.Load() {
		return store.Triplet{}, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return store.Triplet{}, err
	}
	k := tripletKey{client, sender, recipient}
	t, ok := s.pending.get(k)
	if !ok && s.mirror != nil {
		if t, ok = s.mirror.get(k); !ok {
			return store.Triplet{}, store.ErrNotFound
		}
	}
	if ok {
		if !t.Expires.After(now) {
			return store.Triplet{}, store.ErrNotFound
		}
		return t, nil
	}
	t = store.Triplet{Client: client, Sender: sender, Recipient: recipient}
	var first, last, passed sql.NullInt64
	var expires int64
	err := s.reads.getTriplet.QueryRowContext(ctx, client, sender, recipient, now.UnixMilli()).
		Scan(&first, &last, &passed, &t.Attempts, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Triplet{}, store.ErrNotFound
	}
	if err != nil {
		return store.Triplet{}, fmt.Errorf("sqlite: get triplet: %w", err)
	}
	t.FirstSeen, t.LastSeen, t.PassedAt = fromMS(first), fromMS(last), fromMS(passed)
	t.Expires = time.UnixMilli(expires)
	return t, nil
}

// PutTriplet stores t, replacing the triplet with the same keys. It
// returns once the write is queued, not committed: the greylist answers
// without waiting for the disk, reads in this process see the triplet at
// once, and a crash loses at most the writes still queued, which only
// delays those senders once more. Close commits everything queued.
func (s *Store) PutTriplet(ctx context.Context, t store.Triplet) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sqlite: put triplet: %w", err)
	}
	k := keyOf(t)
	seq := s.pending.add(t)
	if s.mirror != nil {
		s.mirror.apply(mirrorOp{t: t})
	}
	audit, row := pendingAudit(ctx)
	fn := func(w *writer) error {
		if _, err := w.putTriplet.ExecContext(context.Background(), t.Client, t.Sender, t.Recipient,
			ms(t.FirstSeen), ms(t.LastSeen), ms(t.PassedAt), t.Attempts, t.Expires.UnixMilli()); err != nil {
			return err
		}
		return w.insertAudit(row)
	}
	finished := func(err error) {
		s.pending.done(k, seq)
		if err != nil {
			s.log.Debug("greylist triplet not saved; its sender will be delayed again",
				"client", t.Client, "sender", t.Sender, "recipient", t.Recipient, "err", err)
		}
	}
	var err error
	if audit != nil {
		// An administrator let the triplet through: that waits for the
		// commit, so the change and its record are known stored.
		err = s.w.wait(ctx, &writeOp{ctx: ctx, kind: writeTriplet, fn: fn, done: make(chan error, 1), finished: finished})
		markAudit(audit, err)
	} else {
		err = s.w.as(writeTriplet).async(fn, finished)
	}
	if err != nil {
		s.pending.done(k, seq)
		return fmt.Errorf("sqlite: put triplet: %w", err)
	}
	return nil
}

// DeleteTriplet removes a triplet; a missing one is no error.
func (s *Store) DeleteTriplet(ctx context.Context, client, sender, recipient string) error {
	if s.closed.Load() {
		return ErrClosed
	}
	// The delete is queued after any pending put of the same key, so the
	// commit order matches the call order. That put's pending entry is
	// dropped only once the delete has committed; a later put stays.
	k := tripletKey{client, sender, recipient}
	seq := s.pending.current(k)
	err := s.w.as(writeTriplet).do(ctx, func(w *writer) error {
		_, err := w.deleteTriplet.ExecContext(context.Background(), client, sender, recipient)
		return err
	})
	if err == nil && seq != 0 {
		s.pending.done(k, seq)
	}
	// The mirror forgets the triplet only once the delete is committed:
	// a reload scanning meanwhile would otherwise bring it back.
	if err == nil && s.mirror != nil {
		s.mirror.apply(mirrorOp{t: store.Triplet{Client: client, Sender: sender, Recipient: recipient}, del: true})
	}
	if err != nil {
		return fmt.Errorf("sqlite: delete triplet: %w", err)
	}
	return nil
}

// ListTriplets returns unexpired triplets matching f, newest LastSeen
// first. With both Pending and Passed set nothing matches.
func (s *Store) ListTriplets(ctx context.Context, f store.TripletFilter, now time.Time) ([]store.Triplet, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	// Listings read the database; commit queued puts first so they show.
	if err := s.w.flush(ctx); err != nil {
		return nil, fmt.Errorf("sqlite: list triplets: %w", err)
	}
	var q strings.Builder
	q.WriteString(`SELECT client, sender, recipient, first_seen, last_seen, passed_at, attempts, expires
		FROM triplet WHERE expires > ?1`)
	args := []any{now.UnixMilli()}
	if f.Pending {
		q.WriteString(" AND passed_at IS NULL")
	}
	if f.Passed {
		q.WriteString(" AND passed_at IS NOT NULL")
	}
	if f.Client != "" {
		q.WriteString(" AND client = ?2")
		args = append(args, f.Client)
	}
	// The key columns break LastSeen ties so pages are stable; all in
	// descending order, so the triplet_last_seen index (which ends with
	// the key columns) serves the sort read backwards.
	q.WriteString(" ORDER BY last_seen DESC, client DESC, sender DESC, recipient DESC")
	if f.Limit > 0 {
		fmt.Fprintf(&q, " LIMIT %d", f.Limit)
	}
	rows, err := s.rdb.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list triplets: %w", err)
	}
	defer rows.Close()
	var out []store.Triplet
	for rows.Next() {
		var t store.Triplet
		var first, last, passed sql.NullInt64
		var expires int64
		if err := rows.Scan(&t.Client, &t.Sender, &t.Recipient, &first, &last, &passed, &t.Attempts, &expires); err != nil {
			return nil, fmt.Errorf("sqlite: list triplets: %w", err)
		}
		t.FirstSeen, t.LastSeen, t.PassedAt = fromMS(first), fromMS(last), fromMS(passed)
		t.Expires = time.UnixMilli(expires)
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list triplets: %w", err)
	}
	return out, nil
}

// AddClientPass counts one more passed delivery from client, moves the
// record's expiry to expires and returns the new count. An expired
// record starts again at 1.
func (s *Store) AddClientPass(ctx context.Context, client string, now, expires time.Time) (int, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("sqlite: add client pass: %w", err)
	}
	if s.mirror != nil {
		// Counted in memory, written behind like triplets: the count a
		// caller sees is the one the write will store.
		c := s.mirror.addPass(client, now, expires)
		err := s.w.as(writePass).async(func(w *writer) error {
			_, err := w.setClientPass.ExecContext(context.Background(), client, c.passes, c.expires.UnixMilli())
			return err
		}, func(err error) {
			if err != nil {
				s.log.Debug("greylist pass count not saved", "client", client, "err", err)
			}
		})
		if err != nil {
			return 0, fmt.Errorf("sqlite: add client pass: %w", err)
		}
		return c.passes, nil
	}
	var n int
	err := s.w.as(writePass).do(ctx, func(w *writer) error {
		return w.addClientPass.QueryRowContext(context.Background(), client, now.UnixMilli(), expires.UnixMilli()).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: add client pass: %w", err)
	}
	return n, nil
}

// PassesInMemory reports whether ClientPasses reads from the in-memory
// copy of the pass table rather than from the database, so that a
// cache of it in front would only hold memory twice.
func (s *Store) PassesInMemory() bool { return s.mirror != nil }

// ClientPasses returns the unexpired pass count for client, 0 if none.
func (s *Store) ClientPasses(ctx context.Context, client string, now time.Time) (int, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("sqlite: client passes: %w", err)
	}
	if s.mirror != nil {
		return s.mirror.passes(client, now), nil
	}
	var n int
	err := s.reads.clientPasses.QueryRowContext(ctx, client, now.UnixMilli()).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sqlite: client passes: %w", err)
	}
	return n, nil
}

// ListClientPasses returns the unexpired pass records with at least
// minPasses passes, most passes first (then by client), at most limit
// (0: all).
func (s *Store) ListClientPasses(ctx context.Context, now time.Time, minPasses, limit int) ([]store.ClientPass, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list client passes: %w", err)
	}
	if s.mirror != nil {
		// The counts are written behind; memory has the current ones.
		return s.mirror.listPasses(now, minPasses, limit), nil
	}
	q := `SELECT client, passes, expires FROM client_pass WHERE expires > ?1 AND passes >= ?2
		ORDER BY passes DESC, client`
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := s.rdb.QueryContext(ctx, q, now.UnixMilli(), minPasses)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list client passes: %w", err)
	}
	defer rows.Close()
	var out []store.ClientPass
	for rows.Next() {
		var c store.ClientPass
		var expires int64
		if err := rows.Scan(&c.Client, &c.Passes, &expires); err != nil {
			return nil, fmt.Errorf("sqlite: list client passes: %w", err)
		}
		c.Expires = time.UnixMilli(expires)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list client passes: %w", err)
	}
	return out, nil
}

// GreylistStats counts unexpired triplets and the clients with at least
// whitelistAfter passes.
func (s *Store) GreylistStats(ctx context.Context, now time.Time, whitelistAfter int) (store.GreylistStats, error) {
	if s.closed.Load() {
		return store.GreylistStats{}, ErrClosed
	}
	if err := s.w.flush(ctx); err != nil {
		return store.GreylistStats{}, fmt.Errorf("sqlite: greylist stats: %w", err)
	}
	var st store.GreylistStats
	nowMS := now.UnixMilli()
	if err := s.reads.tripletCounts.QueryRowContext(ctx, nowMS).Scan(&st.Pending, &st.Passed); err != nil {
		return store.GreylistStats{}, fmt.Errorf("sqlite: greylist stats: %w", err)
	}
	if err := s.reads.whitelisted.QueryRowContext(ctx, nowMS, whitelistAfter).Scan(&st.WhitelistedClients); err != nil {
		return store.GreylistStats{}, fmt.Errorf("sqlite: greylist stats: %w", err)
	}
	return st, nil
}

// expireChunk bounds the rows one Expire transaction deletes from each
// table, so that clearing a large backlog (after days of downtime) never
// holds the writer long enough to stall greylisting.
const expireChunk = 1000

// Expire deletes the triplets, client records and events whose expiry is
// at or before now and returns how many went. Latches are kept: they are
// the audit trail. Rate state that no longer limits anything at now is
// dropped too, uncounted, since it is the same as none. It works in
// chunks of separate transactions; an error stops it, keeping what was
// already deleted.
func (s *Store) Expire(ctx context.Context, now time.Time) (int, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("sqlite: expire: %w", err)
	}
	// Memory first, so a rate save queued meanwhile no longer writes the
	// keys whose rows are about to go.
	s.rates.expire(now)
	total := 0
	for {
		// fn may run again if a write batched with it fails, so it
		// recomputes its counts from scratch each time.
		var most, sum int64
		err := s.w.as(writeExpire).do(ctx, func(w *writer) error {
			most, sum = 0, 0
			for _, st := range []struct {
				stmt    *sql.Stmt
				now     int64
				counted bool
			}{
				{w.expireTriplets, now.UnixMilli(), true},
				{w.expireClients, now.UnixMilli(), true},
				{w.out.expireEvents, now.UnixMilli(), true},
				{w.expireAlerts, now.UnixMilli(), true},
				{w.out.expireRates, now.UnixNano(), false},
			} {
				res, err := st.stmt.ExecContext(context.Background(), st.now, expireChunk)
				if err != nil {
					return err
				}
				k, err := res.RowsAffected()
				if err != nil {
					return err
				}
				most = max(most, k)
				if st.counted {
					sum += k
				}
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("sqlite: expire: %w", err)
		}
		total += int(sum)
		if most < expireChunk {
			if s.mirror != nil {
				s.mirror.expire(now)
			}
			return total, nil
		}
	}
}
