package alert

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/netip"
	"net/smtp"
	"os/exec"
	"strings"
	"time"

	"mailwarden/internal/config"
)

// emailTimeout bounds one delivery when the caller's ctx has no deadline.
const emailTimeout = 30 * time.Second

// Email sends alerts as plain-text mail through an SMTP relay or the
// sendmail program.
type Email struct {
	c    config.AlertEmail
	host string
}

// NewEmail returns an email receiver; host names the daemon's host in
// HELO and the Message-ID.
func NewEmail(c config.AlertEmail, host string) *Email { return &Email{c: c, host: host} }

// Send delivers m to every address in To.
func (e *Email) Send(ctx context.Context, m Message) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, emailTimeout)
		defer cancel()
	}
	msg := e.compose(m)
	if e.c.Sendmail != "" {
		return e.sendmail(ctx, msg)
	}
	return e.smtp(ctx, msg)
}

// compose writes the message (RFC 5322) with CRLF line ends. The
// subject is encoded (RFC 2047) and the body is 8-bit UTF-8 text.
func (e *Email) compose(m Message) []byte {
	var b bytes.Buffer
	host := e.host
	if host == "" {
		host = "localhost"
	}
	h := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	h("From", e.c.From)
	h("To", strings.Join(e.c.To, ", "))
	h("Subject", mime.QEncoding.Encode("utf-8", clean(m.Subject)))
	h("Date", m.Time.Format(time.RFC1123Z))
	h("Message-ID", fmt.Sprintf("<mailwarden.%d.%d@%s>", m.Time.UnixNano(), m.ID, host))
	// RFC 3834 §5: an automatic message, so no one auto-replies to it.
	h("Auto-Submitted", "auto-generated")
	h("X-Mailwarden-Kind", m.Kind)
	h("X-Mailwarden-Severity", m.Severity)
	h("MIME-Version", "1.0")
	h("Content-Type", "text/plain; charset=utf-8")
	h("Content-Transfer-Encoding", "8bit")
	b.WriteString("\r\n")
	for _, line := range strings.Split(body(m), "\n") {
		b.WriteString(strings.TrimRight(line, "\r"))
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// body is the alert's text and every item it names, one a line.
func body(m Message) string {
	var b strings.Builder
	b.WriteString(m.Text)
	if len(m.Items) > 0 {
		b.WriteString("\n\n")
		for _, it := range m.Items {
			b.WriteString("- " + clean(it) + "\n")
		}
	}
	fmt.Fprintf(&b, "\n-- \nmailwarden on %s, %s alert (%s) at %s\n", m.Host, m.Kind, m.Severity,
		m.Time.UTC().Format(time.RFC3339))
	return b.String()
}

func (e *Email) smtp(ctx context.Context, msg []byte) error {
	d := net.Dialer{}
	conn, err := d.DialContext(ctx, "tcp", e.c.Relay)
	if err != nil {
		return fmt.Errorf("email: connect to %s: %w", e.c.Relay, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	host, _, _ := net.SplitHostPort(e.c.Relay)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return fmt.Errorf("email: %s: %w", e.c.Relay, err)
	}
	defer c.Close()
	helo := e.host
	if helo == "" {
		helo = "localhost"
	}
	if err := c.Hello(helo); err != nil {
		return fmt.Errorf("email: %s: HELO: %w", e.c.Relay, err)
	}
	// A relay on loopback is the local MTA: TLS would protect nothing.
	// Any other relay that offers STARTTLS gets it, with its name checked.
	if ok, _ := c.Extension("STARTTLS"); ok && !loopback(host) {
		if err := c.StartTLS(&tls.Config{ServerName: host}); err != nil {
			return fmt.Errorf("email: %s: STARTTLS: %w", e.c.Relay, err)
		}
	}
	if err := c.Mail(e.c.From); err != nil {
		return fmt.Errorf("email: %s: MAIL FROM: %w", e.c.Relay, err)
	}
	for _, to := range e.c.To {
		if err := c.Rcpt(to); err != nil {
			return fmt.Errorf("email: %s: RCPT TO %s: %w", e.c.Relay, to, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("email: %s: DATA: %w", e.c.Relay, err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("email: %s: writing the message: %w", e.c.Relay, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("email: %s: end of data: %w", e.c.Relay, err)
	}
	if err := c.Quit(); err != nil && !errors.Is(err, net.ErrClosed) {
		// The message was accepted at end of data; a failed QUIT does
		// not undo that.
		return nil
	}
	return nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// sendmail hands the message to the sendmail program: -i so a line
// with a lone dot does not end it, -f for the envelope sender.
func (e *Email) sendmail(ctx context.Context, msg []byte) error {
	args := append([]string{"-i", "-f", e.c.From, "--"}, e.c.To...)
	cmd := exec.CommandContext(ctx, e.c.Sendmail, args...)
	cmd.Stdin = bytes.NewReader(msg)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("email: %s: %w: %s", e.c.Sendmail, err, strings.TrimSpace(string(out)))
	}
	return nil
}
