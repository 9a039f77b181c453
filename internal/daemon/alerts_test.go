package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/alert"
	"mailwarden/internal/config"
	"mailwarden/internal/events"
	"mailwarden/internal/store"
	"mailwarden/internal/store/memory"
	"mailwarden/internal/store/storetest"
)

// TestFreezeRaisesAlert: an administrator's freeze reaches the webhook
// receiver through the event log, and the metrics count it.
func TestFreezeRaisesAlert(t *testing.T) {
	got, url := webhook(t, 4)
	cfg := testConfig(t)
	cfg.Alerts.Receivers = []config.AlertReceiver{{Name: "chat", Webhook: config.AlertWebhook{URL: url}}}
	d, _, _ := start(t, cfg, "")
	if err := d.events.Audit(context.Background(), events.Admin{Who: "root", Action: "freeze on", Reason: "spam run"}, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if p.Kind != config.AlertFreeze || !strings.Contains(p.Text, "spam run") {
			t.Errorf("alert = %+v, want the freeze", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no alert within 10s")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get("http://" + cfg.Listen.HTTP + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), `mailwarden_alerts_sent_total{receiver="chat"} 1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics lack mailwarden_alerts_sent_total for chat")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestValidateTriesAlertRelays: config check connects to each email
// relay, so one that does not answer is a config error.
func TestValidateTriesAlertRelays(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "220 relay.test ESMTP\r\n")
			c.Close()
		}
	}()
	cfg := testConfig(t)
	cfg.Alerts.Receivers = []config.AlertReceiver{{Name: "admin", Email: config.AlertEmail{Relay: ln.Addr().String(),
		From: "mw@school.test", To: []string{"admin@school.test"}}}}
	if err := Validate(cfg); err != nil {
		t.Fatalf("Validate with a relay that answers: %v", err)
	}
	ln.Close()
	err = Validate(cfg)
	if err == nil || !strings.Contains(err.Error(), "receiver admin: relay "+ln.Addr().String()) {
		t.Errorf("Validate with a relay that is gone: %v", err)
	}
}

// TestStoreOutageAlertsFromMemory: when the store cannot write, the
// webhook hears of it at once, although neither the event nor the
// alert can be stored; and again when the store writes.
func TestStoreOutageAlertsFromMemory(t *testing.T) {
	got, url := webhook(t, 8)
	cfg := testConfig(t)
	cfg.Alerts.Window = config.Duration(time.Hour)
	cfg.Alerts.Receivers = []config.AlertReceiver{{Name: "chat", Webhook: config.AlertWebhook{URL: url}}}
	st := storetest.WithFaults(memory.New())
	d := startWith(t, cfg, Options{Stderr: io.Discard, Stdout: io.Discard, Store: st})
	full := errors.New("database or disk is full")
	for _, m := range []string{"Probe", "AddAlerts", "MarkAlert", "AppendEvents"} {
		st.FailOn(m, full)
	}
	d.health.check(context.Background())
	wait := func(what string) alert.Payload {
		t.Helper()
		select {
		case p := <-got:
			return p
		case <-time.After(10 * time.Second):
			t.Fatalf("no alert %s within 10s", what)
		}
		return alert.Payload{}
	}
	if p := wait("of the outage"); p.Kind != config.AlertStore || !strings.Contains(p.Text, "cannot write") {
		t.Errorf("alert = %+v, want the store outage", p)
	}
	st.Heal()
	d.health.check(context.Background())
	// The recovery falls in the outage alert's window: its digest comes
	// at the window's end, or at shutdown. The outage alert, sent from
	// memory, is stored once the store writes.
	deadline := time.Now().Add(10 * time.Second)
	for {
		as, err := st.RecentAlerts(context.Background(), 0)
		if err == nil && len(as) == 1 && as[0].Kind == config.AlertStore && as[0].State == store.AlertSent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox after the store heals = %+v, %v; want the outage alert, sent", as, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestIncidentAlerts: the incident report lists each alert of the last
// hour once (not once per receiver), every undelivered one however old,
// and says when no receiver is configured.
func TestIncidentAlerts(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	st := memory.New()
	cfg := config.Default()
	src := incidentAlerts{store: st, cfg: func() config.Config { return cfg }}
	if _, _, err := src.OpenAlerts(ctx, now); !errors.Is(err, adminapi.ErrAlertsOff) {
		t.Fatalf("no receivers: err = %v, want ErrAlertsOff", err)
	}
	cfg.Alerts.Receivers = []config.AlertReceiver{{Name: "ops"}, {Name: "chat"}}
	recent := now.Add(-10 * time.Minute)
	old := now.Add(-3 * time.Hour)
	ids, err := st.AddAlerts(ctx, []store.Alert{
		{Created: recent, Kind: "latch", Receiver: "ops", Subject: "latched 10.1.2.3", Items: []string{"a"}},
		{Created: recent, Kind: "latch", Receiver: "chat", Subject: "latched 10.1.2.3", Items: []string{"a"}},
		{Created: old, Kind: "virus", Receiver: "ops", Subject: "virus from 10.1.2.4", Items: []string{"b"}},
		{Created: old, Kind: "freeze", Receiver: "ops", Subject: "freeze on", Items: []string{"c"}},
	}, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids[:3] {
		if err := st.MarkAlert(ctx, store.AlertUpdate{ID: id, State: store.AlertSent, Attempts: 1, SentAt: recent}); err != nil {
			t.Fatal(err)
		}
	}
	open, actions, err := src.OpenAlerts(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range open {
		got = append(got, a.Summary)
	}
	want := []string{"freeze on (not delivered yet to ops)", "latched 10.1.2.3"}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("open alerts %q, want %q", got, want)
	}
	if !slices.Contains(actions, "mailwarden alerts list") || len(actions) != 2 {
		t.Errorf("actions %q: want alerts list and, with one undelivered, alerts test", actions)
	}
}

// webhook starts a webhook receiver for the test; got hears each alert
// posted to url (up to n unread).
func webhook(t *testing.T, n int) (got <-chan alert.Payload, url string) {
	ch := make(chan alert.Payload, n)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p alert.Payload
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		ch <- p
	}))
	t.Cleanup(srv.Close)
	return ch, srv.URL
}
