package greylist

import (
	"errors"
	"io/fs"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
)

func TestSampleClientFile(t *testing.T) {
	clients, _, err := loadWhitelists(Options{WhitelistClientFiles: []string{"testdata/postgrey_whitelist_clients"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ip, name string
		want     bool
	}{
		{"203.0.113.200", "lists.example.com", true},
		{"203.0.113.200", "out.LISTS.example.com.", true},
		{"203.0.113.200", "badlists.example.com", false},
		{"203.0.113.200", "lists.example.com.evil.test", false},
		{"203.0.113.200", "example.net", true},
		{"203.0.113.200", "pool.example.org", false}, // subdomains only
		{"203.0.113.200", "h1.pool.example.org", true},
		{"203.0.113.200", "mail12.example.biz", true},
		{"203.0.113.200", "mail.example.biz", false},
		{"203.0.113.200", "SMTP-OUT-7.bulk.example", true},
		{"192.0.2.25", "unknown", true},
		{"192.0.2.250", "unknown", false},
		{"198.51.100.77", "unknown", true},
		{"198.51.101.77", "unknown", false},
		{"203.0.113.15", "unknown", true},
		{"203.0.113.16", "unknown", false},
		{"::ffff:203.0.113.1", "unknown", true},
		{"2001:db8:25::1", "unknown", true},
		{"2001:db8:25::2", "unknown", false},
		{"2001:db8:feed:1::9", "unknown", true},
	}
	for _, tt := range tests {
		_, got := clients.match(netip.MustParseAddr(tt.ip), tt.name)
		if got != tt.want {
			t.Errorf("client %s %s whitelisted = %v, want %v", tt.ip, tt.name, got, tt.want)
		}
	}
}

func TestSampleRecipientFile(t *testing.T) {
	_, rcpts, err := loadWhitelists(Options{WhitelistRecipientFiles: []string{"testdata/postgrey_whitelist_recipients"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		rcpt string
		want bool
	}{
		{"postmaster@anything.example", true},
		{"Postmaster@Anything.Example", true},
		{"postmaster", true}, // RFC 5321 §4.5.1 domain-less postmaster
		{"postmaster+dmarc@example.com", true},
		{"postmaster+@example.com", false}, // empty extension, as in postgrey
		{"postmasters@example.com", false},
		{"abuse@example.com", true},
		{"helpdesk@school.example.edu", true},
		{"helpdesk+it@school.example.edu", true},
		{"helpdesk@other.example.edu", false},
		{"helpdesk@sub.school.example.edu", false},
		{"anyone@urgent.example.edu", true},
		{"anyone@sub.urgent.example.edu", false},
		{"kim@students.example.edu", true},
		{"kim@year7.students.example.edu", true},
		{"kim@otherstudents.example.edu", false},
		{"noc-east@example.edu", true},
		{"noc-east@example.edu.evil.test", false},
		{"teacher@example.edu", false},
	}
	for _, tt := range tests {
		_, got := rcpts.match(tt.rcpt)
		if got != tt.want {
			t.Errorf("recipient %q whitelisted = %v, want %v", tt.rcpt, got, tt.want)
		}
	}
}

// TestBadFilesReportEveryLine checks that one run names every bad line
// with FILE:LINE, so the operator fixes them all at once.
func TestBadFilesReportEveryLine(t *testing.T) {
	_, err := New(Options{
		Store:                   newStore(),
		WhitelistClients:        []string{"ok.example.com", "", "10.0.0.0/33"},
		WhitelistClientFiles:    []string{"testdata/bad_whitelist_clients"},
		WhitelistRecipientFiles: []string{"testdata/bad_whitelist_recipients"},
	})
	if err == nil {
		t.Fatal("New accepted bad whitelists")
	}
	want := []string{
		`whitelist_clients[1]: greylist: invalid client whitelist entry "": empty entry`,
		`whitelist_clients[2]: greylist: invalid client whitelist entry "10.0.0.0/33": not a CIDR network: `,
		`testdata/bad_whitelist_clients:3: greylist: invalid client whitelist entry "mail server.example.com": contains white space`,
		`testdata/bad_whitelist_clients:4: greylist: invalid client whitelist entry "192.168.300": number "300" is not between 0 and 255`,
		`testdata/bad_whitelist_clients:5: greylist: invalid client whitelist entry "10.1/16": not a CIDR network: `,
		`testdata/bad_whitelist_clients:6: greylist: invalid client whitelist entry "/(?!spam)mail\.example\.com/": not a Go RE2 regexp (Perl look-around`,
		`testdata/bad_whitelist_clients:7: greylist: invalid client whitelist entry "*.example.com": wildcards are not supported`,
		`testdata/bad_whitelist_clients:9: greylist: invalid client whitelist entry "/^unterminated": starts with / but does not end with /`,
		`testdata/bad_whitelist_recipients:2: greylist: invalid recipient whitelist entry "@": neither a local part nor a domain`,
		`testdata/bad_whitelist_recipients:3: greylist: invalid recipient whitelist entry "user@bad_domain!.example": character '!' is not allowed in a domain name`,
		`testdata/bad_whitelist_recipients:4: greylist: invalid recipient whitelist entry "/[/": not a valid regexp: `,
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Errorf("got %d errors, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if i >= len(lines) || !strings.HasPrefix(lines[i], w) {
			t.Errorf("error %d:\n got %q\nwant prefix %q", i, lines[min(i, len(lines)-1)], w)
		}
	}
	var ee *EntryError
	if !errors.As(err, &ee) || ee.List != "client" {
		t.Errorf("errors.As EntryError: %+v", ee)
	}
}

func TestMissingFileIsNamed(t *testing.T) {
	err := Validate(Options{WhitelistRecipientFiles: []string{"testdata/no_such_file"}})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "testdata/no_such_file") {
		t.Errorf("err %v, want a not-exist error naming the file", err)
	}
}

func TestValidateAcceptsSamples(t *testing.T) {
	err := Validate(Options{
		WhitelistClientFiles:    []string{"testdata/postgrey_whitelist_clients"},
		WhitelistRecipientFiles: []string{"testdata/postgrey_whitelist_recipients"},
		WhitelistRecipients:     []string{"postmaster@", "abuse@"},
	})
	if err != nil {
		t.Error(err)
	}
}

func TestLongLine(t *testing.T) {
	ld := &loader{list: "client", parse: parseClientEntry, add: func(entry) {}}
	ld.reader("big", strings.NewReader("ok.example\n"+strings.Repeat("a", maxLineBytes+1)+"\n"))
	if len(ld.errs) != 1 || !strings.HasPrefix(ld.errs[0].Error(), "big:2: greylist: reading client whitelist: ") {
		t.Errorf("errors %v", ld.errs)
	}
}

func TestClientEntryKinds(t *testing.T) {
	tests := []struct {
		in   string
		kind entryKind
		pfx  string
	}{
		{"example.com", kindDomain, ""},
		{"example.com.", kindDomain, ""},
		{".example.com", kindSubdomains, ""},
		{"/^mx\\d+\\./", kindRegexp, ""},
		{"10", kindNetwork, "10.0.0.0/8"},
		{"10.", kindNetwork, "10.0.0.0/8"},
		{"192.168.", kindNetwork, "192.168.0.0/16"},
		{"10.1.2", kindNetwork, "10.1.2.0/24"},
		{"192.0.2.1", kindNetwork, "192.0.2.1/32"},
		{"192.0.2.77/24", kindNetwork, "192.0.2.0/24"},
		{"2001:db8::1", kindNetwork, "2001:db8::1/128"},
		{"2001:DB8::/32", kindNetwork, "2001:db8::/32"},
		{"xn--bcher-kva.example", kindDomain, ""},
		{"bücher.example", kindDomain, ""},
		{"_spf.example.com", kindDomain, ""},
	}
	for _, tt := range tests {
		e, err := parseClientEntry(tt.in)
		if err != nil {
			t.Errorf("parseClientEntry(%q): %v", tt.in, err)
			continue
		}
		if e.kind != tt.kind || (tt.pfx != "" && e.prefix.String() != tt.pfx) {
			t.Errorf("parseClientEntry(%q) = kind %d prefix %v, want %d %s", tt.in, e.kind, e.prefix, tt.kind, tt.pfx)
		}
	}
	for _, bad := range []string{
		"010.1.2", "1.2.3.4.5", "1..2", ".", "//", "fe80::1%eth0", "2001:db8::g",
		"a..example", "-/", "ex ample.com", "example.com/", strings.Repeat("a", 64) + ".com",
	} {
		if _, err := parseClientEntry(bad); err == nil {
			t.Errorf("parseClientEntry(%q) accepted", bad)
		}
	}
}

func TestRecipientEntryKinds(t *testing.T) {
	tests := []struct {
		in   string
		kind entryKind
	}{
		{"postmaster@", kindUser},
		{"Info@Example.com", kindAddress},
		{"@example.com", kindAtDomain},
		{"example.com", kindDomain},
		{".example.com", kindSubdomains},
		{"/^a@b$/", kindRegexp},
	}
	for _, tt := range tests {
		e, err := parseRecipientEntry(tt.in)
		if err != nil || e.kind != tt.kind {
			t.Errorf("parseRecipientEntry(%q) = kind %d, %v; want %d", tt.in, e.kind, err, tt.kind)
		}
	}
	for _, bad := range []string{"@", "a@b@c", "a b@example.com", "/x", "a/b@example.com", "a@-bad!"} {
		if _, err := parseRecipientEntry(bad); err == nil {
			t.Errorf("parseRecipientEntry(%q) accepted", bad)
		}
	}
}

// TestServeSkipsBadFileLines: serve skips a whitelist file line that
// does not parse with a warning naming FILE:LINE and why, as postgrey
// does with a Perl-only regexp, and keeps the file's other entries; bad
// inline entries still fail.
func TestServeSkipsBadFileLines(t *testing.T) {
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	c, err := New(Options{
		Store:                newStore(),
		WhitelistClientFiles: []string{"testdata/bad_whitelist_clients"},
		SkipBadFileLines:     true,
		Log:                  log,
	})
	if err != nil {
		t.Fatalf("New with SkipBadFileLines: %v", err)
	}
	if _, ok := c.clients.match(netip.MustParseAddr("198.51.100.1"), "good.example.com"); !ok {
		t.Error("a good line of the file was lost with the bad ones")
	}
	for _, want := range []string{
		`testdata/bad_whitelist_clients:6: greylist: invalid client whitelist entry \"/(?!spam)mail\\.example\\.com/\": not a Go RE2 regexp (Perl look-around`,
		"testdata/bad_whitelist_clients:9:",
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no warning containing %q:\n%s", want, logs.String())
		}
	}
	if _, err := New(Options{Store: newStore(), WhitelistClients: []string{"/(?!x)y/"}, SkipBadFileLines: true, Log: log}); err == nil {
		t.Error("a bad inline entry was skipped; only file lines are")
	}
}
