// Package mailbox audits the mailboxes of a mail server and removes
// planted ones safely. It reads DirectAdmin's /etc/virtual tree and plain
// Dovecot passwd-files, flags what an attacker with control-panel rights
// typically creates (the same local parts on many domains, misspelled
// role names, bursts of new boxes), and removes exactly the mailboxes an
// administrator names: a dry run first, a backup with checksums, atomic
// rewrites that keep owner and mode, a verification pass, mail
// directories moved to a quarantine, and a restore that puts every byte
// back.
package mailbox

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits on what is accepted as a passwd-style file. A real line is a
// few hundred bytes; anything far longer is not one.
const (
	maxLineBytes = 16 << 10
	maxFileBytes = 1 << 30
)

// ErrMalformed is wrapped by every error about a file's content.
var ErrMalformed = errors.New("mailbox: malformed file")

// ParseError says which line of which file was refused and why.
type ParseError struct {
	Path string
	Line int // 1-based; 0 for the file as a whole
	Msg  string
}

func (e *ParseError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.Path, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, e.Msg)
}

func (e *ParseError) Unwrap() error { return ErrMalformed }

// Line is one line of a passwd-style file: where its bytes lie and, for
// an entry, its key (the user, or the box for quota and aliases).
type Line struct {
	Num   int // 1-based
	Start int // offset of the line's first byte
	End   int // offset after its "\n" or "\r\n"; the file's end for a last line without one
	// Key is the text before the first ':'; "" for comments and blank
	// lines.
	Key string
}

// File is a passwd-style file as read: its exact bytes and its lines.
// Edits are made by leaving whole lines out, so every byte of every
// other line, line ends included, stays as it was.
type File struct {
	Path  string
	Data  []byte
	Lines []Line
}

// Parse reads a file of "key:fields" lines: Dovecot passwd-files
// (user:password:uid:gid:gecos:home:shell:extra_fields), DirectAdmin's
// passwd, quota and aliases. Lines starting with '#' and blank lines
// are kept as they are. Anything else that does not look like such a
// file is refused with the path and line: NUL bytes or other control
// characters (binary junk), invalid UTF-8, lines longer than 16 KiB, a
// line without ':' or with an empty or spaced key. LF and CRLF line
// ends may be mixed and a last line may lack its newline; both are kept.
func Parse(path string, data []byte) (*File, error) {
	if len(data) > maxFileBytes {
		return nil, &ParseError{Path: path, Msg: fmt.Sprintf("%d bytes is larger than any passwd file (limit %d)", len(data), maxFileBytes)}
	}
	f := &File{Path: path, Data: data, Lines: make([]Line, 0, bytes.Count(data, []byte{'\n'})+1)}
	for start, num := 0, 1; start < len(data); num++ {
		end := len(data)
		if i := bytes.IndexByte(data[start:], '\n'); i >= 0 {
			end = start + i + 1
		}
		l := Line{Num: num, Start: start, End: end}
		key, err := lineKey(data[start:end])
		if err != nil {
			return nil, &ParseError{Path: path, Line: num, Msg: err.Error()}
		}
		l.Key = key
		f.Lines = append(f.Lines, l)
		start = end
	}
	return f, nil
}

// lineKey checks one raw line (with its terminator) and returns its key.
func lineKey(raw []byte) (string, error) {
	text := trimEOL(raw)
	if len(text) > maxLineBytes {
		return "", fmt.Errorf("line of %d bytes is longer than %d: not a passwd-style file", len(text), maxLineBytes)
	}
	for i, c := range text {
		switch {
		case c == 0:
			return "", fmt.Errorf("NUL byte at column %d: binary data, not a passwd-style file", i+1)
		case c == '\r':
			return "", fmt.Errorf("carriage return at column %d that does not end the line", i+1)
		case c < 0x20 && c != '\t' || c == 0x7f:
			return "", fmt.Errorf("control character 0x%02x at column %d: binary data, not a passwd-style file", c, i+1)
		}
	}
	if !utf8.Valid(text) {
		return "", errors.New("invalid UTF-8: binary data, not a passwd-style file")
	}
	trimmed := bytes.TrimLeft(text, " \t")
	if len(trimmed) == 0 || trimmed[0] == '#' {
		return "", nil
	}
	if len(trimmed) != len(text) {
		return "", errors.New("entry starts with white space")
	}
	key, _, ok := bytes.Cut(text, []byte{':'})
	switch {
	case !ok:
		return "", fmt.Errorf("entry %q has no ':'", clip(string(text)))
	case len(key) == 0:
		return "", errors.New("entry with an empty name before ':'")
	case bytes.ContainsAny(key, " \t"):
		return "", fmt.Errorf("name %q contains white space", clip(string(key)))
	}
	return string(key), nil
}

// trimEOL drops a line's "\n" or "\r\n". A CR not followed by LF stays,
// to be reported as junk.
func trimEOL(raw []byte) []byte {
	if t, ok := bytes.CutSuffix(raw, []byte{'\n'}); ok {
		return bytes.TrimSuffix(t, []byte{'\r'})
	}
	return raw
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// Text returns line l without its line end.
func (f *File) Text(l Line) string { return string(trimEOL(f.Data[l.Start:l.End])) }

// Fields returns entry l split at ':'. In a passwd file they are user,
// password, uid, gid, gecos, home, shell and extra fields.
func (f *File) Fields(l Line) []string { return strings.Split(f.Text(l), ":") }

// Entries counts the lines that are entries, not comments or blank.
func (f *File) Entries() int {
	n := 0
	for _, l := range f.Lines {
		if l.Key != "" {
			n++
		}
	}
	return n
}

// Without returns the file's bytes with the lines drop selects left
// out, and those lines. Every byte of every other line is kept as it was.
func (f *File) Without(drop func(Line) bool) ([]byte, []Line) {
	out := make([]byte, 0, len(f.Data))
	var removed []Line
	for _, l := range f.Lines {
		if l.Key != "" && drop(l) {
			removed = append(removed, l)
			continue
		}
		out = append(out, f.Data[l.Start:l.End]...)
	}
	return out, removed
}

// homeField returns a passwd entry's home directory (the sixth field),
// or "".
func homeField(fields []string) string {
	if len(fields) > 5 {
		return fields[5]
	}
	return ""
}

// homeBytes returns the sixth field of a raw line without allocating.
func homeBytes(raw []byte) []byte {
	text := trimEOL(raw)
	for range 5 {
		i := bytes.IndexByte(text, ':')
		if i < 0 {
			return nil
		}
		text = text[i+1:]
	}
	if i := bytes.IndexByte(text, ':'); i >= 0 {
		return text[:i]
	}
	return text
}
