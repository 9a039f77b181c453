// Package policy holds the request type that every front end (milter,
// policy server) builds, the verdict a check returns, and the pipeline that
// runs the checks in order. Checks are written once against Request.
package policy

import (
	"context"
	"io"
	"net/netip"
	"strings"
	"time"

	"mailwarden/internal/reply"
)

// Stage is the point of the SMTP transaction a request describes.
type Stage int

const (
	StageConnect Stage = iota
	StageHelo
	StageMail
	StageRcpt
	StageData
	StageEOM
)

func (s Stage) String() string {
	switch s {
	case StageConnect:
		return "connect"
	case StageHelo:
		return "helo"
	case StageMail:
		return "mail"
	case StageRcpt:
		return "rcpt"
	case StageData:
		return "data"
	case StageEOM:
		return "eom"
	}
	return "unknown"
}

// Request is what a front end saw of one SMTP transaction at one stage.
// Every field that comes from the network is attacker-controlled.
type Request struct {
	Stage      Stage
	Time       time.Time
	Frontend   string // "milter" or "policy"
	ClientIP   netip.Addr
	ClientName string // reverse DNS name as the MTA resolved it; "unknown" when none
	Helo       string
	Sender     string // envelope sender without angle brackets; "" for the null sender
	Recipient  string // the recipient being checked at StageRcpt
	// RcptIndex counts the recipients of this message checked before
	// Recipient: 0 for the first, so per-message counts are taken once.
	RcptIndex  int
	Recipients []string
	SASLUser   string
	QueueID    string
	// HeaderFrom is the address in the From header, known at StageEOM
	// in the milter only.
	HeaderFrom string
	// Internal is set when the client is in an internal network or a
	// site; Site names the site. The pipeline sets both before any check
	// runs (PipelineOptions.Classify).
	Internal bool
	Site     string
	// Message is the whole message at StageEOM in the milter; nil
	// elsewhere.
	Message Message
	// Virus is the signature name a virus scan run by the MTA itself
	// found, at StageEOM in the policy server: Exim's malware condition
	// reports it (docs/exim.md), since the policy server never sees the
	// message. The front end checks it is printable ASCII of at most
	// MaxVirusName bytes; "" means no virus was reported.
	Virus string
}

// MaxVirusName bounds a virus signature name put in a reply or a
// record; clamd's names are far shorter, and the reply must fit an SMTP
// line (RFC 5321 §4.5.3.1.5).
const MaxVirusName = 200

// Message gives checks the message as received: the header fields as
// "Name: value" lines with CRLF, an empty line, then the body.
type Message interface {
	// Size is the message's size in bytes.
	Size() int64
	// Open returns a fresh reader over the whole message; each call
	// starts at the beginning. The caller closes it.
	Open() (io.ReadCloser, error)
}

// Outbound reports whether the message leaves the organisation's own
// clients: an internal client or an authenticated user.
func (r *Request) Outbound() bool { return r.Internal || r.Authenticated() }

// Authenticated reports whether the client logged in with SMTP AUTH.
func (r *Request) Authenticated() bool { return r.SASLUser != "" }

// Domain returns the part of an address after the last '@', lowercased.
func Domain(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}

// Action is what the MTA is told to do.
type Action int

const (
	// Continue means this check has no objection; later checks still run.
	Continue Action = iota
	// Accept ends checking for this stage and lets the message through.
	Accept
	Tempfail
	Reject
	Discard
	Quarantine
)

func (a Action) String() string {
	switch a {
	case Continue:
		return "continue"
	case Accept:
		return "accept"
	case Tempfail:
		return "tempfail"
	case Reject:
		return "reject"
	case Discard:
		return "discard"
	case Quarantine:
		return "quarantine"
	}
	return "unknown"
}

// Final reports whether the action ends the pipeline.
func (a Action) Final() bool { return a != Continue }

// Header is a header field a check wants added to the message.
type Header struct {
	Name, Value string
}

// Verdict is a check's answer. What the SMTP client is told (Code, Status,
// Text) is kept apart from what only the log records (Reason).
type Verdict struct {
	Action Action
	Code   int    // SMTP reply code, e.g. 451; 0 lets the front end pick
	Status string // enhanced status code, e.g. "4.7.1"
	Text   string // human text for the SMTP client
	Reason string // log-only explanation
	Check  string // name of the check that decided
	// Headers are added to the message if it is accepted.
	Headers []Header
	// Event, if set, is the kind of event to record for this verdict
	// (store.EventLatch, store.EventRateTrip ...). Rejects and tempfails
	// are recorded even without it.
	Event string
	// Latched, set when the check latched the client or user as well as
	// deciding (a forgery, a rate trip, a virus), describes that latch.
	// It is recorded as a latch event of its own beside the verdict's
	// event, which still says what the message did.
	Latched string
}

// Reply renders the SMTP reply line, e.g. "451 4.7.1 Greylisted".
func (v Verdict) Reply() string {
	code, text := v.CodeText()
	if text == "" {
		return itoa(code)
	}
	return itoa(code) + " " + text
}

// CodeText is the reply's code and the text after it (the enhanced
// status code and the text), made safe to send (reply.Clean). A verdict
// without a code gets its action's default code and status. Both front
// ends render replies through it, so the milter and the policy server
// say the same thing.
func (v Verdict) CodeText() (int, string) {
	code, status := v.Code, v.Status
	if code == 0 {
		code, status = defaultCode(v.Action)
	}
	return code, reply.Clean(strings.TrimSpace(status + " " + v.Text))
}

func defaultCode(a Action) (int, string) {
	switch a {
	case Tempfail:
		return 451, "4.7.1"
	case Reject:
		return 550, "5.7.1"
	}
	return 250, "2.0.0"
}

func itoa(n int) string {
	if n < 100 || n > 599 {
		return "451"
	}
	return string([]byte{byte('0' + n/100), byte('0' + n/10%10), byte('0' + n%10)})
}

// Check is one step of the pipeline. Check is called once per request; it
// returns Continue when it has nothing to say. A returned error means the
// check could not decide (store down, timeout); the pipeline turns it into
// a temporary failure unless the operator configured the check fail-open.
type Check interface {
	Name() string
	Check(ctx context.Context, req *Request) (Verdict, error)
}
