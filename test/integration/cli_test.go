package integration_test

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailwarden/test/harness"
)

// TestGreylistCLI drives the greylist commands beside a running daemon:
// list shows a pending triplet from the store, allow asks the daemon to
// let it through at once (the delay here is an hour, so nothing else
// could) and records it, and stats counts.
func TestGreylistCLI(t *testing.T) {
	t.Parallel()
	s := startStack(t, viaMilter, greylistYAML(time.Hour, "127.0.32.20/32", "127.0.32.30"))
	const (
		clientA, fromA, toA = "127.0.31.5", "alpha@ext.test", "user1@dest.test"
		clientB, fromB, toB = "127.0.33.5", "bravo@ext.test", "user2@dest.test"
	)
	s.requireGreylisted(t, s.send(t, clientA, fromA, toA, harness.UniqueID(t)), "milter", clientA)
	s.requireGreylisted(t, s.send(t, clientB, fromB, toB, harness.UniqueID(t)), "milter", clientB)

	// The daemon writes triplets behind (within about 100 ms); the CLI
	// reads the database, so wait until both triplets are there.
	waitCLI(t, s.mw, func(out string) bool {
		return strings.Contains(out, fromA) && strings.Contains(out, fromB)
	}, "greylist", "list")

	t.Run("list", func(t *testing.T) {
		res := cliOK(t, s.mw, "greylist", "list")
		row := ""
		for _, line := range strings.Split(res.Stdout, "\n") {
			if strings.Contains(line, fromA) {
				row = line
			}
		}
		for _, want := range []string{"127.0.31.0/24", fromA, toA, "pending"} {
			if !strings.Contains(row, want) {
				t.Errorf("greylist list row for %s lacks %q:\n%s", fromA, want, res.Stdout)
			}
		}

		res = cliOK(t, s.mw, "greylist", "list", "--json")
		var triplets []struct {
			Client, Sender, Recipient, State string
		}
		if err := json.Unmarshal([]byte(res.Stdout), &triplets); err != nil {
			t.Fatalf("greylist list --json is not a JSON list of triplets: %v\n%s", err, res.Stdout)
		}
		found := false
		for _, tr := range triplets {
			if tr.Client == "127.0.31.0/24" && tr.Sender == fromA && tr.Recipient == toA {
				found = true
				if tr.State != "pending" {
					t.Errorf("triplet state = %q, want pending", tr.State)
				}
			}
		}
		if !found || len(triplets) != 2 {
			t.Errorf("greylist list --json = %+v, want 2 triplets including 127.0.31.0/24 %s %s", triplets, fromA, toA)
		}
	})

	t.Run("stats before allow", func(t *testing.T) {
		requireStats(t, s.mw, 2, 0)
	})

	t.Run("allow lets the triplet through now", func(t *testing.T) {
		// allow goes through the daemon, which lets the triplet through
		// in its own store at once and audits it.
		res := cliOK(t, s.mw, "greylist", "allow", clientA, fromA, toA)
		if want := "allowed: 127.0.31.0/24 " + fromA + " -> " + toA; !strings.Contains(res.Stdout, want) {
			t.Errorf("greylist allow printed %q, want %q", res.Stdout, want)
		}
		res = s.mw.CLIWords(t, 1, "events", "--kind", "admin", "--json")
		var evs []struct{ Check, Reason string }
		// The harness made the store with `store init`: the oldest entry.
		if err := json.Unmarshal([]byte(res.Stdout), &evs); err != nil || len(evs) != 2 || evs[0].Check != "greylist allow" ||
			evs[1].Check != "store init" ||
			!strings.Contains(evs[0].Reason, fromA+" -> "+toA) {
			t.Errorf("admin events after allow: %v\n%s%s", err, res.Stdout, res.Stderr)
		}
		id := harness.UniqueID(t)
		s.send(t, clientA, fromA, toA, id).RequireDelivered(t)
		s.sink.WaitForID(t, id, 10*time.Second)

		// The other triplet was not allowed and is still an hour away.
		s.send(t, clientB, fromB, toB, harness.UniqueID(t)).RequireReply(t, "RCPT TO", "451 4.7.1 ")
	})

	t.Run("stats after allow", func(t *testing.T) {
		requireStats(t, s.mw, 1, 1)
	})
}

// waitCLI runs an admin command until its output satisfies ok, for at
// most 5 s.
func waitCLI(t *testing.T, mw *harness.Mailwarden, ok func(stdout string) bool, args ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		res := cliOK(t, mw, args...)
		if ok(res.Stdout) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("mailwarden %s never showed what was expected within 5s; last output:\n%s", strings.Join(args, " "), res.Stdout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cliOK runs an admin command and fails the test unless it exits 0.
func cliOK(t *testing.T, mw *harness.Mailwarden, args ...string) harness.CLIResult {
	t.Helper()
	res := mw.CLI(t, args...)
	if res.ExitCode != 0 {
		t.Fatalf("mailwarden %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), res.ExitCode, res.Stdout, res.Stderr)
	}
	return res
}

// requireStats checks the pending and passed counts that greylist stats
// prints, in text ("pending …: N") and in JSON.
func requireStats(t *testing.T, mw *harness.Mailwarden, pending, passed int) {
	t.Helper()
	res := cliOK(t, mw, "greylist", "stats")
	for label, want := range map[string]int{"pending": pending, "passed": passed} {
		m := regexp.MustCompile(`(?im)^\s*` + label + `[^:\n]*:\s*(\d+)\s*$`).FindStringSubmatch(res.Stdout)
		if m == nil {
			t.Errorf("greylist stats prints no %q count:\n%s", label, res.Stdout)
			continue
		}
		if got, _ := strconv.Atoi(m[1]); got != want {
			t.Errorf("greylist stats: %s = %d, want %d\n%s", label, got, want, res.Stdout)
		}
	}
	res = cliOK(t, mw, "greylist", "stats", "--json")
	var js map[string]int
	if err := json.Unmarshal([]byte(res.Stdout), &js); err != nil {
		t.Fatalf("greylist stats --json: %v\n%s", err, res.Stdout)
	}
	if js["pending"] != pending || js["passed"] != passed {
		t.Errorf("greylist stats --json = %v, want pending=%d passed=%d", js, pending, passed)
	}
}
