package daemon

import (
	"path/filepath"
	"testing"
	"time"

	"mailwarden/internal/config"
)

// A reload applies the scan cache's settings, keeping what the cache
// learnt unless its size or lifetime changed.
func TestReloadKeepsScanCache(t *testing.T) {
	cfg := testConfig(t)
	cfg.Antivirus.Enabled = true
	// Nothing listens there: the cache is built whether clamd answers
	// or not.
	cfg.Antivirus.Servers = []string{"tcp:" + freePort(t)}
	path := filepath.Join(t.TempDir(), "mailwarden.yaml")
	writeConfig(t, path, cfg)
	d, _, _ := start(t, cfg, path)
	first := d.scanCache.Load()
	if first == nil {
		t.Fatal("no scan cache with antivirus and the cache on")
	}
	reload := func(mod func(*config.ScanCache)) {
		t.Helper()
		mod(&cfg.Antivirus.Cache)
		writeConfig(t, path, cfg)
		if err := d.Reload(); err != nil {
			t.Fatal(err)
		}
	}

	reload(func(c *config.ScanCache) { c.CleanMinSize = 1 })
	if d.scanCache.Load() != first {
		t.Error("changing clean_min_size replaced the cache")
	}
	reload(func(c *config.ScanCache) { c.TTL = config.Duration(time.Hour) })
	second := d.scanCache.Load()
	if second == first || second == nil || second.Options().TTL != time.Hour {
		t.Errorf("changing ttl: cache %p (was %p), want a new one with the new ttl", second, first)
	}
	reload(func(c *config.ScanCache) { c.Enabled = false })
	if d.scanCache.Load() != nil {
		t.Error("the cache is still in use after it was turned off")
	}
}
