package harness

import (
	"strings"
	"testing"
	"time"
)

// TestPostfixRelaysToSink checks the harness itself, without mailwarden:
// a private Postfix accepts mail for dest.test from a 127.x client and
// relays it to the sink, and a second instance runs beside the first.
func TestPostfixRelaysToSink(t *testing.T) {
	sink := StartSink(t)
	pf1 := StartPostfix(t, PostfixConfig{SinkPort: sink.Port})
	pf2 := StartPostfix(t, PostfixConfig{SinkPort: sink.Port})
	for i, pf := range []*Postfix{pf1, pf2} {
		id := UniqueID(t)
		res := Send(t, Mail{Server: pf.Addr, Client: "127.0.9." + string(rune('1'+i)), From: "a@ext.test", To: "u@dest.test", ID: id})
		res.RequireDelivered(t)
		msg := sink.WaitForID(t, id, 10*time.Second)
		if got := HeaderValues(msg, "X-Rcpt-Args"); len(got) != 1 || !strings.HasPrefix(got[0], "<u@dest.test>") {
			t.Errorf("sink saw RCPT args %q, want <u@dest.test>", got)
		}
		if !strings.Contains(msg, "[127.0.9."+string(rune('1'+i))+"]") {
			t.Errorf("relayed message lacks the client address in Received:\n%s", msg)
		}
		if !strings.Contains(pf.Log(), "status=sent") {
			t.Errorf("Postfix log of instance %d does not record the delivery:\n%s", i+1, pf.Log())
		}
	}
}

func TestSwaksReply(t *testing.T) {
	out := strings.Join([]string{
		"=== Connected to 127.0.0.1.",
		"<-  220 mx.test ESMTP Postfix",
		" -> EHLO client.ext.test",
		"<-  250-mx.test",
		"<-  250 CHUNKING",
		" -> MAIL FROM:<a@ext.test>",
		"<-  250 2.1.0 Ok",
		" -> RCPT TO:<u@dest.test>",
		"<** 451 4.7.1 <u@dest.test>: Recipient address rejected: Greylisted",
		" -> QUIT",
		"<-  221 2.0.0 Bye",
	}, "\n")
	r := SwaksResult{Output: out, ExitCode: 24}
	for cmd, want := range map[string]string{
		"EHLO":      "250 CHUNKING",
		"MAIL FROM": "250 2.1.0 Ok",
		"RCPT TO":   "451 4.7.1 <u@dest.test>: Recipient address rejected: Greylisted",
		"DATA":      "",
		".":         "",
	} {
		if got := r.Reply(cmd); got != want {
			t.Errorf("Reply(%q) = %q, want %q", cmd, got, want)
		}
	}
}

func TestParseRecord(t *testing.T) {
	line := `time=2026-01-02T03:04:05.000Z level=INFO msg=decision frontend=milter stage=rcpt action=tempfail check=greylist client=127.0.0.5 user="" reply="451 4.7.1 Greylisted, please try again in 2s" reason="greylist: new \"triplet\""`
	r := ParseRecord(line)
	want := Record{
		"time": "2026-01-02T03:04:05.000Z", "level": "INFO", "msg": "decision", "frontend": "milter",
		"stage": "rcpt", "action": "tempfail", "check": "greylist", "client": "127.0.0.5", "user": "",
		"reply": "451 4.7.1 Greylisted, please try again in 2s", "reason": `greylist: new "triplet"`,
	}
	if len(r) != len(want) {
		t.Fatalf("ParseRecord gave %d keys, want %d: %v", len(r), len(want), r)
	}
	for k, v := range want {
		if r[k] != v {
			t.Errorf("%s = %q, want %q", k, r[k], v)
		}
	}
	for _, bad := range []string{"", "# harness: start 1 at now", "panic: boom", `msg="unterminated`} {
		if r := ParseRecord(bad); r != nil {
			t.Errorf("ParseRecord(%q) = %v, want nil", bad, r)
		}
	}
}

func TestHeaderValues(t *testing.T) {
	msg := "X-Client-Addr: 127.0.0.1\nX-Greylist: delayed 3 seconds by mailwarden\n\tat mw.test; Sat, 1 Jan 2026\nSubject: hi\n\nX-Greylist: in body\n"
	got := HeaderValues(msg, "x-greylist")
	if len(got) != 1 || got[0] != "delayed 3 seconds by mailwarden at mw.test; Sat, 1 Jan 2026" {
		t.Errorf("HeaderValues = %q", got)
	}
}

// TestOverrideParams checks that an Extra line replaces the harness's own
// line for the same parameter instead of repeating it: Postfix warns
// about every repeated parameter, and postlogd can block on those
// warnings for good.
func TestOverrideParams(t *testing.T) {
	got := overrideParams([]string{"a = 1", "b = 2", "c = 3", "b = 20", "a=10", "d = 4"})
	want := []string{"a=10", "b = 20", "c = 3", "d = 4"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("overrideParams = %q, want %q", got, want)
	}
}
