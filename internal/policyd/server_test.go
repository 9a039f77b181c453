package policyd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"mailwarden/internal/policy"
)

// stubCheck decides by the recipient's local part, so each test picks
// the verdict it needs through the request alone.
type stubCheck struct {
	started chan struct{} // receives when a "slow" request starts
	release chan struct{} // closed to let "slow" requests finish
}

func (stubCheck) Name() string { return "stub" }

func (c stubCheck) Check(ctx context.Context, req *policy.Request) (policy.Verdict, error) {
	local, _, _ := strings.Cut(req.Recipient, "@")
	switch {
	case local == "greylist":
		return policy.Verdict{Action: policy.Tempfail, Code: 451, Status: "4.7.1",
			Text: "Greylisted, please try again in 5m"}, nil
	case local == "reject":
		return policy.Verdict{Action: policy.Reject, Text: "No such user"}, nil
	case local == "panic":
		panic("stub check panics")
	case local == "error":
		return policy.Verdict{}, errors.New("store unavailable")
	case local == "slow":
		c.started <- struct{}{}
		select {
		case <-c.release:
			return policy.Verdict{Action: policy.Reject, Text: "Slow but sure"}, nil
		case <-ctx.Done():
			return policy.Verdict{}, ctx.Err()
		}
	case strings.HasPrefix(local, "seq"):
		return policy.Verdict{Action: policy.Continue,
			Headers: []policy.Header{{Name: "X-Seq", Value: local[3:]}}}, nil
	}
	return policy.Verdict{Action: policy.Continue}, nil
}

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type harness struct {
	addr  string
	srv   *Server
	logs  *syncBuffer
	check stubCheck
	done  chan error // Serve's result
}

// startServer runs a server on a free loopback port with the stub check.
// o.Pipeline and o.Log are filled in when nil.
func startServer(t testing.TB, o Options) *harness {
	t.Helper()
	h := &harness{
		logs:  &syncBuffer{},
		check: stubCheck{started: make(chan struct{}, 1), release: make(chan struct{})},
		done:  make(chan error, 1),
	}
	if o.Pipeline == nil {
		p := policy.NewPipeline([]policy.Check{h.check}, policy.PipelineOptions{})
		o.Pipeline = func() *policy.Pipeline { return p }
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	h.srv = NewServer(o)
	go func() { h.done <- h.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-h.done; err != nil {
			t.Errorf("Serve returned %v after Shutdown, want nil", err)
		}
	})
	return h
}

type client struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	return dialFrom(t, addr, "127.0.0.1")
}

// dialFrom connects from the loopback address src, which stands for a
// distinct client host.
func dialFrom(t testing.TB, addr, src string) *client {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { nc.Close() })
	return &client{t: t, nc: nc, br: bufio.NewReader(nc)}
}

// ask sends one request and returns the action value of the answer.
func (c *client) ask(req string) string {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, req); err != nil {
		c.t.Fatalf("writing request: %v", err)
	}
	return c.readAnswer()
}

func (c *client) readAnswer() string {
	c.t.Helper()
	line, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("reading answer: %v (got %q)", err, line)
	}
	end, err := c.br.ReadString('\n')
	if err != nil || end != "\n" {
		c.t.Fatalf("answer %q not ended by an empty line: %q, %v", line, end, err)
	}
	action, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "action=")
	if !ok {
		c.t.Fatalf("answer %q has no action=", line)
	}
	return action
}

// expectClosed asserts the server closes the connection without
// sending anything.
func (c *client) expectClosed() {
	c.t.Helper()
	n, err := c.br.Read(make([]byte, 512))
	if n > 0 {
		c.t.Fatalf("expected the connection closed, got %d bytes", n)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatal("server did not close the connection")
	}
}

// rcptRequest is a Postfix RCPT-stage request for rcpt.
func rcptRequest(rcpt string) string {
	return "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n" +
		"client_address=192.0.2.10\nclient_name=mail.example.net\nhelo_name=mail.example.net\n" +
		"sender=alice@example.net\nrecipient=" + rcpt + "\ninstance=1a2b.3c\n\n"
}

func TestAnswers(t *testing.T) {
	h := startServer(t, Options{})
	c := dial(t, h.addr)
	tests := []struct {
		req, want string
	}{
		{rcptRequest("bob@example.org"), "DUNNO"},
		{rcptRequest("greylist@example.org"), "451 4.7.1 Greylisted, please try again in 5m"},
		{rcptRequest("reject@example.org"), "550 5.7.1 No such user"},
		{rcptRequest("seq7@example.org"), "PREPEND X-Seq: 7"},
		{rcptRequest("panic@example.org"), "451 4.3.0 Temporary local problem, please try again later"},
		{rcptRequest("error@example.org"), "451 4.3.0 Temporary local problem, please try again later"},
		// VRFY is not checked, whatever the recipient.
		{strings.Replace(rcptRequest("reject@example.org"), "=RCPT", "=VRFY", 1), "DUNNO"},
	}
	for _, tt := range tests {
		if got := c.ask(tt.req); got != tt.want {
			t.Errorf("request for %q: action=%q, want %q", tt.req, got, tt.want)
		}
	}
}

func TestPersistentConnection(t *testing.T) {
	h := startServer(t, Options{})
	c := dial(t, h.addr)
	for i := range 100 {
		want := fmt.Sprintf("PREPEND X-Seq: %d", i)
		if got := c.ask(rcptRequest(fmt.Sprintf("seq%d@example.org", i))); got != want {
			t.Fatalf("request %d: action=%q, want %q", i, got, want)
		}
	}
}

// TestEximReadsocket does what Exim's ${readsocket} does: one request,
// shutdown of the write side, read until EOF.
func TestEximReadsocket(t *testing.T) {
	h := startServer(t, Options{})
	c := dial(t, h.addr)
	req := "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.7\n" +
		"sender=<alice@example.net>\nrecipient=<reject@example.org>\n\n"
	if _, err := io.WriteString(c.nc, req); err != nil {
		t.Fatal(err)
	}
	if err := c.nc.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c.nc)
	if err != nil {
		t.Fatalf("reading until EOF: %v", err)
	}
	if want := "action=550 5.7.1 No such user\n\n"; string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestBadClients sends broken requests on one connection while a healthy
// connection, opened first, keeps getting answers.
func TestBadClients(t *testing.T) {
	tests := []struct {
		name    string
		send    func(t *testing.T, nc net.Conn)
		wantLog string
	}{
		{"missing blank line then EOF", func(t *testing.T, nc net.Conn) {
			io.WriteString(nc, "request=smtpd_access_policy\nrecipient=bob@example.org\n")
			nc.(*net.TCPConn).CloseWrite()
		}, "unexpected EOF"},
		{"1 MB line", func(t *testing.T, nc net.Conn) {
			// The server closes before reading it all; write errors
			// are expected.
			go nc.Write(bytes.Repeat([]byte("a"), 1<<20))
		}, "line too long"},
		{"binary junk with NUL", func(t *testing.T, nc net.Conn) {
			nc.Write([]byte("request=smtpd_access_policy\n\x00\xff\xfeMZ\x90\x00\x03=\n\n"))
		}, "NUL byte"},
		{"line without =", func(t *testing.T, nc net.Conn) {
			io.WriteString(nc, "request=smtpd_access_policy\nhello world\n\n")
		}, "no '=' in line"},
		{"half a request then silence", func(t *testing.T, nc net.Conn) {
			io.WriteString(nc, "request=smtpd_access_policy\nsender=al")
		}, "not completed in time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := startServer(t, Options{RequestTimeout: 200 * time.Millisecond})
			good := dial(t, h.addr)
			if got := good.ask(rcptRequest("reject@example.org")); got != "550 5.7.1 No such user" {
				t.Fatalf("healthy connection before: action=%q", got)
			}
			bad := dial(t, h.addr)
			tt.send(t, bad.nc)
			if got := good.ask(rcptRequest("greylist@example.org")); !strings.HasPrefix(got, "451 4.7.1 ") {
				t.Errorf("healthy connection meanwhile: action=%q", got)
			}
			bad.expectClosed()
			logs := h.logs.String()
			if !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, tt.wantLog) ||
				!strings.Contains(logs, "remote="+bad.nc.LocalAddr().String()) {
				t.Errorf("log lacks a WARN line with %q and the remote address %s:\n%s",
					tt.wantLog, bad.nc.LocalAddr(), logs)
			}
			if got := good.ask(rcptRequest("bob@example.org")); got != "DUNNO" {
				t.Errorf("healthy connection after: action=%q", got)
			}
		})
	}
}

// TestServerPanic makes the server's own code panic after a complete
// request: the client still gets a temporary failure, never an accept.
func TestServerPanic(t *testing.T) {
	h := startServer(t, Options{Pipeline: func() *policy.Pipeline { panic("reload went wrong") }})
	c := dial(t, h.addr)
	if got, want := c.ask(rcptRequest("bob@example.org")), "451 4.3.0 Temporary local problem, please try again later"; got != want {
		t.Errorf("action=%q, want %q", got, want)
	}
	c.expectClosed()
	logs := h.logs.String()
	if !strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, "reload went wrong") ||
		!strings.Contains(logs, "stack=") {
		t.Errorf("log lacks an ERROR line with the panic and its stack:\n%s", logs)
	}
	// The server still serves other connections.
	if got := dial(t, h.addr).ask(rcptRequest("bob@example.org")); !strings.HasPrefix(got, "451 4.3.0") {
		t.Errorf("next connection: action=%q", got)
	}
}

func TestNilPipelineTempfails(t *testing.T) {
	h := startServer(t, Options{Pipeline: func() *policy.Pipeline { return nil }})
	if got := dial(t, h.addr).ask(rcptRequest("bob@example.org")); !strings.HasPrefix(got, "451 4.3.0 ") {
		t.Errorf("action=%q, want a 451 4.3.0 tempfail", got)
	}
}

func TestShutdownAnswersInFlight(t *testing.T) {
	h := startServer(t, Options{})
	slow := dial(t, h.addr)
	idle := dial(t, h.addr)
	if got := idle.ask(rcptRequest("bob@example.org")); got != "DUNNO" {
		t.Fatalf("idle connection: action=%q", got)
	}
	if _, err := io.WriteString(slow.nc, rcptRequest("slow@example.org")); err != nil {
		t.Fatal(err)
	}
	<-h.check.started

	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdown <- h.srv.Shutdown(ctx)
	}()
	// The idle connection is closed and new ones are refused while the
	// slow check is still running.
	idle.expectClosed()
	if nc, err := net.Dial("tcp", h.addr); err == nil {
		nc.Close()
		t.Error("a new connection was accepted during shutdown")
	}
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned %v before the request in flight was answered", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(h.check.release)
	if got := slow.readAnswer(); got != "550 5.7.1 Slow but sure" {
		t.Errorf("in-flight request: action=%q", got)
	}
	if err := <-shutdown; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	slow.expectClosed()
}

// TestMaxConnsClosesOldestIdle: a full server admits a new connection
// by closing the one that has waited longest for a request, so idle
// connections cannot lock Postfix out.
func TestMaxConnsClosesOldestIdle(t *testing.T) {
	h := startServer(t, Options{MaxConns: 2})
	old := dial(t, h.addr) // idle since it was accepted
	used := dial(t, h.addr)
	if got := used.ask(rcptRequest("bob@example.org")); got != "DUNNO" {
		t.Fatalf("second connection: action=%q", got)
	}
	newer := dial(t, h.addr)
	if got := newer.ask(rcptRequest("reject@example.org")); got != "550 5.7.1 No such user" {
		t.Fatalf("third connection: action=%q", got)
	}
	old.expectClosed()
	if got := used.ask(rcptRequest("reject@example.org")); got != "550 5.7.1 No such user" {
		t.Errorf("second connection after: action=%q", got)
	}
	if !strings.Contains(h.logs.String(), "policy server: connection limit reached") {
		t.Errorf("no log line for the eviction:\n%s", h.logs.String())
	}
	if st := h.srv.ConnStats(); st.Open != 2 || st.Evicted != 1 || st.Refused != 0 {
		t.Errorf("ConnStats = %+v, want 2 open, 1 evicted", st)
	}
}

// TestMaxConnsPerClient: the per-client cap closes that client's own
// idle connection, not another client's older one.
func TestMaxConnsPerClient(t *testing.T) {
	h := startServer(t, Options{MaxConnsPerClient: 1})
	other := dialFrom(t, h.addr, "127.0.3.2")
	first := dialFrom(t, h.addr, "127.0.3.1")
	second := dialFrom(t, h.addr, "127.0.3.1")
	if got := second.ask(rcptRequest("bob@example.org")); got != "DUNNO" {
		t.Fatalf("second connection: action=%q", got)
	}
	first.expectClosed()
	if got := other.ask(rcptRequest("bob@example.org")); got != "DUNNO" {
		t.Errorf("other client's connection: action=%q", got)
	}
}

// TestMaxConnsRefusesWhenAllBusy: a connection whose request is being
// answered is never closed to make room; the new one is.
func TestMaxConnsRefusesWhenAllBusy(t *testing.T) {
	h := startServer(t, Options{MaxConns: 1})
	slow := dial(t, h.addr)
	if _, err := io.WriteString(slow.nc, rcptRequest("slow@example.org")); err != nil {
		t.Fatal(err)
	}
	<-h.check.started
	second := dial(t, h.addr)
	second.expectClosed()
	close(h.check.release)
	if got := slow.readAnswer(); got != "550 5.7.1 Slow but sure" {
		t.Errorf("busy connection: action=%q", got)
	}
	if !strings.Contains(h.logs.String(), "refused=1") {
		t.Errorf("no log line for the refused connection:\n%s", h.logs.String())
	}
}

func TestIdleTimeoutCloses(t *testing.T) {
	h := startServer(t, Options{IdleTimeout: 100 * time.Millisecond})
	c := dial(t, h.addr)
	if got := c.ask(rcptRequest("bob@example.org")); got != "DUNNO" {
		t.Fatalf("action=%q", got)
	}
	c.expectClosed()
}

func BenchmarkServer(b *testing.B) {
	h := startServer(b, Options{})
	req := rcptRequest("bob@example.org")
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		nc, err := net.Dial("tcp", h.addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer nc.Close()
		br := bufio.NewReader(nc)
		for pb.Next() {
			if _, err := io.WriteString(nc, req); err != nil {
				b.Error(err)
				return
			}
			line, err := br.ReadString('\n')
			if err == nil {
				_, err = br.ReadString('\n')
			}
			if err != nil || line != "action=DUNNO\n" {
				b.Errorf("answer %q, %v", line, err)
				return
			}
		}
	})
}
