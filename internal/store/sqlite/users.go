package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"mailwarden/internal/store"
)

// Dashboard users are not mirrored in memory: they are read from SQLite
// on every request, so that a user the CLI deletes or demotes loses
// access on their very next request instead of after a reload. A login
// check reads one row by primary key; that costs little next to bcrypt.
// Writes are committed before returning (users are few and an
// administrator waits for the answer), so reads need no flush of the
// write-behind queue either.

const userCols = `name, role, hash, created, changed`

func checkUser(u store.User) error {
	if u.Name == "" {
		return errors.New("name must be set")
	}
	if u.Role != store.RoleViewer && u.Role != store.RoleAdmin {
		return fmt.Errorf("role %q is neither %s nor %s", u.Role, store.RoleViewer, store.RoleAdmin)
	}
	if len(u.Hash) == 0 {
		return errors.New("password hash must be set")
	}
	return nil
}

// AddUser stores a new user, or returns store.ErrExists. A zero Changed
// is stored as Created.
func (s *Store) AddUser(ctx context.Context, u store.User) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := checkUser(u); err != nil {
		return fmt.Errorf("sqlite: add user %q: %w", u.Name, err)
	}
	if u.Created.IsZero() {
		return fmt.Errorf("sqlite: add user %q: created time must be set", u.Name)
	}
	if u.Changed.IsZero() {
		u.Changed = u.Created
	}
	// fn may run twice if a write batched with it fails, so it sets
	// added afresh each time.
	var added bool
	audit, row := pendingAudit(ctx)
	err := s.w.as(writeUser).do(ctx, func(w *writer) error {
		res, err := w.conn.ExecContext(context.Background(), `INSERT INTO web_user (`+userCols+`)
			VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name) DO NOTHING`,
			u.Name, u.Role, u.Hash, u.Created.UnixMilli(), u.Changed.UnixMilli())
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if added = n == 1; !added || err != nil {
			return err
		}
		return w.insertAudit(row)
	})
	if added {
		markAudit(audit, err)
	}
	if err != nil {
		return fmt.Errorf("sqlite: add user %q: %w", u.Name, err)
	}
	if !added {
		return fmt.Errorf("sqlite: add user %q: %w", u.Name, store.ErrExists)
	}
	return nil
}

// UpdateUser replaces the role, hash and Changed of the user u.Name,
// keeping Created, or returns store.ErrNotFound.
func (s *Store) UpdateUser(ctx context.Context, u store.User) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := checkUser(u); err != nil {
		return fmt.Errorf("sqlite: update user %q: %w", u.Name, err)
	}
	if u.Changed.IsZero() {
		return fmt.Errorf("sqlite: update user %q: changed time must be set", u.Name)
	}
	n, err := s.userExec(ctx, `UPDATE web_user SET role = ?2, hash = ?3, changed = ?4 WHERE name = ?1`,
		u.Name, u.Role, u.Hash, u.Changed.UnixMilli())
	if err != nil {
		return fmt.Errorf("sqlite: update user %q: %w", u.Name, err)
	}
	if n == 0 {
		return fmt.Errorf("sqlite: update user %q: %w", u.Name, store.ErrNotFound)
	}
	return nil
}

// DeleteUser removes the user named name, or returns store.ErrNotFound.
func (s *Store) DeleteUser(ctx context.Context, name string) error {
	if s.closed.Load() {
		return ErrClosed
	}
	n, err := s.userExec(ctx, `DELETE FROM web_user WHERE name = ?1`, name)
	if err != nil {
		return fmt.Errorf("sqlite: delete user %q: %w", name, err)
	}
	if n == 0 {
		return fmt.Errorf("sqlite: delete user %q: %w", name, store.ErrNotFound)
	}
	return nil
}

// userExec runs q in the writer and returns how many rows it changed.
// userExec runs a change to one user and returns the rows it changed;
// the audit ctx carries is stored with it when a row changed.
func (s *Store) userExec(ctx context.Context, q string, args ...any) (int64, error) {
	var n int64
	audit, row := pendingAudit(ctx)
	err := s.w.as(writeUser).do(ctx, func(w *writer) error {
		res, err := w.conn.ExecContext(context.Background(), q, args...)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); n == 0 || err != nil {
			return err
		}
		return w.insertAudit(row)
	})
	if n > 0 {
		markAudit(audit, err)
	}
	return n, err
}

// GetUser returns the user named name, or store.ErrNotFound.
func (s *Store) GetUser(ctx context.Context, name string) (store.User, error) {
	if s.closed.Load() {
		return store.User{}, ErrClosed
	}
	row := s.rdb.QueryRowContext(ctx, `SELECT `+userCols+` FROM web_user WHERE name = ?1`, name)
	u, err := scanUser(row)
	if errors.Is(err, sql.ErrNoRows) {
		return store.User{}, fmt.Errorf("sqlite: get user %q: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return store.User{}, fmt.Errorf("sqlite: get user %q: %w", name, err)
	}
	return u, nil
}

// ListUsers returns every user, ordered by name (byte order).
func (s *Store) ListUsers(ctx context.Context) ([]store.User, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	return queryAll(ctx, s.rdb.QueryContext, "list users", scanUser, `SELECT `+userCols+` FROM web_user ORDER BY name`)
}

func scanUser(row rowScanner) (store.User, error) {
	var u store.User
	var created, changed int64
	if err := row.Scan(&u.Name, &u.Role, &u.Hash, &created, &changed); err != nil {
		return store.User{}, err
	}
	u.Created, u.Changed = time.UnixMilli(created), time.UnixMilli(changed)
	return u, nil
}
