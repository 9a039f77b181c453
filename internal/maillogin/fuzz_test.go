package maillogin

import (
	"os"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// FuzzParseLine checks that any line is either rejected or yields a login a
// caller can store and show: a printable user, a valid unzoned unmapped IP,
// a known service and a set time. Seeds are the fixture lines plus the
// committed corpus in testdata/fuzz/FuzzParseLine.
func FuzzParseLine(f *testing.F) {
	data, err := os.ReadFile("testdata/dovecot.log")
	if err != nil {
		f.Fatalf("reading fixture: %v", err)
	}
	for line := range strings.Lines(string(data)) {
		f.Add(strings.TrimSuffix(line, "\n"))
	}
	f.Fuzz(func(t *testing.T, line string) {
		l, ok := parseAt(line, 2026, time.UTC, fixtureNow)
		if !ok {
			return
		}
		if l.User == "" || len(l.User) > maxUserLen || !utf8.ValidString(l.User) {
			t.Fatalf("bad user %q from %q", l.User, line)
		}
		for _, r := range l.User {
			if !unicode.IsPrint(r) {
				t.Fatalf("unprintable user %q from %q", l.User, line)
			}
		}
		if !l.IP.IsValid() || l.IP.Zone() != "" || l.IP.Is4In6() {
			t.Fatalf("bad IP %v from %q", l.IP, line)
		}
		switch l.Service {
		case "imap", "pop3", "submission":
		default:
			t.Fatalf("bad service %q from %q", l.Service, line)
		}
		if l.Time.IsZero() {
			t.Fatalf("zero time from %q", line)
		}
		if !strings.Contains(line, "-login: ") || !strings.Contains(line, "Login: user=<"+l.User+">") {
			t.Fatalf("login %+v not found in %q", l, line)
		}
	})
}
