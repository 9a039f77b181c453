package integration_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"mailwarden/test/harness"
)

// TestFailOpenUnderWriteFaults is issue 21's second and fourth defects
// through real Postfix: with fail_open on latch and sender, and every
// write of the store failing (its files made immutable, chattr +i, which
// stops root too), a latched host stays refused, forgeries are not let
// through, and the internal sender of a virus is tempfailed so that its
// retry, once the store writes again, is refused and latched. Before,
// all of these were accepted or left the sender free.
func TestFailOpenUnderWriteFaults(t *testing.T) {
	t.Parallel()
	clamd := sharedClamd.get(t)
	const latched, forger, infected = "127.0.95.5", "127.0.95.6", "127.0.95.7"
	s := startStack(t, viaMilter, siteYAML("127.0.95.0/24", "fail_open: [latch, sender]",
		"antivirus:\n  enabled: true\n  health_interval: 1s\n  "+servers(clamd.TCPServer())))
	requireRefused(t, s.send(t, latched, "worm@evil.test", rcptTo, harness.UniqueID(t)), "550 ")
	waitLatch(t, s.mw, latched)

	files := []string{filepath.Join(s.mw.DataDir, "mailwarden.db"), filepath.Join(s.mw.DataDir, "mailwarden.db-wal")}
	chattr := func(flag string) error {
		out, err := exec.Command("chattr", append([]string{flag}, files...)...).CombinedOutput()
		if err != nil {
			return &chattrError{flag, string(out), err}
		}
		return nil
	}
	if err := chattr("+i"); err != nil {
		harness.SkipOrFail(t, "the data directory's filesystem does not take the immutable flag: %v", err)
	}
	healed := false
	t.Cleanup(func() {
		if !healed {
			chattr("-i")
		}
	})

	counts := map[string]int{}
	for range 6 {
		id := harness.UniqueID(t)
		res := s.send(t, latched, "teacher@school.test", rcptTo, id)
		if strings.HasPrefix(res.Reply("MAIL FROM"), "550 ") || strings.HasPrefix(res.Reply("RCPT TO"), "550 ") {
			counts["latched host refused"]++
		} else {
			counts["latched host wrongly accepted"]++
		}
		id = harness.UniqueID(t)
		res = s.send(t, forger, "ceo@bank.test", rcptTo, id)
		switch r := res.Reply("RCPT TO") + res.Reply("MAIL FROM"); {
		case strings.Contains(r, "451 "), strings.Contains(r, "550 "):
			counts["forgery refused"]++
		default:
			counts["forgery wrongly accepted"]++
		}
		s.neverArrived(t, id)
	}
	eicar := harness.EICARFile(t)
	id := harness.UniqueID(t)
	res := s.sendFile(t, infected, "staff@school.test", id, eicar)
	if !strings.HasPrefix(res.DataReply(), "451 ") {
		t.Errorf("a virus from inside with the latch unwritable got %q, want 451 so that its retry latches", res.DataReply())
	}
	s.neverArrived(t, id)
	t.Logf("store unwritable, fail_open [latch sender]: %v", counts)
	if counts["latched host wrongly accepted"] != 0 || counts["forgery wrongly accepted"] != 0 {
		t.Errorf("mail wrongly accepted while the store could not write: %v", counts)
	}

	if err := chattr("-i"); err != nil {
		t.Fatal(err)
	}
	healed = true
	id = harness.UniqueID(t)
	s.requireVirusRefused(t, s.sendFile(t, infected, "staff@school.test", id, eicar), id)
	waitLatch(t, s.mw, infected)
	if n := len(latchesFor(t, s.mw, forger)); n != 0 {
		t.Logf("the forger was latched too once the store wrote (%d latches)", n)
	}
}

type chattrError struct {
	flag, out string
	err       error
}

func (e *chattrError) Error() string { return "chattr " + e.flag + ": " + e.err.Error() + ": " + e.out }
