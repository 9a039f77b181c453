package integration_test

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailwarden/test/harness"
)

// TestLostStoreRefusesToStartEmpty is issue 21's first defect as an
// administrator meets it: a client is latched through Postfix, the
// database is lost while the daemon is stopped, and the daemon must not
// start empty and let the client out. It refuses with the restore
// command; `store restore` of a backup made while it ran brings the
// latch back, and the client's mail is refused again.
func TestLostStoreRefusesToStartEmpty(t *testing.T) {
	t.Parallel()
	const client = "127.0.93.5"
	s := startStack(t, viaPolicy, siteYAML("127.0.93.0/24"))
	requireRefused(t, s.send(t, client, "worm@evil.test", rcptTo, harness.UniqueID(t)), "550 ")
	waitLatch(t, s.mw, client)
	before := len(latchesFor(t, s.mw, client))

	backup := filepath.Join(t.TempDir(), "backup.db")
	if res := s.mw.CLI(t, "store", "backup", backup); res.ExitCode != 0 {
		t.Fatalf("store backup while running: exit %d: %s", res.ExitCode, res.Stderr)
	}
	s.mw.Stop(t)
	for _, n := range []string{"mailwarden.db", "mailwarden.db-wal", "mailwarden.db-shm"} {
		os.Remove(filepath.Join(s.mw.DataDir, n))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary(t), "serve", "--config", s.mw.ConfigFile, "--data", s.mw.DataDir).CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("serve on a lost database: %v (deadline: %v), want a refusal at once\n%s", err, ctx.Err(), out)
	}
	if !strings.Contains(string(out), "store restore") || !strings.Contains(string(out), "missing") {
		t.Errorf("serve's refusal does not say the database is missing and how to restore it:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(s.mw.DataDir, "mailwarden.db")); err == nil {
		t.Errorf("the refused start created an empty database")
	}

	if res := s.mw.CLI(t, "store", "restore", backup); res.ExitCode != 0 {
		t.Fatalf("store restore: exit %d: %s", res.ExitCode, res.Stderr)
	}
	s.mw.Start(t)
	after := len(latchesFor(t, s.mw, client))
	t.Logf("latches on %s: %d before the loss, %d after the restore", client, before, after)
	if after != before || after == 0 {
		t.Errorf("latches after the restore: %d, want %d", after, before)
	}
	id := harness.UniqueID(t)
	requireRefused(t, s.send(t, client, "teacher@school.test", rcptTo, id), "550 ")
	s.neverArrived(t, id)
}

// TestStoreRemovedUnderTheDaemon: the database deleted under a running
// daemon is noticed at once (issue 21: nothing was logged, writes kept
// "succeeding" and the next start was empty): /-/ready answers 503 and
// status shows the store down naming the removal, mail is still decided
// from memory (the latched client stays refused), and the next start
// refuses instead of starting empty.
func TestStoreRemovedUnderTheDaemon(t *testing.T) {
	t.Parallel()
	const client = "127.0.94.5"
	s := startStack(t, viaPolicy, siteYAML("127.0.94.0/24"))
	requireRefused(t, s.send(t, client, "worm@evil.test", rcptTo, harness.UniqueID(t)), "550 ")
	waitLatch(t, s.mw, client)

	for _, n := range []string{"mailwarden.db", "mailwarden.db-wal", "mailwarden.db-shm"} {
		os.Remove(filepath.Join(s.mw.DataDir, n))
	}
	removed := time.Now()
	at, body := waitReadyCode(t, s.mw, http.StatusServiceUnavailable, 15*time.Second)
	t.Logf("database removed: /-/ready 503 after %v: %s", at.Sub(removed).Round(time.Millisecond), body)
	if st := storeStatus(t, s.mw); st.Up || !strings.Contains(st.LastError, "removed") {
		t.Errorf("status after the removal: %+v, want the store down, saying the file was removed", st)
	}
	id := harness.UniqueID(t)
	requireRefused(t, s.send(t, client, "teacher@school.test", rcptTo, id), "550 ")
	s.neverArrived(t, id)

	s.mw.Stop(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary(t), "serve", "--config", s.mw.ConfigFile, "--data", s.mw.DataDir).CombinedOutput()
	if err == nil || ctx.Err() != nil || !strings.Contains(string(out), "store restore") {
		t.Errorf("the start after the removal: %v, want a refusal naming store restore:\n%s", err, out)
	}
}
