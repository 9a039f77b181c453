// Package integration_test runs the built mailwarden binary beside a real
// Postfix on loopback and sends mail with swaks, checking what a mail
// administrator would check: the SMTP replies, what reached the final
// destination, the mail log and the admin commands. Distinct 127.x.y.z
// source addresses stand for distinct hosts; each test has its own
// mailwarden, Postfix and sink, so tests run in parallel.
//
// Run as root after test/setup.sh: go test ./test/integration/
// Without root or the programs the tests skip, except under CI=true.
package integration_test

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailwarden/test/harness"
)

// build holds the mailwarden binary built once by TestMain.
type build struct {
	bin string
	err error
}

var built build

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mwbin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating build directory:", err)
		os.Exit(1)
	}
	// Without root the tests skip anyway; do not spend a build on it.
	if os.Geteuid() == 0 || harness.UnderCI() {
		built.bin, built.err = harness.Build(dir)
	}
	code := m.Run()
	sharedClamd.close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// binary returns the built mailwarden, after checking that the test can
// run here at all.
func binary(t testing.TB) string {
	t.Helper()
	harness.RequirePostfix(t)
	if built.err != nil {
		t.Fatalf("building mailwarden: %v", built.err)
	}
	return built.bin
}

// greylistDelay is the test-short greylist delay: long enough that an
// immediate retry is still early, short enough to wait out.
const greylistDelay = 2 * time.Second

// greylistYAML is the mailwarden config the greylist tests share: one
// internal client, one whitelisted client, everyone else greylisted.
func greylistYAML(delay time.Duration, internal, whitelisted string, extra ...string) string {
	return fmt.Sprintf(`internal_networks: [%q]
greylist:
  delay: %s
  whitelist_clients: [%q]
%s`, internal, delay, whitelisted, strings.Join(extra, "\n"))
}

// Front ends Postfix consults.
const (
	viaMilter = 1 << iota
	viaPolicy
)

// stack is one mailwarden behind one Postfix relaying to one sink.
type stack struct {
	mw   *harness.Mailwarden
	pf   *harness.Postfix
	sink *harness.Sink
}

func startStack(t *testing.T, fronts int, mwYAML string) *stack {
	t.Helper()
	bin := binary(t)
	s := &stack{sink: harness.StartSink(t)}
	s.mw = harness.StartMailwarden(t, bin, mwYAML)
	cfg := harness.PostfixConfig{SinkPort: s.sink.Port}
	if fronts&viaMilter != 0 {
		cfg.Milter = s.mw.MilterAddr
	}
	if fronts&viaPolicy != 0 {
		cfg.Policy = s.mw.PolicyAddr
	}
	s.pf = harness.StartPostfix(t, cfg)
	return s
}

// send sends one message from client through Postfix.
func (s *stack) send(t *testing.T, client, from, to, id string) harness.SwaksResult {
	t.Helper()
	return harness.Send(t, harness.Mail{Server: s.pf.Addr, Client: client, From: from, To: to, ID: id})
}

// requireGreylisted checks that the RCPT got the greylist reply and the
// mail log recorded a greylist tempfail for this client from frontend.
func (s *stack) requireGreylisted(t *testing.T, res harness.SwaksResult, frontend, client string) {
	t.Helper()
	res.RequireReply(t, "RCPT TO", "451 4.7.1 ")
	if res.ExitCode != 24 {
		t.Errorf("swaks exit %d, want 24 (every recipient refused)", res.ExitCode)
	}
	d := s.mw.WaitDecision(t, func(r harness.Record) bool {
		return r["client"] == client && r["action"] == "tempfail" && r["frontend"] == frontend
	}, 5*time.Second)
	if d["check"] != "greylist" || d["stage"] != "rcpt" || !strings.HasPrefix(d["reply"], "451 4.7.1 ") {
		t.Errorf("mail log decision = %v, want check=greylist stage=rcpt reply=\"451 4.7.1 …\"", d)
	}
}

// requireSkipped checks that mail from client was delivered undelayed,
// without an X-Greylist header, and that the mail log says why.
func (s *stack) requireSkipped(t *testing.T, client, from, to, reasonPrefix string) {
	t.Helper()
	id := harness.UniqueID(t)
	s.send(t, client, from, to, id).RequireDelivered(t)
	msg := s.sink.WaitForID(t, id, 10*time.Second)
	if h := harness.HeaderValues(msg, "X-Greylist"); len(h) != 0 {
		t.Errorf("undelayed mail carries X-Greylist %q", h)
	}
	d := s.mw.WaitDecision(t, func(r harness.Record) bool {
		return r["client"] == client && strings.HasPrefix(r["reason"], "greylist: skipped")
	}, 5*time.Second)
	if d["action"] != "continue" || !strings.HasPrefix(d["reason"], reasonPrefix) {
		t.Errorf("mail log decision = %v, want action=continue reason=%q…", d, reasonPrefix)
	}
}

// xGreylist matches the header value mailwarden adds to delayed mail:
// "delayed N seconds by mailwarden at HOST; DATE".
var xGreylist = regexp.MustCompile(`^delayed (\d+) seconds by mailwarden at mw\.test; \S.*$`)

// greylistSequence is the RFC 6647 exchange for one new triplet: refused
// with 451 4.7.1, still refused on an early retry, accepted after the
// delay and delivered with an X-Greylist header naming the delay.
func (s *stack) greylistSequence(t *testing.T, frontend, client, from, to string) {
	t.Helper()
	// The triplet is first seen somewhere between first and seen: an
	// early retry is judged only if it comes within the delay of first,
	// and the retry that must pass waits for the delay after seen (swaks
	// can take most of a second to start on a busy machine).
	first := time.Now()
	id1 := harness.UniqueID(t)
	s.requireGreylisted(t, s.send(t, client, from, to, id1), frontend, client)
	seen := time.Now()

	early := s.send(t, client, from, to, harness.UniqueID(t))
	if time.Since(first) < greylistDelay {
		early.RequireReply(t, "RCPT TO", "451 4.7.1 ")
	} else {
		t.Logf("early retry came %v after the first attempt; not judging it", time.Since(first))
	}

	time.Sleep(time.Until(seen.Add(greylistDelay + 500*time.Millisecond)))
	id2 := harness.UniqueID(t)
	s.send(t, client, from, to, id2).RequireDelivered(t)
	msg := s.sink.WaitForID(t, id2, 10*time.Second)
	h := harness.HeaderValues(msg, "X-Greylist")
	if len(h) != 1 {
		t.Fatalf("delivered mail has %d X-Greylist headers %q, want 1:\n%s", len(h), h, msg)
	}
	m := xGreylist.FindStringSubmatch(h[0])
	if m == nil {
		t.Fatalf("X-Greylist: %s\ndoes not match %s", h[0], xGreylist)
	}
	if n, _ := strconv.Atoi(m[1]); n < int(greylistDelay/time.Second) {
		t.Errorf("X-Greylist says delayed %d seconds; the delay is %v", n, greylistDelay)
	}
	if n := s.sink.Count(func(msg string) bool { return harness.HasHeader(msg, "X-Test-ID", id1) }); n != 0 {
		t.Errorf("the refused first attempt reached the sink %d times", n)
	}
}
