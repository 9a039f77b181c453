package trap

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		line string
		want command
	}{
		{"HELO pc1.school.example\r\n", command{Verb: "HELO", Arg: "pc1.school.example"}},
		{"ehlo [10.0.0.5]\n", command{Verb: "EHLO", Arg: "[10.0.0.5]"}},
		{"MAIL FROM:<worm@evil.example> SIZE=1000\r\n", command{Verb: "MAIL",
			Arg: "FROM:<worm@evil.example> SIZE=1000", Path: "worm@evil.example", PathOK: true}},
		{"mail from: <a@b>", command{Verb: "MAIL", Arg: "from: <a@b>", Path: "a@b", PathOK: true}},
		{"MAIL FROM:<>", command{Verb: "MAIL", Arg: "FROM:<>", Path: "<>", PathOK: true}},
		{"MAIL FROM:bare@x BODY=8BITMIME", command{Verb: "MAIL",
			Arg: "FROM:bare@x BODY=8BITMIME", Path: "bare@x", PathOK: true}},
		{"MAIL FROM:<unterminated", command{Verb: "MAIL", Arg: "FROM:<unterminated"}},
		{"MAIL TO:<x>", command{Verb: "MAIL", Arg: "TO:<x>"}},
		{"MAIL", command{Verb: "MAIL"}},
		{"", command{}},
		{"  noop  \r\n", command{Verb: "NOOP"}},
		{"QUITTING", command{Verb: "QUITTING"}},
	} {
		if got := parseCommand([]byte(tc.line)); got != tc.want {
			t.Errorf("parseCommand(%q) = %+v, want %+v", tc.line, got, tc.want)
		}
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		"HELO x\r\n", "EHLO [::1]\n", "MAIL FROM:<a@b> SIZE=1\r\n", "MAIL FROM:<>\r\n",
		"mail from:x", "QUIT\r\n", "RSET", "\r\n", "\x00\xff\r", "MAIL FROM:<<>>",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		c := parseCommand(line)
		if len(c.Verb) > maxVerbLen || strings.ContainsAny(c.Verb, " abcdefghijklmnopqrstuvwxyz") {
			t.Fatalf("verb %q not an upper-case word", c.Verb)
		}
		if c.PathOK && c.Verb != verbMail {
			t.Fatalf("path parsed for verb %q", c.Verb)
		}
		for _, v := range []string{c.Arg, c.Path} {
			cl := Clean(v)
			if len(cl) > MaxFieldLen || !utf8.ValidString(cl) {
				t.Fatalf("Clean(%q) = %q: too long or invalid UTF-8", v, cl)
			}
			for _, r := range cl {
				if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
					t.Fatalf("Clean(%q) kept control %U", v, r)
				}
			}
		}
	})
}
