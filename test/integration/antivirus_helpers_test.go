package integration_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"mailwarden/test/harness"
)

// Shared by the antivirus tests (issue 4).
const (
	// virusReply is what the sender of an infected message reads; the
	// name after it is clamd's ("Eicar-Test-Signature-Body.UNOFFICIAL").
	virusReply = "554 5.7.1 Virus found: Eicar"
	// scanUnavailable is the reply when no scan could be done.
	scanUnavailable = "451 4.7.1 Virus scan temporarily unavailable, please try again later"
	// oversizeReply is the reply to a message over the scan size limit
	// with oversize_action reject (RFC 3463 §3.4: X.3.4 too big for system).
	oversizeReply = "552 5.3.4 "
)

// clamdPool holds the clamd that most antivirus tests share: it starts
// in well under a second, but one per test would still be wasted work.
type clamdPool struct {
	once sync.Once
	c    *harness.Clamd
	err  error
}

var sharedClamd clamdPool

// get returns the shared clamd, starting it on first use.
func (p *clamdPool) get(t *testing.T) *harness.Clamd {
	t.Helper()
	harness.RequireClamd(t)
	p.once.Do(func() { p.c, p.err = harness.LaunchClamd(harness.ClamdConfig{}) })
	if p.err != nil {
		t.Fatalf("starting the shared clamd: %v", p.err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("shared clamd log (%s):\n%s", p.c.LogFile, tailText(p.c.Log(), 3000))
		}
	})
	return p.c
}

// close stops the shared clamd, if it was started; TestMain calls it.
func (p *clamdPool) close() {
	if p.c != nil {
		p.c.Close()
	}
}

func tailText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// avYAML is a mailwarden config for the antivirus tests: one site over
// internal (its only network, sending as school.test), greylisting off so
// that external test clients reach end of message, and an antivirus
// section with the given "key: value" lines after enabled and a 1s
// health interval.
func avYAML(internal string, avLines ...string) string {
	var av strings.Builder
	for _, l := range append([]string{"enabled: true", "health_interval: 1s"}, avLines...) {
		av.WriteString("  " + l + "\n")
	}
	return fmt.Sprintf(`internal_networks: [%q]
greylist: {enabled: false}
sites:
  - name: %s
    networks: [%q]
    contact: %q
    sender_domains: [school.test]
antivirus:
%s`, internal, siteName, internal, siteContact, av.String())
}

// servers renders antivirus.servers.
func servers(addrs ...string) string {
	q := make([]string, len(addrs))
	for i, a := range addrs {
		q[i] = fmt.Sprintf("%q", a)
	}
	return "servers: [" + strings.Join(q, ", ") + "]"
}

// sendFile sends a message from client with files attached and the
// X-Test-ID id.
func (s *stack) sendFile(t *testing.T, client, from, id string, files ...string) harness.SwaksResult {
	t.Helper()
	return harness.SendAttached(t, harness.Mail{Server: s.pf.Addr, Client: client, From: from, To: rcptTo, ID: id}, files...)
}

// requireVirusRefused checks that an infected message was refused at the
// end of data with the virus reply and never arrived, and returns the
// reply.
func (s *stack) requireVirusRefused(t *testing.T, res harness.SwaksResult, id string) string {
	t.Helper()
	res.RequireReply(t, "RCPT TO", "250 ")
	res.RequireDataReply(t, virusReply)
	if res.ExitCode != 26 {
		t.Errorf("swaks exit %d, want 26 (the message was refused at the end of data)", res.ExitCode)
	}
	s.neverArrived(t, id)
	return res.DataReply()
}

// antivirusDecision waits for the mail log's antivirus decision about a
// message from client whose action is action.
func antivirusDecision(t *testing.T, mw *harness.Mailwarden, client, action string) harness.Record {
	t.Helper()
	return mw.WaitDecision(t, func(r harness.Record) bool {
		return r["client"] == client && r["check"] == "antivirus" && r["action"] == action
	}, 10*time.Second)
}

// status runs `mailwarden status --json` and decodes it.
func status(t *testing.T, mw *harness.Mailwarden) any {
	t.Helper()
	res := mw.CLIWords(t, 1, "status", "--json")
	if res.ExitCode != 0 {
		t.Fatalf("mailwarden status --json: exit %d\nstdout:\n%s\nstderr:\n%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	var v any
	if err := json.Unmarshal([]byte(res.Stdout), &v); err != nil {
		t.Fatalf("mailwarden status --json is not JSON: %v\n%s", err, res.Stdout)
	}
	return v
}

// clamdStatus finds the object in status --json that describes the
// clamd server (as configured, "tcp:…" or "unix:…"); the envelope around
// it is the CLI's choice. It returns nil when there is none.
func clamdStatus(v any, server string) map[string]any {
	addr := server[strings.IndexByte(server, ':')+1:]
	var found map[string]any
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, x := range v {
				if s, ok := x.(string); ok && (s == server || s == addr) && found == nil {
					found = v
				}
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(v)
	return found
}

// waitClamdStatus polls status --json until the server's entry shows up
// as want and returns it.
func waitClamdStatus(t *testing.T, mw *harness.Mailwarden, server string, want bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st := status(t, mw)
		e := clamdStatus(st, server)
		if e != nil && field(e, "up") == fmt.Sprint(want) {
			return e
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(st, "", "  ")
			t.Fatalf("status --json does not show %s with up=%v within 15s:\n%s", server, want, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// requireLogLine waits for a daemon log line at WARN or ERROR written
// after offset that contains every one of words (case-insensitive) and
// at least one of any, if any are given.
func requireLogLine(t *testing.T, mw *harness.Mailwarden, offset int, words []string, any ...string) string {
	t.Helper()
	return mw.WaitStderr(t, offset, func(line string) bool {
		r := harness.ParseRecord(line)
		if r == nil || (r["level"] != "WARN" && r["level"] != "ERROR") {
			return false
		}
		l := strings.ToLower(line)
		for _, w := range words {
			if !strings.Contains(l, strings.ToLower(w)) {
				return false
			}
		}
		for _, w := range any {
			if strings.Contains(l, strings.ToLower(w)) {
				return true
			}
		}
		return len(any) == 0
	}, 10*time.Second)
}
