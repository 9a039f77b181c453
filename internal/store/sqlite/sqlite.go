// Package sqlite is mailwarden's embedded store: one SQLite database file
// in the data directory, shared safely with the mailwarden CLI while the
// daemon runs.
//
// Writes go through a single writer goroutine that commits every write
// waiting at that moment in one transaction (group commit); reads use a
// separate pool of read-only connections, which WAL mode lets run beside
// the writer without blocking.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"mailwarden/internal/store"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// FileName is the database file's name inside the data directory.
const FileName = "mailwarden.db"

// busyTimeoutMS is how long a connection waits for a lock another
// process holds (the CLI writing while the daemon runs) before failing.
const busyTimeoutMS = 5000

// ErrClosed is returned by every operation on a closed Store.
var ErrClosed = errors.New("sqlite: store is closed")

// Store is the SQLite implementation of store.Store. It is safe for
// concurrent use.
type Store struct {
	path    string
	log     *slog.Logger
	wdb     *sql.DB // holds the writer's single connection
	w       *writer
	rdb     *sql.DB // read-only pool
	reads   readStmts
	pending pendingTriplets
	closed  atomic.Bool

	outReads outReads
	rates    rates
	// out holds the active latches and the freezes in memory; nil unless
	// Options.Mirror, and then only the writer goroutine changes it.
	out *outMem
	// latchID draws a new latch id; tests replace it to force clashes.
	latchID func() string

	// opened is the database file as opened, for CheckFile.
	opened os.FileInfo

	mirror       *mirror // nil unless Options.Mirror
	reloadReq    chan struct{}
	reloaderDone chan struct{}
	// reloaderStarted is set before Open returns, read only by Close.
	reloaderStarted bool
	closeMu         sync.Mutex
}

// Open opens (creating if needed) the store in dir. The directory is
// created with mode 0750 and the database file with mode 0640, since
// triplets hold correspondents' addresses.
func Open(dir string, log *slog.Logger) (*Store, error) {
	return OpenWith(dir, log, Options{})
}

// Options tunes a Store.
type Options struct {
	// Mirror keeps the triplet table, the active latches and the
	// freezes in memory and answers GetTriplet, ActiveLatch and
	// ListFreezes from there: the daemon's choice. Memory grows with the
	// number of unexpired triplets: about 75 bytes each in the map
	// (compact.go), up to twice that in process memory with the
	// collector's headroom. Changes by another process are picked up
	// within moments. Admin commands,
	// which read a few records and exit, leave it off.
	Mirror bool
}

// OpenWith is Open with options.
func OpenWith(dir string, log *slog.Logger, o Options) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("sqlite: create data directory %s: %w", dir, err)
	}
	abs, err := filepath.Abs(filepath.Join(dir, FileName))
	if err != nil {
		return nil, fmt.Errorf("sqlite: resolve database path in %s: %w", dir, err)
	}
	// Create the file ourselves for its mode; SQLite gives the -wal and
	// -shm files the same mode as the database file. An empty file is a
	// valid empty database.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open database file %s: %w", abs, err)
	}
	opened, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("sqlite: open database file %s: %w", abs, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("sqlite: open database file %s: %w", abs, err)
	}

	s := &Store{path: abs, log: log, latchID: newLatchID, opened: opened}
	s.rates.init()
	if o.Mirror {
		s.mirror = &mirror{h: newHasher()}
		s.out = &outMem{latches: make(map[latchKey]store.Latch)}
		s.reloadReq = make(chan struct{}, 1)
		s.reloaderDone = make(chan struct{})
	}
	if err := s.open(context.Background()); err != nil {
		s.closeAll()
		return nil, fmt.Errorf("sqlite: open database %s: %w", abs, explain(err))
	}
	if err := s.loadRates(context.Background()); err != nil {
		s.closeAll()
		return nil, fmt.Errorf("sqlite: open database %s: %w", abs, err)
	}
	if o.Mirror {
		start := time.Now()
		err := s.reloadOutbound(context.Background())
		if err == nil {
			err = s.reload(context.Background())
		}
		if err == nil {
			s.mirror.clients, err = s.scanClients(context.Background())
		}
		if err != nil {
			s.closeAll()
			return nil, fmt.Errorf("sqlite: open database %s: %w", abs, err)
		}
		s.reloaderStarted = true
		go s.reloader()
		latches, freezes := s.out.counts()
		log.Info("greylist triplets, latches and freezes loaded into memory", "triplets", s.mirror.len(),
			"active_latches", latches, "freezes", freezes, "took", time.Since(start).Round(time.Millisecond))
	}
	return s, nil
}

// dsn builds a file: URI for path, escaping characters such as '?' and '#'
// that would otherwise end the path (https://www.sqlite.org/uri.html §3).
func dsn(path string, params ...string) string {
	u := "file:" + (&url.URL{Path: path}).EscapedPath() + "?_pragma=busy_timeout(" + fmt.Sprint(busyTimeoutMS) + ")"
	for _, p := range params {
		u += "&" + p
	}
	return u
}

func (s *Store) open(ctx context.Context) error {
	// synchronous=FULL in WAL mode syncs the WAL at every commit
	// (https://www.sqlite.org/pragma.html#pragma_synchronous): a latch,
	// a freeze, a user or an audit entry that a caller was told is stored
	// survives an OS crash or power loss. NORMAL lost the last seconds of
	// them (issue 21). The writer commits a whole batch of queued writes
	// at once, so the sync is paid once per batch, not per write.
	// A checkpoint every 10,000 WAL pages (~40 MB) instead of 1,000:
	// greylist pages change over and over, and each checkpoint copies a
	// page once however often it changed.
	// The writer's page cache holds 8 MiB instead of 2: a batch of
	// thousands of puts dirties pages all over the triplet table, and
	// pages pushed out of the cache mid-transaction are written and read
	// back again. 64 MiB held the whole table of a small site and was
	// the largest part of the daemon's memory (17 of 88 MB after 100,000
	// new triplets; BENCHMARKS.md), for writes that are off the reply
	// path anyway.
	wdb, err := sql.Open("sqlite", dsn(s.path, "_pragma=synchronous(FULL)",
		"_pragma=wal_autocheckpoint(10000)", "_pragma=cache_size(-8192)"))
	if err != nil {
		return err
	}
	s.wdb = wdb
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	conn, err := wdb.Conn(ctx)
	if err != nil {
		return err
	}
	var mode string
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode); err != nil {
		_ = conn.Close()
		return fmt.Errorf("set WAL journal mode: %w", err)
	}
	if mode != "wal" {
		_ = conn.Close()
		return fmt.Errorf("set WAL journal mode: database stays in %q mode", mode)
	}
	if err := migrate(ctx, conn, s.log); err != nil {
		_ = conn.Close()
		return err
	}
	var onExternal func()
	if s.mirror != nil {
		onExternal = s.externalChange
	}
	w, err := newWriter(ctx, conn, s.log, onExternal)
	if err != nil {
		_ = conn.Close()
		return err
	}
	s.w = w

	// mode=ro makes a stray write on a read connection fail loudly
	// instead of competing with the writer for the lock.
	rdb, err := sql.Open("sqlite", dsn(s.path, "mode=ro"))
	if err != nil {
		return err
	}
	s.rdb = rdb
	n := max(4, 2*runtime.GOMAXPROCS(0))
	rdb.SetMaxOpenConns(n)
	rdb.SetMaxIdleConns(n)
	rdb.SetConnMaxLifetime(0)
	rdb.SetConnMaxIdleTime(0)
	if err := s.reads.prepare(ctx, rdb); err != nil {
		return err
	}
	if err := s.outReads.prepare(ctx, rdb); err != nil {
		return err
	}
	s.log.Debug("store opened", "path", s.path, "schema_version", len(migrations))
	return nil
}

// explain adds a hint to the errors an operator is likely to meet.
func explain(err error) error {
	var se *msqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT:
			return fmt.Errorf("not a SQLite database or corrupt (move it aside to start empty, or restore a backup): %w", err)
		case sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM:
			return fmt.Errorf("cannot write the database or its -wal/-shm files (check the data directory's owner and mode): %w", err)
		}
	}
	return err
}

// Close stops the writer after the batch in progress and closes every
// connection. Calling it again does nothing and returns nil.
func (s *Store) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed.Swap(true) {
		return nil
	}
	if err := s.closeAll(); err != nil {
		return fmt.Errorf("sqlite: close %s: %w", s.path, err)
	}
	return nil
}

func (s *Store) closeAll() error {
	var errs []error
	if s.w != nil {
		s.w.stop()
		if s.reloaderStarted {
			<-s.reloaderDone
		}
		s.w.closeStmts()
		errs = append(errs, s.w.conn.Close())
	}
	s.reads.close()
	s.outReads.close()
	if s.rdb != nil {
		errs = append(errs, s.rdb.Close())
	}
	if s.wdb != nil {
		errs = append(errs, s.wdb.Close())
	}
	return errors.Join(errs...)
}

// Ping reports whether the store can serve reads and whether the writer
// is still running.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	select {
	case <-s.w.done:
		return errors.New("sqlite: writer has stopped")
	default:
	}
	var one int
	if err := s.reads.ping.QueryRowContext(ctx).Scan(&one); err != nil {
		return fmt.Errorf("sqlite: ping %s: %w", s.path, err)
	}
	return nil
}
