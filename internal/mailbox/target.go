package mailbox

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
	"unicode"
)

// Target is one mailbox to remove: an exact local part on an exact
// domain. There are no patterns: a removal names every mailbox.
type Target struct {
	Local  string
	Domain string // lowercased; "" for a bare Dovecot user name
}

func (t Target) String() string {
	if t.Domain == "" {
		return t.Local
	}
	return t.Local + "@" + t.Domain
}

// ParseTarget reads "local@domain", or a bare Dovecot user name.
func ParseTarget(s string) (Target, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return Target{}, fmt.Errorf("empty mailbox name")
	case strings.ContainsAny(s, "*?[]"):
		return Target{}, fmt.Errorf("%q: patterns are not accepted; name each mailbox exactly (local@domain)", s)
	case strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return Target{}, fmt.Errorf("%q: a mailbox name has no spaces or control characters", s)
	case strings.ContainsAny(s, ":/"):
		return Target{}, fmt.Errorf("%q: a mailbox name has no ':' or '/'", s)
	}
	local, domain := splitUser(s)
	if strings.HasSuffix(s, "@") || strings.HasPrefix(s, "@") {
		return Target{}, fmt.Errorf("%q: want local@domain", s)
	}
	domain = strings.TrimSuffix(domain, ".")
	if local == "" || (strings.Contains(s, "@") && domain == "") {
		return Target{}, fmt.Errorf("%q: want local@domain", s)
	}
	return Target{Local: local, Domain: domain}, nil
}

// ReadTargetList reads a list file: one mailbox per line, blank lines
// and '#' comments ignored. Every bad line is reported with its number.
func ReadTargetList(path string) ([]Target, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mailbox: reading the list: %w", err)
	}
	return ParseTargetList(path, data)
}

// ParseTargetList parses a list file's content (see ReadTargetList).
func ParseTargetList(path string, data []byte) ([]Target, error) {
	var out []Target
	var bad []string
	err := listLines(data, func(n int, line string) {
		t, err := ParseTarget(line)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s:%d: %v", path, n, err))
			return
		}
		out = append(out, t)
	})
	if err != nil {
		return nil, fmt.Errorf("mailbox: reading %s: %w", path, err)
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrMalformed, strings.Join(bad, "\n"))
	}
	return out, nil
}

// dedupe drops repeated targets, keeping the first.
func dedupe(ts []Target) []Target {
	seen := map[Target]bool{}
	out := ts[:0:0]
	for _, t := range ts {
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}

// listLines calls fn with each line of a list file that is not blank or
// a # comment, trimmed, and its line number.
func listLines(data []byte, fn func(n int, line string)) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxLineBytes)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fn(n, line)
	}
	return sc.Err()
}
