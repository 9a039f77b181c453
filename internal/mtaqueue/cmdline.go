package mtaqueue

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// ParseAge parses an age as the queue commands take it: a Go duration
// ("90m", "2h") or whole days ("3d").
func ParseAge(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, errors.New("want an age such as 90m, 2h or 3d")
	}
	return d, nil
}

// FormatAge writes an age as an administrator would type it, so that
// ParseAge reads it back: "3d", "2h", "90m", else a Go duration; "" for
// 0.
func FormatAge(d time.Duration) string {
	for _, u := range []struct {
		d      time.Duration
		suffix string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}} {
		if d != 0 && d%u.d == 0 {
			return strconv.FormatInt(int64(d/u.d), 10) + u.suffix
		}
	}
	if d == 0 {
		return ""
	}
	return d.String()
}

// Flags returns f as the filter flags of "mailwarden queue purge|hold|
// release|list", in a fixed order, so that the exact selection can be
// repeated on a command line.
func (f Filter) Flags() []string {
	var out []string
	add := func(name, v string) {
		if v != "" {
			out = append(out, "--"+name, v)
		}
	}
	add("sender", f.Sender)
	add("recipient", f.Recipient)
	add("sender-domain", f.SenderDomain)
	add("recipient-domain", f.RecipientDomain)
	add("sender-regexp", f.SenderRegexp)
	add("recipient-regexp", f.RecipientRegexp)
	add("auth-user", f.AuthUser)
	add("older-than", FormatAge(f.OlderThan))
	add("newer-than", FormatAge(f.NewerThan))
	add("queue", f.Queue)
	if f.MinSize > 0 {
		add("min-size", strconv.FormatInt(f.MinSize, 10))
	}
	if f.MaxSize > 0 {
		add("max-size", strconv.FormatInt(f.MaxSize, 10))
	}
	return out
}

// ShellJoin quotes args for a POSIX shell and joins them with spaces:
// what an administrator pastes runs exactly these arguments, whatever
// patterns (*, ?, $, quotes) they hold.
func ShellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:@,+%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
