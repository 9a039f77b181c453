package milter

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"mailwarden/internal/policy"
)

// stubCheck decides by recipient: "tempfail@", "reject@", "panic@",
// "error@" and "header@" each trigger what they say.
type stubCheck struct {
	mu   sync.Mutex
	seen []policy.Request
}

func (c *stubCheck) Name() string { return "stub" }

func (c *stubCheck) Check(ctx context.Context, r *policy.Request) (policy.Verdict, error) {
	c.mu.Lock()
	c.seen = append(c.seen, *r)
	c.mu.Unlock()
	if r.Stage != policy.StageRcpt {
		return policy.Verdict{}, nil
	}
	switch {
	case strings.HasPrefix(r.Recipient, "tempfail@"):
		return policy.Verdict{Action: policy.Tempfail, Code: 451, Status: "4.7.1", Text: "Greylisted, 100% sure"}, nil
	case strings.HasPrefix(r.Recipient, "reject@"):
		return policy.Verdict{Action: policy.Reject, Code: 550, Status: "5.7.1", Text: "Not you"}, nil
	case strings.HasPrefix(r.Recipient, "panic@"):
		panic("boom")
	case strings.HasPrefix(r.Recipient, "error@"):
		return policy.Verdict{}, errors.New("store down")
	case strings.HasPrefix(r.Recipient, "header@"):
		return policy.Verdict{Action: policy.Continue, Headers: []policy.Header{{Name: "X-Greylist", Value: "delayed 300 seconds\r\nX-Evil: 1"}}}, nil
	}
	return policy.Verdict{}, nil
}

func (c *stubCheck) requests() []policy.Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]policy.Request(nil), c.seen...)
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startServer(t testing.TB, check policy.Check) (string, *logBuf) {
	t.Helper()
	return startServerWith(t, check, Options{})
}

// startServerWith starts a server with o, filling in the pipeline, the
// log and the timeouts.
func startServerWith(t testing.TB, check policy.Check, o Options) (string, *logBuf) {
	t.Helper()
	logs := &logBuf{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	pl := policy.NewPipeline([]policy.Check{check}, policy.PipelineOptions{Log: log})
	o.Pipeline = func() *policy.Pipeline { return pl }
	o.Log = log
	o.ReadTimeout, o.WriteTimeout = 5*time.Second, 5*time.Second
	srv := NewServer(o)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String(), logs
}

type result struct {
	rcpt []*gomilter.Action
	eom  *gomilter.Action
	mods []gomilter.ModifyAction
}

// transaction runs one message through the milter like an MTA would.
func transaction(t *testing.T, addr, client, user string, rcpts ...string) result {
	t.Helper()
	c := gomilter.NewClient("tcp", addr, gomilter.WithAction(gomilter.AllClientSupportedActionMasks))
	macros := gomilter.NewMacroBag()
	macros.Set(gomilter.MacroQueueId, "4XyZ1")
	if user != "" {
		macros.Set(gomilter.MacroAuthAuthen, user)
	}
	s, err := c.Session(macros)
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	defer s.Close()
	var r result
	must := func(a *gomilter.Action, err error) *gomilter.Action {
		t.Helper()
		if err != nil {
			t.Fatalf("milter step: %v", err)
		}
		return a
	}
	family := gomilter.FamilyInet
	if strings.Contains(client, ":") {
		family = gomilter.FamilyInet6
	}
	must(s.Conn("mail.example.net", family, 40000, client))
	must(s.Helo("mail.example.net"))
	must(s.Mail("<sender@example.net>", ""))
	accepted := 0
	for _, rc := range rcpts {
		a := must(s.Rcpt("<"+rc+">", ""))
		r.rcpt = append(r.rcpt, a)
		if a.Type == gomilter.ActionContinue {
			accepted++
		}
	}
	if accepted == 0 {
		return r
	}
	must(s.DataStart())
	must(s.HeaderField("From", "Alice <alice@example.net>", nil))
	must(s.HeaderField("Subject", "hi", nil))
	must(s.HeaderEnd())
	mods, act, err := s.BodyReadFrom(strings.NewReader("hello\r\n"))
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	r.eom, r.mods = act, mods
	return r
}

func TestTempfailReplyCarriesCodeAndText(t *testing.T) {
	addr, _ := startServer(t, &stubCheck{})
	r := transaction(t, addr, "192.0.2.7", "", "tempfail@dest.test")
	a := r.rcpt[0]
	if a.Type != gomilter.ActionRejectWithCode || a.SMTPCode != 451 {
		t.Fatalf("rcpt action = %v, want 451 reply", a)
	}
	// '%' is doubled on the wire so the MTA does not read it as a
	// format directive; the client sees one.
	if !strings.Contains(a.SMTPReply, "4.7.1 Greylisted, 100%") {
		t.Errorf("reply = %q", a.SMTPReply)
	}
}

func TestRejectAndPerRecipientVerdicts(t *testing.T) {
	check := &stubCheck{}
	addr, _ := startServer(t, check)
	r := transaction(t, addr, "192.0.2.7", "", "reject@dest.test", "ok@dest.test")
	if r.rcpt[0].SMTPCode != 550 {
		t.Errorf("first rcpt = %v, want 550", r.rcpt[0])
	}
	if r.rcpt[1].Type != gomilter.ActionContinue {
		t.Errorf("second rcpt = %v, want continue", r.rcpt[1])
	}
	if r.eom == nil || r.eom.Type != gomilter.ActionAccept {
		t.Fatalf("eom = %v, want accept", r.eom)
	}
	var eom *policy.Request
	for _, q := range check.requests() {
		if q.Stage == policy.StageEOM {
			eom = &q
		}
	}
	if eom == nil || len(eom.Recipients) != 1 || eom.Recipients[0] != "ok@dest.test" {
		t.Fatalf("eom request recipients = %+v, want only the accepted one", eom)
	}
	if eom.ClientIP.String() != "192.0.2.7" || eom.Sender != "sender@example.net" || eom.QueueID != "4XyZ1" || eom.Helo != "mail.example.net" {
		t.Errorf("eom request = %+v", eom)
	}
	if eom.HeaderFrom != "Alice <alice@example.net>" {
		t.Errorf("eom request HeaderFrom = %q", eom.HeaderFrom)
	}
	var idx []int
	for _, q := range check.requests() {
		if q.Stage == policy.StageRcpt {
			idx = append(idx, q.RcptIndex)
		}
	}
	if len(idx) != 2 || idx[0] != 0 || idx[1] != 1 {
		t.Errorf("recipient indexes = %v, want [0 1] (a refused recipient still counts)", idx)
	}
}

func TestAuthenticatedUserReachesChecks(t *testing.T) {
	check := &stubCheck{}
	addr, _ := startServer(t, check)
	transaction(t, addr, "2001:db8::5", "alice", "ok@dest.test")
	for _, q := range check.requests() {
		if q.Stage == policy.StageRcpt {
			if q.SASLUser != "alice" || !q.Authenticated() {
				t.Errorf("rcpt request user = %q, want alice", q.SASLUser)
			}
			if q.ClientIP.String() != "2001:db8::5" {
				t.Errorf("client = %v", q.ClientIP)
			}
			return
		}
	}
	t.Fatal("no rcpt request seen")
}

func TestHeaderAddedOnceAtEndOfMessageWithoutLineBreaks(t *testing.T) {
	addr, _ := startServer(t, &stubCheck{})
	r := transaction(t, addr, "192.0.2.7", "", "header@dest.test", "header@other.test")
	var added []gomilter.ModifyAction
	for _, m := range r.mods {
		if m.Type == gomilter.ActionAddHeader || m.Type == gomilter.ActionInsertHeader {
			added = append(added, m)
		}
	}
	if len(added) != 1 {
		t.Fatalf("header modifications = %+v, want exactly one", r.mods)
	}
	if added[0].HeaderName != "X-Greylist" || strings.ContainsAny(added[0].HeaderValue, "\r\n") {
		t.Errorf("added header = %q: %q", added[0].HeaderName, added[0].HeaderValue)
	}
}

func TestPanicAndErrorBecomeTempfail(t *testing.T) {
	addr, logs := startServer(t, &stubCheck{})
	for _, rc := range []string{"panic@dest.test", "error@dest.test"} {
		r := transaction(t, addr, "192.0.2.7", "", rc)
		a := r.rcpt[0]
		if !(a.Type == gomilter.ActionTempFail || (a.Type == gomilter.ActionRejectWithCode && a.SMTPCode/100 == 4)) {
			t.Errorf("%s: action = %v, want a temporary failure", rc, a)
		}
	}
	if !strings.Contains(logs.String(), "panicked") {
		t.Errorf("no log line for the panic:\n%s", logs)
	}
	// The server still serves after the panic.
	if r := transaction(t, addr, "192.0.2.7", "", "ok@dest.test"); r.eom == nil || r.eom.Type != gomilter.ActionAccept {
		t.Fatalf("after panic: eom = %v", r.eom)
	}
}

// TestGarbageClosesOnlyThatConnection sends what an attacker or a
// confused client could: an empty packet (which crashes go-milter
// v0.10.2 unguarded), a forged 2 GiB length, and text.
func TestGarbageClosesOnlyThatConnection(t *testing.T) {
	addr, logs := startServer(t, &stubCheck{})
	for _, junk := range [][]byte{
		{0, 0, 0, 0},
		{0x7f, 0xff, 0xff, 0xff, 'O'},
		[]byte("EHLO example.com\r\nMAIL FROM:<x@y>\r\n"),
		{0, 0, 0, 1, 'Z'},
		{0, 0, 0, 5, 'C', 0, 0, 0},
		// Each of these panicked go-milter v0.10.2 before the guard.
		append(frame('O', "\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xff\xff"), frame('C', "<a@b>\x00")...),
		append(frame('O', "\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xff\xff"), frame('C', "host-without-terminator")...),
		append(frame('O', "\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xff\xff"), frame('M', "<a@b>")...),
		append(frame('O', "\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xff\xff"), frame('R', "<c@d>")...),
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(junk)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.ReadAll(c)
		c.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("junk %q: connection not closed within 5s", junk)
		}
	}
	if r := transaction(t, addr, "192.0.2.7", "", "ok@dest.test"); r.eom == nil || r.eom.Type != gomilter.ActionAccept {
		t.Fatalf("after garbage: eom = %v", r.eom)
	}
	for _, want := range []string{"bad packet length 0", "connect packet without host name terminator", "M packet without address terminator", "R packet without address terminator"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no log line %q:\n%s", want, logs)
		}
	}
}

func TestFrameGuardAcceptsSplitFrames(t *testing.T) {
	g := &frameGuard{}
	stream := []byte{0, 0, 0, 3, 'O', 'b', 'c', 0, 0, 0, 1, 'x'}
	for i := range stream {
		if err := g.scan(stream[i : i+1]); err != nil {
			t.Fatalf("byte %d: %v", i, err)
		}
	}
	if g.left != 0 || g.nhdr != 0 {
		t.Errorf("state after whole frames: left=%d nhdr=%d", g.left, g.nhdr)
	}
	if err := (&frameGuard{}).scan([]byte{0, 0, 0, 1, 'Z'}); err == nil {
		t.Error("a session starting with a command other than option negotiation was accepted")
	}
	if err := g.scan([]byte{0, 0x20, 0, 0}); err == nil {
		t.Error("2 MiB frame accepted")
	}
}

// TestForgedHeaderReplaced: a sender that puts its own X-Greylist (or
// X-Virus-Status) in the message must not have it survive next to the
// one mailwarden adds.
func TestForgedHeaderReplaced(t *testing.T) {
	deleted, added := forgedHeaderSession(t, &stubCheck{}, "<header@dest.test>")
	if len(deleted) != 2 || deleted[0] != 2 || deleted[1] != 1 || added != 1 {
		t.Errorf("X-Greylist deleted %v and %d added: want 2 and 1 deleted, then one added", deleted, added)
	}
}

// ownerCheck owns X-Greylist, as the greylist check with add_header
// does, and adds none: the message passed without a delay.
type ownerCheck struct{ stubCheck }

func (*ownerCheck) OwnedHeaders() []string { return []string{"X-Greylist"} }

// TestForgedHeaderStrippedWithoutOurs: a sender's X-Greylist is deleted
// even when mailwarden adds none to the message (issue 19: it passed
// through unchanged when no delay had happened).
func TestForgedHeaderStrippedWithoutOurs(t *testing.T) {
	deleted, added := forgedHeaderSession(t, &ownerCheck{}, "<plain@dest.test>")
	if len(deleted) != 2 || deleted[0] != 2 || deleted[1] != 1 || added != 0 {
		t.Errorf("X-Greylist deleted %v and %d added: want 2 and 1 deleted, none added", deleted, added)
	}
}

// forgedHeaderSession sends a message with two X-Greylist fields of the
// sender's to a milter running check, and returns which X-Greylist
// indexes the milter deleted and how many it added.
func forgedHeaderSession(t *testing.T, check policy.Check, rcpt string) (deleted []uint32, added int) {
	t.Helper()
	addr, _ := startServer(t, check)
	c := gomilter.NewClient("tcp", addr, gomilter.WithAction(gomilter.AllClientSupportedActionMasks))
	s, err := c.Session(gomilter.NewMacroBag())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, step := range []func() (*gomilter.Action, error){
		func() (*gomilter.Action, error) { return s.Conn("h", gomilter.FamilyInet, 1, "192.0.2.9") },
		func() (*gomilter.Action, error) { return s.Helo("h") },
		func() (*gomilter.Action, error) { return s.Mail("<a@example.net>", "") },
		func() (*gomilter.Action, error) { return s.Rcpt(rcpt, "") },
		func() (*gomilter.Action, error) { return s.DataStart() },
		func() (*gomilter.Action, error) { return s.HeaderField("X-Greylist", "forged by the sender", nil) },
		func() (*gomilter.Action, error) { return s.HeaderField("x-greylist", "and again", nil) },
		func() (*gomilter.Action, error) { return s.HeaderField("Subject", "hi", nil) },
		func() (*gomilter.Action, error) { return s.HeaderEnd() },
	} {
		if _, err := step(); err != nil {
			t.Fatal(err)
		}
	}
	mods, act, err := s.BodyReadFrom(strings.NewReader("body\r\n"))
	if err != nil || act.Type != gomilter.ActionAccept {
		t.Fatalf("eom: %v %v", act, err)
	}
	for _, m := range mods {
		switch {
		case m.Type == gomilter.ActionChangeHeader && strings.EqualFold(m.HeaderName, "X-Greylist") && m.HeaderValue == "":
			deleted = append(deleted, m.HeaderIndex)
		case m.Type == gomilter.ActionAddHeader && m.HeaderName == "X-Greylist":
			added++
		}
	}
	return deleted, added
}

// TestOutOfOrderCommandsRefused: an end of message with no connect or
// MAIL before it, a RCPT with no MAIL and a MAIL with no connect are
// protocol errors: the reply is a tempfail, the connection is closed and
// no check sees a message (issue 19: such an end of message was scanned
// and accepted).
func TestOutOfOrderCommandsRefused(t *testing.T) {
	check := &stubCheck{}
	addr, logs := startServer(t, check)
	optneg := frame('O', "\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xff\xff")
	connect := frame('C', "host\x004\x00\x19127.0.0.9\x00")
	for _, tc := range []struct {
		name string
		cmds []byte
		want string
	}{
		{"end of message alone", append(append([]byte{}, optneg...), frame('E', "")...), "end of message before MAIL"},
		{"body after connect", append(append(append([]byte{}, optneg...), connect...), frame('B', "hello")...), "body before MAIL"},
		{"RCPT after connect", append(append(append([]byte{}, optneg...), connect...), frame('R', "<c@d>\x00")...), "RCPT before MAIL"},
		{"MAIL without connect", append(append([]byte{}, optneg...), frame('M', "<a@b>\x00")...), "MAIL before connect"},
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(tc.cmds)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		c.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s: connection not closed within 5s", tc.name)
		}
		// The last packet the milter wrote is the tempfail ('t').
		if len(got) < 5 || got[len(got)-1] != 't' {
			t.Errorf("%s: the milter answered %q, want a tempfail ('t') last", tc.name, got)
		}
		if !strings.Contains(logs.String(), tc.want) {
			t.Errorf("%s: no log line %q:\n%s", tc.name, tc.want, logs)
		}
	}
	check.mu.Lock()
	defer check.mu.Unlock()
	for _, r := range check.seen {
		if r.Stage == policy.StageEOM || r.Stage == policy.StageRcpt || r.Stage == policy.StageMail {
			t.Errorf("a check saw an out-of-order %v request: %+v", r.Stage, r)
		}
	}
}
