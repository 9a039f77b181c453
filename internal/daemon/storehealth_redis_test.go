package daemon

import (
	"context"
	"io"
	"net/http"
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
