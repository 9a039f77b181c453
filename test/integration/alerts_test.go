package integration_test

import (
	"bufio"
	"context"
	"crypto/hmac"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mailwarden/bench/load"
	"mailwarden/internal/alert"
	"mailwarden/test/harness"
)

const hookSecret = "integration-secret"

// hook is a webhook receiver on a fixed loopback port that can be taken
// down (nothing listens: connection refused) and brought back. It
// checks every request's signature and keeps the payloads.
type hook struct {
	t    *testing.T
	addr string

	mu     sync.Mutex
	srv    *http.Server
	got    []alert.Payload
	badSig int
}

func newHook(t *testing.T) *hook {
	h := &hook{t: t, addr: fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))}
	t.Cleanup(h.down)
	return h
}

func (h *hook) url() string { return "http://" + h.addr + "/hooks/mailwarden" }

func (h *hook) up() {
	h.t.Helper()
	ln, err := net.Listen("tcp", h.addr)
	if err != nil {
		h.t.Fatalf("webhook receiver: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(h.serve), ReadHeaderTimeout: 5 * time.Second}
	h.mu.Lock()
	h.srv = srv
	h.mu.Unlock()
	go srv.Serve(ln)
}

func (h *hook) down() {
	h.mu.Lock()
	srv := h.srv
	h.srv = nil
	h.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

func (h *hook) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var p alert.Payload
	err := json.Unmarshal(body, &p)
	h.mu.Lock()
	defer h.mu.Unlock()
	if !hmac.Equal([]byte(r.Header.Get(alert.SignatureHeader)), []byte(alert.Sign(hookSecret, body))) {
		h.badSig++
	}
	if err != nil {
		h.t.Errorf("webhook body is not JSON: %v\n%s", err, body)
		return
	}
	h.got = append(h.got, p)
}

// ofKind returns the payloads of kind received so far.
func (h *hook) ofKind(kind string) []alert.Payload {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []alert.Payload
	for _, p := range h.got {
		if p.Kind == kind {
			out = append(out, p)
		}
	}
	return out
}

// waitKind waits until n payloads of kind have arrived.
func (h *hook) waitKind(t *testing.T, kind string, n int, timeout time.Duration) []alert.Payload {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := h.ofKind(kind)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook got %d %s alerts within %v, want %d", len(got), kind, timeout, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// alertsYAML is a daemon whose site 127.<net>.0.0/16 may only send as
// school.test, with a webhook receiver and short alert timings.
func alertsYAML(net int, receivers string) string {
	return siteYAML(fmt.Sprintf("127.%d.0.0/16", net)) + fmt.Sprintf(`
alerts:
  window: 6s
  retry_min: 300ms
  retry_max: 1s
  receivers:
%s`, receivers)
}

func hookReceiver(h *hook) string {
	return fmt.Sprintf("    - name: hook\n      webhook: {url: %q, secret: %q, timeout: 2s}\n", h.url(), hookSecret)
}

// forge sends, from n distinct internal clients 127.<net>.x.y, one
// policy request each with a forged sender domain, 8 connections at
// once as Postfix's smtpd processes would, and returns each request's
// latency. Each is refused and latches its client.
func forge(t *testing.T, addr string, net, n int) []time.Duration {
	return policyFlood(t, addr, net, n, "worm@evil.test", true)
}

// warmUp sends legitimate requests from the same clients first, so the
// figures measure the daemon at work rather than its first moments.
func warmUp(t *testing.T, addr string, net int) {
	policyFlood(t, addr, net, 200, "teacher@school.test", false)
}

func policyFlood(t *testing.T, addr string, net, n int, sender string, refused bool) []time.Duration {
	t.Helper()
	const conns = 8
	lat := make([]time.Duration, n)
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := dialPolicy(addr)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			r := bufio.NewReader(conn)
			for i := c; i < n; i += conns {
				client := fmt.Sprintf("127.%d.%d.%d", net, i/250, i%250+1)
				req := "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n" +
					"client_address=" + client + "\nclient_name=unknown\nreverse_client_name=unknown\n" +
					"helo_name=pc.school.test\nsender=" + sender + "\nrecipient=victim@dest.test\n" +
					"recipient_count=0\nqueue_id=\ninstance=" + instance(sender, i) + "\nsize=0\n\n"
				start := time.Now()
				answer, err := roundTrip(conn, r, req)
				lat[i] = time.Since(start)
				if err != nil || refused != (strings.Contains(answer, "REJECT") || strings.HasPrefix(answer, "action=5")) {
					errs <- fmt.Errorf("request %d from %s: answer %q, %v", i, client, answer, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return lat
}

// instance is Postfix's per-message ID: one message per request, and
// the warm-up's messages apart from the forgeries.
func instance(sender string, i int) string {
	return fmt.Sprintf("%x.%d", len(sender), i)
}

func dialPolicy(addr string) (net.Conn, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	return conn, nil
}

// percentile returns the p-th percentile (0-100) of ds.
func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

// requireFloodAlerts checks the outbreak's alerts: exactly one
// immediate latch alert and one digest naming every one of the n
// clients.
func requireFloodAlerts(t *testing.T, got []alert.Payload, net, n int) {
	t.Helper()
	var immediate, digests []alert.Payload
	for _, p := range got {
		if p.Digest {
			digests = append(digests, p)
		} else {
			immediate = append(immediate, p)
		}
	}
	if len(immediate) != 1 || len(digests) != 1 {
		t.Fatalf("latch alerts: %d immediate, %d digests; want exactly 1 and 1", len(immediate), len(digests))
	}
	d := digests[0]
	if d.Count != n || len(d.Items) != n {
		t.Errorf("digest count %d, %d items; want %d", d.Count, len(d.Items), n)
	}
	text := strings.Join(d.Items, "\n")
	for i := range n {
		client := fmt.Sprintf("127.%d.%d.%d ", net, i/250, i%250+1)
		if !strings.Contains(text, client) {
			t.Fatalf("digest does not name %s", client)
		}
	}
	if !strings.Contains(d.Text, "500") || !strings.Contains(immediate[0].Text, fmt.Sprintf("127.%d.", net)) {
		t.Errorf("alert texts: immediate %q, digest starts %q", immediate[0].Text, d.Text[:min(len(d.Text), 200)])
	}
}

// TestAlertsOutbreakDigest is PRODUCT.md Day A told to the
// administrator: 500 machines latched within seconds give the webhook
// one alert at once and one digest naming all 500, each signed.
func TestAlertsOutbreakDigest(t *testing.T) {
	bin := binary(t)
	h := newHook(t)
	h.up()
	mw := harness.StartMailwarden(t, bin, alertsYAML(60, hookReceiver(h)))
	warmUp(t, mw.PolicyAddr, 60)

	start := time.Now()
	lat := forge(t, mw.PolicyAddr, 60, 500)
	t.Logf("500 forged policy requests (receiver up) in %v: p50 %v, p99 %v, max %v",
		time.Since(start).Round(time.Millisecond), percentile(lat, 50), percentile(lat, 99), percentile(lat, 100))
	milterLatency(t, mw.MilterAddr, "alert receiver up")
	first := h.waitKind(t, "latch", 1, 10*time.Second)
	if first[0].Digest {
		t.Fatalf("first latch alert is a digest: %+v", first[0])
	}
	got := h.waitKind(t, "latch", 2, 20*time.Second)
	// A further window passes with nothing new: no third alert.
	time.Sleep(8 * time.Second)
	got = h.ofKind("latch")
	requireFloodAlerts(t, got, 60, 500)
	h.mu.Lock()
	bad := h.badSig
	h.mu.Unlock()
	if bad != 0 {
		t.Errorf("%d webhook requests had a signature that does not verify", bad)
	}
	list := cliOK(t, mw, "alerts", "list", "--json")
	rows := jsonList(t, "alerts list", list.Stdout)
	if len(rows) != 2 || field(rows[0], "state") != "sent" || field(rows[1], "state") != "sent" {
		t.Errorf("alerts list --json = %v, want two sent alerts", rows)
	}
}

// TestAlertsReceiverDown: with the webhook down, the policy server
// answers as fast as ever (alerts wait in the outbox, never on the mail
// path); the alerts are retried; a daemon killed with alerts pending
// delivers each of them exactly once after its restart, when the
// receiver is back.
func TestAlertsReceiverDown(t *testing.T) {
	bin := binary(t)
	h := newHook(t) // down: nothing listens on its port
	mw := harness.StartMailwarden(t, bin, alertsYAML(61, hookReceiver(h)))
	warmUp(t, mw.PolicyAddr, 61)

	start := time.Now()
	lat := forge(t, mw.PolicyAddr, 61, 500)
	p99 := percentile(lat, 99)
	t.Logf("500 forged policy requests (receiver down) in %v: p50 %v, p99 %v, max %v",
		time.Since(start).Round(time.Millisecond), percentile(lat, 50), p99, percentile(lat, 100))
	// The figures are printed; the bound only catches a request that
	// waited on a delivery (a webhook timeout is seconds), not noise on
	// a loaded machine.
	if p99 > time.Second {
		t.Errorf("policy p99 %v with the alert receiver down, want under 1s", p99)
	}
	if r := milterLatency(t, mw.MilterAddr, "alert receiver down, alerts retrying"); r.P99 > time.Second {
		t.Errorf("milter p99 %v with the alert receiver down, want under 1s", r.P99)
	}

	// The immediate alert and, once the window ends, the digest wait in
	// the outbox: the alert is tried again and again, the digest waits
	// behind it (a receiver gets its alerts in order).
	var rows []map[string]any
	deadline := time.Now().Add(20 * time.Second)
	for {
		rows = jsonList(t, "alerts list", cliOK(t, mw, "alerts", "list", "--json").Stdout)
		retried := len(rows) == 2
		for _, r := range rows {
			n, _ := r["attempts"].(float64)
			retried = retried && field(r, "state") == "pending" && (r["digest"] == true || n >= 2)
		}
		if retried {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alerts list --json = %v; want the alert and the digest pending, retried", rows)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if n := len(h.ofKind("latch")); n != 0 {
		t.Fatalf("receiver down, yet %d alerts arrived", n)
	}

	// Killed, not stopped: nothing gets a chance to finish.
	mw.Signal(t, syscall.SIGKILL)
	if _, exited := mw.WaitExit(10 * time.Second); !exited {
		t.Fatal("mailwarden did not die of SIGKILL")
	}
	mw.Start(t)
	time.Sleep(2 * time.Second) // still down: the restarted daemon retries
	h.up()
	got := h.waitKind(t, "latch", 2, 20*time.Second)
	time.Sleep(4 * time.Second) // time for a duplicate to show
	got = h.ofKind("latch")
	requireFloodAlerts(t, got, 61, 500)
	rows = jsonList(t, "alerts list", cliOK(t, mw, "alerts", "list", "--json").Stdout)
	for _, r := range rows {
		if field(r, "state") != "sent" {
			t.Errorf("after the receiver came back: %v, want every alert sent", r)
		}
	}
}

// TestAlertsEmail: an email receiver through a loopback SMTP sink gets
// the freeze an administrator sets; alerts test reports per receiver;
// config check finds a relay that does not answer.
func TestAlertsEmail(t *testing.T) {
	bin := binary(t)
	sink := harness.StartSink(t)
	receivers := fmt.Sprintf(`    - name: admin
      email:
        relay: %q
        from: mailwarden@school.test
        to: [postmaster@school.test]
`, sink.Addr)
	mw := harness.StartMailwarden(t, bin, alertsYAML(62, receivers))

	if res := mw.Exec(t, "config", "check", mw.ConfigFile); res.ExitCode != 0 {
		t.Errorf("config check with the sink as relay: exit %d\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	res := mw.CLI(t, "alerts", "test")
	if res.ExitCode != 0 || !strings.Contains(res.Stdout, "admin: sent") {
		t.Errorf("alerts test: exit %d\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	sink.WaitFor(t, func(m string) bool { return strings.Contains(m, "mailwarden test alert") }, 10*time.Second)

	cliOK(t, mw, "freeze", "on", "--all", "--note", "spam run from the control panel")
	msg := sink.WaitFor(t, func(m string) bool {
		return strings.Contains(m, "X-Mailwarden-Kind: freeze") && strings.Contains(m, "spam run from the control panel")
	}, 15*time.Second)
	for _, want := range []string{"From: mailwarden@school.test", "To: postmaster@school.test", "Auto-Submitted: auto-generated", "freeze on"} {
		if !strings.Contains(msg, want) {
			t.Errorf("alert mail lacks %q:\n%s", want, msg)
		}
	}
	cliOK(t, mw, "freeze", "off", "--all")

	// A relay that does not answer is a config error, found by config
	// check.
	dead := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	cfg, err := os.ReadFile(mw.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(strings.ReplaceAll(string(cfg), sink.Addr, dead)), 0o644); err != nil {
		t.Fatal(err)
	}
	res = mw.Exec(t, "config", "check", bad)
	if res.ExitCode == 0 || !strings.Contains(res.Stderr, "receiver admin: relay "+dead) {
		t.Errorf("config check with a dead relay: exit %d\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	res = mw.Exec(t, "alerts", "test", "--config", bad)
	if res.ExitCode != 1 || !strings.Contains(res.Stdout, "admin: FAILED") {
		t.Errorf("alerts test with a dead relay: exit %d\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
	}
}

// TestAlertsTrapSuspect: an internal machine trying port 25 directly is
// a new suspect host, and the administrator is told at once, naming it.
func TestAlertsTrapSuspect(t *testing.T) {
	t.Parallel()
	bin := binary(t)
	h := newHook(t)
	h.up()
	trap := trapAddr(t)
	harness.StartMailwarden(t, bin, alertsYAML(62, hookReceiver(h))+"\n"+trapYAML(trap))
	g, helo, mail := trapSession(t, trap, "127.62.0.9", "pc9.school.test", "worm@pc9.school.test")
	requireTrapped(t, "127.62.0.9", g, helo, mail)
	got := h.waitKind(t, "trap", 1, 15*time.Second)
	if !strings.Contains(got[0].Subject+got[0].Text+strings.Join(got[0].Items, "\n"), "127.62.0.9") {
		t.Errorf("trap alert does not name the machine: %+v", got[0])
	}
}

// milterLatency drives the daemon's milter with 300 whole transactions
// from outside clients (greylisted: the store writes), 8 at a time, and
// logs the figures: what a message through Postfix waits on mailwarden.
func milterLatency(t *testing.T, addr, what string) load.Result {
	t.Helper()
	r, err := load.RunMilter(context.Background(), load.MilterOptions{Common: load.Common{
		Addr: addr, N: 300, C: 8, ClientPattern: "198.51.x.y", Seed: 7}})
	if err != nil {
		t.Fatalf("milter load: %v", err)
	}
	t.Logf("milter, %s: %d transactions, p50 %v, p99 %v, max %v", what, r.N, r.P50, r.P99, r.Max)
	return r
}
