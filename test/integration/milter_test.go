package integration_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/d--j/go-milter"

	"mailwarden/test/harness"
)

// TestMilterGreylist puts mailwarden behind Postfix as a milter
// (smtpd_milters, protocol 6) and checks greylisting as a sending host
// and the administrator see it.
func TestMilterGreylist(t *testing.T) {
	t.Parallel()
	const internal, whitelisted = "127.0.2.20", "127.0.2.30"
	s := startStack(t, viaMilter, greylistYAML(greylistDelay, internal+"/32", whitelisted))

	t.Run("new triplet is delayed then passes", func(t *testing.T) {
		t.Parallel()
		s.greylistSequence(t, "milter", "127.0.1.5", "first@ext.test", "user1@dest.test")
	})
	t.Run("internal client is not delayed", func(t *testing.T) {
		t.Parallel()
		s.requireSkipped(t, internal, "staff@ext.test", "user2@dest.test", "greylist: skipped: internal")
	})
	t.Run("whitelisted client is not delayed", func(t *testing.T) {
		t.Parallel()
		s.requireSkipped(t, whitelisted, "partner@ext.test", "user3@dest.test", "greylist: skipped: whitelisted client")
	})
	t.Run("authenticated client is not delayed", func(t *testing.T) {
		t.Parallel()
		const client = "127.0.3.5"
		rcpt, final := milterTransaction(t, s.mw.MilterAddr, client, "roamer@ext.test", "user4@dest.test", "alice")
		if rcpt.StopProcessing() {
			t.Fatalf("RCPT from an authenticated client got %s, want continue", describe(rcpt))
		}
		if final == nil || (final.Type != milter.ActionAccept && final.Type != milter.ActionContinue) {
			t.Fatalf("end of message got %s, want accept", describe(final))
		}
		d := s.mw.WaitDecision(t, func(r harness.Record) bool {
			return r["client"] == client && strings.HasPrefix(r["reason"], "greylist: skipped")
		}, 5*time.Second)
		if !strings.HasPrefix(d["reason"], "greylist: skipped: authenticated") || d["user"] != "alice" {
			t.Errorf("mail log decision = %v, want reason \"greylist: skipped: authenticated…\" user=alice", d)
		}
	})
	t.Run("unauthenticated control is delayed", func(t *testing.T) {
		t.Parallel()
		const client = "127.0.3.6"
		rcpt, _ := milterTransaction(t, s.mw.MilterAddr, client, "stranger@ext.test", "user5@dest.test", "")
		if !isTempfail451(rcpt) {
			t.Fatalf("RCPT from an unauthenticated new client got %s, want 451 4.7.1", describe(rcpt))
		}
		d := s.mw.WaitDecision(t, func(r harness.Record) bool {
			return r["client"] == client && r["action"] == "tempfail"
		}, 5*time.Second)
		if d["check"] != "greylist" || d["user"] != "" {
			t.Errorf("mail log decision = %v, want check=greylist user=\"\"", d)
		}
	})
}

// milterTransaction plays an MTA against the milter at addr: connect from
// client, HELO, MAIL (with {auth_authen} set when authUser is not empty,
// as Postfix sends it at MAIL), RCPT and, if RCPT was not refused, the
// message. It returns the RCPT action and the end-of-message action.
func milterTransaction(t *testing.T, addr, client, from, to, authUser string) (rcpt, final *milter.Action) {
	t.Helper()
	c := milter.NewClient("tcp", addr,
		milter.WithAction(milter.AllClientSupportedActionMasks),
		milter.WithReadTimeout(10*time.Second),
		milter.WithWriteTimeout(10*time.Second))
	macros := milter.NewMacroBag()
	macros.Set(milter.MacroMTAFQDN, "mx.test")
	macros.Set(milter.MacroDaemonName, "smtpd")
	macros.Set(milter.MacroClientAddr, client)
	macros.Set(milter.MacroClientName, "unknown")
	if authUser != "" {
		macros.Set(milter.MacroAuthType, "PLAIN")
		macros.Set(milter.MacroAuthAuthen, authUser)
	}
	s, err := c.Session(macros)
	if err != nil {
		t.Fatalf("opening a milter session: %v", err)
	}
	defer s.Close()

	steps := []struct {
		name string
		do   func() (*milter.Action, error)
	}{
		{"connect", func() (*milter.Action, error) { return s.Conn("unknown", milter.FamilyInet, 40000, client) }},
		{"helo", func() (*milter.Action, error) { return s.Helo("client.ext.test") }},
		{"mail", func() (*milter.Action, error) { return s.Mail(from, "") }},
	}
	for _, st := range steps {
		act, err := st.do()
		if err != nil {
			t.Fatalf("milter %s: %v", st.name, err)
		}
		if act.Type != milter.ActionContinue {
			t.Fatalf("milter %s got %s, want continue", st.name, describe(act))
		}
	}
	macros.Set(milter.MacroQueueId, "4TESTQ"+strings.ReplaceAll(client, ".", ""))
	rcpt, err = s.Rcpt(to, "")
	if err != nil {
		t.Fatalf("milter rcpt: %v", err)
	}
	if rcpt.StopProcessing() {
		return rcpt, nil
	}
	for _, st := range []struct {
		name string
		do   func() (*milter.Action, error)
	}{
		{"data", s.DataStart},
		{"header", func() (*milter.Action, error) { return s.HeaderField("From", "<"+from+">", nil) }},
		{"header", func() (*milter.Action, error) { return s.HeaderField("To", "<"+to+">", nil) }},
		{"header", func() (*milter.Action, error) { return s.HeaderField("Subject", "milter test", nil) }},
		{"end of headers", s.HeaderEnd},
		{"body", func() (*milter.Action, error) { return s.BodyChunk([]byte("hello\r\n")) }},
	} {
		act, err := st.do()
		if err != nil {
			t.Fatalf("milter %s: %v", st.name, err)
		}
		// Skip asks for no more body; the MTA goes on to end of message.
		if act.Type != milter.ActionContinue && act.Type != milter.ActionSkip {
			return rcpt, act
		}
	}
	_, final, err = s.End()
	if err != nil {
		t.Fatalf("milter end of message: %v", err)
	}
	return rcpt, final
}

// isTempfail451 reports whether a milter action refuses with 451 4.7.1.
func isTempfail451(a *milter.Action) bool {
	return a != nil && a.Type == milter.ActionRejectWithCode && a.SMTPCode == 451 &&
		strings.HasPrefix(a.SMTPReply, "451 4.7.1 ")
}

func describe(a *milter.Action) string {
	if a == nil {
		return "no action"
	}
	if a.Type == milter.ActionRejectWithCode {
		return fmt.Sprintf("reply %q", a.SMTPReply)
	}
	names := map[milter.ActionType]string{
		milter.ActionAccept: "accept", milter.ActionContinue: "continue", milter.ActionDiscard: "discard",
		milter.ActionReject: "reject", milter.ActionTempFail: "tempfail", milter.ActionSkip: "skip",
	}
	if n, ok := names[a.Type]; ok {
		return n
	}
	return fmt.Sprintf("action type %d", a.Type)
}
