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

	"github.com/d--j/go-milter"

	"mailwarden/bench/load"
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
// the message then gets a temporary failure from Postfix at the end of
// its data, so nothing is lost.
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
	// mailwarden does not ask for the DATA event (SMFIP_NODATA), so
	// Postfix finds the milter gone when it passes the message on, and
	// answers the end of the data.
	smtp.require("DATA", "354")
	reply := smtp.cmd("Subject: cut off\r\n\r\nThe milter was stopped while this was on its way.\r\n.")
	t.Logf("Postfix's answer to the message after the milter was cut off: %q", reply)
	if !strings.HasPrefix(reply, "4") {
		t.Errorf("the message after the milter was cut off: %q, want a temporary failure", reply)
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

// heldTransaction opens a milter session from client and takes it to
// the point after RCPT, where an MTA waits while its SMTP client sends
// DATA: a transaction in flight.
func heldTransaction(t *testing.T, addr, client string) *milter.ClientSession {
	t.Helper()
	c := milter.NewClient("tcp", addr,
		milter.WithAction(milter.AllClientSupportedActionMasks),
		milter.WithReadTimeout(10*time.Second),
		milter.WithWriteTimeout(10*time.Second))
	macros := milter.NewMacroBag()
	macros.Set(milter.MacroMTAFQDN, "mx.test")
	macros.Set(milter.MacroQueueId, "4HELD"+strings.ReplaceAll(client, ".", ""))
	s, err := c.Session(macros)
	if err != nil {
		t.Fatalf("opening a milter session from %s: %v", client, err)
	}
	t.Cleanup(func() { s.Close() })
	for _, step := range []func() (*milter.Action, error){
		func() (*milter.Action, error) { return s.Conn("unknown", milter.FamilyInet, 40000, client) },
		func() (*milter.Action, error) { return s.Helo("held.ext.test") },
		func() (*milter.Action, error) { return s.Mail("<held@ext.test>", "") },
		func() (*milter.Action, error) { return s.Rcpt("<user@dest.test>", "") },
	} {
		if act, err := step(); err != nil || act.Type != milter.ActionContinue {
			t.Fatalf("held transaction from %s: %v %v", client, describe(act), err)
		}
	}
	return s
}

// finishTransaction sends a held transaction's message and returns the
// verdict at end of message.
func finishTransaction(s *milter.ClientSession) (*milter.Action, error) {
	for _, step := range []func() (*milter.Action, error){
		s.DataStart,
		func() (*milter.Action, error) { return s.HeaderField("Subject", "held across SIGTERM", nil) },
		s.HeaderEnd,
		func() (*milter.Action, error) { return s.BodyChunk([]byte("in flight\r\n")) },
	} {
		act, err := step()
		if err != nil {
			return nil, err
		}
		if act.Type != milter.ActionContinue && act.Type != milter.ActionSkip {
			return act, nil
		}
	}
	_, act, err := s.End()
	return act, err
}

// TestShutdownUnderLoad stops the daemon while bench/load keeps its
// milter and policy server busy and three milter transactions are held
// between RCPT and DATA. SIGTERM lets every transaction in flight end
// with its verdict, and the daemon exits 0 within idleStopLimit of the
// last; a second SIGTERM exits at once instead, with a non-zero status.
func TestShutdownUnderLoad(t *testing.T) {
	t.Parallel()
	for _, second := range []bool{false, true} {
		name := "one SIGTERM drains"
		if second {
			name = "second SIGTERM exits at once"
		}
		t.Run(name, func(t *testing.T) {
			mw := harness.StartMailwarden(t, binary(t), shutdownYAML)
			const loadConns = 3
			stopLoad := backgroundLoad(t, mw, loadConns)
			time.Sleep(time.Second)
			var held []*milter.ClientSession
			for i := range 3 {
				held = append(held, heldTransaction(t, mw.MilterAddr, fmt.Sprintf("127.0.122.%d", i+1)))
			}

			// The load stops starting transactions; those it has in
			// flight when the signal lands finish or are cut off and
			// counted.
			stopLoadStarting(t)
			start := time.Now()
			mw.Signal(t, syscall.SIGTERM)
			mr, pr := stopLoad()
			t.Logf("milter load up to SIGTERM: %v", mr)
			t.Logf("policy load up to SIGTERM: %v", pr)
			if code, exited := mw.WaitExit(time.Second); exited {
				t.Fatalf("exited with %d %v after SIGTERM with 3 transactions held", code, time.Since(start))
			}
			if second {
				start = time.Now()
				mw.Signal(t, syscall.SIGTERM)
				code, exited := mw.WaitExit(10 * time.Second)
				t.Logf("second SIGTERM: exited=%v code=%d after %v", exited, code, time.Since(start).Round(time.Millisecond))
				if !exited || time.Since(start) > idleStopLimit || code == 0 {
					t.Errorf("second SIGTERM: exited=%v code=%d after %v, want a non-zero exit within %v", exited, code, time.Since(start), idleStopLimit)
				}
				for i, s := range held {
					// Cut off: the MTA sees a broken session and applies
					// milter_default_action (tempfail): nothing is lost.
					if act, err := finishTransaction(s); err == nil {
						t.Errorf("held transaction %d answered %s after the daemon was killed", i, describe(act))
					}
				}
				logStopLines(t, mw)
				return
			}
			for i, s := range held {
				act, err := finishTransaction(s)
				if err != nil || act.Type != milter.ActionAccept && act.Type != milter.ActionContinue {
					t.Errorf("held transaction %d at end of message during shutdown: %s %v, want accepted", i, describe(act), err)
				}
			}
			finished := time.Now()
			code, exited := mw.WaitExit(10 * time.Second)
			t.Logf("exited=%v code=%d %v after SIGTERM, %v after the last transaction", exited, code,
				time.Since(start).Round(time.Millisecond), time.Since(finished).Round(time.Millisecond))
			if !exited || code != 0 || time.Since(finished) > idleStopLimit {
				t.Errorf("exited=%v code=%d %v after the last transaction, want exit 0 within %v", exited, code, time.Since(finished), idleStopLimit)
			}
			logStopLines(t, mw)
			// A load session waiting between transactions (after its
			// milter negotiation or HELO, or a policy connection between
			// requests) is idle and closed at once, as an idle Postfix
			// session is; its next command then fails, and an MTA
			// applies milter_default_action or retries the policy
			// request. That costs each load worker at most one failure,
			// never one inside a transaction.
			for name, r := range map[string]load.Result{"milter": mr, "policy": pr} {
				if r.N < 50 || r.Verdicts["error"] > loadConns {
					t.Errorf("%s load: %d transactions, %d failed (first: %s); want at most %d, one per idle session",
						name, r.N, r.Verdicts["error"], r.FirstError, loadConns)
				}
			}
			for _, step := range []string{"rcpt", "data", "header", "body", "end"} {
				if strings.Contains(mr.FirstError, "milter: "+step) {
					t.Errorf("a milter transaction in flight failed at SIGTERM: %s", mr.FirstError)
				}
			}
		})
	}
}
