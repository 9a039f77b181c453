package integration_test

import (
	"encoding/json"
	"strings"
	"testing"

	"mailwarden/test/harness"
)

// TestForgeryLatchMilter is PRODUCT.md Day A behind Postfix's milter: an
// internal machine relaying with a forged sender domain is refused and
// latched, stays refused for legitimate mail until the administrator
// clears the latch, and an exempt relay is refused but never latched.
func TestForgeryLatchMilter(t *testing.T) {
	t.Parallel()
	const exempt = "127.0.51.9"
	s := startStack(t, viaMilter, siteYAML("127.0.51.0/24", "latch: {exempt_clients: ["+exempt+"]}"))
	t.Run("forgery latches until cleared", func(t *testing.T) {
		t.Parallel()
		forgeryLatchClear(t, s, "milter", "127.0.51.5")
	})
	t.Run("exempt client is refused but not latched", func(t *testing.T) {
		t.Parallel()
		forgeryExempt(t, s, exempt)
	})
	t.Run("forged header From is refused at end of message", func(t *testing.T) {
		t.Parallel()
		const client = "127.0.51.7"
		id := harness.UniqueID(t)
		// --header replaces the From: header swaks would write from --from.
		res := harness.Swaks(t, "--server", s.pf.Addr, "--local-interface", client, "--helo", "pc7.school.test",
			"--from", "teacher@school.test", "--to", rcptTo, "--timeout", "20s",
			"--header", "From: Boss <boss@evil.test>", "--add-header", "X-Test-ID: "+id)
		res.RequireReply(t, "RCPT TO", "250 ")
		res.RequireReply(t, ".", "550 5.7.1 ")
		s.neverArrived(t, id)
		if d := decision(t, s.mw, client, "sender"); d["action"] != "reject" || d["stage"] == "rcpt" {
			t.Errorf("mail log decision = %v stage=%q, want action=reject at end of message", d, d["stage"])
		}
		if l := waitLatch(t, s.mw, client); !strings.Contains(field(l, "evidence"), "evil.test") {
			t.Errorf("latch = %v, want evidence naming evil.test", l)
		}
	})
}

// TestForgeryLatchPolicy is the same through check_policy_service at RCPT.
func TestForgeryLatchPolicy(t *testing.T) {
	t.Parallel()
	const exempt = "127.0.52.9"
	s := startStack(t, viaPolicy, siteYAML("127.0.52.0/24", "latch: {exempt_clients: ["+exempt+"]}"))
	t.Run("forgery latches until cleared", func(t *testing.T) {
		t.Parallel()
		forgeryLatchClear(t, s, "policy", "127.0.52.5")
	})
	t.Run("exempt client is refused but not latched", func(t *testing.T) {
		t.Parallel()
		forgeryExempt(t, s, exempt)
	})
}

// forgeryLatchClear walks one latch through its life as the sending user
// and the administrator see it.
func forgeryLatchClear(t *testing.T, s *stack, frontend, client string) {
	t.Helper()
	const forged, legit = "worm@evil.test", "teacher@school.test"

	id := harness.UniqueID(t)
	requireRefused(t, s.send(t, client, forged, rcptTo, id), "550 5.7.1 ",
		"Sender domain evil.test is not allowed from "+client)
	s.neverArrived(t, id)
	d := decision(t, s.mw, client, "sender")
	if d["action"] != "reject" || d["site"] != siteName || d["frontend"] != frontend {
		t.Errorf("mail log decision = %v site=%q, want action=reject site=%s frontend=%s", d, d["site"], siteName, frontend)
	}

	l := waitLatch(t, s.mw, client)
	ref := field(l, "id")
	if ref == "" {
		t.Fatalf("latch list --json shows the latch without an id: %v", l)
	}
	if field(l, "site") != siteName || !strings.Contains(field(l, "evidence"), "evil.test") {
		t.Errorf("latch = %v, want site %q and evidence naming evil.test", l, siteName)
	}
	list := cliOK(t, s.mw, "latch", "list").Stdout
	for _, want := range []string{ref, client, siteName, "evil.test"} {
		if !strings.Contains(list, want) {
			t.Errorf("latch list does not show %q:\n%s", want, list)
		}
	}
	detail := cliOK(t, s.mw, "latch", "show", ref).Stdout
	for _, want := range []string{ref, client, siteName, forged} {
		if !strings.Contains(detail, want) {
			t.Errorf("latch show %s does not show %q:\n%s", ref, want, detail)
		}
	}

	// Legitimate mail from the latched machine is refused too, with a
	// reply the user can read out to the site's helpdesk.
	id = harness.UniqueID(t)
	requireRefused(t, s.send(t, client, legit, rcptTo, id), "550 5.7.1 ",
		"Mail from "+client+" is blocked: ", "Contact "+siteContact, "ref "+ref)
	s.neverArrived(t, id)
	if d := decision(t, s.mw, client, "latch"); d["action"] != "reject" || d["site"] != siteName {
		t.Errorf("mail log decision = %v site=%q, want action=reject site=%s", d, d["site"], siteName)
	}

	cliOK(t, s.mw, "latch", "clear", ref, "--note", "reimaged")
	s.deliver(t, client, legit)

	show := jsonObject(t, "latch show", cliOK(t, s.mw, "latch", "show", ref, "--json").Stdout)
	by := field(show, "cleared_by")
	note := field(show, "clear_note") + field(show, "note") + field(show, "cleared_note")
	if by == "" || note != "reimaged" || field(show, "cleared_at") == "" {
		t.Errorf("latch show %s --json = %v, want cleared_at, cleared_by and the note \"reimaged\"", ref, show)
	}
	text := cliOK(t, s.mw, "latch", "show", ref).Stdout
	for _, want := range []string{ref, "reimaged", by} {
		if want != "" && !strings.Contains(text, want) {
			t.Errorf("latch show %s does not show %q:\n%s", ref, want, text)
		}
	}
	waitEvent(t, s.mw, func(e map[string]any) bool {
		b, _ := json.Marshal(e)
		return field(e, "kind") == "admin" && strings.Contains(string(b), ref)
	}, "--kind", "admin")
}

// forgeryExempt checks that a client in latch.exempt_clients is refused
// for the forgery and still delivers its legitimate mail afterwards.
func forgeryExempt(t *testing.T, s *stack, client string) {
	t.Helper()
	id := harness.UniqueID(t)
	requireRefused(t, s.send(t, client, "worm@evil.test", rcptTo, id), "550 5.7.1 ",
		"Sender domain evil.test is not allowed from "+client)
	s.neverArrived(t, id)
	s.deliver(t, client, "teacher@school.test")
	if ls := latchesFor(t, s.mw, client); len(ls) != 0 {
		t.Errorf("an exempt client was latched: %v", ls)
	}
}

// TestLatchSurvivesRestart checks PRODUCT.md §3: latches persist across
// restarts. The reference the user was given stays the same.
func TestLatchSurvivesRestart(t *testing.T) {
	t.Parallel()
	const client, legit = "127.0.53.5", "office@school.test"
	s := startStack(t, viaMilter, siteYAML("127.0.53.0/24"))

	requireRefused(t, s.send(t, client, "worm@evil.test", rcptTo, harness.UniqueID(t)), "550 5.7.1 ",
		"Sender domain evil.test is not allowed from "+client)
	ref := field(waitLatch(t, s.mw, client), "id")
	if ref == "" {
		t.Fatalf("latch list --json shows the latch without an id")
	}
	requireRefused(t, s.send(t, client, legit, rcptTo, harness.UniqueID(t)), "550 5.7.1 ", "ref "+ref)

	s.mw.Restart(t)

	id := harness.UniqueID(t)
	requireRefused(t, s.send(t, client, legit, rcptTo, id), "550 5.7.1 ",
		"Mail from "+client+" is blocked: ", "ref "+ref)
	s.neverArrived(t, id)
	if got := field(waitLatch(t, s.mw, client), "id"); got != ref {
		t.Errorf("after the restart latch list shows latch %q for %s, want %q", got, client, ref)
	}
}
