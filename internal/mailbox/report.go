package mailbox

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// auditVersion marks the JSON audit format; "mailbox remove
// --from-audit" reads it back.
const auditVersion = 1

// appendEntry appends one mailbox of the JSON audit: address, local,
// domain, owner, file, line, home, created, domains, flags, near_role,
// distance, suspect (owner, home, created, near_role and distance only
// when set). It is written by hand rather than with encoding/json's
// reflection, which took most of the time of a million-mailbox audit.
func appendEntry(b []byte, e Entry) []byte {
	str := func(name, v string) {
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":`...)
		b = appendJSONString(b, v)
		b = append(b, ',')
	}
	num := func(name string, v int) {
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":`...)
		b = strconv.AppendInt(b, int64(v), 10)
		b = append(b, ',')
	}
	b = append(b, '{')
	str("address", e.Address())
	str("local", e.Local)
	str("domain", e.Domain)
	if e.Owner != "" {
		str("owner", e.Owner)
	}
	str("file", e.File)
	num("line", e.Line)
	if e.Home != "" {
		str("home", e.Home)
	}
	if !e.Created.IsZero() {
		str("created", e.Created.UTC().Format(time.RFC3339Nano))
	}
	num("domains", e.Domains)
	b = append(b, `"flags":[`...)
	for i, f := range e.Flags.Names() {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, f)
	}
	b = append(b, "],"...)
	if e.Role != "" {
		str("near_role", e.Role)
		num("distance", e.Distance)
	}
	b = append(b, `"suspect":`...)
	b = strconv.AppendBool(b, e.Suspect)
	return append(b, '}')
}

// appendJSONString appends s as a JSON string (RFC 8259 §7): quotes,
// backslashes and control characters escaped, invalid UTF-8 replaced.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[r>>4], hex[r&0xf])
		default:
			b = utf8.AppendRune(b, r) // an invalid byte comes as U+FFFD
		}
	}
	return append(b, '"')
}

// WriteJSON writes the whole audit as one JSON document, the mailboxes
// streamed one per line so a million of them need no second copy in
// memory. SnapshotFile names the snapshot compared with, if any.
func WriteJSON(w io.Writer, r *Report, snapshotFile string, generated time.Time) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	field := func(name string, v any) {
		data, err := json.Marshal(v)
		if err != nil {
			data = []byte("null")
		}
		fmt.Fprintf(bw, "  %q: %s,\n", name, data)
	}
	src := r.Inventory.Source
	bw.WriteString("{\n")
	field("mailwarden_audit", auditVersion)
	field("generated", generated.UTC())
	field("layout", src.Layout)
	field("root", src.Root)
	field("passwd_files", src.PasswdFiles)
	var snap any
	if r.Options.Snapshot != nil {
		snap = map[string]any{"file": snapshotFile, "taken": r.Options.Snapshot.Taken}
	}
	field("snapshot", snap)
	field("thresholds", map[string]any{"many_domains": r.Options.ManyDomains, "max_distance": r.Options.MaxDistance,
		"burst_count": r.Options.BurstCount, "burst_window": r.Options.BurstWindow.String(), "burst_threshold": r.BurstThreshold})
	field("summary", map[string]int{"mailboxes": r.Len(), "domains": r.Inventory.Domains,
		"flagged": r.Flagged, "suspect": r.Suspect})
	lps := make([]map[string]any, 0, len(r.LocalParts))
	for _, lp := range r.LocalParts {
		lps = append(lps, map[string]any{"local": lp.Local, "domains": lp.Domains, "near_role": lp.Role,
			"distance": lp.Distance, "suspect": lp.Suspect})
	}
	field("local_parts", lps)
	bursts := make([]map[string]any, 0, len(r.Bursts))
	for _, b := range r.Bursts {
		bursts = append(bursts, map[string]any{"start": b.Start.UTC(), "end": b.End.UTC(), "count": b.Count})
	}
	field("bursts", bursts)
	problems := make([]string, 0, len(r.Inventory.Problems))
	for _, p := range r.Inventory.Problems {
		problems = append(problems, p.Error())
	}
	field("problems", problems)
	notes := make([]string, 0, len(r.Inventory.Notes))
	for _, p := range r.Inventory.Notes {
		notes = append(notes, p.Error())
	}
	field("notes", notes)
	bw.WriteString("  \"mailboxes\": [")
	var buf []byte
	for i, e := range r.Entries() {
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.WriteString("\n    ")
		buf = appendEntry(buf[:0], e)
		bw.Write(buf)
	}
	bw.WriteString("\n  ]\n}\n")
	return bw.Flush()
}

// WriteCSV writes one row per mailbox with a header row.
func WriteCSV(w io.Writer, r *Report) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"address", "local", "domain", "owner", "file", "line", "created", "domains", "flags", "near_role", "distance", "suspect"})
	for _, e := range r.Entries() {
		created := ""
		if !e.Created.IsZero() {
			created = e.Created.UTC().Format(time.RFC3339)
		}
		row := []string{e.Address(), e.Local, e.Domain, e.Owner, e.File, strconv.Itoa(e.Line), created,
			strconv.Itoa(e.Domains), strings.Join(e.Flags.Names(), " "), e.Role, strconv.Itoa(e.Distance), strconv.FormatBool(e.Suspect)}
		for i := range row {
			row[i] = noFormula(row[i])
		}
		if err := cw.Write(row); err != nil {
			return fmt.Errorf("mailbox: writing CSV: %w", err)
		}
	}
	cw.Flush()
	return cw.Error()
}

// noFormula keeps a spreadsheet from running a cell an attacker chose
// (a local part such as "=cmd|..."), by OWASP's advice: a leading quote.
func noFormula(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// AuditFile is what "mailbox remove --from-audit" takes from a JSON
// audit: where it was made and the mailboxes it marks suspect.
type AuditFile struct {
	Layout      string
	Root        string
	PasswdFiles []string
	Suspect     []Target
}

// ReadAudit reads a JSON audit written by WriteJSON. Only entries with
// "suspect": true are taken, so an administrator reviews the audit by
// setting it to false (or deleting the entry) for a mailbox to keep. The
// mailboxes are decoded one at a time: the audit of a million mailboxes
// is a few hundred megabytes, and only the suspect ones are kept.
func ReadAudit(path string) (*AuditFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("mailbox: reading the audit: %w", err)
	}
	defer f.Close()
	out, version, err := decodeAudit(json.NewDecoder(bufio.NewReaderSize(f, 1<<16)), path)
	if err != nil {
		return nil, fmt.Errorf("mailbox: %s is not a JSON audit: %w", path, err)
	}
	if version != auditVersion {
		return nil, fmt.Errorf("mailbox: %s is not a mailwarden mailbox audit (mailwarden_audit is %d, want %d)", path, version, auditVersion)
	}
	return out, nil
}

// auditEntry is what ReadAudit needs of one mailbox.
type auditEntry struct {
	Address string `json:"address"`
	Local   string `json:"local"`
	Domain  string `json:"domain"`
	Suspect bool   `json:"suspect"`
}

func decodeAudit(dec *json.Decoder, path string) (*AuditFile, int, error) {
	out := &AuditFile{}
	version := 0
	if err := expectDelim(dec, '{'); err != nil {
		return nil, 0, err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, 0, err
		}
		switch tok {
		case "mailwarden_audit":
			err = dec.Decode(&version)
		case "layout":
			err = dec.Decode(&out.Layout)
		case "root":
			err = dec.Decode(&out.Root)
		case "passwd_files":
			err = dec.Decode(&out.PasswdFiles)
		case "mailboxes":
			err = decodeMailboxes(dec, path, out)
		default:
			var skip json.RawMessage
			err = dec.Decode(&skip)
		}
		if err != nil {
			return nil, 0, err
		}
	}
	return out, version, expectDelim(dec, '}')
}

func decodeMailboxes(dec *json.Decoder, path string, out *AuditFile) error {
	if err := expectDelim(dec, '['); err != nil {
		return err
	}
	for i := 1; dec.More(); i++ {
		var m auditEntry
		if err := dec.Decode(&m); err != nil {
			return fmt.Errorf("mailbox %d: %w", i, err)
		}
		if !m.Suspect {
			continue
		}
		t := Target{Local: m.Local, Domain: strings.ToLower(m.Domain)}
		// The address is what a reviewer reads; it must say the same as
		// the fields used for matching.
		if t.Local == "" || !strings.EqualFold(t.String(), m.Address) {
			return fmt.Errorf("%w: %s: mailbox %d: address %q does not match local %q and domain %q",
				ErrMalformed, path, i, m.Address, m.Local, m.Domain)
		}
		out.Suspect = append(out.Suspect, t)
	}
	return expectDelim(dec, ']')
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != want {
		return fmt.Errorf("want %q, got %v", want, tok)
	}
	return nil
}
