package alert

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"mailwarden/internal/config"
)

// SignatureHeader carries the HMAC-SHA256 of the body, keyed with the
// receiver's secret, as "sha256=<hex>".
const SignatureHeader = "X-Mailwarden-Signature"

// defaultWebhookTimeout bounds one POST when the config sets none.
const defaultWebhookTimeout = 10 * time.Second

// Webhook posts alerts as JSON.
type Webhook struct {
	c      config.AlertWebhook
	client *http.Client
}

// NewWebhook returns a webhook receiver.
func NewWebhook(c config.AlertWebhook) *Webhook {
	t := c.Timeout.D()
	if t <= 0 {
		t = defaultWebhookTimeout
	}
	return &Webhook{c: c, client: &http.Client{Timeout: t}}
}

// Payload is the JSON body a webhook receives. Text alone is what Slack
// and Matrix (hookshot) incoming webhooks show; the other fields are for
// programs.
type Payload struct {
	Text     string    `json:"text"`
	ID       int64     `json:"id,omitempty"`
	Kind     string    `json:"kind"`
	Severity string    `json:"severity"`
	Digest   bool      `json:"digest"`
	Subject  string    `json:"subject"`
	Count    int       `json:"count"`
	Items    []string  `json:"items"`
	Host     string    `json:"host"`
	Time     time.Time `json:"time"`
}

// Sign returns the signature header's value for body.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Send posts m; any 2xx answer is a delivery.
func (w *Webhook) Send(ctx context.Context, m Message) error {
	items := make([]string, len(m.Items))
	for i, it := range m.Items {
		items[i] = clean(it)
	}
	p := Payload{Text: fmt.Sprintf("[%s] %s\n%s", m.Severity, clean(m.Subject), body(m)), ID: m.ID,
		Kind: m.Kind, Severity: m.Severity, Digest: m.Digest, Subject: m.Subject, Count: len(items),
		Items: items, Host: m.Host, Time: m.Time.UTC()}
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.c.URL, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "mailwarden-alerts")
	if w.c.Secret != "" {
		req.Header.Set(SignatureHeader, Sign(w.c.Secret, b))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		// The URL's path is often the webhook's secret (Slack, Matrix):
		// errors, which the outbox keeps and the CLI shows, name only
		// its host.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("webhook: POST to %s: %w", w.where(), err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook: %s answered %s", w.where(), resp.Status)
	}
	return nil
}

// where is the webhook's scheme and host, without the path.
func (w *Webhook) where() string {
	u, err := url.Parse(w.c.URL)
	if err != nil {
		return "the webhook"
	}
	return u.Scheme + "://" + u.Host
}
