package integration_test

import (
	"context"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mailwarden/bench/load"
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

// backgroundLoad drives the daemon's milter and policy server with
// bench/load, c sessions and c connections at once, until stop is
// called; stop waits for the transactions in flight and returns what
// both loads counted.
func backgroundLoad(t *testing.T, mw *harness.Mailwarden, c int) (stop func() (milter, policy load.Result)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mr, pr load.Result
	common := func(addr, pattern string) load.Common {
		// N is only an upper bound, well above what 2 cores manage
		// in a minute: stop ends the load long before. The load keeps
		// a slot per transaction, so it must not be far larger.
		return load.Common{Addr: addr, N: 500_000, C: c, ClientPattern: pattern, Timeout: 10 * time.Second}
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		mr, _ = load.RunMilter(ctx, load.MilterOptions{Common: common(mw.MilterAddr, "198.51.x.y")})
	}()
	go func() {
		defer wg.Done()
		pr, _ = load.RunPolicy(ctx, load.PolicyOptions{Common: common(mw.PolicyAddr, "203.0.x.y")})
	}()
	stopped := false
	stop = func() (load.Result, load.Result) {
		if !stopped {
			stopped = true
			cancel()
			wg.Wait()
		}
		return mr, pr
	}
	t.Cleanup(func() { stop() })
	loadCancels.Store(t, cancel)
	return stop
}

// loadCancels holds each test's load cancel, for stopLoadStarting.
var loadCancels sync.Map

// stopLoadStarting tells t's background load to start no more
// transactions, without waiting for those in flight: called just before
// a signal, the signal then lands on transactions in flight, and a load
// worker whose session the signal closes does not go on reconnecting
// (and failing) for as long as the test takes to stop it.
func stopLoadStarting(t *testing.T) {
	if c, ok := loadCancels.Load(t); ok {
		c.(context.CancelFunc)()
	}
}

// TestReloadUnderLoad sends SIGHUP, first with a broken config and then
// with a valid edit, while milter transactions and policy requests flow
// without pause. Not one of them may fail: a reload swaps the settings
// under running sessions and never drops one. The broken file is logged
// and its would-be effect is absent; the valid edit's effect shows at
// once.
func TestReloadUnderLoad(t *testing.T) {
	t.Parallel()
	const probe = "192.0.2.77"
	mw := harness.StartMailwarden(t, binary(t), greylistYAML(time.Hour, "127.0.24.0/24", "127.0.24.30"))
	original, err := os.ReadFile(mw.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	probeAnswer := func() string {
		t.Helper()
		_, answer := timePolicyRequest(t, mw.PolicyAddr, probe)
		return answer
	}
	if a := probeAnswer(); !strings.HasPrefix(a, "action=451 ") {
		t.Fatalf("probe before any reload: %q, want greylisted", a)
	}

	stop := backgroundLoad(t, mw, 3)
	time.Sleep(time.Second) // sessions of every phase are in flight
	hup := func(content, wantLog string) string {
		t.Helper()
		if err := os.WriteFile(mw.ConfigFile, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		offset := mw.StderrSize()
		mw.Signal(t, syscall.SIGHUP)
		return mw.WaitStderr(t, offset, func(line string) bool { return strings.Contains(line, wantLog) }, 10*time.Second)
	}
	whitelisted := strings.Replace(string(original), `"127.0.24.30"`, `"127.0.24.30", "`+probe+`"`, 1)
	if whitelisted == string(original) {
		t.Fatalf("could not find the whitelist in the config:\n%s", original)
	}
	// The broken file would whitelist the probe too, if it were applied.
	line := hup(whitelisted+"greylst:\n  delay: 1s\n", "keeping the running configuration")
	t.Logf("broken config under load: %s", line)
	time.Sleep(500 * time.Millisecond)
	if a := probeAnswer(); !strings.HasPrefix(a, "action=451 ") {
		t.Errorf("probe after a refused reload: %q, want still greylisted under the old config", a)
	}
	for range 3 {
		hup(whitelisted, "configuration reloaded")
		time.Sleep(300 * time.Millisecond)
	}
	if a := probeAnswer(); strings.HasPrefix(a, "action=451 ") {
		t.Errorf("probe after the valid reload: %q, want whitelisted", a)
	}
	time.Sleep(500 * time.Millisecond)
	mr, pr := stop()
	t.Logf("milter load across 4 reloads: %v", mr)
	t.Logf("policy load across 4 reloads: %v", pr)
	for name, r := range map[string]load.Result{"milter": mr, "policy": pr} {
		if r.N < 50 {
			t.Errorf("%s load completed only %d transactions", name, r.N)
		}
		if r.Verdicts["error"] != 0 {
			t.Errorf("%s load: %d of %d failed across the reloads, first: %s", name, r.Verdicts["error"], r.N, r.FirstError)
		}
	}
	if !mw.Running() {
		t.Fatal("the daemon exited during the reloads")
	}
}
