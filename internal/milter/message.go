package milter

import (
	"runtime/debug"
	"strings"

	gomilter "github.com/d--j/go-milter"

	"mailwarden/internal/policy"
	"mailwarden/internal/spool"
)

// This file collects the message for checks at end of message when
// Options.Spool is set. The MTA sends the header fields one by one
// (SMFIC_HEADER, without the colon and line end), then end of headers
// (SMFIC_EOH), then the body in chunks (SMFIC_BODY, CRLF line ends);
// together they rebuild the message as received, in RFC 5322 §2.1 form.

// crlf ends a header line, and alone ends the header section.
var crlf = []byte("\r\n")

// collectHeader appends one header field as "Name: value" CRLF. The MTA
// drops the space after the colon unless asked to keep it (milter
// protocol v6, SMFIP_HDR_LEADSPC), so it is put back. Continuation lines
// of a folded field may come with bare LF; they get CRLF like the rest.
func (s *session) collectHeader(name, value string) (*gomilter.Response, error) {
	if strings.ContainsRune(value, '\n') {
		value = strings.ReplaceAll(strings.ReplaceAll(value, "\r\n", "\n"), "\n", "\r\n")
	}
	b := append(s.scratch[:0], name...)
	b = append(b, ": "...)
	b = append(b, value...)
	b = append(b, crlf...)
	// Keep the buffer for the next field, unless one huge field made it
	// big: a session should not hold on to that.
	if cap(b) <= 4096 {
		s.scratch = b[:0]
	} else {
		s.scratch = nil
	}
	if !s.collect(b) {
		return s.spoolFailed(), nil
	}
	return gomilter.RespContinue, nil
}

// Headers is called at the end of the header fields.
func (s *session) Headers(m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.guard("Headers", &resp, &err)
	if !s.inMessage {
		return outOfOrder("end of headers", "MAIL")
	}
	if s.o.Spool == nil {
		return gomilter.RespContinue, nil
	}
	if !s.endHeaders() {
		return s.spoolFailed(), nil
	}
	return gomilter.RespContinue, nil
}

// BodyChunk is called for each piece of the body, up to 64 KiB each.
func (s *session) BodyChunk(chunk []byte, m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.guard("BodyChunk", &resp, &err)
	if !s.inMessage {
		return outOfOrder("body", "MAIL")
	}
	if s.o.Spool == nil {
		return gomilter.RespContinue, nil
	}
	if !s.endHeaders() || !s.collect(chunk) {
		return s.spoolFailed(), nil
	}
	return gomilter.RespContinue, nil
}

// Cleanup is called when the MTA closes the milter connection, also in
// the middle of a message.
func (s *session) Cleanup(m gomilter.Modifier) {
	defer func() {
		if r := recover(); r != nil {
			s.o.Log.Error("milter: panic in Cleanup", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	s.releaseMessage()
}

// endHeaders writes the empty line after the header fields once, also
// when the MTA sent no end-of-headers event.
func (s *session) endHeaders() bool {
	if s.eoh {
		return !s.spoolError
	}
	s.eoh = true
	return s.collect(crlf)
}

// collect appends b to the message, starting it on first use. It
// reports false once spooling has failed for this message.
func (s *session) collect(b []byte) bool {
	if s.spoolError {
		return false
	}
	if s.msg == nil {
		s.msg = s.o.Spool.NewMessage()
	}
	if _, err := s.msg.Write(b); err != nil {
		s.o.Log.Error("milter: spooling the message failed, tempfailing it",
			"err", err, "client", s.clientIP, "queue_id", s.queueID, "sender", s.sender)
		s.dropMessage()
		s.spoolError = true
		return false
	}
	return true
}

// finishMessage returns the collected message for the request at end of
// message, or the response to send when spooling failed. A message with
// no header fields and no body is still a message (an empty one).
func (s *session) finishMessage() (policy.Message, *gomilter.Response) {
	if !s.endHeaders() {
		return nil, s.spoolFailed()
	}
	return s.msg, nil
}

// spoolFailed is the response for a message that could not be spooled:
// a temporary failure, so the sender retries and nothing goes through
// unscanned.
func (s *session) spoolFailed() *gomilter.Response {
	return replyFor(policy.TempfailInternal("milter", "spooling the message failed"), s.o.Log)
}

// releaseMessage frees the collected message and forgets its state,
// ready for the next message.
func (s *session) releaseMessage() {
	s.dropMessage()
	s.eoh, s.spoolError = false, false
}

// dropMessage frees the collected message's memory and spool file.
func (s *session) dropMessage() {
	if s.msg == nil {
		return
	}
	if err := s.msg.Close(); err != nil {
		s.o.Log.Warn("milter: removing the spooled message failed", "err", err)
	}
	s.msg = nil
}

var _ policy.Message = (*spool.Message)(nil)
