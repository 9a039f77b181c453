package milter

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"mailwarden/internal/policy"
)

// shutdownServer runs a server for a shutdown test and returns it with
// its address; the test calls Shutdown itself.
func shutdownServer(t *testing.T, check policy.Check) (*Server, string) {
	t.Helper()
	pl := policy.NewPipeline([]policy.Check{check}, policy.PipelineOptions{})
	// The read timeout is far beyond the test: only Shutdown may end an
	// idle session.
	srv := NewServer(Options{Pipeline: func() *policy.Pipeline { return pl },
		Log: slog.New(slog.DiscardHandler), ReadTimeout: time.Minute, WriteTimeout: 5 * time.Second})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv, ln.Addr().String()
}

// mtaSession opens a milter session as Postfix does for an SMTP session
// and runs the steps up to where the test holds it.
func mtaSession(t *testing.T, addr string, steps ...func(*gomilter.ClientSession) (*gomilter.Action, error)) *gomilter.ClientSession {
	t.Helper()
	c := gomilter.NewClient("tcp", addr, gomilter.WithAction(gomilter.AllClientSupportedActionMasks))
	macros := gomilter.NewMacroBag()
	macros.Set(gomilter.MacroQueueId, "5AbC1")
	s, err := c.Session(macros)
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	all := append([]func(*gomilter.ClientSession) (*gomilter.Action, error){
		func(s *gomilter.ClientSession) (*gomilter.Action, error) {
			return s.Conn("mail.example.net", gomilter.FamilyInet, 40000, "192.0.2.9")
		},
		func(s *gomilter.ClientSession) (*gomilter.Action, error) { return s.Helo("mail.example.net") },
	}, steps...)
	for i, step := range all {
		a, err := step(s)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if a.Type != gomilter.ActionContinue {
			t.Fatalf("step %d: action %v, want continue", i, a)
		}
	}
	return s
}

func mail(s *gomilter.ClientSession) (*gomilter.Action, error) {
	return s.Mail("<sender@example.net>", "")
}

func rcpt(s *gomilter.ClientSession) (*gomilter.Action, error) { return s.Rcpt("<bob@dest.test>", "") }

// finishMessage sends DATA, a header and the body, and returns the
// answer at end of message.
func finishMessage(s *gomilter.ClientSession) (*gomilter.Action, error) {
	for _, step := range []func() (*gomilter.Action, error){
		s.DataStart,
		func() (*gomilter.Action, error) { return s.HeaderField("Subject", "in flight", nil) },
		s.HeaderEnd,
	} {
		if a, err := step(); err != nil || a.Type != gomilter.ActionContinue {
			return a, err
		}
	}
	_, act, err := s.BodyReadFrom(strings.NewReader("hello\r\n"))
	return act, err
}

// wantClosed checks that the server has closed the session: the MTA's
// next command fails.
func wantClosed(t *testing.T, s *gomilter.ClientSession, what string) {
	t.Helper()
	if a, err := s.Mail("<next@example.net>", ""); err == nil {
		t.Errorf("%s: MAIL after shutdown answered %v, want the connection closed", what, a)
	}
}

// TestShutdownClosesIdleSessionsAtOnce: sessions between messages, one
// that has just finished a message and one that has sent none yet, do
// not hold Shutdown: it returns nil, without waiting for its deadline,
// and both connections are closed.
func TestShutdownClosesIdleSessionsAtOnce(t *testing.T) {
	srv, addr := shutdownServer(t, &stubCheck{})
	afterMessage := mtaSession(t, addr, mail, rcpt)
	if act, err := finishMessage(afterMessage); err != nil || act.Type != gomilter.ActionAccept {
		t.Fatalf("end of message = %v, %v; want accept", act, err)
	}
	beforeMessage := mtaSession(t, addr)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with only idle sessions = %v, want nil", err)
	}
	t.Logf("Shutdown with 2 idle sessions returned in %v", time.Since(start))
	wantClosed(t, afterMessage, "session after a message")
	wantClosed(t, beforeMessage, "session before any message")
	if st := srv.ConnStats(); st.Open != 0 {
		t.Errorf("connections open after Shutdown: %+v", st)
	}
}

// TestShutdownWaitsForMessageInFlight: a session between MAIL and end of
// message holds Shutdown while an idle one is closed at once and new
// connections are refused; the message then completes and is accepted,
// the session is closed after its end of message, and Shutdown returns
// nil.
func TestShutdownWaitsForMessageInFlight(t *testing.T) {
	check := &stubCheck{}
	srv, addr := shutdownServer(t, check)
	inFlight := mtaSession(t, addr, mail, rcpt)
	idle := mtaSession(t, addr)

	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		shutdown <- srv.Shutdown(ctx)
	}()
	// The idle session is closed while the other stays open.
	for deadline := time.Now().Add(5 * time.Second); srv.ConnStats().Open != 1; {
		if time.Now().After(deadline) {
			t.Fatalf("connections open during shutdown: %+v, want the one in a message", srv.ConnStats())
		}
		time.Sleep(time.Millisecond)
	}
	wantClosed(t, idle, "idle session")
	// A connection that slips in before the listener is closed is
	// closed before it is served.
	if s, err := gomilter.NewClient("tcp", addr).Session(nil); err == nil {
		s.Close()
		t.Error("a new session was served during shutdown")
	}
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned %v with a message in flight", err)
	case <-time.After(200 * time.Millisecond):
	}

	act, err := finishMessage(inFlight)
	if err != nil || act.Type != gomilter.ActionAccept {
		t.Fatalf("message in flight during shutdown: end of message = %v, %v; want accept", act, err)
	}
	select {
	case err := <-shutdown:
		if err != nil {
			t.Errorf("Shutdown = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return after the message in flight ended")
	}
	wantClosed(t, inFlight, "session whose message finished")
	eom := 0
	for _, r := range check.requests() {
		if r.Stage == policy.StageEOM {
			eom++
		}
	}
	if eom != 1 {
		t.Errorf("checks ran %d times at end of message, want 1", eom)
	}
}

// TestShutdownGraceEndsClosesMessageInFlight: when the grace runs out,
// the session in a message is closed and Shutdown says so.
func TestShutdownGraceEndsClosesMessageInFlight(t *testing.T) {
	srv, addr := shutdownServer(t, &stubCheck{})
	inFlight := mtaSession(t, addr, mail)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown past its grace = %v, want context.DeadlineExceeded", err)
	}
	if a, err := inFlight.Rcpt("<bob@dest.test>", ""); err == nil {
		t.Errorf("RCPT after the grace ran out answered %v, want the connection closed", a)
	}
}

// TestFrameGuardFollowsMessages: the framing layer sees a message open
// at MAIL (or the macros sent with it) and closed once its end, an
// abort, a quit or a new connection is read, as session.inMessage does.
func TestFrameGuardFollowsMessages(t *testing.T) {
	g := &frameGuard{}
	for i, step := range []struct {
		packet []byte
		want   bool
	}{
		{frame('O', "\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xff\xff"), false},
		{frame('C', "host\x004\x9c\x40192.0.2.1\x00"), false},
		{frame('H', "mail.example.net\x00"), false},
		{frame('D', "Mi\x005AbC1\x00"), true},
		{frame('M', "<a@b>\x00"), true},
		{frame('R', "<c@d>\x00"), true},
		{frame('T', ""), true},
		{frame('L', "Subject\x00hi\x00"), true},
		{frame('B', "hello\r\n"), true},
		{frame('E', ""), false},
		{frame('M', "<a@b>\x00"), true},
		{frame('A', ""), false},
		{frame('D', "Ri\x005AbC1\x00"), false},
		{frame('M', "<a@b>\x00"), true},
		{frame('Q', ""), false},
	} {
		if err := g.scan(step.packet); err != nil {
			t.Fatalf("packet %d %q: %v", i, step.packet[4], err)
		}
		if g.inMessage != step.want {
			t.Errorf("after packet %d %q: inMessage = %v, want %v", i, step.packet[4], g.inMessage, step.want)
		}
	}
}
