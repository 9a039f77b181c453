package policyd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"mailwarden/internal/defaults"
)

// Errors returned by ReadRequest, wrapped with detail. Each one closes the
// connection: after a protocol error the server cannot know where the next
// request starts.
var (
	// ErrLineTooLong is a line longer than the reader's buffer or the
	// request limit.
	ErrLineTooLong = errors.New("policyd: line too long")
	// ErrRequestTooLarge is a request whose lines add up to more than
	// the request limit.
	ErrRequestTooLarge = errors.New("policyd: request too large")
	// ErrMalformed is a request that breaks the protocol: a line without
	// '=', an empty or non-ASCII attribute name, a NUL byte, a stray CR,
	// or no request=smtpd_access_policy attribute.
	ErrMalformed = errors.New("policyd: malformed request")
)

// DefaultMaxRequestBytes bounds one request when the caller passes 0. A
// Postfix 3.x request with every attribute filled is about 1 KB.
const DefaultMaxRequestBytes = 64 << 10

// Attrs are the name=value attributes of one policy request. Names are
// lowercase; when a name repeats, the last value wins.
type Attrs map[string]string

// ReadRequest reads one request: name=value lines ended by an empty line
// (Postfix SMTPD_POLICY_README, "Policy protocol description"). A line
// ends with LF; one CR before it is tolerated for hand-typed tests.
//
// Reads are bounded: a line longer than min(r.Size(), maxBytes) fails with
// ErrLineTooLong once that much is buffered, and a request longer than
// maxBytes fails with ErrRequestTooLarge, so at most maxBytes+r.Size()
// bytes are consumed. It returns io.EOF when the stream ends cleanly
// before a request starts, and an error wrapping io.ErrUnexpectedEOF when
// it ends inside one. Other read errors (deadlines) are wrapped.
func ReadRequest(r *bufio.Reader, maxBytes int) (Attrs, error) {
	attrs := make(Attrs, requestAttrs)
	if err := readRequestInto(r, maxBytes, attrs); err != nil {
		return nil, err
	}
	return attrs, nil
}

// readRequestInto is ReadRequest filling attrs, which it clears first. A
// connection reuses one map for all its requests: a new one for each was
// a quarter of the bytes a request allocated. The values stay valid
// after the next request; only the map is reused.
func readRequestInto(r *bufio.Reader, maxBytes int, attrs Attrs) error {
	clear(attrs)
	maxBytes = defaults.Positive(maxBytes, DefaultMaxRequestBytes)
	lineMax := min(r.Size(), maxBytes)
	// The lines are checked as they arrive, kept in lines, and turned
	// into one string at the end whose pieces become the names and
	// values: one allocation for the request instead of two a line.
	var buf [1024]byte
	lines := buf[:0]
	total := 0
	for n := 1; ; n++ {
		line, err := r.ReadSlice('\n')
		switch {
		case err == nil:
		case errors.Is(err, bufio.ErrBufferFull):
			return fmt.Errorf("%w: line %d is longer than %d bytes", ErrLineTooLong, n, lineMax)
		case errors.Is(err, io.EOF):
			if total == 0 && len(line) == 0 {
				return io.EOF
			}
			return fmt.Errorf("policyd: connection closed after %d bytes of a request: %w",
				total+len(line), io.ErrUnexpectedEOF)
		default:
			return fmt.Errorf("policyd: reading request line %d: %w", n, err)
		}
		if len(line) > lineMax {
			return fmt.Errorf("%w: line %d is longer than %d bytes", ErrLineTooLong, n, lineMax)
		}
		total += len(line)
		if total > maxBytes {
			return fmt.Errorf("%w: more than %d bytes", ErrRequestTooLarge, maxBytes)
		}
		line = line[:len(line)-1]
		if k := len(line); k > 0 && line[k-1] == '\r' {
			line = line[:k-1]
		}
		if len(line) == 0 {
			break
		}
		if err := checkAttr(line); err != nil {
			return fmt.Errorf("%w: line %d: %s", ErrMalformed, n, err)
		}
		lines = append(append(lines, line...), '\n')
	}
	for rest := string(lines); rest != ""; {
		var line string
		line, rest, _ = strings.Cut(rest, "\n")
		name, value, _ := strings.Cut(line, "=")
		attrs[lowerASCII(name)] = value
	}
	if v, ok := attrs["request"]; !ok || v != "smtpd_access_policy" {
		return fmt.Errorf("%w: no request=smtpd_access_policy attribute", ErrMalformed)
	}
	return nil
}

// checkAttr checks one name=value line. Values may hold any byte but
// NUL and CR: Postfix passes HELO names and addresses through as the
// client sent them, and they are escaped wherever they are shown.
func checkAttr(line []byte) error {
	if i := bytes.IndexByte(line, 0); i >= 0 {
		return fmt.Errorf("NUL byte at offset %d", i)
	}
	if i := bytes.IndexByte(line, '\r'); i >= 0 {
		return fmt.Errorf("stray CR at offset %d", i)
	}
	eq := bytes.IndexByte(line, '=')
	if eq < 0 {
		return errors.New("no '=' in line")
	}
	if eq == 0 {
		return errors.New("empty attribute name")
	}
	for _, c := range line[:eq] {
		if c <= ' ' || c > '~' {
			return fmt.Errorf("attribute name has byte 0x%02x", c)
		}
	}
	return nil
}

// lowerASCII returns name in lower case, allocating only when it has an
// upper-case letter (Postfix sends lower-case names).
func lowerASCII(name string) string {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(name)
		}
	}
	return name
}
