// Package milter is mailwarden's milter front end (Sendmail milter
// protocol v6, used by Postfix and Sendmail). It keeps per-session state
// only and turns each callback into a policy.Request for the pipeline.
package milter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	gomilter "github.com/d--j/go-milter"

	"mailwarden/internal/accept"
	"mailwarden/internal/defaults"
	"mailwarden/internal/logx"
	"mailwarden/internal/policy"
	"mailwarden/internal/reply"
	"mailwarden/internal/spool"
)

// Options configures the milter server.
type Options struct {
	// Pipeline returns the current pipeline; it changes on config reload.
	Pipeline func() *policy.Pipeline
	Log      *slog.Logger
	// ReadTimeout bounds the wait for the MTA's next command. It must be
	// longer than the MTA's SMTP timeout (Postfix smtpd_timeout, 300s).
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// CheckTimeout bounds one pipeline evaluation. With antivirus on it
	// must be longer than the clamd scan timeout.
	CheckTimeout time.Duration
	// Spool, if set, collects each message (header fields and body) for
	// checks at end of message, such as antivirus; see message.go. Nil
	// collects nothing, as when no check needs the message.
	Spool *spool.Spool
	// MaxConns caps concurrent connections. When it is reached, the
	// connection that has waited longest for the MTA is closed to admit
	// the new one; when every connection is busy the new one is closed.
	// Zero means DefaultMaxConns.
	MaxConns int
	// MaxConnsPerClient caps concurrent connections from one IP address
	// in the same way, closing that address's connection idle longest.
	// Zero means DefaultMaxConnsPerClient.
	MaxConnsPerClient int
}

// Defaults for zero Options fields; they match config.Default(). Postfix
// opens one milter connection per smtpd process and, with
// non_smtpd_milters, per cleanup process: up to 2 × default_process_limit
// (100) from one address, 127.0.0.1 when Postfix runs on this host (as
// does any local user). A full server closes the connection idle
// longest to admit a new one, so idle connections cannot lock the MTA
// out.
const (
	DefaultMaxConns          = 1000
	DefaultMaxConnsPerClient = 256
)

// Server serves the milter protocol.
type Server struct {
	srv   *gomilter.Server
	o     Options
	conns *accept.Tracker
	// shutting is set by Shutdown; a session that reaches the end of
	// its message after that ends instead of waiting for the next.
	shutting atomic.Bool
	// base is the parent of every check's context; Shutdown cancels it
	// when its grace ends.
	base   context.Context
	cancel context.CancelFunc
}

// Macros requested per stage. Postfix and Sendmail honour a milter's
// macro request and send only these (milter protocol v6, SMFIC_OPTNEG).
var (
	connectMacros = []gomilter.MacroName{gomilter.MacroMTAFQDN, gomilter.MacroDaemonName, gomilter.MacroClientAddr, gomilter.MacroClientName}
	mailMacros    = []gomilter.MacroName{gomilter.MacroQueueId, gomilter.MacroAuthType, gomilter.MacroAuthAuthen, gomilter.MacroMailAddr}
	rcptMacros    = []gomilter.MacroName{gomilter.MacroQueueId, gomilter.MacroRcptAddr}
	eomMacros     = []gomilter.MacroName{gomilter.MacroQueueId}
)

// NewServer returns a milter server running o.Pipeline for every session.
func NewServer(o Options) *Server {
	o.Log = logx.Or(o.Log)
	o.CheckTimeout = defaults.Positive(o.CheckTimeout, 20*time.Second)
	o.MaxConns = defaults.Positive(o.MaxConns, DefaultMaxConns)
	o.MaxConnsPerClient = defaults.Positive(o.MaxConnsPerClient, DefaultMaxConnsPerClient)
	// The library reports protocol errors (garbage from a peer) through
	// this package-level hook; route them to the daemon log.
	log := o.Log
	gomilter.LogWarning = func(format string, v ...any) {
		log.Warn("milter: protocol error, connection closed", "detail", fmt.Sprintf(format, v...))
	}
	s := &Server{o: o, conns: accept.NewTracker(accept.TrackerOptions{Name: "milter", Log: o.Log,
		MaxConns: o.MaxConns, MaxPerClient: o.MaxConnsPerClient, Evict: true})}
	s.base, s.cancel = context.WithCancel(context.Background())
	s.srv = gomilter.NewServer(
		gomilter.WithMilter(func() gomilter.Milter { return &session{o: &s.o, base: s.base} }),
		gomilter.WithReadTimeout(o.ReadTimeout),
		gomilter.WithWriteTimeout(o.WriteTimeout),
		gomilter.WithActions(gomilter.OptAddHeader|gomilter.OptChangeHeader|gomilter.OptQuarantine),
		gomilter.WithProtocols(protocol(o)),
		gomilter.WithMacroRequest(gomilter.StageConnect, connectMacros),
		gomilter.WithMacroRequest(gomilter.StageMail, mailMacros),
		gomilter.WithMacroRequest(gomilter.StageRcpt, rcptMacros),
		gomilter.WithMacroRequest(gomilter.StageEOM, eomMacros),
	)
	return s
}

// protocol is what the MTA is asked to send and to wait for (milter
// protocol v6, SMFIC_OPTNEG). Connect, HELO, header and body callbacks
// never decide, so the MTA need not wait for their replies; a failure
// while spooling a header or a body chunk is sticky and answered at end
// of message. Without a spool (antivirus off) no check reads the body, so
// the MTA does not send it. The DATA command is not sent at all: the only
// check that acts there, the freeze, checks again at end of message,
// which every message reaches. Each skipped reply saves a round trip per
// event (a 100 KB body is two chunks), each skipped event a packet;
// Postfix 2.6 and Sendmail 8.14 and later support all of these.
func protocol(o Options) gomilter.OptProtocol {
	p := gomilter.OptNoUnknown | gomilter.OptNoEOH | gomilter.OptNoData |
		gomilter.OptNoConnReply | gomilter.OptNoHeloReply | gomilter.OptNoHeaderReply
	if o.Spool == nil {
		p |= gomilter.OptNoBody
	} else {
		p |= gomilter.OptNoBodyReply
	}
	return p
}

// Serve accepts milter connections on ln until Shutdown. Connections that
// speak garbage are closed by the protocol layer; each is logged.
func (s *Server) Serve(ln net.Listener) error {
	err := s.srv.Serve(&loggingListener{Listener: s.conns.Listener(ln), log: s.o.Log, shutting: &s.shutting})
	if errors.Is(err, gomilter.ErrServerClosed) {
		return nil
	}
	return err
}

// ConnStats returns the connection counts: open, evicted, refused.
func (s *Server) ConnStats() accept.TrackerStats { return s.conns.Stats() }

// Shutdown stops accepting and closes at once every session waiting for
// the MTA outside a message (no MAIL since the last end of message or
// abort). It waits for sessions inside a message, each of which ends as
// soon as its end of message is answered, and returns nil once all have
// ended. When ctx ends first it closes every connection, cancels the
// checks still running and returns ctx.Err().
//
// Closing a session between messages is safe: the MTA opens a new
// connection for its next SMTP session, and Postfix answers a later
// MAIL in the SMTP session whose milter connection was closed with
// milter_default_action (docs/postfix.md, "Stopping and restarting").
func (s *Server) Shutdown(ctx context.Context) error {
	// A session that marks itself idle after this sees shutting and
	// ends; one marked before is closed here.
	s.shutting.Store(true)
	closed := s.conns.CloseIdle()
	if open := s.conns.Stats().Open; open > 0 {
		s.o.Log.Info("milter: closed idle sessions, waiting for messages in flight", "closed", closed, "open", open)
	}
	err := s.srv.Shutdown(ctx)
	s.cancel()
	if errors.Is(err, gomilter.ErrServerClosed) {
		return nil
	}
	return err
}

// session is the state of one milter connection. The library calls its
// methods sequentially, so it needs no locking.
type session struct {
	gomilter.NoOpMilter
	o    *Options
	base context.Context // cancelled when shutdown gives up waiting

	clientIP   netip.Addr
	clientName string
	helo       string
	connected  bool // Connect has been called
	inMessage  bool // MAIL has been called and the message has not ended

	// Per-message state, reset at MAIL FROM and on abort.
	sender     string
	user       string
	queueID    string
	rcptSeen   int // RCPT commands checked, accepted or not
	recipients []string
	headerFrom string
	headers    []policy.Header
	// seen counts the message's header fields by lowercased name, so a
	// header a check adds can replace copies the sender put there.
	seen map[string]int

	// The message being collected when Options.Spool is set.
	msg        *spool.Message
	eoh        bool   // the empty line ending the header section is written
	spoolError bool   // spooling failed; the message is being tempfailed
	scratch    []byte // builds one header line
}

func (s *session) request(stage policy.Stage, m gomilter.Modifier) *policy.Request {
	if id := m.Get(gomilter.MacroQueueId); id != "" {
		s.queueID = id
	}
	return &policy.Request{
		Stage:      stage,
		Time:       time.Now(),
		Frontend:   "milter",
		ClientIP:   s.clientIP,
		ClientName: s.clientName,
		Helo:       s.helo,
		Sender:     s.sender,
		Recipients: s.recipients,
		SASLUser:   s.user,
		QueueID:    s.queueID,
		HeaderFrom: s.headerFrom,
	}
}

// evaluate runs the pipeline and never panics: a panic anywhere in the
// evaluation becomes a temporary failure, so no message is dropped or
// silently accepted.
func (s *session) evaluate(req *policy.Request) (v policy.Verdict) {
	defer func() {
		if r := recover(); r != nil {
			s.o.Log.Error("milter: panic while checking, tempfailing", "panic", r, "client", req.ClientIP, "stack", string(debug.Stack()))
			v = policy.TempfailInternal("milter", fmt.Sprint("panic: ", r))
		}
	}()
	ctx, cancel := context.WithTimeout(s.base, s.o.CheckTimeout)
	defer cancel()
	return s.o.Pipeline().Evaluate(ctx, req)
}

// Connect is called once per SMTP connection with the client's address.
func (s *session) Connect(host, family string, port uint16, addr string, m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.guard("Connect", &resp, &err)
	s.connected = true
	s.clientName = host
	s.clientIP = netip.Addr{}
	if a, err := netip.ParseAddr(strings.Trim(addr, "[]")); err == nil {
		s.clientIP = a.Unmap()
	} else if a, err := netip.ParseAddr(m.Get(gomilter.MacroClientAddr)); err == nil {
		s.clientIP = a.Unmap()
	}
	return gomilter.RespContinue, nil
}

// Helo is called for HELO/EHLO, again after STARTTLS.
func (s *session) Helo(name string, m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.guard("Helo", &resp, &err)
	if !s.connected {
		return outOfOrder("HELO", "connect")
	}
	s.helo = name
	return gomilter.RespContinue, nil
}

// MailFrom starts a new message in the session.
func (s *session) MailFrom(from, esmtpArgs string, m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.guard("MailFrom", &resp, &err)
	if !s.connected {
		return outOfOrder("MAIL", "connect")
	}
	s.resetMessage()
	s.inMessage = true
	s.sender = gomilter.RemoveAngle(from)
	s.user = m.Get(gomilter.MacroAuthAuthen)
	return s.respond(s.evaluate(s.request(policy.StageMail, m)), m, false)
}

// RcptTo is called for each recipient; a verdict here affects only it.
func (s *session) RcptTo(rcpt, esmtpArgs string, m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.guard("RcptTo", &resp, &err)
	if !s.inMessage {
		return outOfOrder("RCPT", "MAIL")
	}
	req := s.request(policy.StageRcpt, m)
	rcpt = gomilter.RemoveAngle(rcpt)
	req.Recipient = rcpt
	req.RcptIndex = s.rcptSeen
	s.rcptSeen++
	v := s.evaluate(req)
	if v.Action == policy.Continue || v.Action == policy.Accept {
		s.recipients = append(s.recipients, rcpt)
		s.headers = appendNew(s.headers, v.Headers)
		return gomilter.RespContinue, nil
	}
	return s.respond(v, m, false)
}

// Header is called once per header field; the first From is kept for
// checks at end of message.
func (s *session) Header(name, value string, m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.guard("Header", &resp, &err)
	if !s.inMessage {
		return outOfOrder("header", "MAIL")
	}
	if s.headerFrom == "" && strings.EqualFold(name, "From") {
		s.headerFrom = strings.TrimSpace(value)
	}
	if s.seen == nil {
		s.seen = make(map[string]int)
	}
	s.seen[strings.ToLower(name)]++
	if s.o.Spool != nil {
		return s.collectHeader(name, value)
	}
	return gomilter.RespContinue, nil
}

// Data is called after all recipients, before the headers arrive.
func (s *session) Data(m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.guard("Data", &resp, &err)
	if !s.inMessage {
		return outOfOrder("DATA", "MAIL")
	}
	return s.respond(s.evaluate(s.request(policy.StageData, m)), m, false)
}

// EndOfMessage is called once the whole message has been received; it is
// the only stage that may modify the message.
func (s *session) EndOfMessage(m gomilter.Modifier) (resp *gomilter.Response, err error) {
	defer s.guard("EndOfMessage", &resp, &err)
	if !s.inMessage {
		return outOfOrder("end of message", "MAIL")
	}
	defer s.releaseMessage()
	defer func() { s.inMessage = false }()
	req := s.request(policy.StageEOM, m)
	if s.o.Spool != nil {
		msg, failed := s.finishMessage()
		if failed != nil {
			return failed, nil
		}
		req.Message = msg
	}
	v := s.evaluate(req)
	return s.respond(v, m, true)
}

// Abort resets the message state; connection state is kept.
func (s *session) Abort(m gomilter.Modifier) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.o.Log.Error("milter: panic in Abort", "panic", r)
		}
	}()
	s.resetMessage()
	return nil
}

// errOutOfOrder is a command the milter protocol does not allow where it
// came: an end of message with no MAIL before it would otherwise be
// scanned and accepted.
var errOutOfOrder = errors.New("milter: protocol error")

// outOfOrder answers a command that came before what must precede it:
// the MTA is told to tempfail, and the library closes the connection.
func outOfOrder(cmd, before string) (*gomilter.Response, error) {
	return gomilter.RespTempFail, fmt.Errorf("%w: %s before %s", errOutOfOrder, cmd, before)
}

// guard turns a panic in a callback into a temporary failure. go-milter
// does not recover panics in its session goroutines, so without this one
// bad message would take the daemon and every session with it.
func (s *session) guard(callback string, resp **gomilter.Response, err *error) {
	if r := recover(); r != nil {
		s.o.Log.Error("milter: panic in callback, tempfailing", "callback", callback, "panic", r, "client", s.clientIP, "stack", string(debug.Stack()))
		*resp, *err = gomilter.RespTempFail, nil
	}
}

func (s *session) resetMessage() {
	s.inMessage = false
	s.sender, s.user, s.queueID, s.headerFrom = "", "", "", ""
	s.rcptSeen = 0
	s.recipients = nil
	s.headers = nil
	clear(s.seen)
	s.releaseMessage()
}

// respond turns a verdict into the milter response. Headers are added and
// quarantine applied only at end of message, the one stage that may
// modify the message.
func (s *session) respond(v policy.Verdict, m gomilter.Modifier, eom bool) (*gomilter.Response, error) {
	switch v.Action {
	case policy.Continue, policy.Accept:
		if !eom {
			return gomilter.RespContinue, nil
		}
		add := appendNew(s.headers, v.Headers)
		// A sender can forge X-Virus-Status: Clean or X-Greylist; every
		// copy of a field mailwarden owns is deleted, and what
		// mailwarden says is added. ChangeHeader with an empty value
		// deletes the nth field of that name (milter protocol,
		// SMFIR_CHGHEADER); past the last one it would add, so only
		// fields actually seen are deleted, the highest first.
		owned := s.o.Pipeline().OwnedHeaders()
		for _, h := range add {
			owned = append(owned, h.Name)
		}
		deleted := map[string]bool{}
		for _, name := range owned {
			key := strings.ToLower(name)
			if deleted[key] {
				continue
			}
			deleted[key] = true
			for i := s.seen[key]; i >= 1; i-- {
				if err := m.ChangeHeader(i, name, ""); err != nil {
					s.o.Log.Error("milter: removing a forged header failed, tempfailing", "header", name, "err", err)
					return gomilter.RespTempFail, nil
				}
			}
		}
		for _, h := range add {
			if err := m.AddHeader(h.Name, reply.Clean(h.Value)); err != nil {
				s.o.Log.Error("milter: adding header failed, tempfailing", "header", h.Name, "err", err)
				return gomilter.RespTempFail, nil
			}
		}
		return gomilter.RespAccept, nil
	case policy.Discard:
		return gomilter.RespDiscard, nil
	case policy.Quarantine:
		if !eom {
			return gomilter.RespContinue, nil
		}
		if err := m.Quarantine(reply.Clean(v.Text)); err != nil {
			s.o.Log.Error("milter: quarantine failed, tempfailing", "err", err)
			return gomilter.RespTempFail, nil
		}
		return gomilter.RespAccept, nil
	}
	return replyFor(v, s.o.Log), nil
}

// replyFor renders a tempfail or reject with its exact code and text.
func replyFor(v policy.Verdict, log *slog.Logger) *gomilter.Response {
	code, text := v.CodeText()
	// Both libmilter and Postfix treat '%' in a reply as a format
	// directive; double it so attacker data cannot inject one.
	r, err := gomilter.RejectWithCodeAndReason(uint16(code), strings.ReplaceAll(text, "%", "%%"))
	if err != nil {
		log.Error("milter: building reply failed", "code", code, "err", err)
		if v.Action == policy.Reject {
			return gomilter.RespReject
		}
		return gomilter.RespTempFail
	}
	return r
}

// appendNew appends headers not already present (one X-Greylist per
// message even with several recipients).
func appendNew(have, add []policy.Header) []policy.Header {
next:
	for _, h := range add {
		for _, o := range have {
			if strings.EqualFold(o.Name, h.Name) {
				continue next
			}
		}
		have = append(have, h)
	}
	return have
}
