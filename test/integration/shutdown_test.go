package integration_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailwarden/test/harness"
)

// shutdownYAML turns greylisting off, so a message is accepted on its
// first attempt and a test can hold it between MAIL and end of data.
const shutdownYAML = "greylist: {enabled: false}"

// idleStopLimit bounds how long SIGTERM may take with only idle SMTP
// sessions open. Before issue 21 it took the whole 30s grace.
const idleStopLimit = 3 * time.Second

// TestShutdownClosesIdleSMTPSession: an SMTP client that has said EHLO
// and sends nothing more holds a milter session between messages. SIGTERM
// closes it at once and the daemon exits 0. Postfix then answers that
// SMTP session's next MAIL with milter_default_action (451 4.7.1, as the
// harness configures it), and every later MAIL in it, even after
// mailwarden is back; a new SMTP session is served normally.
func TestShutdownClosesIdleSMTPSession(t *testing.T) {
	t.Parallel()
	s := startStack(t, viaMilter, shutdownYAML)
	smtp := dialSMTP(t, s.pf.Addr, "127.0.121.1")
	smtp.require("EHLO idle.ext.test", "250")
	waitConnectionsOpen(t, s.mw, "milter", 1)

	start := time.Now()
	s.mw.Signal(t, syscall.SIGTERM)
	code, exited := s.mw.WaitExit(20 * time.Second)
	took := time.Since(start)
	t.Logf("SIGTERM with one idle SMTP session: exited=%v code=%d after %v", exited, code, took.Round(time.Millisecond))
	if !exited {
		t.Fatalf("mailwarden still running %v after SIGTERM with only an idle session", took)
	}
	if code != 0 || took > idleStopLimit {
		t.Errorf("exit %d after %v, want 0 within %v", code, took, idleStopLimit)
	}
	logStopLines(t, s.mw)

	// While mailwarden is down, a new SMTP session gets
	// milter_default_action.
	down := dialSMTP(t, s.pf.Addr, "127.0.121.3")
	down.require("EHLO down.ext.test", "250")
	if reply := down.cmd("MAIL FROM:<down@ext.test>"); !strings.HasPrefix(reply, "4") {
		t.Errorf("MAIL on a new SMTP session while mailwarden is down: %q, want a temporary failure", reply)
	} else {
		t.Logf("new SMTP session while mailwarden is down: MAIL %q", reply)
	}
	down.cmd("QUIT")

	s.mw.Start(t)
	reply := smtp.cmd("MAIL FROM:<late@ext.test>")
	t.Logf("Postfix's answer to MAIL on the SMTP session whose milter connection was closed: %q", reply)
	if !strings.HasPrefix(reply, "451 4.7.1 ") {
		t.Errorf("MAIL after the milter connection closed: %q, want Postfix's milter_default_action 451 4.7.1", reply)
	}
	// Postfix does not reconnect within an SMTP session: a later MAIL
	// gets the same answer.
	smtp.require("RSET", "250")
	if again := smtp.cmd("MAIL FROM:<later@ext.test>"); !strings.HasPrefix(again, "451 4.7.1 ") {
		t.Errorf("second MAIL on that SMTP session: %q, want 451 4.7.1 again", again)
	}
	smtp.cmd("QUIT")
	logPostfixMilterLines(t, s.pf)
	id := harness.UniqueID(t)
	s.send(t, "127.0.121.2", "after@ext.test", "user@dest.test", id).RequireDelivered(t)
	s.sink.WaitForID(t, id, 10*time.Second)
}

// TestShutdownWaitsForMessageInFlight: an SMTP client between RCPT and
// DATA holds a milter session in a message. SIGTERM leaves it running;
// once the client finishes DATA, the message is accepted and delivered
// once and the daemon exits 0.
func TestShutdownWaitsForMessageInFlight(t *testing.T) {
	t.Parallel()
	s := startStack(t, viaMilter, shutdownYAML)
	idle := dialSMTP(t, s.pf.Addr, "127.0.121.11")
	idle.require("EHLO idle.ext.test", "250")
	smtp := dialSMTP(t, s.pf.Addr, "127.0.121.12")
	smtp.require("EHLO busy.ext.test", "250")
	smtp.require("MAIL FROM:<busy@ext.test>", "250")
	smtp.require("RCPT TO:<user@dest.test>", "250")
	waitConnectionsOpen(t, s.mw, "milter", 2)

	start := time.Now()
	s.mw.Signal(t, syscall.SIGTERM)
	const hold = 1500 * time.Millisecond
	if code, exited := s.mw.WaitExit(hold); exited {
		t.Fatalf("mailwarden exited with %d %v after SIGTERM with a message in flight", code, time.Since(start))
	}
	t.Logf("still running %v after SIGTERM with a message in flight", hold)

	id := harness.UniqueID(t)
	smtp.require("DATA", "354")
	reply := smtp.cmd(fmt.Sprintf("From: busy@ext.test\r\nTo: user@dest.test\r\nSubject: in flight\r\nX-Test-ID: %s\r\n\r\nsent while mailwarden stops\r\n.", id))
	dataDone := time.Now()
	t.Logf("end of data during shutdown: %q", reply)
	if !strings.HasPrefix(reply, "250 ") {
		t.Errorf("end of data during shutdown: %q, want 250", reply)
	}
	code, exited := s.mw.WaitExit(10 * time.Second)
	t.Logf("exited=%v code=%d %v after SIGTERM, %v after end of data",
		exited, code, time.Since(start).Round(time.Millisecond), time.Since(dataDone).Round(time.Millisecond))
	if !exited || code != 0 {
		t.Errorf("after the message in flight: exited=%v code=%d, want exit 0", exited, code)
	}
	logStopLines(t, s.mw)
	s.sink.WaitForID(t, id, 10*time.Second)
	time.Sleep(500 * time.Millisecond) // a duplicate would follow at once
	if n := s.sink.Count(func(msg string) bool { return harness.HasHeader(msg, "X-Test-ID", id) }); n != 1 {
		t.Errorf("the message in flight reached the sink %d times, want once", n)
	}
}

// TestShutdownSecondSignalExitsAtOnce: while SIGTERM waits for a message
// in flight, a second SIGTERM ends the daemon at once. The client holding
// the message then gets a temporary failure from Postfix, so nothing is
// lost.
func TestShutdownSecondSignalExitsAtOnce(t *testing.T) {
	t.Parallel()
	s := startStack(t, viaMilter, shutdownYAML)
	smtp := dialSMTP(t, s.pf.Addr, "127.0.121.21")
	smtp.require("EHLO busy.ext.test", "250")
	smtp.require("MAIL FROM:<busy@ext.test>", "250")
	smtp.require("RCPT TO:<user@dest.test>", "250")
	waitConnectionsOpen(t, s.mw, "milter", 1)

	s.mw.Signal(t, syscall.SIGTERM)
	if code, exited := s.mw.WaitExit(time.Second); exited {
		t.Fatalf("mailwarden exited with %d after one SIGTERM with a message in flight", code)
	}
	start := time.Now()
	s.mw.Signal(t, syscall.SIGTERM)
	code, exited := s.mw.WaitExit(10 * time.Second)
	took := time.Since(start)
	t.Logf("second SIGTERM: exited=%v code=%d after %v", exited, code, took.Round(time.Millisecond))
	if !exited || took > idleStopLimit {
		t.Errorf("second SIGTERM: exited=%v after %v, want an exit within %v", exited, took, idleStopLimit)
	}
	if exited && code == 0 {
		t.Errorf("second SIGTERM cut a message off and exited 0; want a non-zero status")
	}
	logStopLines(t, s.mw)
	reply := smtp.cmd("DATA")
	t.Logf("Postfix's answer to DATA after the milter was cut off: %q", reply)
	if !strings.HasPrefix(reply, "4") {
		t.Errorf("DATA after the milter was cut off: %q, want a temporary failure", reply)
	}
	logPostfixMilterLines(t, s.pf)
}

// smtpSession is a raw SMTP conversation with Postfix that a test can
// hold at any point, as an idle or slow client does.
type smtpSession struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

// dialSMTP connects from client (a 127.x.y.z address) and reads the
// greeting.
func dialSMTP(t *testing.T, addr, client string) *smtpSession {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(client)}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("connecting to Postfix: %v", err)
	}
	t.Cleanup(func() { nc.Close() })
	s := &smtpSession{t: t, nc: nc, r: bufio.NewReader(nc)}
	s.require("", "220")
	return s
}

// cmd sends line (nothing when it is empty) and returns the reply, its
// lines joined by newlines.
func (s *smtpSession) cmd(line string) string {
	s.t.Helper()
	if line != "" {
		s.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(s.nc, line+"\r\n"); err != nil {
			s.t.Fatalf("sending %q: %v", firstLine(line), err)
		}
	}
	s.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	var lines []string
	for {
		l, err := s.r.ReadString('\n')
		if err != nil {
			s.t.Fatalf("reading the reply to %q: %v (got %q)", firstLine(line), err, lines)
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return strings.Join(lines, "\n")
		}
	}
}

// require is cmd, failing the test unless the reply starts with code.
func (s *smtpSession) require(line, code string) string {
	s.t.Helper()
	reply := s.cmd(line)
	if !strings.HasPrefix(reply, code) {
		s.t.Fatalf("%q: reply %q, want %s", firstLine(line), reply, code)
	}
	return reply
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\r\n")
	return first
}

// waitConnectionsOpen waits until the daemon's /metrics counts n open
// connections on listener: Postfix has opened its milter sessions.
func waitConnectionsOpen(t *testing.T, mw *harness.Mailwarden, listener string, n int) {
	t.Helper()
	re := regexp.MustCompile(`(?m)^mailwarden_connections_open\{listener="` + listener + `"\} (\d+)$`)
	got := -1
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + mw.HTTPAddr + "/metrics")
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if m := re.FindSubmatch(body); m != nil {
			if got, _ = strconv.Atoi(string(m[1])); got == n {
				return
			}
		}
	}
	t.Fatalf("%s connections open: %d, want %d", listener, got, n)
}

// logPostfixMilterLines shows what Postfix logged about its milter,
// once its milter-reject line has been written (postlogd writes a
// moment after the reply).
func logPostfixMilterLines(t *testing.T, pf *harness.Postfix) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(pf.Log(), "milter-reject:") && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	for _, line := range strings.Split(pf.Log(), "\n") {
		if strings.Contains(line, "milter") {
			t.Logf("postfix: %s", line)
		}
	}
}

// logStopLines shows what the daemon logged about stopping.
func logStopLines(t *testing.T, mw *harness.Mailwarden) {
	t.Helper()
	for _, line := range strings.Split(mw.Stderr(), "\n") {
		for _, key := range []string{"signal", "shutting down", "closed idle", "shutdown", "stopped"} {
			if strings.Contains(line, key) {
				t.Logf("daemon: %s", line)
				break
			}
		}
	}
}
