package mtaqueue

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Limits on one -H file, so that a damaged or hostile file cannot make
// the listing use unbounded memory: Exim itself refuses more than 16,384
// recipients (spool_in.c, "rcpt cnt").
const (
	eximMaxRecipients = 16384
	eximMaxLine       = 1 << 20
)

// ErrEximFormat is wrapped by every error ParseEximHeader returns for a
// file that is not a well-formed -H file.
var ErrEximFormat = errors.New("mtaqueue: malformed Exim spool file")

// EximHeader is what ParseEximHeader reads from one -H file.
type EximHeader struct {
	// Message has the ID, sender, arrival time, undelivered recipients,
	// authenticated user and queue name; its Size is HeaderBytes only.
	Message Message
	// HeaderBytes is the size of the headers Exim would transmit: the
	// sum of the header lengths, leaving out the ones it marked "*"
	// (replaced or deleted), as Exim counts message_size when it reads
	// the file (spool_in.c).
	HeaderBytes int64
}

// ParseEximHeader reads an Exim -H spool file, in the format of the Exim
// specification, chapter "Format of spool files", section "Format of the
// -H file", as Exim 4.96 and later write it. Recipients already
// delivered (in the non-recipients tree) are left out.
func ParseEximHeader(r io.Reader) (EximHeader, error) {
	p := &eximParser{r: bufio.NewReaderSize(r, 8<<10)}
	h, err := p.parse()
	switch {
	case err == nil, errors.Is(err, ErrEximFormat):
	case errors.Is(err, io.ErrUnexpectedEOF):
		err = fmt.Errorf("%w: ends early, in the %s", ErrEximFormat, p.where)
	default:
		err = fmt.Errorf("reading the %s: %w", p.where, err)
	}
	return h, err
}

type eximParser struct {
	r     *bufio.Reader
	where string
	line  int
}

func (p *eximParser) bad(format string, args ...any) error {
	return fmt.Errorf("%w: line %d (%s): %s", ErrEximFormat, p.line, p.where, fmt.Sprintf(format, args...))
}

// readLine returns the next line without its newline; a last line
// without one is an error, as a file Exim wrote always ends in one.
func (p *eximParser) readLine() (string, error) {
	var b []byte
	for {
		chunk, err := p.r.ReadSlice('\n')
		b = append(b, chunk...)
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(b) > eximMaxLine {
				return "", p.bad("a line longer than %d bytes", eximMaxLine)
			}
			continue
		}
		if errors.Is(err, io.EOF) {
			return "", io.ErrUnexpectedEOF
		}
		return "", err
	}
	p.line++
	return string(b[:len(b)-1]), nil
}

func (p *eximParser) parse() (EximHeader, error) {
	var h EximHeader
	m := &h.Message

	// Line 1: the file's own name, "ID-H".
	p.where = "first line"
	l, err := p.readLine()
	if err != nil {
		return h, err
	}
	id, ok := strings.CutSuffix(l, "-H")
	if !ok || !ValidEximID(id) {
		return h, p.bad("%q is not an Exim message ID followed by -H", l)
	}
	m.ID = id

	// Line 2: login, uid and gid of the process that wrote the file.
	p.where = "owner line"
	if l, err = p.readLine(); err != nil {
		return h, err
	}
	if f := strings.Fields(l); len(f) < 3 || !isInt(f[len(f)-1]) || !isInt(f[len(f)-2]) {
		return h, p.bad("%q is not a login, uid and gid", l)
	}

	// Line 3: the envelope sender in angle brackets, <> for a bounce.
	p.where = "sender line"
	if l, err = p.readLine(); err != nil {
		return h, err
	}
	if len(l) < 2 || l[0] != '<' || l[len(l)-1] != '>' {
		return h, p.bad("sender %q is not in angle brackets", l)
	}
	m.Sender = l[1 : len(l)-1]

	// Line 4: the time received and the count of delay warnings sent.
	p.where = "time line"
	if l, err = p.readLine(); err != nil {
		return h, err
	}
	f := strings.Fields(l)
	if len(f) != 2 || !isInt(f[1]) {
		return h, p.bad("%q is not a time and a warning count", l)
	}
	secs, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return h, p.bad("received time %q: %v", f[0], err)
	}
	m.Arrival = time.Unix(secs, 0)

	// Option lines, each starting with "-" ("--" when the value is
	// tainted, "-(lookup)" or "--(lookup)" when it is quoted).
	// Unknown ones are skipped, as Exim does.
	p.where = "option lines"
	firstTime, frozen := false, false
	for {
		if l, err = p.readLine(); err != nil {
			return h, err
		}
		if !strings.HasPrefix(l, "-") {
			break
		}
		name, value := eximOption(l)
		switch name {
		case "auth_id":
			m.AuthUser = value
		case "deliver_firsttime":
			firstTime = true
		case "frozen":
			frozen = true
		case "aclc", "aclm", "acl":
			// "-aclc NAME LENGTH": the value is the next LENGTH bytes and
			// a newline, and may hold newlines itself.
			fs := strings.Fields(value)
			n := -1
			if len(fs) == 2 {
				n, _ = strconv.Atoi(fs[1])
			}
			if n < 0 {
				return h, p.bad("ACL variable line %q has no length", l)
			}
			// Exim accepts a value that lacks only its final newline.
			if k, _ := io.CopyN(io.Discard, p.r, int64(n)+1); k < int64(n) {
				return h, io.ErrUnexpectedEOF
			}
		}
	}
	switch {
	case frozen:
		m.Queue = Frozen
	case firstTime:
		m.Queue = Active
	default:
		m.Queue = Deferred
	}

	// The non-recipients tree: "XX" when empty, else one "YN address"
	// line per node, in preorder, the letters saying whether a left and
	// a right branch follow. It is walked with a count of pending nodes,
	// not recursion, so no file can exhaust the stack.
	p.where = "non-recipients tree"
	delivered := map[string]bool{}
	if l != "XX" {
		for pending := 1; ; {
			if len(l) < 4 || l[2] != ' ' || !isYN(l[0]) || !isYN(l[1]) {
				return h, p.bad("%q is not a tree node", l)
			}
			delivered[l[3:]] = true
			pending--
			if l[0] == 'Y' {
				pending++
			}
			if l[1] == 'Y' {
				pending++
			}
			if pending == 0 {
				break
			}
			if l, err = p.readLine(); err != nil {
				return h, err
			}
		}
	}

	// The recipients: a count, then one line each.
	p.where = "recipient count"
	if l, err = p.readLine(); err != nil {
		return h, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(l))
	if err != nil || n < 0 || n > eximMaxRecipients {
		return h, p.bad("%q is not a recipient count from 0 to %d", l, eximMaxRecipients)
	}
	p.where = "recipients"
	for range n {
		if l, err = p.readLine(); err != nil {
			return h, err
		}
		addr := eximRecipient(l)
		if addr == "" {
			return h, p.bad("empty recipient")
		}
		if !delivered[addr] {
			m.Recipients = append(m.Recipients, Recipient{Address: addr})
		}
	}

	// A blank line, then the headers, each "LENGTH FLAG " and LENGTH
	// bytes of header text, newlines included.
	p.where = "blank line before the headers"
	if l, err = p.readLine(); err != nil {
		return h, err
	}
	if l != "" {
		return h, p.bad("%q where a blank line belongs", l)
	}
	p.where = "headers"
	for {
		size, flag, err := p.headerPrefix()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return h, err
		}
		k, err := io.CopyN(io.Discard, p.r, size)
		if err != nil && !errors.Is(err, io.EOF) {
			return h, err
		}
		if k != size {
			return h, p.bad("a header of %d bytes ends after %d", size, k)
		}
		if flag != '*' {
			h.HeaderBytes += size
		}
	}
	m.Size = h.HeaderBytes
	return h, nil
}

// headerPrefix reads "LENGTH FLAG " before a header: "149P " for a
// Received: header, "012  " for one without a flag. io.EOF means the
// file ended cleanly before it.
func (p *eximParser) headerPrefix() (int64, byte, error) {
	var size int64
	digits := 0
	for {
		c, err := p.r.ReadByte()
		if err != nil {
			switch {
			case errors.Is(err, io.EOF) && digits == 0:
				return 0, 0, io.EOF
			case errors.Is(err, io.EOF):
				return 0, 0, io.ErrUnexpectedEOF
			}
			return 0, 0, err
		}
		if !isDigit(c) {
			if digits == 0 {
				return 0, 0, p.bad("header starts with %q, not its length", c)
			}
			if c == '\n' {
				return 0, 0, p.bad("header length without a flag")
			}
			if sp, err := p.r.ReadByte(); err != nil || sp != ' ' {
				return 0, 0, p.bad("header flag %q is not followed by a space", c)
			}
			return size, c, nil
		}
		if digits++; digits > 12 {
			return 0, 0, p.bad("header length of more than 12 digits")
		}
		size = size*10 + int64(c-'0')
	}
}

// eximOption splits an option line into its name and value, without the
// taint and quoting marks (spool_in.c: "--" tainted, "(lookup)" quoted).
func eximOption(l string) (name, value string) {
	l = strings.TrimPrefix(l, "-")
	l = strings.TrimPrefix(l, "-")
	if strings.HasPrefix(l, "(") {
		if i := strings.IndexByte(l, ')'); i >= 0 {
			l = l[i+1:]
		}
	}
	name, value, _ = strings.Cut(l, " ")
	return name, value
}

// eximRecipient returns the address of a recipient line. The line may
// end in extra fields, read from the right as spool_in.c does:
// "ADDRESS ERRORS_TO LEN,PNO#1", "ADDRESS ORCPT LEN,FLAGS#2" (both with
// #3), or, from older Exims, "ADDRESS PNO" and "ADDRESS N,PNO,N".
func eximRecipient(l string) string {
	i := len(l)
	for i > 0 && isDigit(l[i-1]) {
		i--
	}
	if i == 0 || i == len(l) {
		return l
	}
	switch l[i-1] {
	case ',': // Exim 3: "address d,d,d"
		j := i - 1
		for j > 0 && (isDigit(l[j-1]) || l[j-1] == ',') {
			j--
		}
		if j > 0 && l[j-1] == ' ' {
			return l[:j-1]
		}
		return l
	case ' ': // early Exim 4: "address pno"
		return l[:i-1]
	case '#':
		flags, _ := strconv.Atoi(l[i:])
		p := i - 1
		for _, bit := range []int{1, 2} {
			if flags&bit == 0 {
				continue
			}
			// " DATA LEN,N" ends at p, DATA being LEN bytes (so that
			// an empty one leaves two spaces).
			j := p
			for j > 0 && (isDigit(l[j-1]) || l[j-1] == ',' || l[j-1] == '-') {
				j--
			}
			lenField, _, _ := strings.Cut(l[j:p], ",")
			n, err := strconv.Atoi(lenField)
			if err != nil || n < 0 || j-n-2 < 0 || l[j-1] != ' ' || l[j-n-2] != ' ' {
				return ""
			}
			p = j - n - 2
		}
		return l[:p]
	}
	return l
}

// ValidEximID reports whether id is an Exim message ID: three base-62
// parts separated by hyphens, 6-6-2 characters before Exim 4.97 and
// 6-11-4 from 4.97 on (Exim specification, "Message identification").
// Only such IDs are ever passed to exim -Mrm, -Mf and -Mt.
func ValidEximID(id string) bool {
	var want []int
	switch len(id) {
	case 16:
		want = []int{6, 6, 2}
	case 23:
		want = []int{6, 11, 4}
	default:
		return false
	}
	parts := strings.Split(id, "-")
	if len(parts) != 3 {
		return false
	}
	for i, part := range parts {
		if len(part) != want[i] || !isBase62(part) {
			return false
		}
	}
	return true
}

func isBase62(s string) bool {
	for _, c := range []byte(s) {
		if !(isDigit(c) || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isYN(c byte) bool    { return c == 'Y' || c == 'N' }

func isInt(s string) bool {
	s = strings.TrimPrefix(s, "-")
	return s != "" && len(s) <= 18 && bytes.IndexFunc([]byte(s), func(r rune) bool { return r < '0' || r > '9' }) < 0
}
