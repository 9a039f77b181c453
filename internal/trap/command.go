package trap

import (
	"bytes"
	"strings"
)

// Command verbs the trap answers; see converse.
const (
	verbHelo = "HELO"
	verbEhlo = "EHLO"
	verbMail = "MAIL"
	verbRset = "RSET"
	verbNoop = "NOOP"
	verbQuit = "QUIT"
)

// command is one parsed client command line.
type command struct {
	// Verb is the first word in upper case (RFC 5321 §2.4: verbs are
	// case-insensitive), at most maxVerbLen bytes.
	Verb string
	// Arg is the rest of the line after the verb and its spaces: the
	// domain for HELO/EHLO, the raw text for anything else.
	Arg string
	// Path is MAIL FROM's reverse-path without angle brackets, "<>" for
	// the null path; valid only when PathOK is set.
	Path   string
	PathOK bool
}

// maxVerbLen bounds the verb; real verbs are four letters.
const maxVerbLen = 16

// parseCommand parses one command line, with or without its line ending.
// It never fails: a line it cannot make sense of has an unknown verb or,
// for MAIL, PathOK unset.
func parseCommand(line []byte) command {
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	s := strings.TrimLeft(string(line), " \t")
	verb, rest, _ := strings.Cut(s, " ")
	if len(verb) > maxVerbLen {
		verb = verb[:maxVerbLen]
	}
	c := command{Verb: upperASCII(verb), Arg: strings.Trim(rest, " \t")}
	if c.Verb == verbMail {
		c.Path, c.PathOK = parseMailFrom(c.Arg)
	}
	return c
}

// parseMailFrom takes "FROM:<path> [params]" (RFC 5321 §4.1.1.2). It
// accepts a space after the colon and a path without brackets, as many
// clients send them, because the trap wants evidence, not conformance.
func parseMailFrom(arg string) (string, bool) {
	const from = "FROM:"
	if len(arg) < len(from) || !strings.EqualFold(arg[:len(from)], from) {
		return "", false
	}
	p := strings.TrimLeft(arg[len(from):], " \t")
	if strings.HasPrefix(p, "<") {
		end := strings.IndexByte(p, '>')
		if end < 0 {
			return "", false
		}
		p = p[1:end]
	} else if i := strings.IndexAny(p, " \t"); i >= 0 {
		p = p[:i]
	}
	if p == "" {
		return "<>", true
	}
	return p, true
}

// upperASCII upper-cases ASCII letters only, so a verb never changes
// length or becomes a different byte sequence outside ASCII.
func upperASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
	return string(b)
}
