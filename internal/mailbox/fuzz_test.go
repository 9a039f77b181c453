package mailbox

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the passwd-file parser: it must
// refuse them with a ParseError or account for every byte, and removing
// any set of entries must leave exactly the other lines.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"a:x:1:1::/home/a/imap/d/a:/bin/false\n",
		"a:x\r\nb:y\r\n",
		"# c\n\na:x\nb:y",
		"a:x\na:y\n",
		"a@b.example:{PLAIN}p:::::\n",
		"\x00\x01",
		"a:x\rb",
	} {
		f.Add([]byte(s), uint64(0x5555))
	}
	f.Fuzz(func(t *testing.T, data []byte, pick uint64) {
		pf, err := Parse("fuzz", data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not a ParseError", err)
			}
			return
		}
		next := 0
		for i, l := range pf.Lines {
			if l.Start != next || l.End <= l.Start || l.Num != i+1 {
				t.Fatalf("line %+v does not follow offset %d", l, next)
			}
			next = l.End
		}
		if next != len(data) {
			t.Fatalf("lines end at %d of %d bytes", next, len(data))
		}
		drop := func(l Line) bool { return pick>>(uint(l.Num)%64)&1 == 1 }
		out, removed := pf.Without(drop)
		gone := map[int]bool{}
		for _, l := range removed {
			gone[l.Num] = true
		}
		var want []byte
		for i, chunk := range bytes.SplitAfter(data, []byte("\n")) {
			if !gone[i+1] {
				want = append(want, chunk...)
			}
		}
		if !bytes.Equal(out, want) {
			t.Fatalf("Without gave %q, want %q", out, want)
		}
		if _, err := Parse("again", out); err != nil {
			t.Fatalf("the result of removing lines no longer parses: %v", err)
		}
	})
}

// FuzzParseDomainOwners: domainowners is written by the control panel an
// attacker controls; any content gives owners that are safe path
// components, or a reported problem.
func FuzzParseDomainOwners(f *testing.F) {
	for _, s := range []string{
		"example.com: admin\nexample.org: reseller1\n",
		"# comment\n\nexample.com:admin\r\n",
		"../etc: root\nx.example: ../../etc\n",
		"a.example: b c\nnocolon\n",
		"\x00: \x00\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		owners, _ := parseDomainOwners("fuzz", data)
		for d, o := range owners {
			if !safeName(d) || !safeName(o) || strings.ContainsAny(o, " \t") {
				t.Fatalf("unsafe owner %q for %q", o, d)
			}
		}
	})
}
