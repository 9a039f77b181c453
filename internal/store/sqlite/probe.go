package sqlite

import (
	"context"
	"fmt"
	"time"
)

// The probe's table holds one row whose time each probe rewrites. It is
// made by the probe rather than by a migration: it holds nothing of
// value, and leaving the schema version alone keeps a database usable by
// the mailwarden that made it. CREATE TABLE IF NOT EXISTS on a table
// that exists changes nothing, so it costs a probe no schema change.
const (
	probeTableSQL = `CREATE TABLE IF NOT EXISTS probe (
		id   INTEGER PRIMARY KEY CHECK (id = 1),
		time INTEGER NOT NULL
	)`
	probeWriteSQL = `INSERT INTO probe (id, time) VALUES (1, ?1)
		ON CONFLICT (id) DO UPDATE SET time = excluded.time`
)

// Probe reports whether what the store writes now is kept. It checks
// that the database file is still the one opened (CheckFile: a removed
// file takes writes that the next start will not find), then writes the
// probe row through the writer, in a transaction of its own or with the
// writes queued beside it, and returns once that committed: it fails as
// the other writes do when the disk is full, the files or the filesystem
// are read-only or the database is corrupt. A failed probe is not
// counted as a lost write.
func (s *Store) Probe(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := s.CheckFile(); err != nil {
		return err
	}
	now := time.Now().UnixMilli()
	err := s.w.do(ctx, func(w *writer) error {
		if _, err := w.conn.ExecContext(context.Background(), probeTableSQL); err != nil {
			return err
		}
		_, err := w.conn.ExecContext(context.Background(), probeWriteSQL, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: write probe in %s: %w", s.path, explain(err))
	}
	return nil
}
