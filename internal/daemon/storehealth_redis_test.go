package daemon

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"

	"mailwarden/internal/config"
	redisstore "mailwarden/internal/store/redis"
	"mailwarden/internal/store/redis/redistest"
)

// TestStoreHealthRedisLost: the store health monitor's probe notices a
// Redis that lost mailwarden's data (FLUSHALL) and shows it, and shows
// the store up again once the data is back.
func TestStoreHealthRedisLost(t *testing.T) {
	srv := redistest.Server(t)
	ctx := context.Background()
	st, err := redisstore.Open(ctx, redisstore.Options{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.Store.Kind, cfg.Store.Backend, cfg.Store.URL = config.StoreRedis, config.StoreRedis, srv.URL()
	d := startWith(t, cfg, Options{Stderr: io.Discard, Stdout: io.Discard, Store: st})
	base := "http://" + cfg.Listen.HTTP
	if code, body := httpGet(t, base+"/-/ready"); code != http.StatusOK {
		t.Fatalf("ready with a healthy Redis: %d %s", code, body)
	}
	id, err := srv.Command("GET", "mailwarden:{mw}:id")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Command("FLUSHALL"); err != nil {
		t.Fatal(err)
	}
	d.health.check(ctx)
	if code, body := httpGet(t, base+"/-/ready"); code != http.StatusServiceUnavailable || !strings.Contains(body, "lost mailwarden's data") {
		t.Errorf("ready after FLUSHALL: %d %q, want 503 saying Redis lost the data", code, body)
	}
	// Status reads the freezes, which a store that lost its data
	// refuses: it shows them as unknown and says why.
	lost, err := d.adminSrv.Status(ctx)
	if err != nil {
		t.Fatalf("status after FLUSHALL: %v", err)
	}
	if lost.Freezes != nil || !strings.Contains(lost.StateError, "lost mailwarden's data") {
		t.Errorf("status after FLUSHALL: freezes %v, state error %q; want freezes unknown and an error saying Redis lost the data",
			lost.Freezes, lost.StateError)
	}
	if _, err := srv.Command("SET", "mailwarden:{mw}:id", id); err != nil {
		t.Fatal(err)
	}
	d.health.check(ctx)
	if code, body := httpGet(t, base+"/-/ready"); code != http.StatusOK {
		t.Errorf("ready with the data back: %d %s", code, body)
	}
	status, err := d.adminSrv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s := status.Store; s == nil || !s.Up || s.Backend != "redis" {
		t.Errorf("status store with the data back = %+v, want redis up", s)
	}
}

// TestStoreStatusRedisWarnings: a Redis whose eviction policy may drop
// latches and freezes is named in the daemon's status (what `mailwarden
// status` prints), not only in the log of its start; a server set as
// docs/redis.md says shows no warning.
func TestStoreStatusRedisWarnings(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		args []string
		want string // "" for none
	}{
		{[]string{"--hash-max-listpack-value", "512", "--maxmemory", "1gb", "--maxmemory-policy", "allkeys-lru"},
			"maxmemory-policy allkeys-lru with maxmemory 1073741824: a full server may evict latches and freezes"},
		{[]string{"--hash-max-listpack-value", "512", "--maxmemory", "1gb", "--maxmemory-policy", "noeviction"}, ""},
	} {
		srv := redistest.Server(t, redistest.NoPersistence(), redistest.Args(tc.args...))
		st, err := redisstore.Open(ctx, redisstore.Options{URL: srv.URL(), Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		cfg := testConfig(t)
		cfg.Store.Kind, cfg.Store.Backend, cfg.Store.URL = config.StoreRedis, config.StoreRedis, srv.URL()
		d := startWith(t, cfg, Options{Stderr: io.Discard, Stdout: io.Discard, Store: st})
		status, err := d.adminSrv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if status.Store == nil {
			t.Fatal("status has no store part")
		}
		got := status.Store.Warnings
		switch {
		case tc.want == "" && len(got) > 0:
			t.Errorf("Redis with %q: store warnings %q, want none", tc.args, got)
		case tc.want != "" && (len(got) != 1 || !strings.Contains(got[0], tc.want)):
			t.Errorf("Redis with %q: store warnings %q, want one saying %q", tc.args, got, tc.want)
		}
	}
}

// TestStoreSettingsRecheckedRedis: an eviction policy changed with
// CONFIG SET under a running daemon shows in its status and is alerted
// without a restart, once; fixed again, it leaves the status and the
// log says so.
func TestStoreSettingsRecheckedRedis(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Server(t, redistest.NoPersistence(),
		redistest.Args("--hash-max-listpack-value", "512", "--maxmemory", "1gb", "--maxmemory-policy", "noeviction"))
	var log syncBuf
	st, err := redisstore.Open(ctx, redisstore.Options{URL: srv.URL(), Log: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.Store.Kind, cfg.Store.Backend, cfg.Store.URL = config.StoreRedis, config.StoreRedis, srv.URL()
	d := startWith(t, cfg, Options{Stderr: io.Discard, Stdout: io.Discard, Store: st})
	var alerts []string
	d.health.checking.Lock() // the monitor's goroutine reads both in check
	d.health.settingsEvery = 0
	d.health.notify = func(kind, text string) { alerts = append(alerts, kind+": "+text) }
	d.health.checking.Unlock()
	warnings := func() []string {
		t.Helper()
		status, err := d.adminSrv.Status(ctx)
		if err != nil || status.Store == nil {
			t.Fatalf("status: %+v, %v", status.Store, err)
		}
		return status.Store.Warnings
	}
	if w := warnings(); len(w) != 0 {
		t.Fatalf("warnings with noeviction: %q", w)
	}

	if _, err := srv.Command("CONFIG", "SET", "maxmemory-policy", "allkeys-lru"); err != nil {
		t.Fatal(err)
	}
	d.health.check(ctx)
	const evicts = "maxmemory-policy allkeys-lru with maxmemory 1073741824: a full server may evict latches and freezes"
	if w := warnings(); len(w) != 1 || !strings.Contains(w[0], evicts) {
		t.Errorf("status after CONFIG SET maxmemory-policy allkeys-lru: warnings %q, want one saying %q", w, evicts)
	}
	d.health.check(ctx)
	d.health.checking.Lock()
	got := slices.Clone(alerts)
	d.health.checking.Unlock()
	if len(got) != 1 || !strings.HasPrefix(got[0], config.AlertStore+": ") || !strings.Contains(got[0], evicts) {
		t.Errorf("alerts after the policy changed, checked twice: %q, want one store alert saying %q", got, evicts)
	}
	if l := log.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "may evict latches") {
		t.Errorf("store log after the change lacks an error naming it:\n%s", l)
	}

	if _, err := srv.Command("CONFIG", "SET", "maxmemory-policy", "noeviction"); err != nil {
		t.Fatal(err)
	}
	d.health.check(ctx)
	if w := warnings(); len(w) != 0 {
		t.Errorf("status after the policy was set back to noeviction: warnings %q, want none", w)
	}
	if l := log.String(); !strings.Contains(l, "no longer: "+evicts) {
		t.Errorf("store log does not say the setting was fixed:\n%s", l)
	}
}
