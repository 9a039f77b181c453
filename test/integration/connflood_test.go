package integration_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"mailwarden/internal/accept/accepttest"
	"mailwarden/test/harness"
)

// Flood sizes and the answer time a request must still get. 2,000 idle
// connections is twice the default max_conns; 100 ms is what a Postfix
// smtpd may wait without the SMTP client noticing.
const (
	idleFlood   = 2000
	floodAnswer = 100 * time.Millisecond
)

// floodSources are the ways a local user floods a loopback listener:
// from many 127.x.y.z addresses, so that a per-address cap alone does
// not stop it, and from Postfix's own 127.0.0.1.
var floodSources = []struct {
	name string
	src  func(int) string
}{
	{"from many addresses", accepttest.FromMany(2)},
	{"from 127.0.0.1", accepttest.FromOne("127.0.0.1")},
}

// TestPolicyIdleFlood holds 2,000 idle connections to the running
// daemon's policy port, then checks that a new policy connection is
// answered within 100 ms and that mail through Postfix, which consults
// the policy service, is still delivered rather than deferred with
// smtpd_policy_service_default_action. It is not parallel: the answer
// time is measured without other tests competing for the CPUs.
func TestPolicyIdleFlood(t *testing.T) {
	const internal = "127.0.46.20"
	s := startStack(t, viaPolicy, greylistYAML(greylistDelay, internal+"/32", "127.0.46.30"))
	for i, fs := range floodSources {
		t.Run(fs.name, func(t *testing.T) {
			before := evictedTotal(t, s.mw, "policy")
			f := accepttest.Open(t, s.mw.PolicyAddr, idleFlood, fs.src, nil)

			// Clients in different /24s: greylisting keys on the
			// netblock, and a second request for the first subtest's
			// triplet passes once the delay is over.
			client := []string{"192.0.2.10", "198.51.100.10"}[i]
			took, answer := timePolicyRequest(t, s.mw.PolicyAddr, client)
			held, closed := f.Count()
			evicted := evictedTotal(t, s.mw, "policy") - before
			t.Logf("%d idle policy connections opened: %d held, %d closed to make room (daemon counts %d evicted); new connection answered in %v: %q",
				idleFlood, held, closed, evicted, took, answer)
			if !regexp.MustCompile(`^action=451 4\.7\.1 `).MatchString(answer) {
				t.Errorf("new connection during the flood got %q, want the greylist answer", answer)
			}
			if took > floodAnswer {
				t.Errorf("new connection answered in %v, want within %v", took, floodAnswer)
			}
			if closed == 0 || evicted < closed {
				t.Errorf("%d flood connections closed, daemon counts %d evicted: the flood was not evicted", closed, evicted)
			}

			// Postfix's own smtpd, which may hold an evicted connection,
			// still gets its answer: the mail is delivered. An evicted
			// connection costs it smtpd_policy_service_retry_delay (1s).
			id := harness.UniqueID(t)
			start := time.Now()
			s.send(t, internal, "staff@ext.test", "user@dest.test", id).RequireDelivered(t)
			t.Logf("mail through Postfix during the flood accepted in %v", time.Since(start))
			s.sink.WaitForID(t, id, 10*time.Second)
		})
	}
}

// TestMilterIdleFlood is TestPolicyIdleFlood for the milter port: 2,000
// negotiated, idle milter sessions, then a whole milter transaction on a
// new connection within 100 ms, and mail through Postfix delivered.
func TestMilterIdleFlood(t *testing.T) {
	const internal = "127.0.47.20"
	s := startStack(t, viaMilter, greylistYAML(greylistDelay, internal+"/32", "127.0.47.30"))
	for _, fs := range floodSources {
		t.Run(fs.name, func(t *testing.T) {
			before := evictedTotal(t, s.mw, "milter")
			f := accepttest.Open(t, s.mw.MilterAddr, idleFlood, fs.src, accepttest.MilterHello)

			start := time.Now()
			rcpt, final := milterTransaction(t, s.mw.MilterAddr, internal, "staff@ext.test", "user@dest.test", "")
			took := time.Since(start)
			held, closed := f.Count()
			evicted := evictedTotal(t, s.mw, "milter") - before
			t.Logf("%d idle milter connections opened: %d held, %d closed to make room (daemon counts %d evicted); new session's whole transaction took %v",
				idleFlood, held, closed, evicted, took)
			if rcpt.StopProcessing() || final == nil {
				t.Errorf("transaction during the flood: RCPT %s, end of message %s; want it accepted", describe(rcpt), describe(final))
			}
			if took > floodAnswer {
				t.Errorf("milter transaction took %v, want within %v", took, floodAnswer)
			}
			if closed == 0 || evicted < closed {
				t.Errorf("%d flood connections closed, daemon counts %d evicted: the flood was not evicted", closed, evicted)
			}

			id := harness.UniqueID(t)
			start = time.Now()
			s.send(t, internal, "staff@ext.test", "user@dest.test", id).RequireDelivered(t)
			t.Logf("mail through Postfix during the flood accepted in %v", time.Since(start))
			s.sink.WaitForID(t, id, 10*time.Second)
		})
	}
}

// timePolicyRequest connects to the policy server from 127.0.0.1, as
// Postfix does, asks about a new triplet from client and returns how
// long connecting and answering took, and the answer line.
func timePolicyRequest(t *testing.T, addr, client string) (time.Duration, string) {
	t.Helper()
	req := "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n" +
		"client_address=" + client + "\nclient_name=unknown\nreverse_client_name=unknown\n" +
		"helo_name=flood.test\nsender=sender@ext.test\nrecipient=user@dest.test\n" +
		"recipient_count=0\nqueue_id=\ninstance=f1.00d\nsize=0\n\n"
	start := time.Now()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("connecting to the policy server: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	answer, err := roundTrip(conn, bufio.NewReader(conn), req)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("policy request during the flood: %v (answer %q after %v)", err, answer, took)
	}
	return took, answer
}

// evictedTotal reads mailwarden_connections_evicted_total for listener
// from the daemon's /metrics.
func evictedTotal(t *testing.T, mw *harness.Mailwarden, listener string) int {
	t.Helper()
	resp, err := http.Get("http://" + mw.HTTPAddr + "/metrics")
	if err != nil {
		t.Fatalf("reading metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading metrics: %v", err)
	}
	re := regexp.MustCompile(`(?m)^mailwarden_connections_evicted_total\{listener="` + listener + `"\} (\d+)$`)
	m := re.FindSubmatch(body)
	if m == nil {
		t.Fatalf("metrics lack mailwarden_connections_evicted_total for %s", listener)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}
