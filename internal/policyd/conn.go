package policyd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"time"

	"mailwarden/internal/accept"
	"mailwarden/internal/policy"
)

// serveConn answers requests on one connection until the client closes
// it, a timeout or protocol error occurs, or the server shuts down.
// Postfix keeps the connection open between requests (SMTPD_POLICY_README:
// the server must not close it unless there was an error); Exim's
// readsocket sends one request and shuts down its side.
func (s *Server) serveConn(c *accept.Conn) {
	remote := c.RemoteAddr().String()
	log := s.log.With("remote", remote)
	// answering is set while a complete request awaits its answer, so a
	// panic still answers it with a temporary failure.
	answering := false
	defer func() {
		if r := recover(); r != nil {
			log.Error("policy connection panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			if answering {
				c.SetWriteDeadline(time.Now().Add(s.o.RequestTimeout))
				writeAction(c, internalError())
			}
		}
		c.Close()
	}()

	br := bufio.NewReaderSize(c, min(readBufferSize, s.o.MaxRequestBytes))
	attrs := make(Attrs, requestAttrs)
	for {
		c.Idle()
		if s.srv.ShuttingDown() {
			log.Debug("closing idle policy connection for shutdown")
			return
		}
		c.SetReadDeadline(time.Now().Add(s.o.IdleTimeout))
		if _, err := br.Peek(1); err != nil {
			s.logIdleEnd(log, err)
			return
		}
		if !c.Active() {
			return // Shutdown closed it while the first byte arrived.
		}
		c.SetReadDeadline(time.Now().Add(s.o.RequestTimeout))
		if err := readRequestInto(br, s.o.MaxRequestBytes, attrs); err != nil {
			switch {
			case errors.Is(err, accept.ErrEvicted):
				// A request trickling in waits on its client like an
				// idle connection and may be closed to make room.
				log.Debug("incomplete policy request closed to admit a new connection")
			case errors.Is(err, os.ErrDeadlineExceeded):
				log.Warn("policy request not completed in time, closing connection",
					"timeout", s.o.RequestTimeout, "err", err)
			default:
				log.Warn("bad policy request, closing connection", "err", err)
			}
			return
		}
		answering = true
		action := s.answer(log, attrs)
		c.SetWriteDeadline(time.Now().Add(s.o.RequestTimeout))
		if err := writeAction(c, action); err != nil {
			log.Warn("writing policy answer failed, closing connection", "err", err)
			return
		}
		answering = false
		if len(attrs) > 2*requestAttrs {
			// A request with many more attributes than Postfix sends
			// does not get to keep its large map for the connection's
			// life.
			attrs = make(Attrs, requestAttrs)
		}
	}
}

// requestAttrs is about how many attributes Postfix 3.7 sends in a
// request (SMTPD_POLICY_README).
const requestAttrs = 32

// logIdleEnd logs why a connection ended between requests: a clean close
// (every Exim request ends so) or Shutdown closing it is routine.
func (s *Server) logIdleEnd(log *slog.Logger, err error) {
	switch {
	case errors.Is(err, io.EOF):
		log.Debug("policy client closed connection")
	case errors.Is(err, accept.ErrEvicted):
		// The tracker logs evictions, rate-limited.
		log.Debug("idle policy connection closed to admit a new connection")
	case errors.Is(err, os.ErrDeadlineExceeded):
		log.Debug("policy connection idle too long, closing", "idle_timeout", s.o.IdleTimeout)
	case errors.Is(err, net.ErrClosed):
		log.Debug("policy connection closed for shutdown")
	default:
		log.Info("policy connection ended", "err", err)
	}
}

// answer runs the pipeline for one request and returns the action.
func (s *Server) answer(log *slog.Logger, a Attrs) string {
	req, ok := ToRequest(a, time.Now())
	if !ok {
		return "DUNNO"
	}
	if req.Stage == policy.StageRcpt {
		req.RcptIndex = s.instances.rcptIndex(a["client_address"], a["instance"], time.Now())
	}
	virus, err := ReportedVirus(a, req.Stage)
	if err != nil {
		// Not acted on, and not a reason to refuse the rest of the
		// request: the MTA refuses the message by its own scan anyway.
		log.Warn("ignoring a virus report that is not well-formed", "err", err,
			"client", req.ClientIP, "sender", req.Sender, "queue_id", req.QueueID)
	}
	req.Virus = virus
	p := s.o.Pipeline()
	if p == nil {
		log.Error("no policy pipeline configured, tempfailing")
		return internalError()
	}
	// Checks get slightly less than the request timeout so a stuck one
	// still ends in an answer Postfix waits for.
	ctx, cancel := context.WithTimeout(s.baseCtx, s.o.RequestTimeout-s.o.RequestTimeout/10)
	defer cancel()
	v := p.Evaluate(ctx, &req)
	if virus != "" && v.Action == policy.Continue {
		// Only the antivirus check acts on a report; without it the
		// virus is neither recorded nor latched.
		log.Warn("virus report not acted on: is antivirus.enabled off?", "virus", virus,
			"client", req.ClientIP, "sender", req.Sender, "queue_id", req.QueueID)
	}
	return FormatAction(v)
}

// writeAction sends one reply: a single action attribute and the empty
// line that ends it.
func writeAction(nc net.Conn, action string) error {
	_, err := nc.Write([]byte("action=" + action + "\n\n"))
	return err
}
