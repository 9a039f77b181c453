package backend

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"mailwarden/internal/store/sqlite"
)

// MarkerName is the file beside the database that names the store's
// identity. It says that the data directory holds a store, so a
// database that goes missing is noticed rather than recreated empty.
const MarkerName = "mailwarden.store"

// ErrNoStore says the data directory holds no store and creating one was
// not asked for.
var ErrNoStore = errors.New("backend: no store")

// ErrLost says the data directory held a store whose database is now
// missing, empty or another one.
var ErrLost = errors.New("backend: the store is missing or replaced")

// marker is the content of the marker file.
type marker struct {
	ID      int32
	Created time.Time
}

func (m marker) String() string {
	return fmt.Sprintf("mailwarden store %d created %s\n", m.ID, m.Created.UTC().Format(time.RFC3339))
}

// readMarker reads dir's marker; ok is false when there is none.
func readMarker(dir string) (m marker, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, MarkerName))
	if errors.Is(err, os.ErrNotExist) {
		return marker{}, false, nil
	}
	if err != nil {
		return marker{}, false, fmt.Errorf("backend: reading the store marker: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 5 || f[0] != "mailwarden" || f[1] != "store" || f[3] != "created" {
		return marker{}, false, fmt.Errorf("backend: the store marker %s is not one mailwarden wrote: %q", filepath.Join(dir, MarkerName), b)
	}
	id, err := strconv.ParseInt(f[2], 10, 32)
	if err != nil {
		return marker{}, false, fmt.Errorf("backend: the store marker %s: bad identity %q", filepath.Join(dir, MarkerName), f[2])
	}
	created, _ := time.Parse(time.RFC3339, f[4])
	return marker{ID: int32(id), Created: created}, true, nil
}

// writeMarker writes dir's marker atomically and durably.
func writeMarker(dir string, m marker) error {
	tmp, err := writeTemp(dir, ".marker-", strings.NewReader(m.String()))
	if err == nil {
		if err = os.Rename(tmp, filepath.Join(dir, MarkerName)); err != nil {
			os.Remove(tmp)
		}
	}
	if err != nil {
		return fmt.Errorf("backend: writing the store marker: %w", err)
	}
	syncDir(dir)
	return nil
}

// newID returns a random non-zero store identity.
func newID() int32 {
	var b [4]byte
	for {
		rand.Read(b[:])
		if id := int32(binary.BigEndian.Uint32(b[:]) & 0x7fffffff); id != 0 {
			return id
		}
	}
}

// plan is what opening a data directory will do.
type plan int

const (
	planOpen   plan = iota // a known store: open it
	planCreate             // no data directory at all: make a new store
	planAdopt              // a store from before markers: record its identity
)

// check decides what to do with the SQLite store in dir, and refuses a
// directory whose store is missing, empty or replaced, or that is empty
// (an unmounted disk looks just like a new installation).
func check(dir string, create bool) (plan, marker, error) {
	fi, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		if create {
			return planCreate, marker{}, nil
		}
		return 0, marker{}, fmt.Errorf("%w in %s: the directory does not exist; the daemon creates a store on its first start, or run `mailwarden store init --data %s`", ErrNoStore, dir, dir)
	}
	if err != nil {
		return 0, marker{}, fmt.Errorf("backend: data directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return 0, marker{}, fmt.Errorf("backend: data directory %s is not a directory", dir)
	}
	m, hasMarker, err := readMarker(dir)
	if err != nil {
		return 0, marker{}, err
	}
	db, err := sqlite.Inspect(dir)
	if err != nil {
		return 0, marker{}, err
	}
	restore := fmt.Sprintf("restore it with `mailwarden store restore --data %s BACKUP` (docs/reliability.md), or start over with no latches, freezes or users with `mailwarden store init --force --data %s`", dir, dir)
	switch {
	case hasMarker && (!db.Exists || db.Schema == 0):
		what := "missing"
		if db.Exists {
			what = "empty"
		}
		return 0, m, fmt.Errorf("%w: %s held store %d (created %s), but its database %s is %s; refusing to start empty and forget every latch: %s",
			ErrLost, dir, m.ID, m.Created.Format(time.RFC3339), sqlite.FileName, what, restore)
	case hasMarker && db.ID != m.ID:
		return 0, m, fmt.Errorf("%w: %s held store %d, but %s is store %d: another copy was put in its place; %s",
			ErrLost, dir, m.ID, sqlite.FileName, db.ID, restore)
	case hasMarker:
		return planOpen, m, nil
	case db.Exists && db.Schema > 0:
		return planAdopt, marker{ID: db.ID, Created: time.Now()}, nil
	}
	return 0, marker{}, fmt.Errorf("%w in %s: the directory has no store (empty, or a disk that is not mounted?). For a new installation run `mailwarden store init --data %s` once; if mailwarden ran here before, %s",
		ErrNoStore, dir, dir, restore)
}
