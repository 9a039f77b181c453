package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"mailwarden/internal/store"
)

const freezeListSQL = `SELECT scope, value, since, set_by, note FROM freeze ORDER BY scope, value`

// SetFreeze adds or replaces the freeze with f's Scope and Value. It
// returns once the freeze is committed: a freeze an administrator was
// told is in place must survive a crash.
func (s *Store) SetFreeze(ctx context.Context, f store.Freeze) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if f.Scope == "" {
		return errors.New("sqlite: set freeze: scope must be set")
	}
	f.Since = msTime(f.Since)
	audit, row := pendingAudit(ctx)
	err := s.w.as(writeFreeze).doCommitted(ctx, func(w *writer) error {
		if _, err := w.out.putFreeze.ExecContext(context.Background(), f.Scope, f.Value, ms(f.Since), f.By, f.Note); err != nil {
			return err
		}
		return w.insertAudit(row)
	}, func() {
		markAudit(audit, nil)
		if s.out != nil {
			s.out.putFreeze(f)
		}
	})
	if err != nil {
		return fmt.Errorf("sqlite: set freeze %s %q: %w", f.Scope, f.Value, err)
	}
	return nil
}

// LiftFreeze removes the freeze with scope and value.
func (s *Store) LiftFreeze(ctx context.Context, scope, value string) error {
	if s.closed.Load() {
		return ErrClosed
	}
	missing := false
	audit, row := pendingAudit(ctx)
	err := s.w.as(writeFreeze).doCommitted(ctx, func(w *writer) error {
		res, err := w.out.deleteFreeze.ExecContext(context.Background(), scope, value)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if missing = n == 0; missing || err != nil {
			return err
		}
		return w.insertAudit(row)
	}, func() {
		if !missing {
			markAudit(audit, nil)
		}
		if s.out != nil {
			s.out.liftFreeze(scope, value)
		}
	})
	if err != nil {
		return fmt.Errorf("sqlite: lift freeze %s %q: %w", scope, value, err)
	}
	if missing {
		return fmt.Errorf("sqlite: lift freeze %s %q: %w", scope, value, store.ErrNotFound)
	}
	return nil
}

// ListFreezes returns the freezes ordered by scope, then value. The
// daemon answers from memory; without a mirror it reads the database,
// since another process may have changed it.
func (s *Store) ListFreezes(ctx context.Context) ([]store.Freeze, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list freezes: %w", err)
	}
	if s.out != nil {
		return s.out.listFreezes(), nil
	}
	rows, err := s.outReads.freezes.QueryContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list freezes: %w", err)
	}
	out, err := scanAll(rows, scanFreeze)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list freezes: %w", err)
	}
	return out, nil
}

func scanFreeze(r rowScanner) (store.Freeze, error) {
	var f store.Freeze
	var since sql.NullInt64
	if err := r.Scan(&f.Scope, &f.Value, &since, &f.By, &f.Note); err != nil {
		return store.Freeze{}, err
	}
	f.Since = fromMS(since)
	return f, nil
}
