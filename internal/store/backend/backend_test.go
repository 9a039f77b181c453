package backend

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/config"
	"mailwarden/internal/store"
)

// TestOpenSQLite: the daemon's store and an offline command's store on
// one data directory are the same database, as `mailwarden user add`
// beside a running daemon needs.
func TestOpenSQLite(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	daemon, err := Open(cfg, Options{Daemon: true, Create: true})
	if err != nil {
		t.Fatalf("Open for the daemon: %v", err)
	}
	defer daemon.Close()
	cli, err := Open(cfg, Options{})
	if err != nil {
		t.Fatalf("Open for a command: %v", err)
	}
	defer cli.Close()
	ctx := context.Background()
	now := time.Now()
	u := store.User{Name: "alice", Role: store.RoleAdmin, Hash: []byte("x"), Created: now}
	if err := cli.AddUser(ctx, u); err != nil {
		t.Fatalf("AddUser: %v", err)
	}
	if _, err := daemon.GetUser(ctx, "alice"); err != nil {
		t.Errorf("the daemon's store does not see the command's user: %v", err)
	}
}

func TestOpenUnknownBackend(t *testing.T) {
	for _, name := range []string{"", "memory"} {
		cfg := config.Default()
		cfg.DataDir = t.TempDir()
		cfg.Store.Kind, cfg.Store.Backend = name, name
		st, err := Open(cfg, Options{})
		if err == nil {
			st.Close()
			t.Errorf("Open(%q) succeeded, want an error", name)
			continue
		}
		if !strings.Contains(err.Error(), "not available") {
			t.Errorf("Open(%q): %v", name, err)
		}
	}
}
