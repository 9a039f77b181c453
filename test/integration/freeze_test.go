package integration_test

import (
	"strings"
	"testing"

	"mailwarden/test/harness"
)

// TestFreeze is PRODUCT.md Day B: the administrator freezes outbound
// mail; every outbound message is tempfailed (so nothing is lost), a
// restart of the daemon does not undo it, lifting it lets the same mail
// through, and a domain freeze holds only that domain.
func TestFreeze(t *testing.T) {
	t.Parallel()
	const (
		internal = "127.0.57.5"
		external = "127.0.58.5"
		school   = "staff@school.test"
		college  = "staff@college.test"
	)
	s := startStack(t, viaMilter, `internal_networks: ["127.0.57.0/24"]
greylist: {delay: 1h}`)
	frozen := func(t *testing.T, from string) {
		t.Helper()
		id := harness.UniqueID(t)
		requireRefused(t, s.send(t, internal, from, rcptTo, id), "451 4.7.0 ",
			"Outbound mail is frozen by the administrator")
		s.neverArrived(t, id)
	}
	if fs := freezes(t, s); len(fs) != 0 {
		t.Fatalf("freeze status --json lists %v before any freeze", fs)
	}

	cliOK(t, s.mw, "freeze", "on", "--all", "--note", "incident 42")
	fs := freezes(t, s)
	if len(fs) != 1 || field(fs[0], "scope") != "all" {
		t.Fatalf("freeze status --json = %v, want one freeze of scope all", fs)
	}
	if out := cliOK(t, s.mw, "freeze", "status").Stdout; !strings.Contains(out, "all") || !strings.Contains(out, "incident 42") {
		t.Errorf("freeze status does not show the freeze and its note:\n%s", out)
	}
	frozen(t, school)
	if d := decision(t, s.mw, internal, "freeze"); d["action"] != "tempfail" {
		t.Errorf("mail log decision = %v, want action=tempfail", d)
	}
	waitEvent(t, s.mw, func(e map[string]any) bool { return field(e, "client") == internal }, "--kind", "freeze")
	// Inbound mail is not outbound: it meets greylisting as before.
	s.requireGreylisted(t, s.send(t, external, "news@ext.test", rcptTo, harness.UniqueID(t)), "milter", external)

	s.mw.Restart(t)
	frozen(t, school)
	if fs := freezes(t, s); len(fs) != 1 {
		t.Errorf("after a restart freeze status --json = %v, want the freeze", fs)
	}

	cliOK(t, s.mw, "freeze", "off", "--all")
	if fs := freezes(t, s); len(fs) != 0 {
		t.Errorf("after freeze off, freeze status --json = %v, want none", fs)
	}
	s.deliver(t, internal, school)

	t.Run("message past RCPT", func(t *testing.T) {
		// A freeze set while a message is past RCPT holds that message
		// at its end: the milter does not ask Postfix for DATA, and the
		// freeze checks again at end of message.
		id := harness.UniqueID(t)
		smtp := dialSMTP(t, s.pf.Addr, internal)
		smtp.require("EHLO pc.school.test", "250")
		smtp.require("MAIL FROM:<"+school+">", "250")
		smtp.require("RCPT TO:<"+rcptTo+">", "250")
		cliOK(t, s.mw, "freeze", "on", "--all")
		smtp.require("DATA", "354")
		reply := smtp.cmd("X-Test-ID: " + id + "\r\nSubject: on its way\r\n\r\nStarted before the freeze, ended after it.\r\n.")
		if !strings.HasPrefix(reply, "451 4.7.0 ") {
			t.Errorf("end of data after the freeze: %q, want 451 4.7.0", reply)
		}
		s.neverArrived(t, id)
		cliOK(t, s.mw, "freeze", "off", "--all")
		s.deliver(t, internal, school)
	})

	t.Run("domain", func(t *testing.T) {
		cliOK(t, s.mw, "freeze", "on", "--domain", "school.test")
		frozen(t, school)
		s.deliver(t, internal, college)
		cliOK(t, s.mw, "freeze", "off", "--domain", "school.test")
		s.deliver(t, internal, school)
	})
}

// freezes returns the freezes `freeze status --json` lists.
func freezes(t *testing.T, s *stack) []map[string]any {
	t.Helper()
	return jsonList(t, "freeze status", cliOK(t, s.mw, "freeze", "status", "--json").Stdout)
}
