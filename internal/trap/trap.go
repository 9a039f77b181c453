// Package trap is the worm trap: a TCP listener that the firewall feeds
// with internal machines' outbound port-25 traffic. It speaks just enough
// SMTP (RFC 5321) to learn the HELO and MAIL FROM a client offers, ends
// every conversation with a temporary failure so no mail is ever taken,
// and aggregates what it saw per client host in bounded memory.
package trap

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxFieldLen caps the attacker-controlled strings (HELO, MAIL FROM) kept
// in a Hit. RFC 5321 §4.5.3.1.2 limits a domain to 255 octets; a longer
// value is junk worth keeping only as a prefix.
const MaxFieldLen = 255

// Hit is one connection to the trap.
type Hit struct {
	// Client is the source address of the connection.
	Client netip.Addr
	// Time is when the connection was accepted.
	Time time.Time
	// OrigDst is where the client meant to connect before the firewall
	// redirected it (SO_ORIGINAL_DST); zero if not redirected or unknown.
	OrigDst netip.AddrPort
	// Helo is the HELO or EHLO argument offered, cleaned by Clean.
	Helo string
	// MailFrom is the MAIL FROM reverse-path offered without its angle
	// brackets, "<>" for the null reverse-path, cleaned by Clean.
	MailFrom string
}

// Host is the aggregated evidence for one client address.
type Host struct {
	// Client is the source address the hits came from.
	Client netip.Addr
	// FirstSeen and LastSeen are the earliest and latest hit times.
	FirstSeen, LastSeen time.Time
	// Count is the number of hits.
	Count int
	// LastDst, LastHelo and LastMailFrom are from the latest hit that
	// offered them, so a later silent connection does not erase evidence.
	LastDst      netip.AddrPort
	LastHelo     string
	LastMailFrom string
}

// Clean makes an attacker-controlled string safe to store and log: it
// replaces invalid UTF-8 with U+FFFD, removes control characters (C0,
// DEL and C1) and truncates to MaxFieldLen bytes on a rune boundary.
// Everything else is kept as given; escaping for display is the
// displayer's job.
func Clean(s string) string {
	var b strings.Builder
	b.Grow(min(len(s), MaxFieldLen))
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			continue
		}
		if b.Len()+utf8.RuneLen(r) > MaxFieldLen {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Summary says in one line what h did, for the trap's event: how many
// connections, since when, to where, and what it said. The HELO and
// MAIL FROM were cleaned when they were read; escaping is the
// displayer's job.
func (h Host) Summary() string {
	s := fmt.Sprintf("%d direct port-25 connection", h.Count)
	if h.Count != 1 {
		s += "s"
	}
	s += " to the trap"
	if h.LastDst.IsValid() {
		s += ", last for " + h.LastDst.String()
	}
	if h.LastHelo != "" {
		s += ", HELO " + h.LastHelo
	}
	if h.LastMailFrom != "" {
		s += ", MAIL FROM " + h.LastMailFrom
	}
	return s
}
