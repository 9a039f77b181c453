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
	"mailwarden/internal/clamd"
	"mailwarden/internal/store"
)

func TestStatus(t *testing.T) {
	mem := adminapitest.New()
	ctx := context.Background()
	dbTime := t0.Add(-76 * time.Hour)
	servers := []clamd.ServerStatus{
		{Addr: "tcp:127.0.0.1:3310", Up: true, Checked: t0.Add(-4 * time.Second),
			Version: clamd.Version{Engine: "ClamAV 1.0.7", DBVersion: 27463, DBTime: dbTime}},
		{Addr: "unix:/run/clamav/clamd.ctl", Up: false, Checked: t0.Add(-3 * time.Second),
			LastError: "dial unix /run/clamav/clamd.ctl: connect: no such file or directory"},
	}
	c, _ := start(t, Options{Backend: mem, Version: "1.4.2", Started: t0.Add(-26 * time.Hour),
		Antivirus: func() AntivirusState {
			return AntivirusState{Enabled: true, SignatureMaxAge: 72 * time.Hour, Servers: servers}
		}})
	addLatch(t, mem, store.LatchClient, "10.1.2.3", t0.Add(-time.Hour))
	l := addLatch(t, mem, store.LatchUser, "bob", t0.Add(-time.Hour))
	mem.ClearLatch(ctx, l.ID, "root", "done", t0.Add(-time.Minute))
	mem.SetFreeze(ctx, store.Freeze{Scope: store.FreezeDomain, Value: "example.org", Since: t0.Add(-time.Hour), By: "root"})

	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != "1.4.2" || !st.Started.Equal(t0.Add(-26*time.Hour)) || st.UptimeSeconds != 26*3600 {
		t.Errorf("version and uptime: %+v", st)
	}
	if len(st.Freezes) != 1 || st.Freezes[0].Value != "example.org" || st.ActiveLatches != 1 {
		t.Errorf("freezes and latches: %+v, %d active latches", st.Freezes, st.ActiveLatches)
	}
	av := st.Antivirus
	if !av.Enabled || av.SignatureMaxAgeSeconds != 72*3600 || len(av.Servers) != 2 {
		t.Fatalf("antivirus: %+v", av)
	}
	a, b := av.Servers[0], av.Servers[1]
	if a.Addr != "tcp:127.0.0.1:3310" || !a.Up || a.Engine != "ClamAV 1.0.7" || a.SignatureVersion != 27463 ||
		!a.SignatureDate.Equal(dbTime) || a.SignatureAgeSeconds != 76*3600 || !a.Stale {
		t.Errorf("stale server: %+v", a)
	}
	if b.Up || b.Stale || !strings.Contains(b.LastError, "no such file") || b.SignatureVersion != 0 {
		t.Errorf("down server: %+v", b)
	}

	// The JSON names are the documented ones; unknown values are absent.
	var raw map[string]any
	if err := c.do(ctx, http.MethodGet, "/v1/status", nil, nil, &raw); err != nil {
		t.Fatal(err)
	}
	srv := raw["antivirus"].(map[string]any)["servers"].([]any)
	for _, k := range []string{"addr", "up", "checked", "engine", "signature_version",
		"signature_date", "signature_age_seconds", "stale"} {
		if _, ok := srv[0].(map[string]any)[k]; !ok {
			t.Errorf("server JSON lacks %q: %v", k, srv[0])
		}
	}
	if _, ok := srv[1].(map[string]any)["last_error"]; !ok {
		t.Errorf("down server JSON lacks last_error: %v", srv[1])
	}
	if _, ok := srv[1].(map[string]any)["signature_date"]; ok {
		t.Errorf("a server without a version shows a signature date: %v", srv[1])
	}
	for _, k := range []string{"version", "started", "uptime_seconds", "freezes", "active_latches"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("status JSON lacks %q", k)
		}
	}
}

func TestStatusWithoutAntivirus(t *testing.T) {
	mem := adminapitest.New()
	c, _ := start(t, Options{Backend: mem})
	var raw json.RawMessage
	if err := c.do(context.Background(), http.MethodGet, "/v1/status", nil, nil, &raw); err != nil {
		t.Fatal(err)
	}
	// Empty lists are [], not null, so scripts can iterate them.
	want := `"freezes":[],"active_latches":0,"antivirus":{"enabled":false,"signature_max_age_seconds":0,"servers":[]}`
	if !strings.Contains(string(raw), want) {
		t.Errorf("status without antivirus: %s\nwant it to contain %s", raw, want)
	}
	if mem.Events() != nil {
		t.Errorf("a status request recorded events: %+v", mem.Events())
	}
}

func TestStatusStoreFailure(t *testing.T) {
	// Listing freezes fails, as with a broken store.
	mem := adminapitest.New()
	mem.FailOn("ListFreezes", errors.New("database is locked"))
	c, _ := start(t, Options{Backend: mem})
	var ae *APIError
	if _, err := c.Status(context.Background()); !errors.As(err, &ae) || ae.Status != http.StatusInternalServerError ||
		!strings.Contains(err.Error(), "database is locked") {
		t.Errorf("status with a failing store: got %v", err)
	}
}
