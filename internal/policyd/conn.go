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

	"mailwarden/internal/policy"
)

// serveConn answers requests on one connection until the client closes
// it, a timeout or protocol error occurs, or the server shuts down.
// Postfix keeps the connection open between requests (SMTPD_POLICY_README:
// the server must not close it unless there was an error); Exim's
// readsocket sends one request and shuts down its side.
func (s *Server) serveConn(c *conn) {
	remote := c.nc.RemoteAddr().String()
	log := s.log.With("remote", remote)
	// answering is set while a complete request awaits its answer, so a
	// panic still answers it with a temporary failure.
	answering := false
	defer func() {
		if r := recover(); r != nil {
			log.Error("policy connection panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			if answering {
				c.nc.SetWriteDeadline(time.Now().Add(s.o.RequestTimeout))
				writeAction(c.nc, internalError())
			}
		}
		c.nc.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.wg.Done()
	}()

	br := bufio.NewReaderSize(c.nc, min(readBufferSize, s.o.MaxRequestBytes))
	var msg message
	for {
		c.state.Store(stateIdle)
		if s.shutting.Load() {
			log.Debug("closing idle policy connection for shutdown")
			return
		}
		c.nc.SetReadDeadline(time.Now().Add(s.o.IdleTimeout))
		if _, err := br.Peek(1); err != nil {
			s.logIdleEnd(log, err)
			return
		}
		if !c.state.CompareAndSwap(stateIdle, stateActive) {
			return // Shutdown closed it while the first byte arrived.
		}
		c.nc.SetReadDeadline(time.Now().Add(s.o.RequestTimeout))
		attrs, err := ReadRequest(br, s.o.MaxRequestBytes)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				log.Warn("policy request not completed in time, closing connection",
					"timeout", s.o.RequestTimeout, "err", err)
			} else {
				log.Warn("bad policy request, closing connection", "err", err)
			}
			return
		}
		answering = true
		action := s.answer(log, attrs, &msg)
		c.nc.SetWriteDeadline(time.Now().Add(s.o.RequestTimeout))
		if err := writeAction(c.nc, action); err != nil {
			log.Warn("writing policy answer failed, closing connection", "err", err)
			return
		}
		answering = false
	}
}

// logIdleEnd logs why a connection ended between requests: a clean close
// (every Exim request ends so) or Shutdown closing it is routine.
func (s *Server) logIdleEnd(log *slog.Logger, err error) {
	switch {
	case errors.Is(err, io.EOF):
		log.Debug("policy client closed connection")
	case errors.Is(err, os.ErrDeadlineExceeded):
		log.Debug("policy connection idle too long, closing", "idle_timeout", s.o.IdleTimeout)
	case errors.Is(err, net.ErrClosed):
		log.Debug("policy connection closed for shutdown")
	default:
		log.Info("policy connection ended", "err", err)
	}
}

// message tracks the transaction a connection's requests belong to.
// Postfix sends one request per recipient, all with the same instance
// attribute for one message (SMTPD_POLICY_README), so counting requests
// per instance gives each recipient its index.
type message struct {
	instance string
	rcpts    int
}

// rcptIndex returns the index of this RCPT request within its message.
func (m *message) rcptIndex(instance string) int {
	if instance == "" || instance != m.instance {
		m.instance, m.rcpts = instance, 0
	}
	m.rcpts++
	return m.rcpts - 1
}

// answer runs the pipeline for one request and returns the action.
func (s *Server) answer(log *slog.Logger, a Attrs, msg *message) string {
	req, ok := ToRequest(a, time.Now())
	if !ok {
		return "DUNNO"
	}
	if req.Stage == policy.StageRcpt {
		req.RcptIndex = msg.rcptIndex(a["instance"])
	}
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
	return FormatAction(v)
}

// writeAction sends one reply: a single action attribute and the empty
// line that ends it.
func writeAction(nc net.Conn, action string) error {
	_, err := nc.Write([]byte("action=" + action + "\n\n"))
	return err
}
