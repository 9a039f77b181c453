package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// rowScanner is a *sql.Row or the current row of *sql.Rows.
type rowScanner interface{ Scan(dest ...any) error }

// eachRow calls scan on every row of rows and closes them; it stops at
// the first error.
func eachRow(rows *sql.Rows, scan func(r rowScanner) error) error {
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// scanAll returns every row of rows as scan reads it, and closes them.
func scanAll[T any](rows *sql.Rows, scan func(r rowScanner) (T, error)) ([]T, error) {
	var out []T
	err := eachRow(rows, func(r rowScanner) error {
		v, err := scan(r)
		if err != nil {
			return err
		}
		out = append(out, v)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// queryAll runs query with run (s.rdb.QueryContext, or s.hostQuery)
// and returns its rows as scan reads them; what says in an error what
// was being read.
func queryAll[T any](ctx context.Context, run func(context.Context, string, ...any) (*sql.Rows, error), what string,
	scan func(r rowScanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := run(ctx, query, args...)
	if err == nil {
		var out []T
		if out, err = scanAll(rows, scan); err == nil {
			return out, nil
		}
	}
	return nil, fmt.Errorf("sqlite: %s: %w", what, err)
}

// preparer is a *sql.DB (the read pool) or a *sql.Conn (the writer's).
type preparer interface {
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

// prepareAll prepares queries[i] into *dsts[i]; what ("read", "write")
// names the statements in an error.
func prepareAll(ctx context.Context, p preparer, what string, dsts []**sql.Stmt, queries []string) error {
	for i, dst := range dsts {
		st, err := p.PrepareContext(ctx, queries[i])
		if err != nil {
			return fmt.Errorf("prepare %s statement: %w", what, err)
		}
		*dst = st
	}
	return nil
}

// closeAll closes the statements of dsts that were prepared.
func closeAll(dsts []**sql.Stmt) {
	for _, st := range dsts {
		if *st != nil {
			_ = (*st).Close()
		}
	}
}
