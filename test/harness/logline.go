package harness

import (
	"strconv"
	"strings"
)

// Record is one log line in slog's text format, key to value, with quoted
// values unquoted: msg=decision action=tempfail reason="greylist: new
// triplet" gives {"msg": "decision", "action": "tempfail", "reason":
// "greylist: new triplet"}.
type Record map[string]string

// ParseRecord parses one slog text-format line. It returns nil for a line
// that is not key=value pairs.
func ParseRecord(line string) Record {
	rec := Record{}
	s := strings.TrimSpace(line)
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 || strings.ContainsAny(s[:eq], " \t\"") {
			return nil
		}
		key := s[:eq]
		s = s[eq+1:]
		var val string
		if strings.HasPrefix(s, `"`) {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return nil
			}
			val, _ = strconv.Unquote(q)
			s = s[len(q):]
		} else if sp := strings.IndexByte(s, ' '); sp >= 0 {
			val, s = s[:sp], s[sp:]
		} else {
			val, s = s, ""
		}
		rec[key] = val
		s = strings.TrimLeft(s, " ")
	}
	if len(rec) == 0 {
		return nil
	}
	return rec
}

// ParseRecords parses every slog text line in text, skipping others.
func ParseRecords(text string) []Record {
	var recs []Record
	for _, line := range strings.Split(text, "\n") {
		if r := ParseRecord(line); r != nil {
			recs = append(recs, r)
		}
	}
	return recs
}

// String renders the record for failure messages, keys in log order lost.
func (r Record) String() string {
	var b strings.Builder
	for _, k := range []string{"msg", "frontend", "stage", "action", "check", "client", "sender", "recipient", "user", "reply", "reason"} {
		if v, ok := r[k]; ok {
			b.WriteString(k + "=" + strconv.Quote(v) + " ")
		}
	}
	return strings.TrimSpace(b.String())
}
