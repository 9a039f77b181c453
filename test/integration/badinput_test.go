package integration_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"mailwarden/test/harness"
)

// closeWithin bounds how long the daemon may keep a bad connection open;
// the test config sets policy_server.request_timeout and the milter
// read timeout well below it.
const closeWithin = 5 * time.Second

// TestBadInputClosesConnection sends malformed protocol data to the
// running daemon's milter and policy ports. Each bad connection must be
// closed without an answer and logged with the peer's address, while a
// concurrent healthy policy connection keeps being answered and mail
// through Postfix still flows afterwards.
func TestBadInputClosesConnection(t *testing.T) {
	t.Parallel()
	const internal = "127.0.42.20"
	s := startStack(t, viaMilter|viaPolicy, greylistYAML(greylistDelay, internal+"/32", "127.0.42.30",
		"policy_server: {request_timeout: 1s}",
		"milter: {read_timeout: 2s}"))
	pid := s.mw.PID()

	healthy := startHealthyPolicy(t, s.mw.PolicyAddr)

	rng := rand.New(rand.NewSource(1))
	junk := func(n int) []byte {
		b := make([]byte, n)
		rng.Read(b)
		// No '=' and no blank line: junk must never parse as a request.
		for i := range b {
			if b[i] == '=' || b[i] == '\n' {
				b[i] = 0xff
			}
		}
		return b
	}
	policyHead := "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\n"
	cases := []struct {
		name, client, addr string
		send               []byte
		closeWrite         bool // half-close after sending, as Exim's readsocket does
	}{
		{"milter HTTP request", "127.0.41.1", s.mw.MilterAddr, []byte("GET / HTTP/1.0\r\nHost: mx.test\r\n\r\n"), false},
		{"milter zero-length packet", "127.0.41.2", s.mw.MilterAddr, []byte{0, 0, 0, 0, 'O', 0, 0, 0}, false},
		{"milter unknown command", "127.0.41.3", s.mw.MilterAddr, append([]byte{0, 0, 0, 9, 'Z'}, junk(8)...), false},
		{"milter binary junk", "127.0.41.4", s.mw.MilterAddr, append([]byte{0xde, 0xad, 0xbe, 0xef}, junk(4096)...), false},
		{"policy missing blank line then close", "127.0.41.11", s.mw.PolicyAddr, []byte(policyHead + "recipient=u@dest.test\n"), true},
		{"policy 1 MB line", "127.0.41.12", s.mw.PolicyAddr, append([]byte("request="), bytes.Repeat([]byte("a"), 1<<20)...), false},
		{"policy binary junk", "127.0.41.13", s.mw.PolicyAddr, append(junk(4096), '\n', '\n'), false},
		{"policy half a request then silence", "127.0.41.14", s.mw.PolicyAddr, []byte(policyHead + "sender=a@ext"), false},
	}
	t.Run("bad connections", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				t.Logf("want the daemon to close the connection and log it at INFO or above naming %s", c.client)
				offset := s.mw.StderrSize()
				got := sendBad(t, c.client, c.addr, c.send, c.closeWrite)
				if bytes.Contains(got, []byte("action=")) {
					t.Errorf("bad request was answered: %q", got)
				}
				line := s.mw.WaitStderr(t, offset, func(line string) bool {
					r := harness.ParseRecord(line)
					return r != nil && r["level"] != "DEBUG" && strings.Contains(line, c.client)
				}, 5*time.Second)
				t.Logf("daemon logged: %s", line)
			})
		}
	})

	answered, failures := healthy.stop()
	if len(failures) != 0 {
		t.Errorf("the healthy policy connection failed while bad input arrived: %v", failures)
	}
	if answered < 5 {
		t.Errorf("the healthy policy connection got %d answers, want a steady stream", answered)
	}
	if s.mw.PID() != pid || !s.mw.Running() {
		t.Fatalf("the daemon did not survive the bad input")
	}

	id := harness.UniqueID(t)
	s.send(t, internal, "after@ext.test", "user@dest.test", id).RequireDelivered(t)
	s.sink.WaitForID(t, id, 10*time.Second)
}

// sendBad connects from client to addr, writes data and reads until the
// daemon closes the connection, failing the test if it stays open longer
// than closeWithin. A write refused because the daemon already closed is
// fine. It returns whatever the daemon sent.
func sendBad(t *testing.T, client, addr string, data []byte, closeWrite bool) []byte {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(client)}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("connecting from %s to %s: %v", client, addr, err)
	}
	defer conn.Close()
	start := time.Now()
	conn.SetDeadline(start.Add(closeWithin))
	if _, err := conn.Write(data); err != nil && !closedByPeer(err) {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("daemon neither read nor closed within %v", closeWithin)
		}
		t.Fatalf("writing bad input: %v", err)
	}
	if closeWrite {
		conn.(*net.TCPConn).CloseWrite()
	}
	got, err := io.ReadAll(conn)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Fatalf("connection still open %v after bad input (read %q)", closeWithin, got)
	case err != nil && !closedByPeer(err):
		t.Fatalf("reading after bad input: %v", err)
	}
	t.Logf("closed by the daemon after %v", time.Since(start).Round(time.Millisecond))
	return got
}

// closedByPeer reports whether err means the other side closed or reset
// the connection.
func closedByPeer(err error) bool {
	s := err.Error()
	return errors.Is(err, io.EOF) || strings.Contains(s, "connection reset") || strings.Contains(s, "broken pipe")
}

// healthyPolicy keeps one well-behaved policy connection busy, as Postfix
// would, asking about an internal client every 100 ms.
type healthyPolicy struct {
	done     chan struct{}
	finished chan struct{}
	mu       sync.Mutex
	answered int
	failures []string
}

func startHealthyPolicy(t *testing.T, addr string) *healthyPolicy {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("connecting to the policy server: %v", err)
	}
	h := &healthyPolicy{done: make(chan struct{}), finished: make(chan struct{})}
	// An outside client: the stream's requests are greylisted, answered
	// all the same, and never count against an internal client's rate
	// limits, however long a slow machine keeps the stream going.
	req := "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n" +
		"client_address=198.51.100.20\nclient_name=unknown\nreverse_client_name=unknown\n" +
		"helo_name=healthy.test\nsender=healthy@ext.test\nrecipient=user@dest.test\n" +
		"recipient_count=0\nqueue_id=\ninstance=1.2.3.4\nsize=0\n\n"
	go func() {
		defer close(h.finished)
		defer conn.Close()
		r := bufio.NewReader(conn)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-h.done:
				return
			case <-tick.C:
			}
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			answer, err := roundTrip(conn, r, req)
			h.mu.Lock()
			if err != nil || !strings.HasPrefix(answer, "action=") {
				h.failures = append(h.failures, answer+" "+errString(err))
				h.mu.Unlock()
				return
			}
			h.answered++
			h.mu.Unlock()
		}
	}()
	return h
}

// stop ends the healthy connection and reports how it went.
func (h *healthyPolicy) stop() (answered int, failures []string) {
	close(h.done)
	<-h.finished
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.answered, h.failures
}

// roundTrip sends one policy request and reads its answer up to the
// terminating blank line.
func roundTrip(conn net.Conn, r *bufio.Reader, req string) (string, error) {
	if _, err := io.WriteString(conn, req); err != nil {
		return "", err
	}
	var answer strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return answer.String(), err
		}
		if line == "\n" {
			return strings.TrimSpace(answer.String()), nil
		}
		answer.WriteString(line)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
