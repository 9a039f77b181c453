package integration_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"mailwarden/test/harness"
)

// TestAntivirusReject is issue 4 behind Postfix's milter with a real
// clamd: a virus is refused at the end of data with its name, clean mail
// arrives marked as scanned, an internal machine that sends a virus is
// latched, and status shows the scanner.
func TestAntivirusReject(t *testing.T) {
	t.Parallel()
	const internalNet = "127.0.62.0/24"
	clamd := sharedClamd.get(t)
	// Both transports, the unix socket first: the scan goes there while
	// status shows both.
	s := startStack(t, viaMilter, avYAML(internalNet, servers(clamd.UnixServer(), clamd.TCPServer()),
		"inbound: reject", "outbound: reject", "on_error: tempfail", "add_headers: true"))
	eicar := harness.EICARFile(t)

	t.Run("external virus refused, clean mail marked", func(t *testing.T) {
		t.Parallel()
		const client = "127.0.61.5"
		id := harness.UniqueID(t)
		reply := s.requireVirusRefused(t, s.sendFile(t, client, "news@ext.test", id, eicar), id)
		if !strings.Contains(reply, harness.EICARSignature) {
			t.Errorf("reply %q does not name the virus %s", reply, harness.EICARSignature)
		}
		d := antivirusDecision(t, s.mw, client, "reject")
		if !strings.HasPrefix(d["reply"], virusReply) {
			t.Errorf("mail log decision = %v, want reply %q…", d, virusReply)
		}
		ev := waitEvent(t, s.mw, func(e map[string]any) bool { return field(e, "client") == client }, "--kind", "virus")
		b, _ := json.Marshal(ev)
		if !strings.Contains(string(b), rcptTo) || !strings.Contains(string(b), harness.EICARSignature) {
			t.Errorf("virus event %s does not name the recipient %s and the virus", b, rcptTo)
		}

		// The same client's clean mail, plain and with an attachment.
		for _, files := range [][]string{nil, {harness.RandomFile(t, "report.pdf", 20<<10)}} {
			id := harness.UniqueID(t)
			res := s.sendFile(t, client, "news@ext.test", id, files...)
			res.RequireReply(t, "RCPT TO", "250 ")
			res.RequireDataReply(t, "250 ")
			msg := s.sink.WaitForID(t, id, 10*time.Second)
			if got := harness.HeaderValues(msg, "X-Virus-Status"); len(got) != 1 || got[0] != "Clean" {
				t.Errorf("clean message (%d attachments) has X-Virus-Status %q, want one \"Clean\"", len(files), got)
			}
			if got := harness.HeaderValues(msg, "X-Virus-Scanned"); len(got) != 1 || got[0] == "" {
				t.Errorf("clean message has X-Virus-Scanned %q, want one", got)
			}
		}
		// A sender's own X-Virus-Status is replaced, not kept beside ours.
		id = harness.UniqueID(t)
		res := harness.Send(t, harness.Mail{Server: s.pf.Addr, Client: client, From: "news@ext.test", To: rcptTo, ID: id,
			Headers: []string{"X-Virus-Status: Clean (forged)", "X-Virus-Scanned: by the sender"}})
		res.RequireDataReply(t, "250 ")
		msg := s.sink.WaitForID(t, id, 10*time.Second)
		if got := harness.HeaderValues(msg, "X-Virus-Status"); len(got) != 1 || got[0] != "Clean" {
			t.Errorf("message with a forged X-Virus-Status arrived with %q, want only mailwarden's \"Clean\"", got)
		}
		if got := harness.HeaderValues(msg, "X-Virus-Scanned"); len(got) != 1 || strings.Contains(got[0], "by the sender") {
			t.Errorf("message with a forged X-Virus-Scanned arrived with %q, want only mailwarden's", got)
		}
		if ls := latchesFor(t, s.mw, client); len(ls) != 0 {
			t.Errorf("an external sender of a virus was latched: %v", ls)
		}
	})

	t.Run("internal virus sender is latched", func(t *testing.T) {
		t.Parallel()
		const client, from = "127.0.62.5", "staff@school.test"
		id := harness.UniqueID(t)
		s.requireVirusRefused(t, s.sendFile(t, client, from, id, eicar), id)

		l := waitLatch(t, s.mw, client)
		if field(l, "rule") != "virus" || !strings.HasPrefix(field(l, "evidence"), harness.EICARSignature) {
			t.Errorf("latch = %v, want rule virus and evidence %s…", l, harness.EICARSignature)
		}
		ref := field(l, "id")
		// The virus event names the virus and the latch it caused, so
		// events --kind virus finds outbound infections too.
		ev := waitEvent(t, s.mw, func(e map[string]any) bool { return field(e, "client") == client }, "--kind", "virus")
		if b, _ := json.Marshal(ev); !strings.Contains(string(b), harness.EICARSignature) || !strings.Contains(string(b), "ref "+ref) {
			t.Errorf("virus event %s does not name the virus and the latch ref %s", b, ref)
		}
		// The latch is an event of its own beside it, as for a forgery
		// or a rate trip.
		waitEvent(t, s.mw, func(e map[string]any) bool {
			return field(e, "check") == "antivirus" && strings.Contains(field(e, "reason"), "ref "+ref)
		}, "--kind", "latch", "--host", client)

		// Its next message, clean, is refused with the latch reply.
		id = harness.UniqueID(t)
		requireRefused(t, s.send(t, client, from, rcptTo, id), "550 5.7.1 ",
			"Mail from "+client+" is blocked: ", "ref "+ref)
		s.neverArrived(t, id)
	})

	t.Run("status shows clamd", func(t *testing.T) {
		t.Parallel()
		for _, server := range []string{clamd.UnixServer(), clamd.TCPServer()} {
			e := waitClamdStatus(t, s.mw, server, true)
			b, _ := json.Marshal(e)
			t.Logf("status --json shows %s", b)
			// VERSION of a clamd with only a local .ndb says "ClamAV 1.4.6"
			// and no database version or date.
			if !strings.HasPrefix(field(e, "engine"), "ClamAV ") {
				t.Errorf("status --json entry for %s does not show the engine version (ClamAV …): %s", server, b)
			}
		}
		res := s.mw.CLIWords(t, 1, "status")
		if res.ExitCode != 0 || !strings.Contains(res.Stdout, clamd.Addr) || !strings.Contains(res.Stdout, "ClamAV") {
			t.Errorf("mailwarden status (exit %d) does not show clamd %s and its version:\n%s%s", res.ExitCode, clamd.Addr, res.Stdout, res.Stderr)
		}
	})
}

// TestAntivirusQuarantine checks the other two actions: an inbound virus
// is accepted into Postfix's hold queue for the administrator, and an
// outbound one is discarded, its sender latched all the same.
func TestAntivirusQuarantine(t *testing.T) {
	t.Parallel()
	const internalNet = "127.0.64.0/24"
	clamd := sharedClamd.get(t)
	s := startStack(t, viaMilter, avYAML(internalNet, servers(clamd.TCPServer()),
		"inbound: quarantine", "outbound: discard"))
	eicar := harness.EICARFile(t)

	t.Run("inbound is held", func(t *testing.T) {
		t.Parallel()
		const client, from = "127.0.63.5", "quarantine@ext.test"
		id := harness.UniqueID(t)
		res := s.sendFile(t, client, from, id, eicar)
		res.RequireDataReply(t, "250 ")
		held := s.pf.WaitHeld(t, func(e harness.QueueEntry) bool { return e.Sender == from }, 10*time.Second)
		if msg := s.pf.QueuedMessage(t, held.QueueID); !strings.Contains(msg, "X-Test-ID: "+id) {
			t.Errorf("held message %s is not the one sent (X-Test-ID %s):\n%s", held.QueueID, id, tailText(msg, 2000))
		}
		antivirusDecision(t, s.mw, client, "quarantine")
		time.Sleep(2 * time.Second) // queue_run_delay is 1s: time enough to be delivered
		s.neverArrived(t, id)
		if ls := latchesFor(t, s.mw, client); len(ls) != 0 {
			t.Errorf("an external sender of a virus was latched: %v", ls)
		}
	})

	t.Run("outbound is discarded and latched", func(t *testing.T) {
		t.Parallel()
		const client, from = "127.0.64.5", "staff@school.test"
		id := harness.UniqueID(t)
		res := s.sendFile(t, client, from, id, eicar)
		res.RequireDataReply(t, "250 ")
		antivirusDecision(t, s.mw, client, "discard")
		l := waitLatch(t, s.mw, client)
		if field(l, "rule") != "virus" {
			t.Errorf("latch = %v, want rule virus", l)
		}
		time.Sleep(2 * time.Second)
		s.neverArrived(t, id)
		for _, e := range s.pf.Queue(t) {
			if e.Sender == from {
				t.Errorf("a discarded message is in Postfix's %s queue: %+v", e.QueueName, e)
			}
		}
	})
}
