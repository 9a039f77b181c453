// Package alert tells an administrator when something needs them: it
// tails the event log (events.Log.After), turns the events that matter
// into alerts, gathers a flood of one kind into a single digest per
// window, and delivers them by email or webhook from an outbox in the
// store, retrying with backoff, never on the mail path.
package alert

import (
	"context"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"time"
	"unicode"

	"mailwarden/internal/config"
)

// Message is what a receiver sends: one alert, or one digest.
type Message struct {
	ID       int64 // the outbox ID; 0 for a test alert
	Kind     string
	Severity string
	Digest   bool
	Subject  string
	Text     string
	Items    []string
	Time     time.Time
	Host     string // the host the daemon runs on
}

// Receiver delivers messages to one destination.
type Receiver interface {
	// Send delivers m or says why not; it returns when ctx ends.
	Send(ctx context.Context, m Message) error
}

// Receivers builds the receivers a config names, by name.
func Receivers(a config.Alerts, host string) map[string]Receiver {
	out := make(map[string]Receiver, len(a.Receivers))
	for _, r := range a.Receivers {
		switch {
		case r.Email.IsSet():
			out[r.Name] = &Email{c: r.Email, host: host}
		case r.Webhook.IsSet():
			out[r.Name] = NewWebhook(r.Webhook)
		}
	}
	return out
}

// Reach connects to an SMTP relay and reads its greeting: what `config
// check` asks of each email receiver's relay.
func Reach(addr string, timeout time.Duration) error {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, _, err := textproto.NewConn(conn).ReadResponse(220); err != nil {
		return fmt.Errorf("no SMTP greeting: %w", err)
	}
	return nil
}

// maxItemLen bounds one item as a receiver shows it, so that what an
// attacker sends (a sender address, a HELO) cannot make a line SMTP
// refuses (RFC 5321 §4.5.3.1.6: 1000 octets with CRLF).
const maxItemLen = 400

// clean makes text fit one line: control characters become spaces and
// the result is cut to maxItemLen.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxItemLen {
		cut := maxItemLen
		for cut > 0 && !utf8Start(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }
