package integration_test

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"mailwarden/test/harness"
)

// TestAntivirusHungClamd is issue 21 item 7 behind real Postfix: clamd
// stopped with SIGSTOP accepts connections and never answers. The first
// message waits out scan_timeout and is tempfailed; the ones after it
// are tempfailed at once, none accepted unscanned; the outage is one
// "down" event and one warning. After SIGCONT a probe finds clamd within
// seconds, the next message is scanned and delivered, and there is one
// "up again" event.
func TestAntivirusHungClamd(t *testing.T) {
	t.Parallel()
	const (
		client, from = "127.0.69.5", "hung@ext.test"
		scanTimeout  = 5 * time.Second
		messages     = 10
	)
	clamd := harness.StartClamd(t) // its own: this test stops it
	s := startStack(t, viaMilter, avYAML("127.0.69.128/25", servers(clamd.TCPServer()),
		"scan_timeout: "+scanTimeout.String(), "on_error: tempfail", "add_headers: true"))
	waitClamdStatus(t, s.mw, clamd.TCPServer(), true)
	eicar := harness.EICARFile(t)

	// The scanner works before the fault.
	id := harness.UniqueID(t)
	s.sendFile(t, client, from, id).RequireDataReply(t, "250 ")
	s.sink.WaitForID(t, id, 10*time.Second)

	pid := clamd.PID()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP to clamd (pid %d): %v", pid, err)
	}
	stopped := true
	cont := func() {
		if stopped {
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				t.Errorf("SIGCONT to clamd (pid %d): %v", pid, err)
			}
			stopped = false
		}
	}
	// Registered after StartClamd, so it runs before clamd is stopped:
	// a stopped process does not act on SIGTERM.
	t.Cleanup(cont)
	offset := s.mw.StderrSize()

	var tempfailed, accepted, wronglyAccepted int
	var times []time.Duration
	for i := range messages {
		var files []string
		if i%2 == 1 {
			files = []string{eicar} // a virus must not slip through either
		}
		start := time.Now()
		res := s.sendFile(t, client, from, harness.UniqueID(t), files...)
		took := time.Since(start)
		times = append(times, took)
		switch reply := res.DataReply(); {
		case strings.HasPrefix(reply, scanUnavailable):
			tempfailed++
		case strings.HasPrefix(reply, "250 "):
			accepted++
			wronglyAccepted++ // nothing can have scanned it
		default:
			t.Errorf("message %d: end of data reply %q, want %q", i+1, reply, scanUnavailable)
		}
	}
	t.Logf("clamd stopped: %d messages, tempfailed %d, accepted %d, wrongly accepted %d", messages, tempfailed, accepted, wronglyAccepted)
	t.Logf("per-message times: %v", times)
	if tempfailed != messages || wronglyAccepted != 0 {
		t.Errorf("tempfailed %d of %d, wrongly accepted %d; with on_error tempfail every message must be tempfailed", tempfailed, messages, wronglyAccepted)
	}
	if times[0] < scanTimeout-time.Second {
		t.Errorf("the first message took %v; it should have waited out scan_timeout %v", times[0], scanTimeout)
	}
	for i, took := range times[1:] {
		// Postfix and swaks take a few hundred milliseconds of their own;
		// a message that waited for clamd would take scan_timeout.
		if took > scanTimeout/3 {
			t.Errorf("message %d took %v; after the first timeout each must fail at once (scan_timeout %v)", i+2, took, scanTimeout)
		}
	}
	// The mail log has a decision per message; those after the first
	// say clamd was skipped. A decision is logged as Postfix gets the
	// reply, so the last may come a moment after swaks ends.
	fast := 0
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		fast = 0
		for _, d := range s.mw.Decisions() {
			if d["client"] == client && d["check"] == "antivirus" && d["action"] == "tempfail" &&
				strings.Contains(d["reason"], "skipped until it answers a probe") {
				fast++
			}
		}
		if fast >= messages-1 || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("mail log: %d tempfail decisions without contacting clamd", fast)
	if fast != messages-1 {
		t.Errorf("mail log: %d tempfail decisions say clamd was skipped, want %d (all but the first)", fast, messages-1)
	}

	down := waitEvent(t, s.mw, func(e map[string]any) bool {
		return strings.Contains(field(e, "reason"), clamd.Addr+" is down")
	}, "--kind", "signatures")
	t.Logf("down event: %s", field(down, "reason"))
	waitClamdStatus(t, s.mw, clamd.TCPServer(), false)
	warnings := daemonLines(s.mw, offset, "WARN", clamd.Addr)
	t.Logf("daemon log warnings naming clamd while it was stopped: %d\n%s", len(warnings), strings.Join(warnings, "\n"))
	if len(warnings) != 1 {
		t.Errorf("%d warnings naming %s for %d messages, want one saying it is down", len(warnings), clamd.Addr, messages)
	}

	cont()
	resumed := time.Now()
	var backAfter time.Duration
	for attempt := 1; ; attempt++ {
		id := harness.UniqueID(t)
		res := s.sendFile(t, client, from, id)
		if reply := res.DataReply(); strings.HasPrefix(reply, "250 ") {
			msg := s.sink.WaitForID(t, id, 10*time.Second)
			if got := harness.HeaderValues(msg, "X-Virus-Status"); len(got) != 1 || got[0] != "Clean" {
				t.Errorf("the message after SIGCONT has X-Virus-Status %q, want \"Clean\"", got)
			}
			backAfter = time.Since(resumed)
			t.Logf("after SIGCONT: message %d scanned and delivered %v later", attempt, backAfter)
			break
		} else if !strings.HasPrefix(reply, scanUnavailable) {
			t.Fatalf("after SIGCONT: end of data reply %q", reply)
		}
		if time.Since(resumed) > 10*time.Second {
			t.Fatalf("no message accepted within 10s of SIGCONT")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if backAfter > scanTimeout {
		t.Errorf("mail flowed again only %v after SIGCONT; clamd is probed every second", backAfter)
	}
	waitEvent(t, s.mw, func(e map[string]any) bool {
		return strings.Contains(field(e, "reason"), clamd.Addr+" is up again")
	}, "--kind", "signatures")
	var downs, ups int
	for _, e := range events(t, s.mw, "--kind", "signatures") {
		switch r := field(e, "reason"); {
		case strings.Contains(r, " is down"):
			downs++
		case strings.Contains(r, " is up again"):
			ups++
		}
	}
	t.Logf("events: %d down, %d up", downs, ups)
	if downs != 1 || ups != 1 {
		t.Errorf("events --kind signatures: %d down and %d up events, want one of each", downs, ups)
	}
	if up := daemonLines(s.mw, offset, "INFO", "clamd is up again"); len(up) != 1 {
		t.Errorf("%d \"clamd is up again\" lines, want one:\n%s", len(up), strings.Join(up, "\n"))
	}
}

// daemonLines returns the daemon log lines written after offset at level
// that contain text.
func daemonLines(mw *harness.Mailwarden, offset int, level, text string) []string {
	all := mw.Stderr()
	var out []string
	for _, line := range strings.Split(all[min(offset, len(all)):], "\n") {
		if r := harness.ParseRecord(line); r != nil && r["level"] == level && strings.Contains(line, text) {
			out = append(out, line)
		}
	}
	return out
}
