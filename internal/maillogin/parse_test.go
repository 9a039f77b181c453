package maillogin

import (
	"bufio"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// fixtureNow is the reference time for parsing the fixture: the day after
// its lines were written.
var fixtureNow = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func readFixture(t testing.TB) []string {
	t.Helper()
	f, err := os.Open("testdata/dovecot.log")
	if err != nil {
		t.Fatalf("opening fixture: %v", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading fixture: %v", err)
	}
	return lines
}

func utc(hms string) time.Time {
	t, err := time.Parse("2006-01-02 15:04:05", "2026-11-20 "+hms)
	if err != nil {
		panic(err)
	}
	return t
}

func TestParseLineFixture(t *testing.T) {
	// Line numbers (1-based) of testdata/dovecot.log that are successful
	// logins; every other line must be rejected.
	want := map[int]Login{
		3:  {User: "alice@school.test", IP: netip.MustParseAddr("10.1.2.3"), Time: utc("08:14:02"), Service: "imap"},
		5:  {User: "bob@school.test", IP: netip.MustParseAddr("10.1.2.4"), Time: utc("08:15:40"), Service: "pop3"},
		11: {User: "carol@school.test", IP: netip.MustParseAddr("10.1.2.5"), Time: utc("08:20:13"), Service: "submission"},
		12: {User: "erin@school.test", IP: netip.MustParseAddr("2001:db8:10::25"), Time: utc("08:21:09"), Service: "imap"},
		13: {User: "frank", IP: netip.MustParseAddr("10.1.2.7"), Time: utc("08:22:30"), Service: "imap"},
		14: {User: "grace@school.test", IP: netip.MustParseAddr("10.1.2.8"), Time: utc("08:23:45").Add(123456 * time.Microsecond), Service: "pop3"},
		17: {User: "o'brien, jr>, rip=6.6.6.6, x", IP: netip.MustParseAddr("10.1.2.9"), Time: utc("08:25:00"), Service: "imap"},
		18: {User: "Jürgen Müller", IP: netip.MustParseAddr("10.1.2.13"), Time: utc("08:26:00"), Service: "imap"},
		19: {User: "henry@school.test", IP: netip.MustParseAddr("10.1.2.10"), Time: utc("08:27:31"), Service: "imap"},
		20: {User: "alice@school.test", IP: netip.MustParseAddr("10.1.2.11"), Time: utc("08:40:02"), Service: "imap"},
		21: {User: "bob@school.test", IP: netip.MustParseAddr("10.1.2.3"), Time: utc("09:02:17"), Service: "imap"},
		28: {User: "erin@school.test", IP: netip.MustParseAddr("2001:db8:10::26"), Time: utc("09:09:12"), Service: "pop3"},
		31: {User: "liam@school.test", IP: netip.MustParseAddr("10.1.2.16"), Time: utc("09:12:00"), Service: "imap"},
	}
	lines := readFixture(t)
	if len(lines) < 30 {
		t.Fatalf("fixture has %d lines, want at least 30", len(lines))
	}
	for i, line := range lines {
		n := i + 1
		got, ok := parseAt(line, 2026, time.UTC, fixtureNow)
		exp, wantOK := want[n]
		if ok != wantOK {
			t.Errorf("line %d: ok = %v, want %v\n%s", n, ok, wantOK, line)
			continue
		}
		if !ok {
			continue
		}
		if got.User != exp.User || got.IP != exp.IP || !got.Time.Equal(exp.Time) || got.Service != exp.Service {
			t.Errorf("line %d: got %+v\nwant %+v", n, got, exp)
		}
	}
}

func TestParseLineRejects(t *testing.T) {
	base := "Nov 20 08:14:02 mail dovecot: imap-login: Login: user=<alice>, method=PLAIN, rip=10.1.2.3, lip=10.0.0.5"
	if _, ok := parseAt(base, 2026, time.UTC, fixtureNow); !ok {
		t.Fatalf("base line rejected: %s", base)
	}
	cases := map[string]string{
		"empty":             "",
		"no timestamp":      "mail dovecot: imap-login: Login: user=<alice>, method=PLAIN, rip=10.1.2.3",
		"bad month":         strings.Replace(base, "Nov", "Nox", 1),
		"other program":     strings.Replace(base, "dovecot:", "postfix/smtpd[1]:", 1),
		"bad pid":           strings.Replace(base, "dovecot:", "dovecot[12a]:", 1),
		"lmtp":              strings.Replace(base, "imap-login", "lmtp-login", 1),
		"control char user": strings.Replace(base, "alice", "ali\x01ce", 1),
		"invalid utf8 user": strings.Replace(base, "alice", "ali\xffce", 1),
		"zoned ip":          strings.Replace(base, "10.1.2.3", "fe80::1%eth0", 1),
		"no close bracket":  strings.Replace(base, "user=<alice>,", "user=<alice,", 1),
		"too long":          base + strings.Repeat("x", MaxParseLen),
		"long user":         strings.Replace(base, "alice", strings.Repeat("a", maxUserLen+1), 1),
		"bad iso":           "2026-13-20T08:14:02+00:00 mail dovecot: imap-login: Login: user=<alice>, rip=10.1.2.3",
		"truncated":         "Nov 20 08:14:02",
		"message is quoted": "Nov 20 08:14:02 mail dovecot: auth: imap-login: Login: user=<alice>, rip=10.1.2.3",
	}
	for name, line := range cases {
		if l, ok := parseAt(line, 2026, time.UTC, fixtureNow); ok {
			t.Errorf("%s: accepted as %+v\n%q", name, l, line)
		}
	}
}

func TestParseLineYearRollover(t *testing.T) {
	newYear := time.Date(2027, 1, 1, 0, 30, 0, 0, time.UTC)
	cases := []struct {
		stamp string
		want  time.Time
	}{
		// Written just before midnight, read just after: last year.
		{"Dec 31 23:59:58", time.Date(2026, 12, 31, 23, 59, 58, 0, time.UTC)},
		{"Jan  1 00:10:00", time.Date(2027, 1, 1, 0, 10, 0, 0, time.UTC)},
		// A little in the future (clock skew between hosts): this year.
		{"Jan  1 20:00:00", time.Date(2027, 1, 1, 20, 0, 0, 0, time.UTC)},
		// Zero-padded day, as Dovecot's own log_timestamp writes it.
		{"Jan 01 00:10:00", time.Date(2027, 1, 1, 0, 10, 0, 0, time.UTC)},
	}
	for _, c := range cases {
		line := c.stamp + " mail dovecot: imap-login: Login: user=<a>, method=PLAIN, rip=10.0.0.1, lip=10.0.0.5"
		l, ok := parseAt(line, 2027, time.UTC, newYear)
		if !ok {
			t.Errorf("%s: rejected", c.stamp)
			continue
		}
		if !l.Time.Equal(c.want) {
			t.Errorf("%s: time %v, want %v", c.stamp, l.Time, c.want)
		}
	}
}

func TestParseLineLocation(t *testing.T) {
	loc := time.FixedZone("CET", 3600)
	line := "Nov 20 08:14:02 mail dovecot: imap-login: Login: user=<a>, method=PLAIN, rip=10.0.0.1, lip=10.0.0.5"
	l, ok := ParseLine(line, 2026, loc)
	if !ok {
		t.Fatal("rejected")
	}
	if want := time.Date(2026, 11, 20, 7, 14, 2, 0, time.UTC); !l.Time.Equal(want) {
		t.Errorf("time %v, want %v", l.Time, want)
	}
}
