package trap

import (
	"bufio"
	"errors"
	"net"
	"os"
	"time"

	"mailwarden/internal/accept"
)

// maxCommands bounds the commands in one conversation; a real client
// reaches MAIL FROM within three.
const maxCommands = 10

// Lingering close bounds: after its last reply the trap half-closes and
// reads a little so the client receives the reply instead of a reset.
const (
	lingerTimeout = 500 * time.Millisecond
	lingerBytes   = 64 << 10
)

// Replies. Every conversation ends with a 4yz so a client, worm or
// misconfigured machine, keeps its mail and sends nothing real here
// (RFC 5321 §4.2.1: 4yz is a transient failure).
const (
	replyOK         = "250 2.0.0 OK"
	replyTempFail   = "451 4.7.1 Service temporarily unavailable, try again later"
	replyBye        = "221 2.0.0 Bye"
	replyTooLong    = "500 5.5.2 Line too long"
	replyUnknown    = "502 5.5.2 Command not recognized"
	replyHeloSyntax = "501 5.5.4 Syntax: HELO hostname"
	replyMailSyntax = "501 5.5.4 Syntax: MAIL FROM:<address>"
	replyTooMany    = "421 4.7.0 Too many commands, closing connection"
	replyTimeout    = "421 4.4.2 Timeout, closing connection"
	replyShutdown   = "421 4.3.2 Service shutting down, closing connection"
)

// converse runs the SMTP conversation on c, filling h with what the
// client offers. It returns when the conversation is over; the caller
// closes the connection.
func (s *Server) converse(c *accept.Conn, h *Hit) {
	end := time.Now().Add(s.o.SessionTimeout)
	br := bufio.NewReaderSize(c, s.o.MaxLine)
	if !s.reply(c, end, "220 "+s.o.Hostname+" ESMTP") {
		return
	}
	for n := 0; ; n++ {
		if n >= maxCommands {
			s.finish(c, end, replyTooMany)
			return
		}
		if !s.armRead(c, end) {
			s.finish(c, end, replyShutdown)
			return
		}
		line, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			s.finish(c, end, replyTooLong)
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
			if s.srv.ShuttingDown() {
				s.finish(c, end, replyShutdown)
			} else {
				s.finish(c, end, replyTimeout)
			}
			return
		case err != nil:
			// EOF or a reset: a partial last line is not a command.
			return
		}
		cmd := parseCommand(line)
		switch cmd.Verb {
		case verbHelo, verbEhlo:
			if cmd.Arg == "" {
				if !s.reply(c, end, replyHeloSyntax) {
					return
				}
				continue
			}
			h.Helo = Clean(cmd.Arg)
			if !s.reply(c, end, "250 "+s.o.Hostname) {
				return
			}
		case verbMail:
			if !cmd.PathOK {
				if !s.reply(c, end, replyMailSyntax) {
					return
				}
				continue
			}
			h.MailFrom = Clean(cmd.Path)
			s.finish(c, end, replyTempFail)
			return
		case verbQuit:
			s.finish(c, end, replyBye)
			return
		case verbRset, verbNoop:
			if !s.reply(c, end, replyOK) {
				return
			}
		default:
			if !s.reply(c, end, replyUnknown) {
				return
			}
		}
	}
}

// armRead sets the deadline for the next line, the earlier of the
// per-line and the session deadline. It reports false when shutting
// down; Shutdown interrupts a read armed meanwhile, and the connection
// then ignores a new deadline.
func (s *Server) armRead(c *accept.Conn, end time.Time) bool {
	if s.srv.ShuttingDown() {
		return false
	}
	c.SetReadDeadline(earlier(time.Now().Add(s.o.ReadTimeout), end))
	return true
}

// reply writes one reply line and reports whether it was sent.
func (s *Server) reply(c *accept.Conn, end time.Time, line string) bool {
	c.SetWriteDeadline(earlier(time.Now().Add(s.o.ReadTimeout), end))
	_, err := c.Write([]byte(line + "\r\n"))
	return err == nil
}

// finish sends the last reply, then half-closes and drains a bounded
// amount of input so that closing with unread data does not send a
// reset that would destroy the reply in flight (RFC 1122 §4.2.2.13).
func (s *Server) finish(c *accept.Conn, end time.Time, line string) {
	if !s.reply(c, end, line) {
		return
	}
	// The linger sets its read deadline on the TCP connection itself:
	// after the last reply, Shutdown's interruption no longer matters.
	tc, ok := c.NetConn().(*net.TCPConn)
	if !ok {
		return
	}
	if tc.CloseWrite() != nil {
		return
	}
	tc.SetReadDeadline(time.Now().Add(lingerTimeout))
	buf := make([]byte, 4096)
	for n := 0; n < lingerBytes; {
		m, err := tc.Read(buf)
		n += m
		if err != nil {
			return
		}
	}
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
