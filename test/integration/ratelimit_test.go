package integration_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/d--j/go-milter"

	"mailwarden/test/harness"
)

// TestRateLimitUser drives the milter port directly, as Postfix would
// after SMTP AUTH (the harness Postfix has no SASL): a user allowed three
// messages an hour gets the fourth tempfailed at RCPT, and the event log
// names the user.
func TestRateLimitUser(t *testing.T) {
	t.Parallel()
	// The client is outside the internal networks: authentication alone
	// makes its mail outbound.
	const client, user = "127.0.54.5", "alice"
	mw := harness.StartMailwarden(t, binary(t), `internal_networks: ["127.0.55.0/24"]
greylist: {delay: 1h}
rate_limits:
  user: {messages: 3, per: 1h}`)

	for i := 1; i <= 3; i++ {
		rcpt, final := milterTransaction(t, mw.MilterAddr, client, "alice@school.test", fmt.Sprintf("r%d@dest.test", i), user)
		if rcpt.StopProcessing() {
			t.Fatalf("message %d of 3 allowed: RCPT got %s, want continue", i, describe(rcpt))
		}
		if final == nil || (final.Type != milter.ActionAccept && final.Type != milter.ActionContinue) {
			t.Fatalf("message %d of 3 allowed: end of message got %s, want accept", i, describe(final))
		}
	}
	rcpt, _ := milterTransaction(t, mw.MilterAddr, client, "alice@school.test", "r4@dest.test", user)
	if !isTempfail451(rcpt) || !strings.Contains(rcpt.SMTPReply, "Too much mail from") {
		t.Fatalf("fourth message in the hour: RCPT got %s, want \"451 4.7.1 Too much mail from …\"", describe(rcpt))
	}
	if d := decision(t, mw, client, "ratelimit"); d["action"] != "tempfail" || d["user"] != user {
		t.Errorf("mail log decision = %v, want action=tempfail user=%s", d, user)
	}

	e := waitEvent(t, mw, func(e map[string]any) bool { return field(e, "user") == user }, "--kind", "rate_trip")
	if field(e, "kind") != "rate_trip" || field(e, "client") != client {
		t.Errorf("rate_trip event = %v, want kind rate_trip client %s user %s", e, client, user)
	}
	// The administrator's filters find it; another user's filter does not.
	if evs := events(t, mw, "--user", user, "--since", "2h", "--kind", "rate_trip"); len(evs) != 1 {
		t.Errorf("events --user %s --kind rate_trip lists %d events, want 1: %v", user, len(evs), evs)
	}
	if evs := events(t, mw, "--user", "bob", "--kind", "rate_trip"); len(evs) != 0 {
		t.Errorf("events --user bob lists %v, want nothing", evs)
	}
	res := mw.CLIWords(t, 1, "events", "--kind", "rate_trip")
	if res.ExitCode != 0 || !strings.Contains(res.Stdout, user) || !strings.Contains(res.Stdout, client) {
		t.Errorf("events --kind rate_trip (exit %d) does not show %s from %s:\n%s%s", res.ExitCode, user, client, res.Stdout, res.Stderr)
	}
}

// TestRateLimitClient is the per-client limit through real Postfix: an
// internal client allowed two messages an hour gets the third
// tempfailed, so nothing is lost.
func TestRateLimitClient(t *testing.T) {
	t.Parallel()
	const client = "127.0.56.5"
	s := startStack(t, viaMilter, `internal_networks: ["127.0.56.0/24"]
greylist: {delay: 1h}
rate_limits:
  client: {messages: 2, per: 1h}`)

	s.deliver(t, client, "staff@school.test")
	s.deliver(t, client, "staff@school.test")
	id := harness.UniqueID(t)
	requireRefused(t, s.send(t, client, "staff@school.test", rcptTo, id), "451 4.7.1 ", "Too much mail from")
	s.neverArrived(t, id)
	if d := decision(t, s.mw, client, "ratelimit"); d["action"] != "tempfail" {
		t.Errorf("mail log decision = %v, want action=tempfail", d)
	}
	waitEvent(t, s.mw, func(e map[string]any) bool { return field(e, "client") == client }, "--kind", "rate_trip", "--host", client)
}

// TestRateLimitLatchOnTrip is rate_limits.latch_on_trip through real
// Postfix: the trip is tempfailed and recorded as a rate_trip, as
// docs/outbound.md says, and the latch it sets is a latch event beside
// it. The client is blocked until someone clears the latch, so neither
// the trip's reply nor the latch's reply to later mail invites a retry.
func TestRateLimitLatchOnTrip(t *testing.T) {
	t.Parallel()
	const client, from = "127.0.67.5", "staff@school.test"
	s := startStack(t, viaMilter, siteYAML("127.0.67.0/24", `rate_limits:
  client: {messages: 2, per: 1h}
  latch_on_trip: true`))

	s.deliver(t, client, from)
	s.deliver(t, client, from)
	const over = "client " + client + " over 2 messages per 1h0m0s"
	id := harness.UniqueID(t)
	trip := requireRefused(t, s.send(t, client, from, rcptTo, id), "451 4.7.1 ",
		"Mail from "+client+" is blocked: "+over, "Contact "+siteContact)
	s.neverArrived(t, id)
	requireNoRetry(t, "the tripping message's reply", trip)

	l := waitLatch(t, s.mw, client)
	ref := field(l, "id")
	if !strings.Contains(trip, "ref "+ref) {
		t.Errorf("the tripping message's reply %q does not give the latch's ref %s", trip, ref)
	}
	if field(l, "rule") != "rate_client" || field(l, "reason") != over {
		t.Errorf("latch = %v, want rule rate_client and reason %q", l, over)
	}

	// The trip is a rate_trip event; the latch is a latch event of the
	// rate-limit check naming its ref.
	e := waitEvent(t, s.mw, func(e map[string]any) bool { return field(e, "client") == client },
		"--kind", "rate_trip", "--host", client)
	if field(e, "check") != "ratelimit" || field(e, "action") != "tempfail" {
		t.Errorf("rate_trip event = %v, want check ratelimit, action tempfail", e)
	}
	waitEvent(t, s.mw, func(e map[string]any) bool {
		return field(e, "check") == "ratelimit" && strings.Contains(field(e, "reason"), "ref "+ref)
	}, "--kind", "latch", "--host", client)
	res := s.mw.CLIWords(t, 1, "events", "--kind", "rate_trip")
	if res.ExitCode != 0 || !strings.Contains(res.Stdout, client) || strings.Contains(res.Stdout, "no events") {
		t.Errorf("events --kind rate_trip (exit %d) does not show the trip from %s:\n%s%s", res.ExitCode, client, res.Stdout, res.Stderr)
	}

	// Later mail meets the latch, whose reply says why without a retry
	// time frozen at the trip.
	id = harness.UniqueID(t)
	later := requireRefused(t, s.send(t, client, from, rcptTo, id), "550 5.7.1 ",
		"Mail from "+client+" is blocked: "+over+". Contact "+siteContact, "ref "+ref)
	s.neverArrived(t, id)
	requireNoRetry(t, "a later message's reply", later)
	waitEvent(t, s.mw, func(e map[string]any) bool { return field(e, "check") == "latch" },
		"--kind", "latch", "--host", client)
	if evs := events(t, s.mw, "--kind", "rate_trip", "--host", client); len(evs) != 1 {
		t.Errorf("events --kind rate_trip --host %s lists %d events, want the one trip: %v", client, len(evs), evs)
	}
}

// requireNoRetry fails the test if an SMTP reply invites a retry.
func requireNoRetry(t *testing.T, what, reply string) {
	t.Helper()
	if r := strings.ToLower(reply); strings.Contains(r, "retry") || strings.Contains(r, "try again") {
		t.Errorf("%s %q invites a retry, but the sender is latched until someone clears it", what, reply)
	}
}
