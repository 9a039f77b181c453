package adminapi

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"mailwarden/internal/config"
	"mailwarden/internal/store"
)

// maxNoteBytes bounds an audit note: a sentence, not a document.
const maxNoteBytes = 1024

// NormalizeFreeze checks a freeze scope and value and returns them in the
// form the freeze check compares: a domain lowercased without a trailing
// dot, a network as its masked CIDR, a user trimmed.
func NormalizeFreeze(scope, value string) (string, string, error) {
	value = strings.TrimSpace(value)
	switch scope {
	case store.FreezeAll:
		if value != "" {
			return "", "", fmt.Errorf("freeze scope all takes no value, got %q", value)
		}
		return scope, "", nil
	case store.FreezeDomain:
		d, err := checkDomain(value)
		return scope, d, err
	case store.FreezeUser:
		if value == "" {
			return "", "", errors.New("freeze scope user needs a user name")
		}
		if len(value) > 320 || strings.IndexFunc(value, unicode.IsSpace) >= 0 || strings.IndexFunc(value, unicode.IsControl) >= 0 {
			return "", "", fmt.Errorf("user %q is not a SASL user name (no spaces or control characters, at most 320 bytes)", value)
		}
		return scope, value, nil
	case store.FreezeNetwork:
		if value == "" {
			return "", "", errors.New("freeze scope network needs a CIDR such as 10.1.0.0/16")
		}
		p, err := config.ParsePrefix(value)
		if err != nil {
			return "", "", fmt.Errorf("network %q is not a CIDR such as 10.1.0.0/16", value)
		}
		return scope, p.String(), nil
	}
	return "", "", fmt.Errorf("unknown freeze scope %q (want %s, %s, %s or %s)", scope,
		store.FreezeAll, store.FreezeDomain, store.FreezeUser, store.FreezeNetwork)
}

// checkDomain accepts a DNS domain name in ASCII (RFC 1035 §2.3.1 labels,
// A-labels for IDNs) and returns it lowercased without a trailing dot.
func checkDomain(d string) (string, error) {
	d = strings.TrimSuffix(strings.ToLower(d), ".")
	switch {
	case d == "":
		return "", errors.New("freeze scope domain needs a domain such as example.org")
	case strings.Contains(d, "@"):
		return "", fmt.Errorf("domain %q: give the domain alone, without a local part", d)
	case len(d) > 253:
		return "", fmt.Errorf("domain %q is longer than 253 characters", d)
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("domain %q is not a valid domain name", d)
		}
		for _, c := range label {
			if c > unicode.MaxASCII {
				return "", fmt.Errorf("domain %q: write an international domain in its xn-- form", d)
			}
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", fmt.Errorf("domain %q is not a valid domain name", d)
			}
		}
	}
	return d, nil
}

// DescribeScope names what a freeze holds, for messages and the audit log.
func DescribeScope(scope, value string) string {
	switch scope {
	case store.FreezeAll:
		return "all outbound mail"
	case store.FreezeDomain:
		return "sender domain " + value
	}
	return scope + " " + value
}

// checkNote trims a note and refuses one that would garble a log line or
// a table: it must be one line of printable text.
func checkNote(n string) (string, error) {
	n = strings.TrimSpace(n)
	if len(n) > maxNoteBytes {
		return "", fmt.Errorf("note is longer than %d bytes", maxNoteBytes)
	}
	if strings.IndexFunc(n, unicode.IsControl) >= 0 {
		return "", errors.New("note must be one line of text without control characters")
	}
	return n, nil
}

func withNote(s, note string) string {
	if note == "" {
		return s
	}
	return s + ": " + note
}

func parseBool(s string) (bool, error) {
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("%q is not 1, 0, true or false", s)
	}
	return b, nil
}

// parseLimit parses a limit parameter; "" gives def, and max (if not 0)
// bounds it.
func parseLimit(s string, def, max int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || max > 0 && (n < 1 || n > max) {
		if max > 0 {
			return 0, fmt.Errorf("limit %q: want a number from 1 to %d", s, max)
		}
		return 0, fmt.Errorf("limit %q: want a number, 0 for no limit", s)
	}
	return n, nil
}

func parseTime(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %q is not an RFC 3339 time such as 2006-01-02T15:04:05Z", name, s)
	}
	return t, nil
}
