package alert

import (
	"bufio"
	"context"
	"crypto/hmac"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mailwarden/internal/config"
)

// smtpSink is a tiny SMTP server on loopback (RFC 5321 §4.1: EHLO,
// MAIL, RCPT, DATA, QUIT) that keeps what it is sent.
type smtpSink struct {
	ln   net.Listener
	mu   sync.Mutex
	msgs []sunk
}

type sunk struct {
	from string
	to   []string
	data string
}

func startSMTPSink(t *testing.T) *smtpSink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpSink{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *smtpSink) addr() string { return s.ln.Addr().String() }

func (s *smtpSink) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	say := func(line string) { io.WriteString(c, line+"\r\n") }
	say("220 sink.test ESMTP")
	var m sunk
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
			say("250-sink.test")
			say("250 8BITMIME")
		case strings.HasPrefix(cmd, "MAIL FROM:"):
			// Parameters such as BODY=8BITMIME follow the path.
			m = sunk{from: strings.Trim(strings.Fields(strings.TrimSpace(line)[10:])[0], "<>")}
			say("250 ok")
		case strings.HasPrefix(cmd, "RCPT TO:"):
			m.to = append(m.to, strings.Trim(strings.TrimSpace(line)[8:], "<>"))
			say("250 ok")
		case cmd == "DATA":
			say("354 go on")
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				b.WriteString(strings.TrimPrefix(l, "."))
			}
			m.data = b.String()
			s.mu.Lock()
			s.msgs = append(s.msgs, m)
			s.mu.Unlock()
			say("250 queued")
		case cmd == "QUIT":
			say("221 bye")
			return
		default:
			say("502 no")
		}
	}
}

func (s *smtpSink) received() []sunk {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sunk(nil), s.msgs...)
}

func testMessage() Message {
	return Message{ID: 7, Kind: "latch", Severity: "warning", Digest: true,
		Subject: "mailwarden latch on mw.test: 2 in 5m\r\nBcc: evil@x.test", Text: "2 latch alerts",
		Items: []string{"10.1.2.3 (lincoln) latched", ".\r\nMAIL FROM:<x@evil.test>"},
		Time:  time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC), Host: "mw.test"}
}

// TestEmailRelay sends through a real SMTP listener and checks what
// arrived: envelope, headers (with the subject's CRLF defused) and every
// item, including one that tries to end DATA early.
func TestEmailRelay(t *testing.T) {
	sink := startSMTPSink(t)
	e := NewEmail(config.AlertEmail{Relay: sink.addr(), From: "mw@school.test", To: []string{"admin@school.test", "ops@school.test"}}, "mw.test")
	if err := e.Send(context.Background(), testMessage()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := sink.received()
	if len(got) != 1 {
		t.Fatalf("sink got %d messages, want 1", len(got))
	}
	m := got[0]
	if m.from != "mw@school.test" || strings.Join(m.to, ",") != "admin@school.test,ops@school.test" {
		t.Errorf("envelope = %q -> %q", m.from, m.to)
	}
	for _, want := range []string{"Subject: ", "Auto-Submitted: auto-generated", "X-Mailwarden-Kind: latch",
		"10.1.2.3 (lincoln) latched", "MAIL FROM:<x@evil.test>"} {
		if !strings.Contains(m.data, want) {
			t.Errorf("message lacks %q:\n%s", want, m.data)
		}
	}
	if strings.Contains(m.data, "\r\nBcc:") {
		t.Errorf("the subject's CRLF made a header:\n%s", m.data)
	}
}

func TestEmailRelayDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	e := NewEmail(config.AlertEmail{Relay: addr, From: "mw@school.test", To: []string{"admin@school.test"}}, "mw.test")
	if err := e.Send(context.Background(), testMessage()); err == nil {
		t.Fatal("Send to a closed port succeeded")
	}
	if err := Reach(addr, time.Second); err == nil {
		t.Fatal("Reach of a closed port succeeded")
	}
}

func TestReach(t *testing.T) {
	sink := startSMTPSink(t)
	if err := Reach(sink.addr(), time.Second); err != nil {
		t.Fatalf("Reach: %v", err)
	}
}

// TestEmailSendmail hands the message to a sendmail stand-in that
// records its arguments and input.
func TestEmailSendmail(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	prog := filepath.Join(dir, "sendmail")
	script := "#!/bin/sh\necho \"$@\" > " + out + ".args\ncat > " + out + "\n"
	if err := os.WriteFile(prog, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	e := NewEmail(config.AlertEmail{Sendmail: prog, From: "mw@school.test", To: []string{"admin@school.test"}}, "mw.test")
	if err := e.Send(context.Background(), testMessage()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	args, _ := os.ReadFile(out + ".args")
	if strings.TrimSpace(string(args)) != "-i -f mw@school.test -- admin@school.test" {
		t.Errorf("sendmail arguments = %q", args)
	}
	msg, _ := os.ReadFile(out)
	if !strings.Contains(string(msg), "10.1.2.3 (lincoln) latched") {
		t.Errorf("sendmail got:\n%s", msg)
	}
}

// TestWebhookSigned posts to an httptest receiver that checks the HMAC
// with the shared secret and reads the JSON.
func TestWebhookSigned(t *testing.T) {
	const secret = "s3cret"
	var got Payload
	var sigOK bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		sigOK = hmac.Equal([]byte(r.Header.Get(SignatureHeader)), []byte(Sign(secret, body)))
		if err := json.Unmarshal(body, &got); err != nil {
			t.Errorf("body is not JSON: %v", err)
		}
	}))
	defer srv.Close()
	w := NewWebhook(config.AlertWebhook{URL: srv.URL + "/hooks/abc", Secret: secret})
	if err := w.Send(context.Background(), testMessage()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if !sigOK {
		t.Error("signature does not verify with the secret")
	}
	if !strings.Contains(got.Text, "10.1.2.3 (lincoln) latched") || got.Kind != "latch" || !got.Digest ||
		got.Count != 2 || len(got.Items) != 2 || got.ID != 7 {
		t.Errorf("payload = %+v", got)
	}
	if strings.ContainsAny(got.Items[1], "\r\n") {
		t.Errorf("item keeps control characters: %q", got.Items[1])
	}
}

// TestWebhookErrors: a non-2xx answer fails, and no error names the
// URL's path, which is often the webhook's secret.
func TestWebhookErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "nope", http.StatusInternalServerError)
	}))
	w := NewWebhook(config.AlertWebhook{URL: srv.URL + "/secret-token"})
	err := w.Send(context.Background(), testMessage())
	if err == nil || !strings.Contains(err.Error(), "500") || strings.Contains(err.Error(), "secret-token") {
		t.Errorf("Send to a failing server: %v", err)
	}
	srv.Close()
	err = w.Send(context.Background(), testMessage())
	if err == nil || strings.Contains(err.Error(), "secret-token") {
		t.Errorf("Send to a closed server: %v", err)
	}
}

// TestTest sends a test alert to each receiver and reports each.
func TestTest(t *testing.T) {
	sink := startSMTPSink(t)
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits++ }))
	defer srv.Close()
	a := config.Alerts{Receivers: []config.AlertReceiver{
		{Name: "mail", Email: config.AlertEmail{Relay: sink.addr(), From: "mw@school.test", To: []string{"a@school.test"}}},
		{Name: "chat", Webhook: config.AlertWebhook{URL: srv.URL}},
		{Name: "dead", Webhook: config.AlertWebhook{URL: "http://127.0.0.1:1/x", Timeout: config.Duration(time.Second)}},
	}}
	res := Test(context.Background(), a, "mw.test", time.Now())
	if res["mail"] != nil || res["chat"] != nil || res["dead"] == nil || len(res) != 3 {
		t.Errorf("Test = %v", res)
	}
	if len(sink.received()) != 1 || hits != 1 {
		t.Errorf("sink got %d, webhook %d; want 1 each", len(sink.received()), hits)
	}
}
