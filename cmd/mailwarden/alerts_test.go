package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/store"
)

// TestAlertsTest sends a test alert to each receiver and reports each;
// one that fails makes the exit status 1.
func TestAlertsTest(t *testing.T) {
	hits := make(chan string, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits <- r.URL.Path }))
	defer srv.Close()
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "mailwarden.yaml")
	write := func(receivers string) {
		t.Helper()
		yaml := fmt.Sprintf("data_dir: %s\nalerts:\n  receivers:\n%s", dir, receivers)
		if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(fmt.Sprintf("    - {name: chat, webhook: {url: %q}}\n", srv.URL+"/ok"))
	code, stdout, stderr := runCmd("alerts", "test", "--config", cfgFile)
	if code != 0 || stdout != "chat: sent\n" || len(hits) != 1 {
		t.Errorf("alerts test: exit %d, stdout %q, stderr %q, %d hits", code, stdout, stderr, len(hits))
	}
	write(fmt.Sprintf("    - {name: chat, webhook: {url: %q}}\n    - {name: dead, webhook: {url: \"http://127.0.0.1:1/x\", timeout: 2s}}\n",
		srv.URL+"/ok"))
	code, stdout, _ = runCmd("alerts", "test", "--config", cfgFile)
	if code != 1 || !strings.Contains(stdout, "chat: sent\n") || !strings.Contains(stdout, "dead: FAILED: ") {
		t.Errorf("alerts test with a dead receiver: exit %d, stdout %q", code, stdout)
	}
	write("    []\n")
	if code, _, stderr := runCmd("alerts", "test", "--config", cfgFile); code != 1 || !strings.Contains(stderr, "no alert receivers") {
		t.Errorf("alerts test without receivers: exit %d, stderr %q", code, stderr)
	}
}

// TestAlertsList shows the outbox from the store, with each alert's
// delivery state.
func TestAlertsList(t *testing.T) {
	data := t.TempDir()
	st := openData(t, data)
	now := time.Now()
	base := store.Alert{Created: now, Kind: "latch", Severity: "warning", Receiver: "chat", Subject: "latch on mw.test",
		Items: []string{"10.1.2.3"}, Expires: now.Add(time.Hour)}
	sent, failing := base, base
	sent.State, sent.SentAt, sent.Attempts = store.AlertSent, now, 1
	failing.Receiver, failing.Attempts, failing.NextTry, failing.Error = "mail", 2, now.Add(time.Minute), "connection refused"
	if _, err := st.AddAlerts(context.Background(), []store.Alert{sent, failing}, 5); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCmd("alerts", "list", "--data", data)
	if code != 0 || !strings.Contains(stdout, "sent ") || !strings.Contains(stdout, "pending, next ") ||
		!strings.Contains(stdout, "connection refused") {
		t.Errorf("alerts list: exit %d, stderr %q, stdout:\n%s", code, stderr, stdout)
	}
	code, stdout, _ = runCmd("alerts", "list", "--data", data, "--json", "--limit", "1")
	var got []map[string]any
	if err := json.Unmarshal([]byte(stdout), &got); code != 0 || err != nil || len(got) != 1 ||
		got[0]["receiver"] != "mail" || got[0]["state"] != "pending" || got[0]["error"] != "connection refused" {
		t.Errorf("alerts list --json --limit 1: exit %d, %v, %v", code, err, got)
	}
}
