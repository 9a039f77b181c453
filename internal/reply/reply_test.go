package reply

import (
	"errors"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want error
	}{
		{"Greylisted, please try again in {delay}", nil},
		{"two\r\nlines", ErrMultiline},
		{"bell\a", ErrControl},
		{"del\x7f", ErrControl},
		{strings.Repeat("x", MaxText), nil},
		{strings.Repeat("x", MaxText+1), ErrTooLong},
	} {
		if err := Check(tc.in); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("Check(%.20q) = %v, want %v", tc.in, err, tc.want)
		}
	}
}

func TestSafeAndClean(t *testing.T) {
	if got := Safe("évil\r\n.example"); got != "?vil??.example" {
		t.Errorf("Safe = %q", got)
	}
	if got := Clean("550 5.7.1 a\r\nb\x00 é"); got != "550 5.7.1 ab ??" {
		t.Errorf("Clean = %q", got)
	}
	if got := Clean(strings.Repeat("y", 2*MaxLine)); len(got) != MaxLine {
		t.Errorf("Clean kept %d bytes, want %d", len(got), MaxLine)
	}
}

func FuzzClean(f *testing.F) {
	f.Add("451 4.7.1 Greylisted")
	f.Add("\r\n\x00\xff")
	f.Fuzz(func(t *testing.T, s string) {
		c := Clean(s)
		if len(c) > MaxLine || strings.ContainsFunc(c, func(r rune) bool { return r < ' ' || r > '~' }) {
			t.Errorf("Clean(%q) = %q", s, c)
		}
		if Check(Safe(s)) != nil && len(s) <= MaxText {
			t.Errorf("Safe(%q) = %q fails Check", s, Safe(s))
		}
	})
}
