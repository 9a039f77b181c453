package config

import (
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Alerts configures who is told, and how, when something needs an
// administrator (docs/alerts.md). The first alert of a kind goes out at
// once; more of that kind within Window are gathered into one digest
// sent when the window ends, so an outbreak is one alert and one
// digest, not a flood. Alerts are read live: a reload applies to the
// next alert.
type Alerts struct {
	// Receivers are where alerts go; none turns alerts off.
	Receivers []AlertReceiver `yaml:"receivers"`
	// Window is how long after an alert more of its kind are gathered
	// into one digest.
	Window Duration `yaml:"window"`
	// Routes send a kind to some receivers only, or with another
	// severity; a kind without a route goes to every receiver.
	Routes []AlertRoute `yaml:"routes"`
	// Queue sets the MTA queue thresholds that raise a queue alert.
	Queue AlertQueue `yaml:"queue"`
	// RetryMin is the wait after the first failed delivery; each
	// further failure doubles it, up to RetryMax.
	RetryMin Duration `yaml:"retry_min"`
	RetryMax Duration `yaml:"retry_max"`
	// GiveUpAfter is how long an alert is retried before it is marked
	// failed.
	GiveUpAfter Duration `yaml:"give_up_after"`
	// QueueSize bounds the alerts waiting for delivery in memory; past
	// it new alerts are dropped (and counted) rather than hold anything
	// up.
	QueueSize int `yaml:"queue_size"`
}

// AlertReceiver is one destination: exactly one of Email and Webhook
// is set (has a field that is not empty).
type AlertReceiver struct {
	// Name is what routes and `mailwarden alerts` call it.
	Name    string       `yaml:"name"`
	Email   AlertEmail   `yaml:"email"`
	Webhook AlertWebhook `yaml:"webhook"`
}

// IsSet reports whether the email section is given.
func (e AlertEmail) IsSet() bool {
	return e.Relay != "" || e.Sendmail != "" || e.From != "" || len(e.To) > 0
}

// IsSet reports whether the webhook section is given.
func (w AlertWebhook) IsSet() bool { return w.URL != "" || w.Secret != "" || w.Timeout != 0 }

// AlertEmail sends alerts as mail, through an SMTP relay (the local MTA
// on loopback) or the sendmail program: one of Relay and Sendmail.
type AlertEmail struct {
	// Relay is an SMTP server's host:port, without authentication.
	Relay string `yaml:"relay"`
	// Sendmail is the path of a sendmail-compatible program.
	Sendmail string   `yaml:"sendmail"`
	From     string   `yaml:"from"`
	To       []string `yaml:"to"`
}

// AlertWebhook posts alerts as JSON with a Slack- and Matrix-compatible
// "text" field.
type AlertWebhook struct {
	URL string `yaml:"url"`
	// Secret, if set, signs each body: X-Mailwarden-Signature:
	// sha256=<hex HMAC-SHA256 of the body>.
	Secret  string   `yaml:"secret"`
	Timeout Duration `yaml:"timeout"`
}

// AlertRoute is where one kind of alert goes.
type AlertRoute struct {
	// Kind is one of AlertKinds.
	Kind string `yaml:"kind"`
	// Receivers are receiver names; empty means every receiver.
	Receivers []string `yaml:"receivers"`
	// Severity is info, warning or critical; empty means the kind's
	// default.
	Severity string `yaml:"severity"`
}

// AlertQueue are the MTA queue thresholds; 0 turns one off.
type AlertQueue struct {
	// Messages raises an alert when the queue holds more messages.
	Messages int `yaml:"messages"`
	// Growth raises an alert when the queue gained more messages than
	// this since the previous listing (at most one a minute).
	Growth int `yaml:"growth"`
}

// Alert kinds: what an alert is about. Each but queue comes from the
// event log's kind of the same name (freeze: an administrator set or
// lifted a freeze; store: the store could not write; trap: a new suspect
// host, an internal machine trying direct port-25 connections).
const (
	AlertLatch      = "latch"
	AlertTrap       = "trap"
	AlertVirus      = "virus"
	AlertRateTrip   = "rate_trip"
	AlertMailbox    = "mailbox"
	AlertFreeze     = "freeze"
	AlertSignatures = "signatures"
	AlertStore      = "store"
	AlertQueueKind  = "queue"
)

// AlertKinds returns every alert kind, for routes and the docs.
func AlertKinds() []string {
	return []string{AlertLatch, AlertTrap, AlertVirus, AlertRateTrip, AlertMailbox, AlertFreeze, AlertSignatures,
		AlertStore, AlertQueueKind}
}

// Alert severities.
const (
	SeverityInfo     = "info"
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// DefaultSeverity is a kind's severity when its route sets none.
func DefaultSeverity(kind string) string {
	switch kind {
	case AlertVirus, AlertMailbox, AlertStore:
		return SeverityCritical
	case AlertFreeze:
		return SeverityInfo
	}
	return SeverityWarning
}

// Route returns the receivers and severity of kind.
func (a Alerts) Route(kind string) (receivers []string, severity string) {
	for _, r := range a.Routes {
		if r.Kind == kind {
			receivers, severity = r.Receivers, r.Severity
			break
		}
	}
	if len(receivers) == 0 {
		for _, rc := range a.Receivers {
			receivers = append(receivers, rc.Name)
		}
	}
	if severity == "" {
		severity = DefaultSeverity(kind)
	}
	return receivers, severity
}

// Relays returns the SMTP relays the email receivers use, for `config
// check` to try.
func (a Alerts) Relays() []string {
	var out []string
	for _, r := range a.Receivers {
		if r.Email.Relay != "" {
			out = append(out, r.Email.Relay)
		}
	}
	return out
}

func defaultAlerts() Alerts {
	return Alerts{
		Window:      Duration(5 * time.Minute),
		RetryMin:    Duration(10 * time.Second),
		RetryMax:    Duration(10 * time.Minute),
		GiveUpAfter: Duration(24 * time.Hour),
		QueueSize:   10000,
	}
}

func (c *Config) validateAlerts(add func(key, format string, args ...any)) {
	a := &c.Alerts
	positiveDurations(add, []named[Duration]{
		{"alerts.window", a.Window},
		{"alerts.retry_min", a.RetryMin},
		{"alerts.retry_max", a.RetryMax},
		{"alerts.give_up_after", a.GiveUpAfter},
	})
	if a.RetryMin > 0 && a.RetryMax > 0 && a.RetryMin > a.RetryMax {
		add("alerts.retry_min", "%s must not be longer than alerts.retry_max (%s)", a.RetryMin, a.RetryMax)
	}
	if a.QueueSize <= 0 {
		add("alerts.queue_size", "%d must be more than 0", a.QueueSize)
	}
	if a.Queue.Messages < 0 {
		add("alerts.queue.messages", "%d must not be negative", a.Queue.Messages)
	}
	if a.Queue.Growth < 0 {
		add("alerts.queue.growth", "%d must not be negative", a.Queue.Growth)
	}
	var names []string
	for i, r := range a.Receivers {
		key := fmt.Sprintf("alerts.receivers[%d]", i)
		switch {
		case r.Name == "" || strings.ContainsFunc(r.Name, func(c rune) bool {
			return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.')
		}):
			add(key+".name", "%q must be a name of letters, digits, '-', '_' and '.'", r.Name)
		case slices.Contains(names, r.Name):
			add(key+".name", "%q names two receivers", r.Name)
		}
		names = append(names, r.Name)
		switch {
		case r.Email.IsSet() == r.Webhook.IsSet():
			add(key, "needs exactly one of email and webhook")
		case r.Email.IsSet():
			validateAlertEmail(add, key+".email", &r.Email)
		default:
			validateAlertWebhook(add, key+".webhook", &r.Webhook)
		}
	}
	var kinds []string
	for i, r := range a.Routes {
		key := fmt.Sprintf("alerts.routes[%d]", i)
		switch {
		case !slices.Contains(AlertKinds(), r.Kind):
			add(key+".kind", "unknown alert kind %q (known: %s)", r.Kind, strings.Join(AlertKinds(), ", "))
		case slices.Contains(kinds, r.Kind):
			add(key+".kind", "%q has two routes", r.Kind)
		}
		kinds = append(kinds, r.Kind)
		for i, name := range r.Receivers {
			if !slices.Contains(names, name) {
				add(fmt.Sprintf("%s.receivers[%d]", key, i), "unknown receiver %q (alerts.receivers names: %s)",
					name, strings.Join(names, ", "))
			}
		}
		switch r.Severity {
		case "", SeverityInfo, SeverityWarning, SeverityCritical:
		default:
			add(key+".severity", "%q is not one of info, warning, critical", r.Severity)
		}
	}
}

func validateAlertEmail(add func(key, format string, args ...any), key string, e *AlertEmail) {
	switch {
	case (e.Relay == "") == (e.Sendmail == ""):
		add(key, "needs exactly one of relay (host:port) and sendmail (a program's path)")
	case e.Relay != "":
		host, port, err := net.SplitHostPort(e.Relay)
		if err != nil || host == "" {
			add(key+".relay", "%q is not host:port", e.Relay)
		} else if msg := checkHostPort(e.Relay, host, port); msg != "" {
			add(key+".relay", "%s", msg)
		}
	case !filepath.IsAbs(e.Sendmail) || hasControl(e.Sendmail):
		add(key+".sendmail", "path %q must be absolute", e.Sendmail)
	}
	if e.From == "" {
		add(key+".from", "must be set")
	} else if !bareAddress(e.From) {
		add(key+".from", "%q is not a mail address such as mailwarden@example.org", e.From)
	}
	if len(e.To) == 0 {
		add(key+".to", "must name at least one address")
	}
	for i, to := range e.To {
		if !bareAddress(to) {
			add(fmt.Sprintf("%s.to[%d]", key, i), "%q is not a mail address such as admin@example.org", to)
		}
	}
}

// bareAddress reports whether s is a plain addr-spec, the form SMTP's
// MAIL FROM and RCPT TO take.
func bareAddress(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s && a.Name == "" && !hasControl(s)
}

func validateAlertWebhook(add func(key, format string, args ...any), key string, w *AlertWebhook) {
	u, err := url.Parse(w.URL)
	switch {
	case w.URL == "":
		add(key+".url", "must be set")
	case err != nil:
		add(key+".url", "%q is not a URL: %v", w.URL, err)
	case u.Scheme != "http" && u.Scheme != "https":
		add(key+".url", "%q must be an http or https URL", w.URL)
	case u.Host == "":
		add(key+".url", "%q has no host", w.URL)
	}
	if w.Timeout < 0 {
		add(key+".timeout", "must not be negative")
	}
}
