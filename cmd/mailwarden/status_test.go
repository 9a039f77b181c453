package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/adminapi/adminapitest"
	"mailwarden/internal/clamd"
	"mailwarden/internal/store"
)

// startStatusAdmin serves o on admin.sock in a fresh data directory and
// returns that directory.
func startStatusAdmin(t *testing.T, o adminapi.Options) string {
	t.Helper()
	data := t.TempDir()
	srv := adminapi.NewServer(o)
	ln, err := srv.Listen(filepath.Join(data, "admin.sock"), 0o660, "", "")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return data
}

func TestStatusCommand(t *testing.T) {
	mem := adminapitest.New()
	ctx := context.Background()
	now := time.Now()
	// 3d4h and a half old, so the age prints as 3d4h whatever the
	// seconds between building the fake and answering.
	dbTime := now.Add(-76*time.Hour - 30*time.Minute)
	servers := []clamd.ServerStatus{
		{Addr: "tcp:127.0.0.1:3310", Up: true, Checked: now.Add(-4 * time.Second),
			Version: clamd.Version{Engine: "ClamAV 1.0.7", DBVersion: 27463, DBTime: dbTime}},
		{Addr: "unix:/run/clamav/clamd.ctl", Checked: now.Add(-3 * time.Second),
			LastError: "dial unix /run/clamav/clamd.ctl: connect: no such file or directory"},
	}
	data := startStatusAdmin(t, adminapi.Options{Backend: mem, Version: "1.4.2",
		Started: now.Add(-26*time.Hour - 30*time.Minute),
		Antivirus: func() adminapi.AntivirusState {
			return adminapi.AntivirusState{Enabled: true, SignatureMaxAge: 72 * time.Hour, Servers: servers}
		}})
	mem.AddLatch(ctx, store.Latch{Kind: store.LatchClient, Key: "10.1.2.3", Rule: "virus"}, now.Add(-time.Hour))
	mem.AddLatch(ctx, store.Latch{Kind: store.LatchUser, Key: "bob", Rule: "rate_user"}, now.Add(-time.Hour))
	mem.SetFreeze(ctx, store.Freeze{Scope: store.FreezeDomain, Value: "example.org", Since: now.Add(-2 * time.Hour),
		By: "root", Note: "spam run"})

	code, stdout, stderr := runCmd("status", "--data", data)
	if code != 0 {
		t.Fatalf("status with stale signatures: code %d, stderr %q", code, stderr)
	}
	for _, want := range []string{
		"Version:         1.4.2\n",
		"Uptime:          1d2h (since ",
		"Freezes:         sender domain example.org, since ",
		"(2h ago) by root: spam run\n",
		"Active latches:  2\n",
		"Antivirus:       enabled, signatures stale after 72h\n",
		"27463 of " + dbTime.Local().Format("2006-01-02 15:04") + " (3d4h ago) STALE",
		"ClamAV 1.0.7",
		"unix:/run/clamav/clamd.ctl  down",
		"connect: no such file or directory",
		"STALE: signatures older than 72h",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, stdout)
		}
	}
	if line := lineWith(stdout, "tcp:127.0.0.1:3310"); !strings.Contains(line, " up ") {
		t.Errorf("stale but answering server is not shown up: %q", line)
	}

	code, stdout, _ = runCmd("status", "--json", "--data", data)
	var st adminapi.Status
	if err := json.Unmarshal([]byte(stdout), &st); code != 0 || err != nil {
		t.Fatalf("status --json: code %d, %v, %q", code, err, stdout)
	}
	if st.Version != "1.4.2" || st.ActiveLatches != 2 || len(st.Freezes) != 1 || len(st.Antivirus.Servers) != 2 ||
		!st.Antivirus.Servers[0].Stale || st.Antivirus.Servers[0].SignatureVersion != 27463 || st.Antivirus.Servers[1].Up {
		t.Errorf("status --json: %+v", st)
	}

	if code, _, stderr := runCmd("status", "now", "--data", data); code != 2 || !strings.Contains(stderr, "takes no arguments") {
		t.Errorf("status with an argument: code %d, stderr %q", code, stderr)
	}
}

func TestStatusCommandQuietDay(t *testing.T) {
	mem := adminapitest.New()
	data := startStatusAdmin(t, adminapi.Options{Backend: mem, Version: "1.4.2", Started: time.Now().Add(-time.Hour)})
	code, stdout, stderr := runCmd("status", "--data", data)
	for _, want := range []string{"Freezes:         none\n", "Active latches:  0\n", "Antivirus:       disabled\n"} {
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("status lacks %q: code %d\n%s%s", want, code, stdout, stderr)
		}
	}
	if strings.Contains(stdout, "CLAMD") || strings.Contains(stdout, "STALE") {
		t.Errorf("status without antivirus shows clamd:\n%s", stdout)
	}
}

func TestStatusWithoutDaemon(t *testing.T) {
	data := t.TempDir()
	code, _, stderr := runCmd("status", "--data", data)
	want := "mailwarden status: cannot reach the mailwarden daemon at " + filepath.Join(data, "admin.sock") + ": no such file"
	if code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("status without a daemon: code %d, stderr %q", code, stderr)
	}
}

// lineWith returns the first line of s containing sub.
func lineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}
