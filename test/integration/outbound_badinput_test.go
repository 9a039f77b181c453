package integration_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailwarden/test/harness"
)

// TestOutboundBadInput checks that the outbound admin commands and
// config keys answer bad input with a clear error and a non-zero exit.
func TestOutboundBadInput(t *testing.T) {
	t.Parallel()
	mw := harness.StartMailwarden(t, binary(t), siteYAML("127.0.59.0/24"))

	t.Run("unknown latch id", func(t *testing.T) {
		t.Parallel()
		for _, args := range [][]string{
			{"latch", "show", "NOSUCHID"},
			{"latch", "clear", "NOSUCHID", "--note", "x"},
		} {
			res := mw.CLI(t, args...)
			if res.ExitCode == 0 || !saysNotFound(res.Stderr) || !strings.Contains(res.Stderr, "NOSUCHID") {
				t.Errorf("mailwarden %s: exit %d, stderr %q; want a non-zero exit and a \"not found\" error naming NOSUCHID",
					strings.Join(args, " "), res.ExitCode, res.Stderr)
			}
		}
	})

	t.Run("config check names the bad key", func(t *testing.T) {
		t.Parallel()
		for _, c := range []struct{ name, yaml, key string }{
			{"malformed site CIDR", "sites:\n  - name: east\n    networks: [10.1.0.0/33]\n", "sites[0].networks"},
			{"bad site domain", "sites:\n  - name: east\n    networks: [10.1.0.0/16]\n    sender_domains: [\"school test!\"]\n", "sites[0].sender_domains"},
			{"bad policy domain", "sender_policy:\n  sender_domains: [\"-bad..domain\"]\n", "sender_policy.sender_domains"},
			{"malformed exempt client", "latch:\n  exempt_clients: [not-an-address]\n", "latch.exempt_clients"},
		} {
			path := filepath.Join(t.TempDir(), "bad.yaml")
			if err := os.WriteFile(path, []byte(c.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			res := mw.Exec(t, "config", "check", path)
			if res.ExitCode == 0 || !strings.Contains(res.Stderr, c.key) {
				t.Errorf("%s: config check exit %d, stderr %q; want a non-zero exit naming %s", c.name, res.ExitCode, res.Stderr, c.key)
			}
		}
	})

	t.Run("no daemon", func(t *testing.T) {
		t.Parallel()
		empty := t.TempDir()
		for _, args := range [][]string{
			{"latch", "list", "--data", empty},
			{"freeze", "status", "--data", empty},
			{"freeze", "on", "--all", "--data", empty},
			{"events", "--data", empty},
		} {
			res := mw.Exec(t, args...)
			msg := strings.ToLower(res.Stderr)
			if res.ExitCode == 0 || !strings.Contains(msg, "daemon") ||
				!(strings.Contains(msg, "reach") || strings.Contains(msg, "running") || strings.Contains(msg, "connect")) {
				t.Errorf("mailwarden %s without a daemon: exit %d, stderr %q; want a non-zero exit saying the daemon cannot be reached",
					strings.Join(args, " "), res.ExitCode, res.Stderr)
			}
		}
	})
}

// saysNotFound reports whether an error message says something does not
// exist, in any of the usual words.
func saysNotFound(msg string) bool {
	msg = strings.ToLower(msg)
	for _, w := range []string{"not found", "no such", "unknown", "no latch"} {
		if strings.Contains(msg, w) {
			return true
		}
	}
	return false
}
