package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mailwarden/internal/store"
	"mailwarden/internal/store/storetest"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func openTest(t testing.TB, dir string) *Store {
	t.Helper()
	return openWith(t, dir, Options{})
}

func openWith(t testing.TB, dir string, o Options) *Store {
	t.Helper()
	s, err := OpenWith(dir, testLogger(t), o)
	if err != nil {
		t.Fatalf("OpenWith(%s, %+v): %v", dir, o, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTest(t, t.TempDir()) })
}

func TestImport(t *testing.T) {
	storetest.RunImport(t, func(t *testing.T) store.Store { return openTest(t, t.TempDir()) })
}

// The daemon keeps active latches and pass counts in memory; an import
// must reach them too.
func TestImportMirror(t *testing.T) {
	storetest.RunImport(t, func(t *testing.T) store.Store { return openMirror(t, t.TempDir()) })
}

func TestReopen(t *testing.T) {
	storetest.RunReopen(t, func(t *testing.T, dir string) store.Store { return openTest(t, dir) })
}

func TestCreatesDirAndFileWithModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "data")
	openTest(t, dir)
	for _, c := range []struct {
		path string
		max  os.FileMode
	}{{dir, 0o750}, {filepath.Join(dir, FileName), 0o640}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		// The umask may remove bits, never add them.
		if extra := fi.Mode().Perm() &^ c.max; extra != 0 {
			t.Errorf("%s has mode %v, want at most %v", c.path, fi.Mode().Perm(), c.max)
		}
	}
}

// TestBackupIsPrivate: a backup holds what the store does, password
// hashes among it, so under any umask it is 0640 at most, as the store
// is, and all of its -wal and -shm files too (SQLite gives them the
// database's mode). SQLite alone would create it 0644 less the umask.
func TestBackupIsPrivate(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()
	s := openTest(t, filepath.Join(dir, "data"))
	path := filepath.Join(dir, "backup.db")
	if err := s.BackupTo(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&^0o640 != 0 {
			t.Errorf("%s has mode %v, want at most 0640", p, fi.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.BackupTo(context.Background(), path); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("a second backup to the same path: %v, want already exists", err)
	}
}

func TestCorruptDatabase(t *testing.T) {
	for _, junk := range [][]byte{
		[]byte("junk"),
		bytes.Repeat([]byte("this is not a database\n"), 1000),
	} {
		dir := t.TempDir()
		path := filepath.Join(dir, FileName)
		if err := os.WriteFile(path, junk, 0o640); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir, testLogger(t))
		if err == nil {
			_ = s.Close()
			t.Fatalf("Open of a %d-byte junk file succeeded", len(junk))
		}
		msg := err.Error()
		if !strings.Contains(msg, path) || !strings.Contains(msg, "not a SQLite database") {
			t.Errorf("Open error %q does not name %s and say what is wrong", msg, path)
		}
		// The operator's file is left as it was, for recovery.
		if got, _ := os.ReadFile(path); !bytes.Equal(got, junk) {
			t.Errorf("Open changed the junk file")
		}
	}
}

func TestDataDirUnusable(t *testing.T) {
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(notDir, "data")
	_, err := Open(dir, testLogger(t))
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Open under a regular file: err = %v, want an error naming %s", err, dir)
	}
}

func TestDataDirNotWritable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores directory modes")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
	_, err := Open(dir, testLogger(t))
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Open in a read-only directory: err = %v, want an error naming it", err)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	_, err = Open(dir, testLogger(t))
	if err == nil || !strings.Contains(err.Error(), "schema version 99") {
		t.Fatalf("Open of a newer schema: err = %v, want it refused", err)
	}
}

func TestCloseIdempotentAndFinal(t *testing.T) {
	s := openTest(t, t.TempDir())
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx := context.Background()
	now := time.Now()
	checks := map[string]error{
		"PutTriplet": s.PutTriplet(ctx, store.Triplet{Client: "c", Expires: now.Add(time.Hour)}),
		"Ping":       s.Ping(ctx),
	}
	_, checks["GetTriplet"] = s.GetTriplet(ctx, "c", "s", "r", now)
	_, checks["ListTriplets"] = s.ListTriplets(ctx, store.TripletFilter{}, now)
	_, checks["AddClientPass"] = s.AddClientPass(ctx, "c", now, now.Add(time.Hour))
	_, checks["ClientPasses"] = s.ClientPasses(ctx, "c", now)
	_, checks["GreylistStats"] = s.GreylistStats(ctx, now, 5)
	_, checks["Expire"] = s.Expire(ctx, now)
	checks["DeleteTriplet"] = s.DeleteTriplet(ctx, "c", "s", "r")
	for name, err := range checks {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: err = %v, want ErrClosed", name, err)
		}
	}
}

// TestTwoStoresOneDirectory stands for the CLI opening the database while
// the daemon runs: each sees the other's writes and no increment is lost.
func TestTwoStoresOneDirectory(t *testing.T) {
	dir := t.TempDir()
	daemon := openTest(t, dir)
	cli := openTest(t, dir)
	ctx := context.Background()
	now := time.UnixMilli(time.Now().UnixMilli())
	tr := store.Triplet{Client: "192.0.2.0/24", Sender: "a@example.org", Recipient: "b@example.net",
		FirstSeen: now, LastSeen: now, Attempts: 1, Expires: now.Add(time.Hour)}
	if err := daemon.PutTriplet(ctx, tr); err != nil {
		t.Fatal(err)
	}
	// The daemon's put is committed by its writer within moments; the
	// other process sees it then.
	var got store.Triplet
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if got, err = cli.GetTriplet(ctx, tr.Client, tr.Sender, tr.Recipient, now); err == nil {
			break
		}
	}
	if err != nil || got.Attempts != 1 {
		t.Fatalf("CLI GetTriplet = %+v, %v", got, err)
	}
	if err := cli.DeleteTriplet(ctx, tr.Client, tr.Sender, tr.Recipient); err != nil {
		t.Fatal(err)
	}
	if _, err := daemon.GetTriplet(ctx, tr.Client, tr.Sender, tr.Recipient, now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("daemon GetTriplet after CLI delete: err = %v, want ErrNotFound", err)
	}

	const each = 50
	var wg sync.WaitGroup
	errs := make(chan error, 2*each)
	results := make(chan int, 2*each)
	for range each {
		for _, s := range []*Store{daemon, cli} {
			wg.Go(func() {
				n, err := s.AddClientPass(ctx, "198.51.100.0/24", now, now.Add(time.Hour))
				errs <- err
				results <- n
			})
		}
	}
	wg.Wait()
	close(errs)
	close(results)
	for err := range errs {
		if err != nil {
			t.Fatalf("AddClientPass from two stores: %v", err)
		}
	}
	got2 := slices.Sorted(func(yield func(int) bool) {
		for n := range results {
			if !yield(n) {
				return
			}
		}
	})
	for i, n := range got2 {
		if n != i+1 {
			t.Fatalf("counts from two stores %v, want each of 1..%d once", got2, 2*each)
		}
	}
	n, err := cli.ClientPasses(ctx, "198.51.100.0/24", now)
	if err != nil || n != 2*each {
		t.Fatalf("ClientPasses = %d, %v; want %d", n, err, 2*each)
	}
}

// TestFailedWriteIsolated checks that one failing write in a batch is
// answered with its own error while the writes queued with it commit.
func TestFailedWriteIsolated(t *testing.T) {
	s := openTest(t, t.TempDir())
	ctx := context.Background()
	now := time.Now()
	boom := errors.New("boom")
	const n = 40
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			if i == n/2 {
				errs[i] = s.w.do(ctx, func(w *writer) error {
					// Write something first: the rollback must undo it.
					if _, err := w.putTriplet.ExecContext(ctx, "bad", "", "", nil, nil, nil, 1,
						now.Add(time.Hour).UnixMilli()); err != nil {
						return err
					}
					return boom
				})
				return
			}
			errs[i] = s.PutTriplet(ctx, store.Triplet{Client: "good", Recipient: string(rune('A' + i)),
				Attempts: 1, Expires: now.Add(time.Hour)})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if i == n/2 {
			if !errors.Is(err, boom) {
				t.Errorf("failing write: err = %v, want boom", err)
			}
		} else if err != nil {
			t.Errorf("write %d: %v", i, err)
		}
	}
	list, err := s.ListTriplets(ctx, store.TripletFilter{}, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != n-1 {
		t.Errorf("%d triplets stored, want %d", len(list), n-1)
	}
	for _, tr := range list {
		if tr.Client == "bad" {
			t.Error("the failed write's partial effect was committed")
		}
	}
}

// TestExpireLargeBacklog checks that Expire keeps going past its chunk
// size and stops at exactly the expired records.
func TestExpireLargeBacklog(t *testing.T) {
	s := openTest(t, t.TempDir())
	ctx := context.Background()
	now := time.UnixMilli(time.Now().UnixMilli())
	const old, fresh = 2*expireChunk + 500, 10
	var wg sync.WaitGroup
	errs := make(chan error, old+fresh)
	for i := range old + fresh {
		wg.Go(func() {
			life := time.Minute
			if i >= old {
				life = 3 * time.Hour
			}
			errs <- s.PutTriplet(ctx, store.Triplet{Client: "192.0.2.0/24", Recipient: strconv.Itoa(i),
				Attempts: 1, Expires: now.Add(life)})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.Expire(ctx, now.Add(time.Hour))
	if err != nil || n != old {
		t.Fatalf("Expire = %d, %v; want %d", n, err, old)
	}
	list, err := s.ListTriplets(ctx, store.TripletFilter{}, now)
	if err != nil || len(list) != fresh {
		t.Fatalf("%d triplets left (%v), want %d", len(list), err, fresh)
	}
}

// TestClosePersistsQueuedPuts checks the write-behind promise: PutTriplet
// returns before the commit, yet a clean Close (daemon shutdown) commits
// every put it accepted.
func TestClosePersistsQueuedPuts(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.UnixMilli(time.Now().UnixMilli())
	const n = 3000
	for i := range n {
		tr := store.Triplet{Client: "192.0.2.0/24", Sender: fmt.Sprintf("s%d@example.org", i), Recipient: "r@example.net",
			FirstSeen: now, LastSeen: now, Attempts: 1, Expires: now.Add(time.Hour)}
		if err := s.PutTriplet(ctx, tr); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openTest(t, dir)
	st, err := s2.GreylistStats(ctx, now, 5)
	if err != nil {
		t.Fatal(err)
	}
	if st.Pending != n {
		t.Fatalf("after close and reopen: %d pending triplets, want %d", st.Pending, n)
	}
}

func openMirror(t testing.TB, dir string) *Store {
	t.Helper()
	return openWith(t, dir, Options{Mirror: true})
}

// The daemon's mirrored store must keep every promise the plain one does.
func TestConformanceMirror(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openMirror(t, t.TempDir()) })
}

func TestReopenMirror(t *testing.T) {
	storetest.RunReopen(t, func(t *testing.T, dir string) store.Store { return openMirror(t, dir) })
}

// The daemon (mirrored) and the CLI (plain) open the same directory;
// the plain pair checks the contract without the mirror in the way.
func TestTwoHandles(t *testing.T) {
	plain := func(t *testing.T, dir string) store.Store { return openTest(t, dir) }
	mirrored := func(t *testing.T, dir string) store.Store { return openMirror(t, dir) }
	t.Run("Plain", func(t *testing.T) { storetest.RunTwoHandles(t, plain, plain) })
	t.Run("Mirror", func(t *testing.T) { storetest.RunTwoHandles(t, mirrored, plain) })
}

// TestMirrorSeesOtherProcess stands for `mailwarden greylist allow` run
// while the daemon holds the triplets in memory: the daemon must see the
// change without a restart.
func TestMirrorSeesOtherProcess(t *testing.T) {
	dir := t.TempDir()
	daemon := openMirror(t, dir)
	ctx := context.Background()
	now := time.UnixMilli(time.Now().UnixMilli())
	tr := store.Triplet{Client: "192.0.2.0/24", Sender: "a@example.org", Recipient: "b@example.net",
		FirstSeen: now, LastSeen: now, Attempts: 1, Expires: now.Add(time.Hour)}
	if err := daemon.PutTriplet(ctx, tr); err != nil {
		t.Fatal(err)
	}
	gone := tr
	gone.Recipient = "gone@example.net"
	if err := daemon.PutTriplet(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if _, err := daemon.ListTriplets(ctx, store.TripletFilter{}, now); err != nil { // commits the puts
		t.Fatal(err)
	}

	cli := openTest(t, dir)
	passed := tr
	passed.PassedAt = now
	if err := cli.PutTriplet(ctx, passed); err != nil {
		t.Fatal(err)
	}
	if err := cli.DeleteTriplet(ctx, gone.Client, gone.Sender, gone.Recipient); err != nil {
		t.Fatal(err)
	}
	cli.Close() // commits the CLI's queued put

	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := daemon.GetTriplet(ctx, tr.Client, tr.Sender, tr.Recipient, now)
		_, goneErr := daemon.GetTriplet(ctx, gone.Client, gone.Sender, gone.Recipient, now)
		if err == nil && got.Passed() && errors.Is(goneErr, store.ErrNotFound) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon still sees %+v (%v) and the deleted triplet (%v) 10s after another process changed them", got, err, goneErr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
