package daemon

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/store"
	"mailwarden/internal/store/memory"
	"mailwarden/internal/store/sqlite"
	"mailwarden/internal/store/storetest"
)

// TestHandedStore: a daemon handed a store uses it instead of opening
// the configured backend, and leaves closing it to whoever handed it in.
func TestHandedStore(t *testing.T) {
	cfg := testConfig(t)
	st := storetest.WithFaults(memory.New())
	d := startWith(t, cfg, Options{Stderr: io.Discard, Stdout: io.Discard, Store: st})
	if got := policyAction(t, cfg.Listen.Policy, "192.0.2.1"); !strings.HasPrefix(got, "451 4.7.1") {
		t.Errorf("new triplet: action = %q, want 451 4.7.1", got)
	}
	ts, err := st.ListTriplets(context.Background(), store.TripletFilter{}, time.Now())
	if err != nil || len(ts) != 1 || ts[0].Client != "192.0.2.0/24" {
		t.Errorf("triplets in the handed store = %+v, %v; want the one just greylisted", ts, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if n := st.Calls("Close"); n != 0 {
		t.Errorf("the daemon closed a store it did not open (%d calls)", n)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, sqlite.FileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the daemon opened the configured SQLite store too: %v", err)
	}
}

// TestStoreDownTempfails: with the store down, a message is deferred,
// not lost and not let through unchecked.
func TestStoreDownTempfails(t *testing.T) {
	cfg := testConfig(t)
	st := storetest.WithFaults(memory.New())
	startWith(t, cfg, Options{Stderr: io.Discard, Stdout: io.Discard, Store: st})
	st.FailAll(errors.New("database is locked"))
	if got := policyAction(t, cfg.Listen.Policy, "192.0.2.1"); !strings.HasPrefix(got, "451 4.3.0") {
		t.Errorf("store down: action = %q, want a 451 4.3.0 temporary failure", got)
	}
	st.Heal()
	if got := policyAction(t, cfg.Listen.Policy, "192.0.2.1"); !strings.HasPrefix(got, "451 4.7.1") {
		t.Errorf("store back: action = %q, want greylisting again", got)
	}
}
