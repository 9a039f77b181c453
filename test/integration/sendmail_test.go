package integration_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailwarden/test/harness"
)

// TestSendmail is issue 13 item 4: mailwarden as the milter of a real
// Sendmail (Debian 12's, unpacked by test/setup.sh), with sendmail.cf
// built by sendmail-cf's m4 macros from a sendmail.mc holding
// docs/sendmail.md's snippet, read from the docs so docs and test cannot
// drift; only the port changes. An external client is greylisted and
// accepted after the delay; an internal client forging its sender domain
// is refused and latched.
func TestSendmail(t *testing.T) {
	t.Parallel()
	harness.RequireSendmail(t)
	snippet := readSendmailSnippet(t)

	sink := harness.StartSink(t)
	mw := harness.StartMailwarden(t, binary(t), sendmailMailwardenYAML)
	sm := harness.StartSendmail(t, harness.SendmailConfig{
		SinkPort: sink.Port,
		// The internal network relays anywhere; anyone may send to
		// dest.test, the domain this MX accepts mail for.
		RelayFrom: []string{sendmailInternalPrefix, "dest.test"},
		Mc:        sendmailSnippetFor(t, snippet, mw.MilterAddr),
	})
	send := func(t *testing.T, client, from string) (harness.SwaksResult, string) {
		t.Helper()
		id := harness.UniqueID(t)
		return harness.Send(t, harness.Mail{Server: sm.Addr, Client: client, Helo: "client.example.test", From: from, To: rcptTo, ID: id}), id
	}

	t.Run("greylisting of an external client", func(t *testing.T) {
		t.Parallel()
		const client = "127.20.0.9"
		res, id1 := send(t, client, "news@ext.test")
		// The greylist entry is at most as old as the refusal: time the
		// delay from here, not from before the connection, which
		// sendmail may take a while to get to RCPT with.
		refused := time.Now()
		requireRefused(t, res, "451 4.7.1 ", "Greylisted")
		if d := decision(t, mw, client, "greylist"); d["action"] != "tempfail" || d["frontend"] != "milter" || d["stage"] != "rcpt" {
			t.Errorf("mail log decision = %v, want action=tempfail frontend=milter stage=rcpt", d)
		}

		time.Sleep(time.Until(refused.Add(greylistDelay + 500*time.Millisecond)))
		res, id2 := send(t, client, "news@ext.test")
		res.RequireDelivered(t)
		msg := sink.WaitForID(t, id2, 15*time.Second)
		if h := harness.HeaderValues(msg, "X-Greylist"); len(h) != 1 || !xGreylist.MatchString(h[0]) {
			t.Errorf("delivered mail has X-Greylist %q, want one matching %s", h, xGreylist)
		}
		// Sendmail relayed it: below the sink's own Received line is
		// Sendmail's, "by mx.test (8.17.1.9/8.17.1.9) with ESMTP id …".
		if rcvd := harness.HeaderValues(msg, "Received"); len(rcvd) < 2 || !strings.Contains(rcvd[1], "by mx.test (8.") {
			t.Errorf("the delivered message's Received lines %q do not show Sendmail's", rcvd)
		}
		neverReached(t, sink, id1)
	})

	t.Run("forged sender from an internal client", func(t *testing.T) {
		t.Parallel()
		const client = "127.10.0.5"
		res, id := send(t, client, "worm@hotmail.com")
		requireRefused(t, res, "550 5.7.1 ", "hotmail.com")
		if d := decision(t, mw, client, "sender"); d["action"] != "reject" || d["frontend"] != "milter" {
			t.Errorf("mail log decision = %v, want action=reject frontend=milter", d)
		}
		if l := waitLatch(t, mw, client); !strings.Contains(field(l, "evidence"), "hotmail.com") {
			t.Errorf("latch = %v, want evidence naming hotmail.com", l)
		}
		// Latched: legitimate mail from it is refused too.
		res, id2 := send(t, client, "staff@school.test")
		requireRefused(t, res, "550 5.7.1 ")
		neverReached(t, sink, id)
		neverReached(t, sink, id2)
	})

	t.Run("legitimate mail from an internal client", func(t *testing.T) {
		t.Parallel()
		// Internal mail is not greylisted, and the RELAY_DOMAIN prefix
		// lets it relay to any domain.
		const client = "127.10.0.6"
		id := harness.UniqueID(t)
		harness.Send(t, harness.Mail{Server: sm.Addr, Client: client, From: "staff@school.test", To: "friend@elsewhere.test", ID: id}).RequireDelivered(t)
		sink.WaitForID(t, id, 15*time.Second)
	})

	t.Run("relaying is refused before mailwarden is asked", func(t *testing.T) {
		t.Parallel()
		// docs/sendmail.md: sendmail's relaying rules come first, so an
		// external client relaying elsewhere never reaches the milter.
		const client = "127.20.0.10"
		res := harness.Send(t, harness.Mail{Server: sm.Addr, Client: client, From: "x@ext.test", To: "friend@elsewhere.test", ID: harness.UniqueID(t)})
		requireRefused(t, res, "550 5.7.1 ", "Relaying denied")
		for _, d := range mw.Decisions() {
			if d["client"] == client {
				t.Errorf("mailwarden was asked about a relay attempt sendmail refused: %v", d)
			}
		}
	})

	t.Run("F=T tempfails while mailwarden is unreachable", func(t *testing.T) {
		t.Parallel()
		// The same snippet pointing at a port nothing listens on.
		down := harness.StartSendmail(t, harness.SendmailConfig{
			SinkPort:  sink.Port,
			RelayFrom: []string{sendmailInternalPrefix, "dest.test"},
			Mc:        sendmailSnippetFor(t, snippet, fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))),
		})
		id := harness.UniqueID(t)
		res := harness.Send(t, harness.Mail{Server: down.Addr, Client: "127.20.0.11", From: "news@ext.test", To: rcptTo, ID: id})
		requireRefused(t, res, "451 4.3.2 ")
		neverReached(t, sink, id)
	})
}

// The internal network, as mailwarden's internal_networks and site, and
// as the RELAY_DOMAIN prefix Sendmail lets relay: the same clients
// (docs/sendmail.md).
const (
	sendmailInternal       = "127.10.0.0/16"
	sendmailInternalPrefix = "127.10"
)

var sendmailMailwardenYAML = fmt.Sprintf(`internal_networks: [%q]
greylist:
  delay: %s
sites:
  - name: %s
    networks: [%q]
    contact: %q
    sender_domains: [school.test]`, sendmailInternal, greylistDelay, siteName, sendmailInternal, siteContact)

// readSendmailSnippet returns the code block between the
// sendmail-snippet markers of docs/sendmail.md.
func readSendmailSnippet(t *testing.T) string {
	t.Helper()
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "docs", "sendmail.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "<!-- sendmail-snippet:begin -->\n")
	if !ok {
		t.Fatal("docs/sendmail.md has no <!-- sendmail-snippet:begin --> marker")
	}
	code, _, ok := strings.Cut(rest, "<!-- sendmail-snippet:end -->")
	if !ok {
		t.Fatal("docs/sendmail.md has no <!-- sendmail-snippet:end --> marker")
	}
	code = strings.TrimSpace(code)
	if !strings.HasPrefix(code, "```\n") || !strings.HasSuffix(code, "\n```") {
		t.Fatalf("the sendmail-snippet markers in docs/sendmail.md do not hold one code block:\n%s", code)
	}
	return strings.TrimSuffix(strings.TrimPrefix(code, "```\n"), "```")
}

// sendmailSnippetFor returns the snippet with the milter at addr instead
// of the documented 127.0.0.1:10029: the one change the test makes.
func sendmailSnippetFor(t *testing.T, snippet, addr string) string {
	t.Helper()
	const documented = "S=inet:10029@127.0.0.1,"
	if n := strings.Count(snippet, documented); n != 1 {
		t.Fatalf("docs/sendmail.md's snippet names %s %d times, want once", documented, n)
	}
	host, port := splitAddr(t, addr)
	return strings.Replace(snippet, documented, "S=inet:"+strconv.Itoa(port)+"@"+host+",", 1)
}
