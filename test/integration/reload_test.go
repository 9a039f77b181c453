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

// TestReloadAppliesEverywhere: after a SIGHUP that changes
// greylist.ipv4_prefix and adds a site, every part reads the new values:
// the greylist check keys new triplets by /32, `greylist allow` (through
// the daemon) computes the same /32 key, and `hosts list --site` knows
// the new site for a host that was trapped before it existed.
func TestReloadAppliesEverywhere(t *testing.T) {
	t.Parallel()
	trap := trapAddr(t)
	s := startStack(t, viaMilter, greylistYAML(time.Hour, "127.0.27.0/24", "127.0.27.30", trapYAML(trap)))
	const to = "user@dest.test"
	const worm, outsider = "127.0.28.9", "127.0.29.7"

	greeting, helo, mail := trapSession(t, trap, worm, "worm.local", "w@bad.test")
	requireTrapped(t, worm, greeting, helo, mail)
	waitHost(t, s.mw, worm, "the trap hit", 10*time.Second, func(h map[string]any) bool { return trapOf(h) != nil })
	hostsAt := func(site string) []map[string]any {
		t.Helper()
		res := s.mw.CLI(t, "hosts", "list", "--site", site, "--json")
		if res.ExitCode != 0 {
			t.Fatalf("hosts list --site %s: exit %d: %s", site, res.ExitCode, res.Stderr)
		}
		return jsonList(t, "hosts list", res.Stdout)
	}
	if hs := hostsAt("annex"); len(hs) != 0 {
		t.Fatalf("hosts at site annex before it exists: %v", hs)
	}

	original, err := os.ReadFile(s.mw.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	edited := string(original) + `sites:
  - name: annex
    networks: ["127.0.28.0/24"]
`
	edited = strings.Replace(edited, "greylist:\n", "greylist:\n  ipv4_prefix: 32\n", 1)
	if err := os.WriteFile(s.mw.ConfigFile, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	offset := s.mw.StderrSize()
	if err := syscall.Kill(s.mw.PID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	s.mw.WaitStderr(t, offset, func(line string) bool { return strings.Contains(line, "configuration reloaded") }, 10*time.Second)

	if hs := hostsAt("annex"); len(hs) != 1 || field(hs[0], "ip") != worm {
		t.Errorf("hosts list --site annex after the reload: %v, want %s", hs, worm)
	}

	// A new triplet is keyed by the new prefix; letting it through from
	// the CLI must compute the same key.
	s.requireGreylisted(t, s.send(t, outsider, "a@ext.test", to, harness.UniqueID(t)), "milter", outsider)
	res := s.mw.CLI(t, "greylist", "allow", outsider, "a@ext.test", to)
	if res.ExitCode != 0 || !strings.Contains(res.Stdout, outsider+"/32") {
		t.Fatalf("greylist allow %s after the reload: exit %d\nstdout: %s\nstderr: %s", outsider, res.ExitCode, res.Stdout, res.Stderr)
	}
	// The daemon made the change, with its live settings, and audited it.
	waitEvent(t, s.mw, func(e map[string]any) bool {
		return field(e, "check") == "greylist allow" && strings.Contains(field(e, "reason"), outsider+"/32")
	}, "--kind", "admin")
	id := harness.UniqueID(t)
	s.send(t, outsider, "a@ext.test", to, id).RequireDelivered(t)
	s.sink.WaitForID(t, id, 10*time.Second)
}
