package backend

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/config"
	"mailwarden/internal/store"
	"mailwarden/internal/store/sqlite"
)

func cfgIn(dir string) config.Config {
	cfg := config.Default()
	cfg.DataDir = dir
	return cfg
}

// latchIn opens the store in dir as the daemon does, latches a client
// and closes it: a store that has held state.
func latchIn(t *testing.T, dir string) {
	t.Helper()
	st, err := Open(cfgIn(dir), Options{Daemon: true, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddLatch(context.Background(), store.Latch{Kind: store.LatchClient, Key: "10.1.2.3", Rule: "r", Reason: "x"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestNoSilentEmptyStore: a store that has held state is never silently
// replaced by an empty one (issue 21: a removed, emptied or lost
// database started empty and the latched client's mail was accepted).
func TestNoSilentEmptyStore(t *testing.T) {
	for _, tc := range []struct {
		name  string
		harm  func(t *testing.T, dir string)
		want  error
		words string
	}{
		{"database removed", func(t *testing.T, dir string) {
			for _, n := range []string{sqlite.FileName, sqlite.FileName + "-wal", sqlite.FileName + "-shm"} {
				os.Remove(filepath.Join(dir, n))
			}
		}, ErrLost, "is missing"},
		{"database emptied", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, sqlite.FileName+"-wal"))
			if err := os.Truncate(filepath.Join(dir, sqlite.FileName), 0); err != nil {
				t.Fatal(err)
			}
		}, ErrLost, "is empty"},
		{"database replaced by another store", func(t *testing.T, dir string) {
			other := filepath.Join(t.TempDir(), "other")
			latchIn(t, other)
			b, err := os.ReadFile(filepath.Join(other, sqlite.FileName))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, sqlite.FileName), b, 0o640); err != nil {
				t.Fatal(err)
			}
		}, ErrLost, "another copy"},
		{"an empty directory (a disk not mounted)", func(t *testing.T, dir string) {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(dir, 0o750); err != nil {
				t.Fatal(err)
			}
		}, ErrNoStore, "store init"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			latchIn(t, dir)
			tc.harm(t, dir)
			for _, o := range []Options{{Daemon: true, Create: true}, {}} {
				st, err := Open(cfgIn(dir), o)
				if err == nil {
					st.Close()
					t.Fatalf("Open(%+v) started on a harmed store", o)
				}
				if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.words) {
					t.Errorf("Open(%+v): %v; want %v saying %q", o, err, tc.want, tc.words)
				}
				if tc.want == ErrLost && !strings.Contains(err.Error(), "store restore") {
					t.Errorf("the error does not give the restore command: %v", err)
				}
			}
			// Nothing was created in the directory by trying.
			if tc.want == ErrNoStore {
				if ents, _ := os.ReadDir(dir); len(ents) != 0 {
					t.Errorf("opening an empty directory left %d files in it", len(ents))
				}
			}
		})
	}
}

func TestFirstStartAndCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	// A command does not make a store where there is none.
	if st, err := Open(cfgIn(dir), Options{}); err == nil || !errors.Is(err, ErrNoStore) {
		if st != nil {
			st.Close()
		}
		t.Fatalf("a command on a directory that does not exist: %v, want ErrNoStore", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the command created %s", dir)
	}
	// The daemon's first start does, with an identity.
	latchIn(t, dir)
	m, ok, err := readMarker(dir)
	if err != nil || !ok || m.ID == 0 {
		t.Fatalf("marker after the first start: %+v %v %v", m, ok, err)
	}
	db, err := sqlite.Inspect(dir)
	if err != nil || db.ID != m.ID {
		t.Errorf("database identity %d, marker %d (%v)", db.ID, m.ID, err)
	}
	st, err := Open(cfgIn(dir), Options{})
	if err != nil {
		t.Fatalf("a command on the store: %v", err)
	}
	if ls, _ := st.ListLatches(context.Background(), store.LatchFilter{Active: true}, time.Now()); len(ls) != 1 {
		t.Errorf("latches after reopening: %d, want 1", len(ls))
	}
	st.Close()
}

// TestAdoptsAStoreFromBeforeMarkers: an installation upgraded from a
// version without markers keeps its data and gets an identity.
func TestAdoptsAStoreFromBeforeMarkers(t *testing.T) {
	dir := t.TempDir()
	old, err := sqlite.Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	old.AddLatch(context.Background(), store.Latch{Kind: store.LatchClient, Key: "10.1.2.3", Rule: "r", Reason: "x"}, time.Now())
	old.Close()
	st, err := Open(cfgIn(dir), Options{Daemon: true, Create: true})
	if err != nil {
		t.Fatalf("opening a store from before markers: %v", err)
	}
	st.Close()
	if m, ok, _ := readMarker(dir); !ok || m.ID == 0 {
		t.Errorf("no marker written for the adopted store")
	}
	st, err = Open(cfgIn(dir), Options{})
	if err != nil {
		t.Fatalf("reopening: %v", err)
	}
	if ls, _ := st.ListLatches(context.Background(), store.LatchFilter{Active: true}, time.Now()); len(ls) != 1 {
		t.Errorf("the adopted store lost its latch")
	}
	st.Close()
}

// TestInit: store init makes a store in an empty directory, refuses one
// that holds a store, and with force moves the old one aside, never
// deleting it.
func TestInit(t *testing.T) {
	dir := t.TempDir()
	id, err := Init(cfgIn(dir), false, nil)
	if err != nil || id == 0 {
		t.Fatalf("Init on an empty directory: %d %v", id, err)
	}
	st, err := Open(cfgIn(dir), Options{})
	if err != nil {
		t.Fatalf("opening the new store: %v", err)
	}
	st.AddLatch(context.Background(), store.Latch{Kind: store.LatchClient, Key: "10.1.2.3", Rule: "r", Reason: "x"}, time.Now())
	st.Close()
	if _, err := Init(cfgIn(dir), false, nil); err == nil || !strings.Contains(err.Error(), "already holds store") {
		t.Fatalf("Init over a store: %v, want a refusal", err)
	}
	id2, err := Init(cfgIn(dir), true, nil)
	if err != nil || id2 == id {
		t.Fatalf("Init --force: %d %v", id2, err)
	}
	ents, _ := os.ReadDir(dir)
	aside := 0
	for _, e := range ents {
		if strings.Contains(e.Name(), ".replaced-") {
			aside++
		}
	}
	if aside < 2 {
		t.Errorf("after init --force, %d files moved aside, want the database and the marker: %v", aside, ents)
	}
	st, err = Open(cfgIn(dir), Options{})
	if err != nil {
		t.Fatalf("opening the forced new store: %v", err)
	}
	if ls, _ := st.ListLatches(context.Background(), store.LatchFilter{Active: true}, time.Now()); len(ls) != 0 {
		t.Errorf("the new store has %d latches, want none", len(ls))
	}
	st.Close()
}
