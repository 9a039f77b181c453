// Package reply is the one home of the text mailwarden puts in SMTP
// replies: the length limits, the check of configured reply texts, and
// the sanitising of values and rendered replies. The configuration,
// every check and both front ends (milter and policy server) use it, so
// they agree on what can reach an SMTP client.
package reply

import (
	"errors"
	"fmt"
	"strings"
)

// MaxText bounds a configured reply text. With the reply code, the
// enhanced status and the values filled in, the reply must fit an SMTP
// reply line of 512 octets including CRLF (RFC 5321 §4.5.3.1.5).
const MaxText = 400

// MaxLine bounds a rendered reply after its code: the enhanced status
// and the text with the values filled in. The code, the CRLF and the
// prefix Postfix puts before a policy service's text ("<rcpt>: Recipient
// address rejected: ") still fit in 512 octets.
const MaxLine = 400

// ErrMultiline, ErrControl and ErrTooLong say what is wrong with a text.
var (
	ErrMultiline = errors.New("reply: the text contains a line break, a control character that would end the SMTP reply")
	ErrControl   = errors.New("reply: the text contains a control character")
	ErrTooLong   = errors.New("reply: the text is too long for an SMTP reply")
)

// Check reports what is wrong with a configured reply text, or nil. A
// line break would end the reply early (RFC 5321 §4.2) and inject
// another; in the policy protocol it would end the attribute.
func Check(s string) error {
	switch {
	case strings.ContainsAny(s, "\r\n"):
		return ErrMultiline
	case strings.ContainsFunc(s, isControl):
		return ErrControl
	case len(s) > MaxText:
		return fmt.Errorf("%w: %d bytes, at most %d fit", ErrTooLong, len(s), MaxText)
	}
	return nil
}

// Safe makes a value an outsider chose (a domain, an address, a user
// name, a virus name) fit into a reply: anything but printable US-ASCII
// (RFC 5321 §4.2) becomes '?'.
func Safe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' {
			return '?'
		}
		return r
	}, s)
}

// Clean makes a rendered reply text safe to send, as both front ends do
// last: control characters are dropped, bytes outside printable ASCII
// become '?', and the text is cut to MaxLine.
func Clean(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s) && b.Len() < MaxLine; i++ {
		switch c := s[i]; {
		case c < ' ' || c == 0x7f:
		case c > 0x7f:
			b.WriteByte('?')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isControl(r rune) bool { return r < ' ' || r == 0x7f }
