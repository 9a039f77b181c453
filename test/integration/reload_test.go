package integration_test

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailwarden/test/harness"
)

// TestReloadOnSIGHUP checks what an administrator relies on when editing
// the config of a running daemon: a broken file is refused with a log
// line and mail keeps flowing under the old config; a good file takes
// effect without a restart.
func TestReloadOnSIGHUP(t *testing.T) {
	t.Parallel()
	s := startStack(t, viaMilter, greylistYAML(time.Hour, "127.0.23.20/32", "127.0.23.30"))
	const to = "user@dest.test"
	original, err := os.ReadFile(s.mw.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	hup := func(content, wantLog string) {
		t.Helper()
		if err := os.WriteFile(s.mw.ConfigFile, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		offset := s.mw.StderrSize()
		if err := syscall.Kill(s.mw.PID(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		s.mw.WaitStderr(t, offset, func(line string) bool { return strings.Contains(line, wantLog) }, 10*time.Second)
	}

	// A typo in the file: the daemon keeps running the old config.
	hup(string(original)+"greylst:\n  delay: 1s\n", "keeping the running configuration")
	if !s.mw.Running() {
		t.Fatal("daemon exited after a bad config reload")
	}
	s.requireGreylisted(t, s.send(t, "127.0.23.7", "a@ext.test", to, harness.UniqueID(t)), "milter", "127.0.23.7")

	// A valid edit whitelisting the client takes effect at once.
	edited := strings.Replace(string(original), `"127.0.23.30"`, `"127.0.23.30", "127.0.23.8"`, 1)
	if edited == string(original) {
		t.Fatalf("could not find the whitelist in the harness config:\n%s", original)
	}
	hup(edited, "configuration reloaded")
	id := harness.UniqueID(t)
	s.send(t, "127.0.23.8", "b@ext.test", to, id).RequireDelivered(t)
	s.sink.WaitForID(t, id, 10*time.Second)
}
