package mailbox

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestParseKeepsEveryByte(t *testing.T) {
	cases := map[string]string{
		"lf":              "a:x:1:1::/h/a:/bin/false\nb:x:1:1::/h/b:/bin/false\n",
		"crlf":            "a:x\r\nb:x\r\n",
		"mixed ends":      "a:x\r\nb:x\nc:x\r\n",
		"no final end":    "a:x\nb:x",
		"crlf no end":     "a:x\r\nb:x",
		"comments":        "# users\na:x\n\n   \n\t\n# end\nb:x\n",
		"duplicates":      "a:x\nb:x\na:y\n",
		"only comments":   "# nothing here\n",
		"empty":           "",
		"utf8 gecos":      "a:x:1:1:Jürgen Groß:/h/a:/bin/false\n",
		"extra fields":    "a@example.com:{PLAIN}pw:1:1::/h::userdb_quota_rule=*:storage=1G\n",
		"blank last line": "a:x\n\n",
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			f, err := Parse("p", []byte(in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			var all bytes.Buffer
			next := 0
			for _, l := range f.Lines {
				if l.Start != next {
					t.Fatalf("line %d starts at %d, want %d", l.Num, l.Start, next)
				}
				all.Write(f.Data[l.Start:l.End])
				next = l.End
			}
			if all.String() != in {
				t.Errorf("lines do not add up to the file:\n%q\n%q", all.String(), in)
			}
			if out, removed := f.Without(func(Line) bool { return false }); string(out) != in || len(removed) != 0 {
				t.Errorf("removing nothing changed the file: %q", out)
			}
		})
	}
}

func TestParseKeys(t *testing.T) {
	f, err := Parse("p", []byte("# c\nalice:x\r\n\nbob@example.org:{PLAIN}x:::::\nalice:y"))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, l := range f.Lines {
		keys = append(keys, l.Key)
	}
	if got := strings.Join(keys, "|"); got != "|alice||bob@example.org|alice" {
		t.Errorf("keys %q", got)
	}
	if f.Entries() != 3 {
		t.Errorf("Entries() = %d, want 3", f.Entries())
	}
	if got := f.Text(f.Lines[1]); got != "alice:x" {
		t.Errorf("Text strips CRLF: got %q", got)
	}
	if home := homeField(f.Fields(f.Lines[3])); home != "" {
		t.Errorf("empty home field read as %q", home)
	}
}

func TestWithoutRemovesWholeLinesOnly(t *testing.T) {
	in := "# head\r\na:1\r\nb:2\nc:3\r\na:4\nd:5"
	f, err := Parse("p", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	out, removed := f.Without(func(l Line) bool { return l.Key == "a" || l.Key == "d" })
	if want := "# head\r\nb:2\nc:3\r\n"; string(out) != want {
		t.Errorf("got %q, want %q", out, want)
	}
	if len(removed) != 3 || removed[0].Num != 2 || removed[1].Num != 5 || removed[2].Num != 6 {
		t.Errorf("removed %+v, want lines 2, 5 and 6", removed)
	}
	// Comments are never removed, whatever the predicate says.
	out, _ = f.Without(func(Line) bool { return true })
	if string(out) != "# head\r\n" {
		t.Errorf("removing every entry gave %q", out)
	}
}

func TestParseRefusesJunk(t *testing.T) {
	long := "a:" + strings.Repeat("x", maxLineBytes) + "\n"
	cases := []struct {
		name, in string
		line     int
		want     string
	}{
		{"nul", "a:x\nb:\x00x\n", 2, "NUL byte at column 3"},
		{"escape", "a:x\x1b[2J\n", 1, "control character 0x1b"},
		{"del", "a:x\x7f\n", 1, "control character 0x7f"},
		{"lone cr", "a:x\rb:y\n", 1, "carriage return at column 4"},
		{"cr at end of file", "a:x\nb:y\r", 2, "carriage return"},
		{"invalid utf8", "a:x\nb:\xff\xfe\n", 2, "invalid UTF-8"},
		{"overlong", "a:x\n" + long, 2, "longer than"},
		{"no colon", "a:x\nnonsense\n", 2, `entry "nonsense" has no ':'`},
		{"empty name", ":x\n", 1, "empty name"},
		{"leading space", " a:x\n", 1, "starts with white space"},
		{"space in name", "a b:x\n", 1, `name "a b" contains white space`},
		{"binary", "\x7fELF\x02\x01\x01\x00\x00", 1, "control character"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("/etc/virtual/x/passwd", []byte(c.in))
			var pe *ParseError
			if !errors.As(err, &pe) || !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse: %v, want a ParseError wrapping ErrMalformed", err)
			}
			if pe.Line != c.line || pe.Path != "/etc/virtual/x/passwd" || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q (line %d), want line %d and %q", err, pe.Line, c.line, c.want)
			}
			if !strings.HasPrefix(err.Error(), "/etc/virtual/x/passwd:") {
				t.Errorf("error %q does not start with the path", err)
			}
		})
	}
}
