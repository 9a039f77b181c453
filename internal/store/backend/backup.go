package backend

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"mailwarden/internal/config"
	"mailwarden/internal/logx"
	"mailwarden/internal/store/sqlite"
)

// Backup writes a consistent copy of the store in cfg.DataDir to path,
// while the daemon runs or not.
func Backup(ctx context.Context, cfg config.Config, path string) error {
	if cfg.Store.Kind == config.StoreRedis {
		return errRedisBackup("backup")
	}
	st, err := Open(cfg, Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	s, ok := st.(*sqlite.Store)
	if !ok {
		return fmt.Errorf("store kind %q has no backup", cfg.Store.Kind)
	}
	return s.BackupTo(ctx, path)
}

// Restore puts the backup at path in place of the store in cfg.DataDir;
// the daemon must be stopped. The database there, if any, is moved aside
// (to a name ending ".replaced-TIME"), never deleted. A backup of
// another store than the one the directory held is refused unless
// force. It returns the restored store's identity.
func Restore(cfg config.Config, path string, force bool, log *slog.Logger) (int32, error) {
	log = logx.Or(log)
	if cfg.Store.Kind == config.StoreRedis {
		return 0, errRedisBackup("restore")
	}
	if cfg.Store.Kind != config.StoreSQLite {
		return 0, fmt.Errorf("store kind %q has no restore", cfg.Store.Kind)
	}
	b, err := sqlite.InspectFile(path)
	if err != nil {
		return 0, err
	}
	if !b.Exists || b.Schema == 0 {
		return 0, fmt.Errorf("%s is not a backup of a mailwarden store (no tables in it)", path)
	}
	dir := cfg.DataDir
	m, hasMarker, err := readMarker(dir)
	if err != nil && !force {
		return 0, err
	}
	if hasMarker && b.ID != m.ID && !force {
		return 0, fmt.Errorf("%s is a backup of store %d, but %s held store %d; --force restores it anyway", path, b.ID, dir, m.ID)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return 0, fmt.Errorf("creating data directory %s: %w", dir, err)
	}
	// The copy is made and synced beside the database first, so the
	// database is never half a backup.
	tmp, err := copyTemp(dir, path)
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp)
	suffix := ".replaced-" + time.Now().UTC().Format("20060102T150405Z")
	for _, name := range []string{sqlite.FileName, sqlite.FileName + "-wal", sqlite.FileName + "-shm"} {
		old := filepath.Join(dir, name)
		if _, err := os.Lstat(old); err == nil {
			if err := os.Rename(old, old+suffix); err != nil {
				return 0, fmt.Errorf("moving %s aside: %w", old, err)
			}
			log.Warn("moved aside", "file", old, "to", old+suffix)
		}
	}
	if err := os.Rename(tmp, filepath.Join(dir, sqlite.FileName)); err != nil {
		return 0, fmt.Errorf("putting the backup in place: %w", err)
	}
	syncDir(dir)
	id := b.ID
	if id == 0 {
		// A backup from before identities: it gets one now.
		st, err := sqlite.Open(dir, log)
		if err != nil {
			return 0, err
		}
		id = newID()
		err = st.SetID(context.Background(), id)
		st.Close()
		if err != nil {
			return 0, err
		}
	}
	if err := writeMarker(dir, marker{ID: id, Created: time.Now()}); err != nil {
		return 0, err
	}
	return id, nil
}

// copyTemp copies src into a new file in dir, synced, mode 0640, and
// returns its name.
func copyTemp(dir, src string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("reading the backup: %w", err)
	}
	defer in.Close()
	name, err := writeTemp(dir, ".restore-", in)
	if err != nil {
		return "", fmt.Errorf("copying the backup: %w", err)
	}
	return name, nil
}

// writeTemp writes what r holds into a new file in dir, named from
// pattern as os.CreateTemp does, mode 0640 and synced, and returns its
// name. On an error the file is removed.
func writeTemp(dir, pattern string, r io.Reader) (string, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Chmod(0o640)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// errRedisBackup says why store backup and restore refuse a Redis store:
// Redis keeps its own copies.
func errRedisBackup(verb string) error {
	return fmt.Errorf("store %s is not available for redis: use Redis persistence (RDB snapshots or the AOF, copied off the server) or `mailwarden store copy` to another store", verb)
}
