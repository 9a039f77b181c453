package clamd

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The wire protocol, from clamd(8) "COMMANDS": a command prefixed with
// "z" ends with a NUL byte and so does its reply. INSTREAM is followed by
// chunks, each a 4-byte big-endian length and that many bytes, and ends
// with a zero-length chunk. Inside IDSESSION every reply is "<id>: "
// followed by the usual reply, ids counting commands from 1.

// maxReply bounds one reply. Real replies are short (a signature name is
// well under 200 bytes); the cap keeps a broken or hostile server from
// making the client buffer without end.
const maxReply = 4096

// chunkSize is the INSTREAM chunk length. clamd reads into a buffer of
// its own size, so any length works; 64 KiB keeps syscalls few.
const chunkSize = 64 << 10

// sizeLimitReply is clamd's answer once a stream passes StreamMaxLength.
const sizeLimitReply = "INSTREAM size limit exceeded. ERROR"

// errNoAnswer is a connection closed before any byte of a reply: clamd
// went away, or a pooled session timed out on clamd's side.
var errNoAnswer = errors.New("connection closed without an answer")

// ServerError is an "... ERROR" reply: clamd understood the request but
// failed it (for example it could not allocate memory). Text is clamd's.
type ServerError struct {
	Text string
}

// Error returns clamd's own text.
func (e *ServerError) Error() string { return "clamd error: " + e.Text }

// readReply reads one NUL-terminated reply and returns it without the
// terminator.
func readReply(br *bufio.Reader) (string, error) {
	var buf []byte
	for {
		part, err := br.ReadSlice(0)
		buf = append(buf, part...)
		if len(buf) > maxReply {
			return "", fmt.Errorf("%w: answer longer than %d bytes: %s", ErrProtocol, maxReply, clip(buf))
		}
		switch {
		case err == nil:
			return string(buf[:len(buf)-1]), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(buf) == 0:
			return "", errNoAnswer
		case errors.Is(err, io.EOF):
			return "", fmt.Errorf("%w: answer cut off after %d bytes: %s", ErrProtocol, len(buf), clip(buf))
		default:
			return "", err
		}
	}
}

// stripID removes the "<id>: " that IDSESSION puts before each reply
// and checks that it answers the command sent.
func stripID(reply string, want int) (string, error) {
	id, rest, ok := strings.Cut(reply, ": ")
	n, err := strconv.Atoi(id)
	if !ok || err != nil || n <= 0 {
		return "", fmt.Errorf("%w: session answer without an id: %s", ErrProtocol, clip([]byte(reply)))
	}
	if n != want {
		return "", fmt.Errorf("%w: session answer for request %d, want %d", ErrProtocol, n, want)
	}
	return rest, nil
}

// parseScanReply reads an INSTREAM reply: "stream: OK", "stream: NAME
// FOUND", or "TEXT ERROR". It returns the signature name, empty when the
// message is clean.
func parseScanReply(reply string) (virus string, err error) {
	const prefix, found, errSuffix = "stream: ", " FOUND", " ERROR"
	if !printable(reply) {
		return "", fmt.Errorf("%w: answer has control characters: %s", ErrProtocol, clip([]byte(reply)))
	}
	switch {
	case reply == prefix+"OK":
		return "", nil
	case reply == sizeLimitReply:
		return "", fmt.Errorf("%w: clamd said %q (its StreamMaxLength)", ErrTooLarge, reply)
	case strings.HasPrefix(reply, prefix) && strings.HasSuffix(reply, found) &&
		len(reply) >= len(prefix)+len(found):
		name := strings.TrimSpace(reply[len(prefix) : len(reply)-len(found)])
		if name == "" {
			return "", fmt.Errorf("%w: FOUND without a signature name: %s", ErrProtocol, clip([]byte(reply)))
		}
		return name, nil
	case strings.HasSuffix(reply, errSuffix):
		text := strings.TrimSpace(strings.TrimSuffix(reply, errSuffix))
		return "", &ServerError{Text: clipString(text)}
	}
	return "", fmt.Errorf("%w: %s", ErrProtocol, clip([]byte(reply)))
}

// parseVersion reads a VERSION reply, "ClamAV 1.0.7/27463/Wed Nov 18
// 08:24:02 2026", or just "ClamAV 1.0.7" when clamd has no official
// database loaded. The date is clamd's ctime(3) output in its local
// time, which on one machine is ours.
func parseVersion(reply string) (Version, error) {
	bad := func(why string) (Version, error) {
		return Version{}, fmt.Errorf("%w: VERSION answer %s: %s", ErrProtocol, why, clip([]byte(reply)))
	}
	if !printable(reply) {
		return bad("has control characters")
	}
	parts := strings.SplitN(reply, "/", 3)
	v := Version{Engine: strings.TrimSpace(parts[0])}
	if !strings.HasPrefix(v.Engine, "ClamAV ") || len(v.Engine) == len("ClamAV ") {
		return bad(`does not start with "ClamAV <version>"`)
	}
	if len(parts) > 1 {
		n, err := strconv.Atoi(strings.TrimSpace(parts[1]))
		if err != nil || n < 0 {
			return bad("has a bad database version")
		}
		v.DBVersion = n
	}
	if len(parts) > 2 {
		t, err := time.ParseInLocation(time.ANSIC, strings.TrimSpace(parts[2]), time.Local)
		if err != nil {
			return bad("has a bad database date")
		}
		v.DBTime = t
	}
	return v, nil
}

// printable reports whether s is valid UTF-8 without control characters,
// so that it can go into a log line or an SMTP reply as it is.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// clip quotes at most 100 bytes of b for an error message.
func clip(b []byte) string {
	if len(b) > 100 {
		return strconv.Quote(string(b[:100])) + "..."
	}
	return strconv.Quote(string(b))
}

// clipString shortens s, already known to be printable, to 200 bytes.
func clipString(s string) string {
	if len(s) <= 200 {
		return s
	}
	for i := 200; i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return s[:i] + "..."
		}
	}
	return ""
}

// sourceError is a failure reading the message itself. It is final:
// another server would read the same broken message.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return "clamd: reading the message: " + e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

// writeStream sends cmd, then the message from r in chunks, then the
// zero-length chunk. It never sends more than max bytes of message, and
// never sends the final chunk for a message that ended short of size
// (size < 0: unknown), so clamd never passes a truncated message.
// Errors from r come back as *sourceError, the cap as ErrTooLarge, and
// anything else is the connection's.
func writeStream(w io.Writer, buf []byte, cmd string, r io.Reader, size, max int64) error {
	var total int64
	off := copy(buf, cmd)
	space := len(buf) - len(cmd) - 8
	if space > chunkSize {
		space = chunkSize
	}
	lr := &io.LimitedReader{R: r, N: max + 1}
	for {
		hdr := off
		n, rerr := io.ReadFull(lr, buf[hdr+4:hdr+4+space])
		total += int64(n)
		if total > max {
			return fmt.Errorf("%w: message is over the %d-byte cap", ErrTooLarge, max)
		}
		end := errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF)
		if rerr != nil && !end {
			return &sourceError{fmt.Errorf("after %d bytes: %w", total, rerr)}
		}
		if size >= 0 && (total > size || end && total != size) {
			return &sourceError{fmt.Errorf("got %d bytes of a %d-byte message: %w", total, size, io.ErrUnexpectedEOF)}
		}
		if n > 0 {
			binary.BigEndian.PutUint32(buf[hdr:], uint32(n))
			off = hdr + 4 + n
		}
		if end {
			binary.BigEndian.PutUint32(buf[off:], 0)
			off += 4
		}
		if _, err := w.Write(buf[:off]); err != nil {
			return err
		}
		if end {
			return nil
		}
		off = 0
	}
}
