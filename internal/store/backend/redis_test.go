package backend

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/config"
	"mailwarden/internal/store"
	"mailwarden/internal/store/redis/redistest"
)

func redisConfig(t *testing.T, url string) config.Config {
	cfg := config.Default()
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.Store.Kind, cfg.Store.Backend = config.StoreRedis, config.StoreRedis
	cfg.Store.URL = url
	return cfg
}

// TestRedisMarker: the daemon records the Redis store's identity in its
// data directory and refuses to start when Redis comes back empty, until
// store init --force records the new one.
func TestRedisMarker(t *testing.T) {
	srv := redistest.Server(t, redistest.NoPersistence())
	cfg := redisConfig(t, srv.URL())
	ctx := context.Background()

	st, err := Open(cfg, Options{Daemon: true, Create: true})
	if err != nil {
		t.Fatalf("first Open: %v", err)
	}
	if _, err := st.AddLatch(ctx, store.Latch{Kind: store.LatchClient, Key: "10.1.2.3", Rule: "virus"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	st.Close()
	m, ok, err := readMarker(cfg.DataDir)
	if err != nil || !ok {
		t.Fatalf("no marker after the first Open: %v", err)
	}
	if _, err := Init(cfg, false, nil); err == nil || !strings.Contains(err.Error(), "already uses") {
		t.Errorf("Init of an initialised store: err = %v", err)
	}
	if _, err := Init(cfg, true, nil); err == nil || !strings.Contains(err.Error(), "never deletes") {
		t.Errorf("Init --force of a Redis prefix with data: err = %v, want a refusal", err)
	}

	srv.Stop()
	srv.Start() // without persistence: empty
	_, err = Open(cfg, Options{Daemon: true, Create: true})
	if !errors.Is(err, ErrLost) || !strings.Contains(err.Error(), "store init --force") {
		t.Fatalf("Open after Redis lost its data: err = %v, want ErrLost", err)
	}
	if _, err := Init(cfg, false, nil); err == nil {
		t.Errorf("Init without --force over a marker of a lost store succeeded")
	}
	id, err := Init(cfg, true, nil)
	if err != nil || id == m.ID {
		t.Fatalf("Init --force on an empty Redis = %d, %v; want a new identity", id, err)
	}
	st, err = Open(cfg, Options{Daemon: true})
	if err != nil {
		t.Fatalf("Open after store init --force: %v", err)
	}
	st.Close()
}

// TestRedisSecondHost: a second MX host with its own data directory
// joins the store another made.
func TestRedisSecondHost(t *testing.T) {
	srv := redistest.Server(t)
	first := redisConfig(t, srv.URL())
	second := redisConfig(t, srv.URL())
	a, err := Open(first, Options{Daemon: true, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(second, Options{Daemon: true, Create: true})
	if err != nil {
		t.Fatalf("second host: %v", err)
	}
	defer b.Close()
	ma, _, _ := readMarker(first.DataDir)
	mb, _, _ := readMarker(second.DataDir)
	if ma.ID != mb.ID {
		t.Errorf("two hosts on one Redis store recorded identities %d and %d", ma.ID, mb.ID)
	}
}

func TestRedisBackupRefused(t *testing.T) {
	cfg := redisConfig(t, "redis://127.0.0.1:1")
	if err := Backup(context.Background(), cfg, filepath.Join(t.TempDir(), "b")); err == nil || !strings.Contains(err.Error(), "Redis persistence") {
		t.Errorf("Backup of a Redis store: err = %v", err)
	}
	if _, err := Restore(cfg, "x", false, nil); err == nil || !strings.Contains(err.Error(), "not available for redis") {
		t.Errorf("Restore of a Redis store: err = %v", err)
	}
}
