package sqlite

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"mailwarden/internal/store"
)

// latchCols lists a latch row's columns in the order scanLatch reads them.
const latchCols = `id, kind, key, rule, reason, site, evidence, count, first_seen, last_seen,
	expires, cleared_at, cleared_by, clear_note, refused`

// activeLatchSQL finds the latch active at ?3 for kind ?1 and key ?2. At
// most one is active; the newest wins should an old one have been left
// behind by a bug or a hand edit.
const activeLatchSQL = `SELECT ` + latchCols + ` FROM latch
	WHERE kind = ?1 AND key = ?2 AND cleared_at IS NULL AND (expires IS NULL OR expires > ?3)
	ORDER BY last_seen DESC LIMIT 1`

// latchIDAlphabet holds the 32 upper-case letters and digits left once
// 0/O and 1/I, the pairs misheard or misread when an administrator quotes
// an id, are taken out. 32 symbols carry exactly 5 bits each.
const latchIDAlphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"

// latchIDLen symbols give 40 random bits: a clash among the few thousand
// latches a site ever records is unlikely, and the insert draws again on
// one anyway.
const latchIDLen = 8

// latchIDTries bounds the draws for an unused id; only a broken random
// source gets near it.
const latchIDTries = 16

// newLatchID returns a random id spelled with latchIDAlphabet.
func newLatchID() string {
	var b [5]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails since Go 1.24
	v := uint64(b[0])<<32 | uint64(b[1])<<24 | uint64(b[2])<<16 | uint64(b[3])<<8 | uint64(b[4])
	var id [latchIDLen]byte
	for i := range id {
		id[i] = latchIDAlphabet[v&31]
		v >>= 5
	}
	return string(id[:])
}

// msTime truncates t to the millisecond the database keeps, so a latch
// returned by a write equals the one a later read returns.
func msTime(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return time.UnixMilli(t.UnixMilli())
}

// AddLatch records a violation by l.Kind/l.Key at now: it counts one more
// against the key's active latch, or creates a latch with a fresh id. The
// look-up and the write share one write transaction, so violations
// reported at once (by this process or another) all land on one latch.
func (s *Store) AddLatch(ctx context.Context, l store.Latch, now time.Time) (store.Latch, error) {
	if s.closed.Load() {
		return store.Latch{}, ErrClosed
	}
	if l.Kind == "" || l.Key == "" {
		return store.Latch{}, fmt.Errorf("sqlite: add latch: kind %q and key %q must both be set", l.Kind, l.Key)
	}
	var out store.Latch
	err := s.w.as(writeLatch).doCommitted(ctx, func(w *writer) error {
		var err error
		out, err = s.addLatchTx(w, l, now)
		return err
	}, func() {
		if s.out != nil {
			s.out.putLatch(out)
		}
	})
	if err != nil {
		return store.Latch{}, fmt.Errorf("sqlite: add latch for %s %s: %w", l.Kind, l.Key, err)
	}
	return out, nil
}

// addLatchTx runs inside the writer's transaction. It may run again if
// the batch is retried, so it computes everything from the database.
func (s *Store) addLatchTx(w *writer, l store.Latch, now time.Time) (store.Latch, error) {
	bg := context.Background()
	now = msTime(now)
	cur, err := scanLatch(w.out.activeLatch.QueryRowContext(bg, l.Kind, l.Key, now.UnixMilli()))
	if err == nil {
		if _, err := w.out.bumpLatch.ExecContext(bg, cur.ID, now.UnixMilli(), l.Evidence, l.Reason, l.Rule); err != nil {
			return store.Latch{}, err
		}
		cur.Count++
		cur.LastSeen = now
		cur.Evidence, cur.Reason, cur.Rule = l.Evidence, l.Reason, l.Rule
		return cur, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return store.Latch{}, err
	}
	fresh := store.Latch{
		Kind: l.Kind, Key: l.Key, Rule: l.Rule, Reason: l.Reason, Site: l.Site, Evidence: l.Evidence,
		Count: 1, FirstSeen: now, LastSeen: now, Expires: msTime(l.Expires),
	}
	for range latchIDTries {
		fresh.ID = s.latchID()
		res, err := w.out.insertLatch.ExecContext(bg, fresh.ID, fresh.Kind, fresh.Key, fresh.Rule,
			fresh.Reason, fresh.Site, fresh.Evidence, now.UnixMilli(), ms(fresh.Expires))
		if err != nil {
			return store.Latch{}, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return store.Latch{}, err
		}
		if n == 1 {
			return fresh, nil
		}
	}
	return store.Latch{}, fmt.Errorf("no unused latch id after %d random draws", latchIDTries)
}

// AddLatchRefusal counts a message refused at now because of the active
// latch id. The look-up and the write share one write transaction, so a
// latch cleared meanwhile is not counted.
func (s *Store) AddLatchRefusal(ctx context.Context, id string, now time.Time) (store.Latch, error) {
	if s.closed.Load() {
		return store.Latch{}, ErrClosed
	}
	// As in ClearLatch, a refusal is a result, not a failed write.
	var out store.Latch
	var refused error
	err := s.w.as(writeLatch).doCommitted(ctx, func(w *writer) error {
		bg := context.Background()
		at := msTime(now)
		cur, err := activeLatchTx(w, id, now, &refused)
		if err != nil || refused != nil {
			return err
		}
		if _, err := w.out.refuseLatch.ExecContext(bg, id, at.UnixMilli()); err != nil {
			return err
		}
		cur.Count++
		cur.Refused++
		cur.LastSeen = at
		out = cur
		return nil
	}, func() {
		if refused == nil && s.out != nil {
			s.out.putLatch(out)
		}
	})
	if err := cmp.Or(err, refused); err != nil {
		return store.Latch{}, fmt.Errorf("sqlite: count a refusal by latch %s: %w", id, err)
	}
	return out, nil
}

// ActiveLatch returns the latch active at now for kind/key. The daemon
// answers from memory; without a mirror it reads the database, since
// another process may have changed it.
func (s *Store) ActiveLatch(ctx context.Context, kind, key string, now time.Time) (store.Latch, error) {
	if s.closed.Load() {
		return store.Latch{}, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return store.Latch{}, fmt.Errorf("sqlite: active latch: %w", err)
	}
	if s.out != nil {
		l, ok := s.out.latch(kind, key)
		if !ok || !l.Active(now) {
			return store.Latch{}, store.ErrNotFound
		}
		return l, nil
	}
	l, err := scanLatch(s.outReads.activeLatch.QueryRowContext(ctx, kind, key, now.UnixMilli()))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Latch{}, store.ErrNotFound
	}
	if err != nil {
		return store.Latch{}, fmt.Errorf("sqlite: active latch for %s %s: %w", kind, key, err)
	}
	return l, nil
}

// GetLatch returns the latch id, active or not.
func (s *Store) GetLatch(ctx context.Context, id string) (store.Latch, error) {
	if s.closed.Load() {
		return store.Latch{}, ErrClosed
	}
	l, err := scanLatch(s.outReads.latchByID.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Latch{}, fmt.Errorf("sqlite: get latch %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Latch{}, fmt.Errorf("sqlite: get latch %s: %w", id, err)
	}
	return l, nil
}

// ListLatches returns the latches matching f, newest LastSeen first.
func (s *Store) ListLatches(ctx context.Context, f store.LatchFilter, now time.Time) ([]store.Latch, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	var q strings.Builder
	q.WriteString(`SELECT ` + latchCols + ` FROM latch WHERE TRUE`)
	var args []any
	if f.Active {
		q.WriteString(` AND cleared_at IS NULL AND (expires IS NULL OR expires > ?)`)
		args = append(args, now.UnixMilli())
	}
	if f.Kind != "" {
		q.WriteString(` AND kind = ?`)
		args = append(args, f.Kind)
	}
	if f.Key != "" {
		q.WriteString(` AND key = ?`)
		args = append(args, f.Key)
	}
	// The id breaks LastSeen ties so that pages are stable.
	q.WriteString(` ORDER BY last_seen DESC, id DESC`)
	if f.Limit > 0 {
		fmt.Fprintf(&q, " LIMIT %d", f.Limit)
	}
	return queryAll(ctx, s.rdb.QueryContext, "list latches", scanLatch, q.String(), args...)
}

// ClearLatch ends the latch id at now, recording who cleared it and why.
func (s *Store) ClearLatch(ctx context.Context, id, by, note string, now time.Time) (store.Latch, error) {
	if s.closed.Load() {
		return store.Latch{}, ErrClosed
	}
	// Refusals are results, not failed writes: returning them from fn
	// would roll back and rerun the writes batched with this one.
	var out store.Latch
	var refused error
	audit, row := pendingAudit(ctx)
	err := s.w.as(writeLatch).doCommitted(ctx, func(w *writer) error {
		bg := context.Background()
		cur, err := activeLatchTx(w, id, now, &refused)
		if err != nil || refused != nil {
			return err
		}
		cur.ClearedAt, cur.ClearedBy, cur.ClearNote = msTime(now), by, note
		if _, err = w.out.clearLatch.ExecContext(bg, id, cur.ClearedAt.UnixMilli(), by, note); err != nil {
			return err
		}
		out = cur
		return w.insertAudit(row)
	}, func() {
		if refused == nil {
			markAudit(audit, nil)
			if s.out != nil {
				s.out.putLatch(out)
			}
		}
	})
	if err := cmp.Or(err, refused); err != nil {
		return store.Latch{}, fmt.Errorf("sqlite: clear latch %s: %w", id, err)
	}
	return out, nil
}

// activeLatchTx reads latch id inside the writer's transaction. A latch
// that is missing or no longer active is a result, not a failed write:
// it is set in *refused (store.ErrNotFound or store.ErrNotActive) with a
// nil error, since an error would roll back and rerun the writes batched
// with this one.
func activeLatchTx(w *writer, id string, now time.Time, refused *error) (store.Latch, error) {
	*refused = nil
	cur, err := scanLatch(w.out.latchByID.QueryRowContext(context.Background(), id))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		*refused = store.ErrNotFound
		return store.Latch{}, nil
	case err != nil:
		return store.Latch{}, err
	case !cur.Active(now):
		*refused = store.ErrNotActive
		return store.Latch{}, nil
	}
	return cur, nil
}

func scanLatch(r rowScanner) (store.Latch, error) {
	var l store.Latch
	var first, last int64
	var expires, cleared sql.NullInt64
	err := r.Scan(&l.ID, &l.Kind, &l.Key, &l.Rule, &l.Reason, &l.Site, &l.Evidence, &l.Count,
		&first, &last, &expires, &cleared, &l.ClearedBy, &l.ClearNote, &l.Refused)
	if err != nil {
		return store.Latch{}, err
	}
	l.FirstSeen, l.LastSeen = time.UnixMilli(first), time.UnixMilli(last)
	l.Expires, l.ClearedAt = fromMS(expires), fromMS(cleared)
	return l, nil
}
