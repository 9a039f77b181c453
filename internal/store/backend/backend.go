// Package backend opens the store that the config names. It is the one
// place that reads store.backend, so the daemon and every offline
// command open the same kind of store the same way, and a new backend
// (Redis) is one case here rather than an edit in every caller.
package backend

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"mailwarden/internal/config"
	"mailwarden/internal/logx"
	"mailwarden/internal/store"
	"mailwarden/internal/store/sqlite"
)

// Options says who is opening the store.
type Options struct {
	// Daemon opens the store for the long-running daemon, which reads it
	// for every message: SQLite then keeps triplets, active latches and
	// freezes in memory. An offline command, which reads a few records
	// and exits, leaves it off and starts at once.
	Daemon bool
	// Create lets Open make a new store when the data directory does not
	// exist at all: the daemon's first start. An existing directory
	// without a store is refused whatever Create says (it may be a disk
	// that is not mounted); `mailwarden store init` makes a store there.
	Create bool
	// Log receives the backend's own messages; nil discards them.
	Log *slog.Logger
}

// Open opens the backend cfg.Store.Kind names: SQLite in cfg.DataDir, or
// Redis with its identity marker in cfg.DataDir. The
// caller closes the store. There is no in-memory choice here: a daemon
// that forgets its latches on restart would let an infected machine
// send again, so tests hand the daemon a memory store instead
// (daemon.Options.Store).
func Open(cfg config.Config, o Options) (store.Store, error) {
	log := o.Log
	log = logx.Or(log)
	switch cfg.Store.Kind {
	case config.StoreRedis:
		return openRedis(cfg, o, log)
	case config.StoreSQLite:
		p, m, err := check(cfg.DataDir, o.Create)
		if err != nil {
			return nil, err
		}
		st, err := sqlite.OpenWith(cfg.DataDir, log, sqlite.Options{Mirror: o.Daemon})
		if err != nil {
			return nil, err
		}
		switch p {
		case planCreate:
			m = marker{ID: newID(), Created: time.Now()}
			err = identify(st, cfg.DataDir, m)
			log.Info("created a new store", "dir", cfg.DataDir, "store", m.ID)
		case planAdopt:
			// A store from before markers: it keeps its data and gets
			// an identity now.
			if m.ID == 0 {
				m.ID = newID()
			}
			err = identify(st, cfg.DataDir, m)
			log.Info("recorded the identity of an existing store", "dir", cfg.DataDir, "store", m.ID)
		}
		if err != nil {
			st.Close()
			return nil, err
		}
		return st, nil
	default:
		// Config validation refuses this first; a caller that skipped
		// it still gets an error rather than a nil store.
		return nil, fmt.Errorf("store kind %q is not available (available: sqlite, redis)", cfg.Store.Kind)
	}
}

// identify records m in the database header and the marker file: the
// header first, so a marker never names a database that lacks it.
func identify(st *sqlite.Store, dir string, m marker) error {
	if err := st.SetID(context.Background(), m.ID); err != nil {
		return err
	}
	return writeMarker(dir, m)
}

// Init makes a new, empty store in cfg.DataDir and returns its identity.
// A data directory that already holds a store is refused unless force
// is set; then its database and marker are moved aside (to names ending
// ".replaced-TIME"), never deleted.
func Init(cfg config.Config, force bool, log *slog.Logger) (int32, error) {
	log = logx.Or(log)
	switch cfg.Store.Kind {
	case config.StoreRedis:
		return initRedis(cfg, force, log)
	case config.StoreSQLite:
	default:
		return 0, fmt.Errorf("store kind %q is not available (available: sqlite, redis)", cfg.Store.Kind)
	}
	dir := cfg.DataDir
	m, hasMarker, err := readMarker(dir)
	if err != nil && !force {
		return 0, err
	}
	db, err := sqlite.Inspect(dir)
	if err != nil && !force {
		return 0, err
	}
	if (hasMarker || db.Exists && db.Size > 0) && !force {
		what := "a database"
		if hasMarker {
			what = fmt.Sprintf("store %d (created %s)", m.ID, m.Created.Format(time.RFC3339))
		}
		return 0, fmt.Errorf("%s already holds %s; `store init --force` moves it aside and starts over with no latches, freezes or users", dir, what)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return 0, fmt.Errorf("creating data directory %s: %w", dir, err)
	}
	suffix := ".replaced-" + time.Now().UTC().Format("20060102T150405Z")
	for _, name := range []string{sqlite.FileName, sqlite.FileName + "-wal", sqlite.FileName + "-shm", MarkerName} {
		old := filepath.Join(dir, name)
		if _, err := os.Lstat(old); err == nil {
			if err := os.Rename(old, old+suffix); err != nil {
				return 0, fmt.Errorf("moving %s aside: %w", old, err)
			}
			log.Warn("moved aside", "file", old, "to", old+suffix)
		}
	}
	st, err := sqlite.Open(dir, log)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	m = marker{ID: newID(), Created: time.Now()}
	if err := identify(st, dir, m); err != nil {
		return 0, err
	}
	return m.ID, nil
}
