package integration_test

import (
	"strings"
	"testing"
	"time"

	"mailwarden/test/harness"
)

// TestAntivirusClamdOutage is PRODUCT.md §4 "no mail lost" for the
// scanner: while clamd is down every message is tempfailed, status shows
// it down, and once clamd is back the same message is accepted and
// delivered exactly once.
func TestAntivirusClamdOutage(t *testing.T) {
	t.Parallel()
	const client, from = "127.0.65.5", "sender@ext.test"
	clamd := harness.StartClamd(t)
	s := startStack(t, viaMilter, avYAML("127.0.65.128/25", servers(clamd.TCPServer()),
		"connect_timeout: 1s", "on_error: tempfail"))
	waitClamdStatus(t, s.mw, clamd.TCPServer(), true)

	if err := clamd.Stop(); err != nil {
		t.Fatal(err)
	}
	offset := s.mw.StderrSize()
	id := harness.UniqueID(t)
	res := s.sendFile(t, client, from, id)
	res.RequireDataReply(t, scanUnavailable)
	antivirusDecision(t, s.mw, client, "tempfail")
	requireLogLine(t, s.mw, offset, []string{clamd.Addr})
	waitClamdStatus(t, s.mw, clamd.TCPServer(), false)

	if err := clamd.Start(); err != nil {
		t.Fatal(err)
	}
	// The sender's retry: the same message (X-Test-ID) again.
	res = s.sendFile(t, client, from, id)
	res.RequireDataReply(t, "250 ")
	msg := s.sink.WaitForID(t, id, 10*time.Second)
	if got := harness.HeaderValues(msg, "X-Virus-Status"); len(got) != 1 || got[0] != "Clean" {
		t.Errorf("the retried message has X-Virus-Status %q, want \"Clean\"", got)
	}
	time.Sleep(time.Second)
	if n := s.sink.Count(func(m string) bool { return harness.HasHeader(m, "X-Test-ID", id) }); n != 1 {
		t.Errorf("the message arrived %d times, want once", n)
	}
	waitClamdStatus(t, s.mw, clamd.TCPServer(), true)
}

// TestAntivirusBadInput is PRODUCT.md §4 "bad input gets a clear error"
// for the scanner: messages over either size limit get the configured
// oversize action, and a clamd that answers garbage or never answers
// tempfails the message within a bounded time and says so in the log.
func TestAntivirusBadInput(t *testing.T) {
	t.Parallel()
	const twoMB = 2 << 20
	big := harness.RandomFile(t, "big.bin", twoMB)

	t.Run("over max_scan_size", func(t *testing.T) {
		t.Parallel()
		const client = "127.0.66.5"
		clamd := sharedClamd.get(t)
		s := startStack(t, viaMilter, avYAML("127.0.66.128/25", servers(clamd.TCPServer()),
			"max_scan_size: 1000000", "oversize_action: reject"))
		id := harness.UniqueID(t)
		res := s.sendFile(t, client, "big@ext.test", id, big)
		res.RequireDataReply(t, oversizeReply)
		s.neverArrived(t, id)
		// The administrator can tell which limit it was.
		if d := antivirusDecision(t, s.mw, client, "reject"); !strings.Contains(d["reason"], "1000000") {
			t.Errorf("mail log decision = %v, want a reason naming the limit max_scan_size 1000000", d)
		}
		// A small message from the same client still passes.
		id = harness.UniqueID(t)
		s.sendFile(t, client, "big@ext.test", id).RequireDataReply(t, "250 ")
		s.sink.WaitForID(t, id, 10*time.Second)
	})

	t.Run("over clamd's StreamMaxLength", func(t *testing.T) {
		t.Parallel()
		const client = "127.0.66.6"
		clamd := harness.StartClamdConfig(t, harness.ClamdConfig{StreamMaxLength: "1M"})
		s := startStack(t, viaMilter, avYAML("127.0.66.128/25", servers(clamd.TCPServer()),
			"max_scan_size: 5242880", "oversize_action: reject"))
		id := harness.UniqueID(t)
		res := s.sendFile(t, client, "big@ext.test", id, big)
		res.RequireDataReply(t, oversizeReply)
		s.neverArrived(t, id)
		if d := antivirusDecision(t, s.mw, client, "reject"); !strings.Contains(d["reason"], "StreamMaxLength") {
			t.Errorf("mail log decision = %v, want a reason naming clamd's StreamMaxLength", d)
		}
		// clamd refused a stream it was configured to refuse; it is not
		// down for that.
		waitClamdStatus(t, s.mw, clamd.TCPServer(), true)
	})

	t.Run("clamd answers garbage", func(t *testing.T) {
		t.Parallel()
		const client = "127.0.66.7"
		fake := harness.StartFakeClamd(t, "HELLO\x00")
		s := startStack(t, viaMilter, avYAML("127.0.66.128/25", servers(fake.Server()), "on_error: tempfail"))
		id := harness.UniqueID(t)
		res := s.sendFile(t, client, "garbage@ext.test", id)
		res.RequireDataReply(t, scanUnavailable)
		s.neverArrived(t, id)
		antivirusDecision(t, s.mw, client, "tempfail")
		// The server going down is logged once, by the scan or by the
		// health check at start, whichever saw it first; not per message.
		line := requireLogLine(t, s.mw, 0, []string{fake.Addr}, "HELLO", "unexpected")
		t.Logf("daemon logged: %s", line)
	})

	t.Run("clamd never answers", func(t *testing.T) {
		t.Parallel()
		const client = "127.0.66.8"
		fake := harness.StartFakeClamd(t, "")
		s := startStack(t, viaMilter, avYAML("127.0.66.128/25", servers(fake.Server()),
			"connect_timeout: 1s", "scan_timeout: 2s", "on_error: tempfail"))
		id := harness.UniqueID(t)
		start := time.Now()
		res := s.sendFile(t, client, "silent@ext.test", id)
		took := time.Since(start)
		res.RequireDataReply(t, scanUnavailable)
		if took > 20*time.Second {
			t.Errorf("the sender waited %v for the tempfail; scan_timeout is 2s", took)
		}
		s.neverArrived(t, id)
		antivirusDecision(t, s.mw, client, "tempfail")
		line := requireLogLine(t, s.mw, 0, []string{fake.Addr}, "timeout", "timed out", "deadline")
		t.Logf("daemon logged: %s", line)
	})
}
