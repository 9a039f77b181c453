package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/adminapi/adminapitest"
)

// TestStatusCommandStore: status says whether the store can write, how
// many writes were lost, and what to look at while it cannot.
func TestStatusCommandStore(t *testing.T) {
	now := time.Now()
	state := adminapi.StoreStatus{Backend: "sqlite", Up: false, Since: now.Add(-3 * time.Minute),
		Checked: now.Add(-time.Second), LastError: "sqlite: commit: database or disk is full (13)", LastErrorAt: now,
		LostWrites: 12, WriteFailures: map[string]uint64{"triplet": 10, "event": 2, "latch": 0}}
	data := startStatusAdmin(t, adminapi.Options{Backend: adminapitest.New(), Version: "1.4.2",
		Started: now.Add(-time.Hour), Store: func() adminapi.StoreStatus { return state }})

	code, stdout, stderr := runCmd("status", "--data", data)
	if code != 0 {
		t.Fatalf("status with the store down: code %d, stderr %q", code, stderr)
	}
	for _, want := range []string{
		"Store:           sqlite, CANNOT WRITE since ",
		"(3m ago): sqlite: commit: database or disk is full (13)\n",
		"Lost writes:     12 since the start (event=2 triplet=10)\n",
		"\nSTORE CANNOT WRITE: ",
		// The labels before keep their alignment.
		"Active latches:  0\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, stdout)
		}
	}

	state.Up, state.Since, state.WriteFailures, state.LostWrites = true, now, nil, 0
	_, stdout, _ = runCmd("status", "--data", data)
	if !strings.Contains(stdout, "Store:           sqlite, writing (checked ") ||
		strings.Contains(stdout, "Lost writes:") || strings.Contains(stdout, "STORE CANNOT WRITE") {
		t.Errorf("status with the store up:\n%s", stdout)
	}
}

// TestStatusCommandStoreRedis: with Redis down the advice is about
// Redis, not the data directory's filesystem, and the freezes and
// latches the daemon could not read are unknown, not none.
func TestStatusCommandStoreRedis(t *testing.T) {
	now := time.Now()
	mem := adminapitest.New()
	mem.FailOn("ListFreezes", errors.New("redis: list freezes: connection refused"))
	state := adminapi.StoreStatus{Backend: "redis", Up: false, Since: now.Add(-time.Minute), Checked: now,
		LastError: "redis: probe: connection refused", LastErrorAt: now}
	data := startStatusAdmin(t, adminapi.Options{Backend: mem, Version: "1.4.2",
		Started: now.Add(-time.Hour), Store: func() adminapi.StoreStatus { return state }})
	code, stdout, stderr := runCmd("status", "--data", data)
	if code != 0 {
		t.Fatalf("status with Redis down: code %d, stderr %q", code, stderr)
	}
	for _, want := range []string{
		"Freezes:         UNKNOWN: listing freezes: redis: list freezes: connection refused\n",
		"Active latches:  UNKNOWN\n",
		"Store:           redis, CANNOT WRITE since ",
		"Is redis-server running",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "filesystem") || strings.Contains(stdout, "Freezes:         none") {
		t.Errorf("status with Redis down gives SQLite's advice or says no freezes:\n%s", stdout)
	}

	// What the store found wrong with the server's settings at its last look.
	state = adminapi.StoreStatus{Backend: "redis", Up: true, Since: now, Checked: now,
		Warnings: []string{"maxmemory-policy allkeys-lru with maxmemory 1073741824: a full server may evict latches and freezes"}}
	_, stdout, _ = runCmd("status", "--data", data)
	if want := "Store warning:   maxmemory-policy allkeys-lru with maxmemory 1073741824: a full server may evict latches and freezes\n"; !strings.Contains(stdout, want) {
		t.Errorf("status lacks %q:\n%s", want, stdout)
	}
}
