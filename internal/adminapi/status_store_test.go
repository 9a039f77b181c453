package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/adminapi/adminapitest"
)

// TestStatusStore: the daemon's store health is in the status answer
// under the documented names, and absent when the server has none.
func TestStatusStore(t *testing.T) {
	mem := adminapitest.New()
	down := StoreStatus{Backend: "sqlite", Up: false, Since: t0.Add(-2 * time.Minute), Checked: t0,
		LastError: "sqlite: commit: database or disk is full (13)", LastErrorAt: t0,
		LostWrites: 12, WriteFailures: map[string]uint64{"triplet": 10, "event": 2, "latch": 0}}
	c, _ := start(t, Options{Backend: mem, Store: func() StoreStatus { return down }})
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s := st.Store; s == nil || s.Up || s.LostWrites != 12 || s.WriteFailures["triplet"] != 10 ||
		!s.Since.Equal(down.Since) || !strings.Contains(s.LastError, "disk is full") {
		t.Errorf("status store = %+v, want %+v", s, down)
	}
	var raw map[string]json.RawMessage
	if err := c.do(context.Background(), http.MethodGet, "/v1/status", nil, nil, &raw); err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(raw["store"], &fields); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"backend", "up", "since", "checked", "last_error", "last_error_at", "lost_writes", "write_failures"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("store JSON lacks %q: %s", k, raw["store"])
		}
	}

	c, _ = start(t, Options{Backend: mem})
	raw = nil
	if err := c.do(context.Background(), http.MethodGet, "/v1/status", nil, nil, &raw); err != nil {
		t.Fatal(err)
	}
	if s, ok := raw["store"]; ok {
		t.Errorf("status without a store health source shows store %s", s)
	}
}

// TestStatusStoreUnreachable: with the store unreachable (Redis down),
// status still answers with the store's health, and says the freezes
// and latches are unknown rather than none.
func TestStatusStoreUnreachable(t *testing.T) {
	mem := adminapitest.New()
	mem.FailOn("ListFreezes", errors.New("redis: list freezes: connection refused"))
	down := StoreStatus{Backend: "redis", Up: false, LastError: "redis: probe: connection refused"}
	c, _ := start(t, Options{Backend: mem, Store: func() StoreStatus { return down }})
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatalf("status with the store unreachable: %v", err)
	}
	if st.Store == nil || st.Store.Up || !strings.Contains(st.StateError, "connection refused") || st.Freezes != nil {
		t.Errorf("status = %+v, want the store down, state_error naming the failure and freezes null", st)
	}
}
