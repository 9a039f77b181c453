package policyd

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"mailwarden/internal/policy"
	"mailwarden/internal/reply"
)

// ToRequest maps a policy request's attributes to a policy.Request. It
// returns ok=false for protocol states mailwarden has no checks for (VRFY,
// ETRN, anything unknown): the server answers DUNNO without running the
// pipeline. A request without protocol_state but with a recipient is
// taken as RCPT, since postgrey ignores the state and Exim recipes written
// for it often leave it out.
//
// client_address "unknown" or anything unparsable leaves ClientIP zero;
// the request is still checked, and checks treat a zero address as
// unknown. The Request type has no field for reverse_client_name or
// recipient_count: reverse_client_name only stands in for a missing
// client_name.
func ToRequest(a Attrs, now time.Time) (policy.Request, bool) {
	stage, ok := stageOf(a["protocol_state"], a["recipient"] != "")
	if !ok {
		return policy.Request{}, false
	}
	req := policy.Request{
		Stage:      stage,
		Time:       now,
		Frontend:   "policy",
		ClientName: a["client_name"],
		Helo:       a["helo_name"],
		Sender:     stripBrackets(a["sender"]),
		Recipient:  stripBrackets(a["recipient"]),
		SASLUser:   a["sasl_username"],
		QueueID:    a["queue_id"],
	}
	if ip, err := netip.ParseAddr(a["client_address"]); err == nil {
		req.ClientIP = ip.Unmap().WithZone("")
	}
	if req.ClientName == "" {
		req.ClientName = a["reverse_client_name"]
	}
	if req.ClientName == "" {
		req.ClientName = "unknown"
	}
	if req.Recipient != "" {
		req.Recipients = []string{req.Recipient}
	}
	return req, true
}

// stageOf maps protocol_state (SMTPD_POLICY_README, "Policy protocol
// description") to a stage.
func stageOf(state string, haveRcpt bool) (policy.Stage, bool) {
	switch strings.ToUpper(state) {
	case "CONNECT":
		return policy.StageConnect, true
	case "EHLO", "HELO":
		return policy.StageHelo, true
	case "MAIL":
		return policy.StageMail, true
	case "RCPT":
		return policy.StageRcpt, true
	case "DATA":
		return policy.StageData, true
	case "END-OF-MESSAGE":
		return policy.StageEOM, true
	case "":
		return policy.StageRcpt, haveRcpt
	}
	return 0, false
}

// VirusAttr is the mailwarden attribute by which an MTA that scans
// messages itself reports, at END-OF-MESSAGE, the virus it found:
// Exim's data ACL sends virus=$malware_name (docs/exim.md). Postfix
// never sends it.
const VirusAttr = "virus"

// ReportedVirus returns the virus name of a request's VirusAttr, or ""
// when it has none. The value is checked, not repaired: it must be
// printable US-ASCII (RFC 5321 §4.2, as it goes into a reply) of at most
// policy.MaxVirusName bytes, and only an END-OF-MESSAGE request carries
// it. Anything else is an error saying why, and the report is not to be
// acted on: the attribute is attacker-influenced (a hand-made request,
// a broken ACL), and a name that is not what a scanner says is no
// evidence to latch a client on.
func ReportedVirus(a Attrs, stage policy.Stage) (string, error) {
	v, ok := a[VirusAttr]
	if !ok {
		return "", nil
	}
	switch name := strings.TrimSpace(v); {
	case stage != policy.StageEOM:
		return "", fmt.Errorf("policyd: %s attribute in a %s request; it belongs to END-OF-MESSAGE", VirusAttr, stage)
	case name == "":
		return "", fmt.Errorf("policyd: empty %s attribute", VirusAttr)
	case len(name) > policy.MaxVirusName:
		return "", fmt.Errorf("policyd: %s attribute of %d bytes, at most %d", VirusAttr, len(name), policy.MaxVirusName)
	case reply.Check(name) != nil:
		return "", fmt.Errorf("policyd: %s attribute: %w", VirusAttr, reply.Check(name))
	case reply.Safe(name) != name:
		return "", fmt.Errorf("policyd: %s attribute is not printable US-ASCII", VirusAttr)
	default:
		return name, nil
	}
}

// stripBrackets removes the angle brackets a hand-written Exim request
// may put around an address; Postfix sends addresses without them.
func stripBrackets(s string) string {
	if len(s) >= 2 && s[0] == '<' && s[len(s)-1] == '>' {
		return s[1 : len(s)-1]
	}
	return s
}

// FormatAction renders a verdict as the value of the action= line. Postfix
// takes one action per reply (SMTPD_POLICY_README, "Policy protocol
// description"; access(5) lists the actions):
//   - Continue and Accept become DUNNO, never OK, so Postfix still applies
//     the restrictions after the policy service (reject_unauth_destination
//     among them); with headers, the first one becomes PREPEND.
//   - Tempfail and Reject become the numeric reply, with a 4xx or 5xx code
//     forced to match the action so a wrong code cannot turn a deferral
//     into a bounce.
//   - Discard becomes DISCARD and Quarantine becomes HOLD.
//
// Control characters are removed and non-ASCII bytes become '?', since
// attacker data can reach the text and a CR or LF would end the reply.
func FormatAction(v policy.Verdict) string {
	switch v.Action {
	case policy.Continue, policy.Accept:
		for _, h := range v.Headers {
			name := reply.Clean(h.Name)
			if validHeaderName(name) {
				return reply.Clean("PREPEND " + name + ": " + h.Value)
			}
		}
		return "DUNNO"
	case policy.Tempfail:
		return classReply(v, 4)
	case policy.Reject:
		return classReply(v, 5)
	case policy.Discard:
		return reply.Clean(strings.TrimSpace("DISCARD " + v.Text))
	case policy.Quarantine:
		return reply.Clean(strings.TrimSpace("HOLD " + v.Text))
	}
	// An action this code does not know must not pass as an accept.
	return internalError()
}

// internalError is the action for any failure inside mailwarden: the
// sending MTA keeps the message and retries.
func internalError() string {
	return policy.TempfailInternal("policyd", "").Reply()
}

// classReply renders v.Reply() with the reply code class forced to
// class.
func classReply(v policy.Verdict, class int) string {
	if v.Code/100 != class {
		v.Code = 0 // Reply picks the action's default code and status.
	}
	if v.Status != "" && v.Status[0] != byte('0'+class) {
		v.Status = strconv.Itoa(class) + v.Status[1:]
	}
	return v.Reply()
}

// validHeaderName reports whether s is a header field name (RFC 5322
// §3.6.8: printable ASCII except ':').
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' || c == ':' {
			return false
		}
	}
	return true
}
