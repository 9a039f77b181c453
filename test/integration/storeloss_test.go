package integration_test

import (
	"context"
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
