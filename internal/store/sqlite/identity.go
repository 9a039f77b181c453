package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The store's identity is a random number kept in the database header
// (PRAGMA application_id) and, by the opener (store/backend), in a
// marker file beside it. A database that is missing, empty or another
// one than the marker names is then noticed instead of silently
// replaced by an empty store, which would forget every latch.

// FileState is what is on disk of a store in a data directory, read
// without creating or changing anything.
type FileState struct {
	// Exists says the database file is there; Size is its length.
	Exists bool
	Size   int64
	// Schema is the number of migrations the database has had: 0 for a
	// file with no tables (empty, or a new database never written).
	Schema int
	// ID is the store identity in the header; 0 when none was set.
	ID int32
}

// Inspect reads the state of the store in dir.
func Inspect(dir string) (FileState, error) {
	return InspectFile(filepath.Join(dir, FileName))
}

// InspectFile reads the state of the database file at path (a store's,
// or a backup).
func InspectFile(path string) (FileState, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return FileState{}, nil
	}
	if err != nil {
		return FileState{}, fmt.Errorf("sqlite: inspecting %s: %w", path, err)
	}
	st := FileState{Exists: true, Size: fi.Size()}
	if st.Size == 0 {
		return st, nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return st, fmt.Errorf("sqlite: inspecting %s: %w", path, err)
	}
	// Read-only: inspecting must not create a -wal file or change a byte.
	db, err := sql.Open("sqlite", dsn(abs, "mode=ro"))
	if err != nil {
		return st, fmt.Errorf("sqlite: inspecting %s: %w", path, err)
	}
	defer db.Close()
	ctx := context.Background()
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&st.Schema); err != nil {
		return st, fmt.Errorf("sqlite: inspecting %s: %w", path, explain(err))
	}
	if err := db.QueryRowContext(ctx, "PRAGMA application_id").Scan(&st.ID); err != nil {
		return st, fmt.Errorf("sqlite: inspecting %s: %w", path, explain(err))
	}
	return st, nil
}

// SetID records the store identity in the database header, durably.
func (s *Store) SetID(ctx context.Context, id int32) error {
	if s.closed.Load() {
		return ErrClosed
	}
	err := s.w.do(ctx, func(w *writer) error {
		_, err := w.conn.ExecContext(context.Background(), fmt.Sprintf("PRAGMA application_id = %d", id))
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: recording the store identity: %w", err)
	}
	return nil
}

// CheckFile reports an error when the database file at the store's path
// is no longer the one this Store opened: deleted, or replaced by
// another file. The store then writes to a file nobody will find again,
// and the next start would be empty.
func (s *Store) CheckFile() error {
	fi, err := os.Stat(s.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("sqlite: the database file %s was removed while the store is open; what is written now is lost at the next start", s.path)
	case err != nil:
		return fmt.Errorf("sqlite: checking the database file %s: %w", s.path, err)
	case s.opened != nil && !os.SameFile(fi, s.opened):
		return fmt.Errorf("sqlite: the database file %s was replaced by another file while the store is open", s.path)
	}
	return nil
}

// BackupTo writes a consistent copy of the store to path, which must not
// exist, while the store stays in use: VACUUM INTO reads one snapshot of
// the database (https://www.sqlite.org/lang_vacuum.html#vacuuminto),
// whatever the daemon writes meanwhile. The copy keeps the store's
// identity. It is synced before BackupTo returns.
func (s *Store) BackupTo(ctx context.Context, path string) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := s.w.flush(ctx); err != nil {
		return fmt.Errorf("sqlite: backup: %w", err)
	}
	// The copy holds what the store does (password hashes among it), so
	// it gets the store's mode, 0640. SQLite would create it 0644 less
	// the umask; VACUUM INTO accepts an empty file, so it is made here
	// first, never over an existing one.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("sqlite: backup: %s already exists", path)
	}
	if err != nil {
		return fmt.Errorf("sqlite: backup to %s: %w", path, err)
	}
	err = f.Chmod(0o640)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		_, err = s.rdb.ExecContext(ctx, "VACUUM INTO ?", path)
		err = explain(err)
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("sqlite: backup to %s: %w", path, err)
	}
	f, err = os.Open(path)
	if err != nil {
		return fmt.Errorf("sqlite: backup to %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sqlite: backup to %s: %w", path, err)
	}
	return nil
}
