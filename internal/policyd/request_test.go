package policyd

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"mailwarden/internal/policy"
	"mailwarden/internal/reply"
)

func TestToRequest(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	full := Attrs{
		"request": "smtpd_access_policy", "protocol_state": "RCPT", "protocol_name": "ESMTP",
		"client_address": "192.0.2.10", "client_name": "mail.example.net",
		"reverse_client_name": "rev.example.net", "helo_name": "helo.example.net",
		"sender": "alice@example.net", "recipient": "bob@example.org",
		"sasl_username": "alice", "queue_id": "8045F2AB23", "recipient_count": "0",
	}
	with := func(kv ...string) Attrs {
		a := Attrs{}
		for k, v := range full {
			a[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "<delete>" {
				delete(a, kv[i])
			} else {
				a[kv[i]] = kv[i+1]
			}
		}
		return a
	}
	base := policy.Request{
		Stage: policy.StageRcpt, Time: now, Frontend: "policy",
		ClientIP: netip.MustParseAddr("192.0.2.10"), ClientName: "mail.example.net",
		Helo: "helo.example.net", Sender: "alice@example.net", Recipient: "bob@example.org",
		Recipients: []string{"bob@example.org"}, SASLUser: "alice", QueueID: "8045F2AB23",
	}
	change := func(f func(r *policy.Request)) policy.Request {
		r := base
		f(&r)
		return r
	}
	tests := []struct {
		name   string
		attrs  Attrs
		want   policy.Request
		wantOK bool
	}{
		{"full RCPT request", full, base, true},
		{"CONNECT", with("protocol_state", "CONNECT"), change(func(r *policy.Request) { r.Stage = policy.StageConnect }), true},
		{"EHLO", with("protocol_state", "EHLO"), change(func(r *policy.Request) { r.Stage = policy.StageHelo }), true},
		{"HELO", with("protocol_state", "HELO"), change(func(r *policy.Request) { r.Stage = policy.StageHelo }), true},
		{"MAIL", with("protocol_state", "MAIL"), change(func(r *policy.Request) { r.Stage = policy.StageMail }), true},
		{"DATA", with("protocol_state", "DATA"), change(func(r *policy.Request) { r.Stage = policy.StageData }), true},
		{"END-OF-MESSAGE", with("protocol_state", "END-OF-MESSAGE"), change(func(r *policy.Request) { r.Stage = policy.StageEOM }), true},
		{"lowercase state", with("protocol_state", "rcpt"), base, true},
		{"VRFY is not checked", with("protocol_state", "VRFY"), policy.Request{}, false},
		{"ETRN is not checked", with("protocol_state", "ETRN"), policy.Request{}, false},
		{"unknown state", with("protocol_state", "BDAT"), policy.Request{}, false},
		{"no state with recipient is RCPT", with("protocol_state", "<delete>"), base, true},
		{"no state and no recipient", with("protocol_state", "<delete>", "recipient", "<delete>"), policy.Request{}, false},
		{"client_address unknown", with("client_address", "unknown"),
			change(func(r *policy.Request) { r.ClientIP = netip.Addr{} }), true},
		{"client_address garbage", with("client_address", "1.2.3.4.5"),
			change(func(r *policy.Request) { r.ClientIP = netip.Addr{} }), true},
		{"IPv6", with("client_address", "2001:db8::25"),
			change(func(r *policy.Request) { r.ClientIP = netip.MustParseAddr("2001:db8::25") }), true},
		{"IPv4-mapped IPv6 is unmapped", with("client_address", "::ffff:192.0.2.10"), base, true},
		{"client_name missing uses reverse_client_name", with("client_name", "<delete>"),
			change(func(r *policy.Request) { r.ClientName = "rev.example.net" }), true},
		{"no names at all", with("client_name", "<delete>", "reverse_client_name", "<delete>"),
			change(func(r *policy.Request) { r.ClientName = "unknown" }), true},
		{"null sender", with("sender", ""), change(func(r *policy.Request) { r.Sender = "" }), true},
		{"Exim-style bracketed addresses", with("sender", "<alice@example.net>", "recipient", "<bob@example.org>"), base, true},
		{"EOM with several recipients has none", with("protocol_state", "END-OF-MESSAGE", "recipient", "", "recipient_count", "3"),
			change(func(r *policy.Request) {
				r.Stage, r.Recipient, r.Recipients = policy.StageEOM, "", nil
			}), true},
		{"no SASL", with("sasl_username", ""), change(func(r *policy.Request) { r.SASLUser = "" }), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ToRequest(tt.attrs, now)
			if ok != tt.wantOK {
				t.Fatalf("ok=%v, want %v", ok, tt.wantOK)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestFormatAction(t *testing.T) {
	long := make([]byte, 1000)
	for i := range long {
		long[i] = 'x'
	}
	tests := []struct {
		name string
		v    policy.Verdict
		want string
	}{
		{"continue", policy.Verdict{Action: policy.Continue}, "DUNNO"},
		{"accept is DUNNO, never OK", policy.Verdict{Action: policy.Accept, Text: "fine"}, "DUNNO"},
		{"header becomes PREPEND", policy.Verdict{Action: policy.Continue,
			Headers: []policy.Header{{Name: "X-Greylist", Value: "delayed 300 seconds by mailwarden"}, {Name: "X-Other", Value: "b"}}},
			"PREPEND X-Greylist: delayed 300 seconds by mailwarden"},
		{"invalid header name is skipped", policy.Verdict{Action: policy.Accept,
			Headers: []policy.Header{{Name: "Bad Name", Value: "a"}, {Name: "X-Ok", Value: "b"}}}, "PREPEND X-Ok: b"},
		{"header injection", policy.Verdict{Action: policy.Continue,
			Headers: []policy.Header{{Name: "X-Test", Value: "a\r\nBcc: victim@example.org\n\naction=OK"}}},
			"PREPEND X-Test: aBcc: victim@example.orgaction=OK"},
		{"greylist", policy.Verdict{Action: policy.Tempfail, Code: 451, Status: "4.7.1",
			Text: "Greylisted, please try again in 5m"}, "451 4.7.1 Greylisted, please try again in 5m"},
		{"tempfail default code", policy.Verdict{Action: policy.Tempfail, Text: "Later"}, "451 4.7.1 Later"},
		{"tempfail with a 5xx code stays temporary", policy.Verdict{Action: policy.Tempfail, Code: 550, Status: "5.7.1", Text: "Oops"},
			"451 4.7.1 Oops"},
		{"tempfail with a 5.x.x status", policy.Verdict{Action: policy.Tempfail, Code: 452, Status: "5.2.2", Text: "Full"},
			"452 4.2.2 Full"},
		{"reject", policy.Verdict{Action: policy.Reject, Code: 554, Status: "5.7.1", Text: "Forged sender"},
			"554 5.7.1 Forged sender"},
		{"reject default code", policy.Verdict{Action: policy.Reject, Text: "No"}, "550 5.7.1 No"},
		{"reject with a 4xx code stays permanent", policy.Verdict{Action: policy.Reject, Code: 451, Text: "No"}, "550 5.7.1 No"},
		{"internal tempfail", policy.TempfailInternal("store", "db locked"),
			"451 4.3.0 Temporary local problem, please try again later"},
		{"discard", policy.Verdict{Action: policy.Discard, Text: "virus Eicar-Signature"}, "DISCARD virus Eicar-Signature"},
		{"discard without text", policy.Verdict{Action: policy.Discard}, "DISCARD"},
		{"quarantine is HOLD", policy.Verdict{Action: policy.Quarantine, Text: "suspect"}, "HOLD suspect"},
		{"unknown action tempfails", policy.Verdict{Action: policy.Action(99)},
			"451 4.3.0 Temporary local problem, please try again later"},
		{"CR LF and controls stripped from reply", policy.Verdict{Action: policy.Reject,
			Text: "bad HELO evil\r\n\r\naction=OK\x00\x1b[31m\x7f!"}, "550 5.7.1 bad HELO evilaction=OK[31m!"},
		{"non-ASCII replaced", policy.Verdict{Action: policy.Reject, Text: "user j\xc3\xb6rg"}, "550 5.7.1 user j??rg"},
		{"controls stripped from HOLD", policy.Verdict{Action: policy.Quarantine, Text: "a\nb\tc"}, "HOLD abc"},
		{"long text clipped", policy.Verdict{Action: policy.Reject, Text: string(long)},
			("550 5.7.1 " + string(long))[:len("550 ")+reply.MaxLine]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FormatAction(tt.v); got != tt.want {
				t.Errorf("FormatAction = %q, want %q", got, tt.want)
			}
		})
	}
}
