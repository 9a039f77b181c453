// Package maillogin answers "who last checked mail from this IP" by
// following Dovecot's login log and keeping the newest successful IMAP,
// POP3 or submission login per client address.
package maillogin

import (
	"net/netip"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxParseLen is the longest line ParseLine looks at. Dovecot sanitizes the
// user name to 80 bytes before logging it (login-common, str_sanitize), so
// a real login line is a few hundred bytes; anything far longer is not one.
const MaxParseLen = 4096

// maxUserLen bounds the user name accepted from a line. Dovecot truncates
// at 80 bytes plus "..."; the slack allows a custom login_log_format.
const maxUserLen = 256

// rolloverSlack is how far into the future a year-less syslog timestamp may
// lie before it is taken to belong to the previous year.
const rolloverSlack = 24 * time.Hour

// Login is one successful mail login read from the log.
type Login struct {
	// User is the account name as Dovecot logged it (user=<...>).
	User string
	// IP is the client address (rip=...), IPv4-mapped addresses unmapped.
	IP netip.Addr
	// Time is when the login happened, from the line's timestamp.
	Time time.Time
	// Service is "imap", "pop3" or "submission".
	Service string
}

// ParseLine reads one log line and reports the successful login it records.
// It accepts Dovecot's login lines in three shapes:
//
//	Nov 21 08:14:02 mail dovecot: imap-login: Login: user=<a>, method=PLAIN, rip=10.1.2.3, ...
//	Nov 21 08:14:02 imap-login: Info: Login: user=<a>, method=PLAIN, rip=10.1.2.3, ...
//	2026-11-21T08:14:02.123456+00:00 mail dovecot[123]: pop3-login: Login: user=<a>, ...
//
// Only the "Login:" message counts; failed and aborted logins ("Disconnected
// (auth failed ...)", "Aborted login", "Login aborted") and every other line
// give false. ParseLine never panics and does bounded work on any input.
//
// Syslog timestamps carry no year: they are taken in loc (time.Local when
// nil) and given year, except that a timestamp more than a day after now
// belongs to the previous year, so a "Dec 31" line read on January 1st
// lands in the old year. ISO 8601 timestamps carry their own year and zone.
func ParseLine(line string, year int, loc *time.Location) (Login, bool) {
	return parseAt(line, year, loc, time.Now())
}

// parseAt is ParseLine with the reference time for the year rollover made
// explicit, so tests do not depend on the clock.
func parseAt(line string, year int, loc *time.Location, now time.Time) (Login, bool) {
	if len(line) > MaxParseLen {
		return Login{}, false
	}
	if loc == nil {
		loc = time.Local
	}
	ts, rest, ok := parseTimestamp(line, year, loc, now)
	if !ok {
		return Login{}, false
	}
	service, rest, ok := parseTag(rest)
	if !ok {
		return Login{}, false
	}
	// Dovecot's own log file says "Info: " before the message; syslog does not.
	rest = strings.TrimPrefix(rest, "Info: ")
	rest, ok = strings.CutPrefix(rest, "Login: ")
	if !ok {
		return Login{}, false
	}
	user, ip, ok := parseFields(rest)
	if !ok {
		return Login{}, false
	}
	return Login{User: user, IP: ip, Time: ts, Service: service}, true
}

// parseTimestamp reads the leading ISO 8601 or BSD syslog (RFC 3164 §4.1.2)
// timestamp and returns the rest of the line after the following space.
func parseTimestamp(line string, year int, loc *time.Location, now time.Time) (time.Time, string, bool) {
	if len(line) >= 5 && isDigit(line[0]) && line[4] == '-' {
		field, rest, ok := strings.Cut(line, " ")
		if !ok || len(field) > 40 {
			return time.Time{}, "", false
		}
		t, err := time.Parse(time.RFC3339Nano, field)
		if err != nil {
			return time.Time{}, "", false
		}
		return t, rest, true
	}
	// "Jan _2 15:04:05" is 15 bytes; Dovecot's own log_timestamp default
	// ("%b %d %H:%M:%S ") zero-pads the day, which the same layout accepts.
	if len(line) < 16 || line[15] != ' ' {
		return time.Time{}, "", false
	}
	t, err := time.ParseInLocation(time.Stamp, line[:15], loc)
	if err != nil {
		return time.Time{}, "", false
	}
	withYear := func(y int) time.Time {
		return time.Date(y, t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), 0, loc)
	}
	ts := withYear(year)
	if ts.Sub(now) > rolloverSlack {
		ts = withYear(year - 1)
	}
	return ts, line[16:], true
}

// parseTag skips the optional "host dovecot[pid]: " syslog prefix and reads
// the login process name, returning the service and the message after it.
// The tag must come right where syslog puts it, so text quoted inside some
// other program's message cannot pass for a Dovecot login.
func parseTag(rest string) (string, string, bool) {
	if s, msg, ok := loginService(rest); ok {
		return s, msg, true // Dovecot's own log file: no host, no tag.
	}
	first, after, ok := strings.Cut(rest, " ")
	if !ok {
		return "", "", false
	}
	if !isDovecotTag(first) {
		// first is the host name; the program tag follows it.
		var tag string
		tag, after, ok = strings.Cut(after, " ")
		if !ok || !isDovecotTag(tag) {
			return "", "", false
		}
	}
	return loginService(after)
}

// loginService reads "imap-login: " and the like at the start of s.
func loginService(s string) (string, string, bool) {
	for _, svc := range [...]string{"imap", "pop3", "submission"} {
		if msg, ok := strings.CutPrefix(s, svc+"-login: "); ok {
			return svc, msg, true
		}
	}
	return "", "", false
}

// isDovecotTag reports whether tok is the syslog tag "dovecot:" or
// "dovecot[pid]:".
func isDovecotTag(tok string) bool {
	if tok == "dovecot:" {
		return true
	}
	pid, ok := strings.CutPrefix(tok, "dovecot[")
	if !ok {
		return false
	}
	pid, ok = strings.CutSuffix(pid, "]:")
	if !ok || pid == "" || len(pid) > 10 {
		return false
	}
	for i := 0; i < len(pid); i++ {
		if !isDigit(pid[i]) {
			return false
		}
	}
	return true
}

// parseFields reads user=<...> and rip=... from the login_log_format_elements
// list (default "user=<%u> method=%m rip=%r lip=%l mpid=%e %c session=<...>",
// joined with ", "). Dovecot does not escape '>' or ',' in the user name, so
// a name could itself contain ", rip=". The real rip follows the user, and no
// later element can hold that text, so the last ", rip=" is taken as the
// client address and the user name ends at the last ">, " before it.
func parseFields(s string) (string, netip.Addr, bool) {
	body, ok := strings.CutPrefix(s, "user=<")
	if !ok {
		return "", netip.Addr{}, false
	}
	ripAt := strings.LastIndex(body, ", rip=")
	if ripAt < 0 {
		return "", netip.Addr{}, false
	}
	userEnd := strings.LastIndex(body[:ripAt+2], ">, ")
	if userEnd <= 0 {
		return "", netip.Addr{}, false
	}
	user := body[:userEnd]
	if !validUser(user) {
		return "", netip.Addr{}, false
	}
	ripText := body[ripAt+len(", rip="):]
	if i := strings.IndexByte(ripText, ','); i >= 0 {
		ripText = ripText[:i]
	}
	ip, err := netip.ParseAddr(ripText)
	if err != nil || ip.Zone() != "" {
		return "", netip.Addr{}, false
	}
	return user, ip.Unmap(), true
}

// validUser reports whether u is a plausible account name: bounded, valid
// UTF-8, printable. Dovecot replaces control characters with '?'
// (str_sanitize), so anything else means the line is not Dovecot's.
func validUser(u string) bool {
	if u == "" || len(u) > maxUserLen || !utf8.ValidString(u) {
		return false
	}
	for _, r := range u {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }
