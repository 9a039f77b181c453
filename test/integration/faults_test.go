package integration_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/smtp"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"mailwarden/test/harness"
)

// faultsPerPhase is how many messages each fault phase sends by default,
// 2,000 in all; MAILWARDEN_SOAK=1 (make soak) sends faultsSoakPerPhase,
// 10,000 in all, over a longer time.
const (
	faultsPerPhase     = 500
	faultsSoakPerPhase = 2500
)

// The fault tests' greylist delay: short, so that a greylisted first
// attempt and the retry that passes it fit in a phase.
const faultsGreylistDelay = time.Second

// faultKind is what a message in the fault load is and what must become
// of it.
type faultKind int

const (
	kindInbound  faultKind = iota // clean, from outside: greylisted once, then delivered
	kindOutbound                  // clean, from the site: delivered
	kindVirusIn                   // EICAR from outside: refused 5xx
	kindVirusOut                  // EICAR from a site client: refused 5xx, the client latched
	kindForgery                   // a site client sending as another domain: refused 5xx
	kindLatched                   // from the client latched before the load: refused 5xx
)

func (k faultKind) String() string {
	return [...]string{"inbound", "outbound", "virus-in", "virus-out", "forgery", "latched"}[k]
}

// refusable reports whether the test expects the message refused.
func (k faultKind) refusable() bool { return k >= kindVirusIn }

// faultMsg is one message of the load and what happened to it. The test
// plays the sending MTA: a 4xx or a broken connection is retried, a 2xx
// or 5xx at the end is final.
type faultMsg struct {
	kind         faultKind
	token        string // Message-ID local part and X-Test-ID
	client, from string

	final      bool
	accepted   bool   // 250 to the end of data
	lastReply  string // the last reply or error
	attempts   int
	tempfailed int // 4xx or a broken connection
	greylisted int // of those, greylisting's 451
}

// faultCounts is what the test counts after a phase.
type faultCounts struct {
	sent, delivered, queued, refused, lost, duplicated, wronglyAccepted, deferredAtSender int
	attempts, tempfails, greylisted                                                       int
}

func (c faultCounts) String() string {
	return fmt.Sprintf("sent %d: delivered %d, queued %d, refused as expected %d, lost %d, duplicated %d, "+
		"wrongly accepted %d, still deferred at the sender %d (%d attempts; %d tempfailed by the fault, %d greylisted)",
		c.sent, c.delivered, c.queued, c.refused, c.lost, c.duplicated, c.wronglyAccepted, c.deferredAtSender,
		c.attempts, c.tempfails-c.greylisted, c.greylisted)
}

// faultRig is the stack a fault phase runs on: mailwarden as Postfix's
// milter and policy service, scanning with the test's clamd, and the
// sink.
type faultRig struct {
	*stack
	eicar   string // base64 of EICAR, wrapped
	latched string
	next    atomic.Int64 // source addresses handed out
}

const (
	faultSiteNet  = "127.96.0.0/16"
	faultLatched  = "127.96.0.5"
	faultSiteFrom = "staff@school.test"
)

// TestFaultsUnderLoad sends a mixed load through a real Postfix set up as
// docs/postfix.md says, with mailwarden as its milter and policy service
// and antivirus on, and injects one fault per phase: the daemon killed
// with SIGKILL and restarted, clamd stopped and started, the data
// directory's filesystem full, and the store's files made immutable.
// Once the fault is lifted the test's sender retries what was tempfailed,
// Postfix's queue is flushed, and every message is counted: delivered
// exactly once or still queued, or refused with the 5xx the test expects
// (a virus, a forgery, a latched client). Nothing may be lost,
// duplicated or wrongly accepted (PRODUCT.md §4).
func TestFaultsUnderLoad(t *testing.T) {
	bin := binary(t)
	if _, err := exec.LookPath("chattr"); err != nil {
		harness.SkipOrFail(t, "chattr is needed to make the store's files unwritable: %v", err)
	}
	clamd := harness.StartClamd(t)
	per := faultsPerPhase
	if os.Getenv("MAILWARDEN_SOAK") == "1" {
		per = faultsSoakPerPhase
	}
	var total faultCounts
	phase := func(r *faultRig, name string, inject, lift func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			c := r.runPhase(t, per, inject, lift)
			t.Logf("%s: %v; took %v", name, c, time.Since(start).Round(100*time.Millisecond))
			total.add(c)
		})
	}

	// The store on the machine's disk, which honours the immutable flag
	// for files already open; tmpfs does not.
	r := newFaultRig(t, bin, clamd, "")
	mw := r.mw
	phase(r, "daemon_kill9", func(t *testing.T) {
		mw.Signal(t, syscall.SIGKILL)
		if _, exited := mw.WaitExit(5 * time.Second); !exited {
			t.Fatalf("mailwarden still runs 5s after SIGKILL")
		}
	}, func(t *testing.T) { mw.Start(t) })
	// Each fault is in effect, as the daemon sees it, before it is lifted.
	phase(r, "clamd_stopped", func(t *testing.T) {
		if err := clamd.Stop(); err != nil {
			t.Fatalf("stopping clamd: %v", err)
		}
		waitClamdStatus(t, mw, clamd.TCPServer(), false)
	}, func(t *testing.T) {
		if err := clamd.Start(); err != nil {
			t.Fatalf("starting clamd again: %v", err)
		}
		waitClamdStatus(t, mw, clamd.TCPServer(), true)
	})
	files := []string{filepath.Join(mw.DataDir, "mailwarden.db"), filepath.Join(mw.DataDir, "mailwarden.db-wal")}
	immutable := false
	chattr := func(t *testing.T, flag string) {
		if out, err := exec.Command("chattr", append([]string{flag}, files...)...).CombinedOutput(); err != nil {
			t.Fatalf("chattr %s: %v %s", flag, err, out)
		}
		immutable = flag == "+i"
	}
	t.Cleanup(func() {
		if immutable {
			exec.Command("chattr", append([]string{"-i"}, files...)...).Run()
		}
	})
	phase(r, "store_unwritable", func(t *testing.T) {
		chattr(t, "+i")
		waitReadyCode(t, mw, http.StatusServiceUnavailable, 10*time.Second)
	}, func(t *testing.T) {
		chattr(t, "-i")
		waitReadyCode(t, mw, http.StatusOK, 15*time.Second)
	})

	// The store on a tmpfs of its own, to fill up. It must hold the WAL
	// the store lets grow to 10,000 pages (~40 MB) before it checkpoints
	// (internal/store/sqlite): on a smaller one the load itself fills the
	// disk again once the space is freed, and the soak's 2,500 messages
	// grew the WAL to 33 MB.
	fs := harness.Tmpfs(t, 96<<20)
	rd := newFaultRig(t, bin, clamd, filepath.Join(fs, "data"))
	var filler string
	phase(rd, "disk_full", func(t *testing.T) {
		filler = harness.FillUp(t, fs)
		waitReadyCode(t, rd.mw, http.StatusServiceUnavailable, 10*time.Second)
	}, func(t *testing.T) {
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		waitReadyCode(t, rd.mw, http.StatusOK, 15*time.Second)
	})
	t.Logf("all faults: %v", total)
}

// newFaultRig starts mailwarden (its store in dataDir, or the harness's
// directory if ""), a sink and a Postfix that uses mailwarden as its
// milter and policy service with docs/postfix.md's settings, and latches
// the client the load's latched messages come from.
func newFaultRig(t *testing.T, bin string, clamd *harness.Clamd, dataDir string) *faultRig {
	t.Helper()
	sink := harness.StartSink(t)
	mw := harness.NewMailwarden(t, bin, fmt.Sprintf(`internal_networks: [%q]
greylist:
  delay: %s
sites:
  - name: %s
    networks: [%q]
    contact: %q
    sender_domains: [school.test]
    header_from_domains: [school.test]
# The site's few clean clients send hundreds of messages; the limits are
# not what this test is about.
rate_limits: {enabled: false}
antivirus:
  enabled: true
  health_interval: 1s
  %s`, faultSiteNet, faultsGreylistDelay, siteName, faultSiteNet, siteContact, servers(clamd.TCPServer())))
	if dataDir != "" {
		// A data directory that does not exist yet is a new installation.
		mw.DataDir = dataDir
	}
	mw.Start(t)
	pf := harness.StartPostfix(t, harness.PostfixConfig{
		SinkPort: sink.Port, Milter: mw.MilterAddr, Policy: mw.PolicyAddr,
		// docs/postfix.md's settings, in place of the harness's shorter
		// test timeouts.
		Extra: []string{
			"non_smtpd_milters = $smtpd_milters",
			"milter_default_action = tempfail",
			"milter_connect_timeout = 10s",
			"milter_command_timeout = 30s",
			"milter_content_timeout = 300s",
			"milter_connect_macros = j {daemon_name} {client_addr} {client_name} v",
			"milter_mail_macros = i {auth_type} {auth_authen} {mail_addr}",
			"milter_rcpt_macros = i {rcpt_addr}",
			"milter_end_of_data_macros = i",
			"smtpd_policy_service_max_idle = 300s",
			"smtpd_policy_service_timeout = 100s",
			"smtpd_policy_service_default_action = 451 4.3.5 Policy service unavailable, try again later",
		},
	})
	r := &faultRig{
		stack:   &stack{mw: mw, pf: pf, sink: sink},
		eicar:   wrap76(base64.StdEncoding.EncodeToString([]byte(harness.EICAR))),
		latched: faultLatched,
	}
	pre := r.message(kindForgery, r.latched)
	r.deliverOnce(pre, 30*time.Second)
	if pre.accepted || !strings.HasPrefix(pre.lastReply, "5") {
		t.Fatalf("a forgery from %s got %q, want 5xx", r.latched, pre.lastReply)
	}
	waitLatch(t, mw, r.latched)
	return r
}

func (c *faultCounts) add(o faultCounts) {
	c.sent += o.sent
	c.delivered += o.delivered
	c.queued += o.queued
	c.refused += o.refused
	c.lost += o.lost
	c.duplicated += o.duplicated
	c.wronglyAccepted += o.wronglyAccepted
	c.deferredAtSender += o.deferredAtSender
	c.attempts += o.attempts
	c.tempfails += o.tempfails
	c.greylisted += o.greylisted
}

// runPhase offers n messages over at least five seconds, injects the
// fault a fifth of the way in, lifts it three seconds later, lets the
// sender retry until every message is final, flushes Postfix's queue
// and counts.
func (r *faultRig) runPhase(t *testing.T, n int, inject, lift func(t *testing.T)) faultCounts {
	msgs := r.load(n)
	spread := max(5*time.Second, time.Duration(n)*10*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	begin := time.Now()
	for i, m := range msgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-time.After(time.Duration(i) * spread / time.Duration(len(msgs))):
			case <-ctx.Done():
				return
			}
			r.deliver(ctx, m, sem)
		}()
	}

	time.Sleep(time.Until(begin.Add(spread / 5)))
	inject(t)
	time.Sleep(3 * time.Second)
	lift(t)
	lifted := time.Now()

	// After the fault, every message must come to a final answer soon:
	// the sender retries each second.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(spread + 45*time.Second):
		t.Errorf("messages still tempfailed %v after the fault was lifted", spread+45*time.Second)
		cancel()
		<-done
	}
	t.Logf("every message final %v after the fault was lifted", time.Since(lifted).Round(100*time.Millisecond))

	// Flush what Postfix holds and wait for it to drain.
	r.pf.Flush(t)
	deadline := time.Now().Add(20 * time.Second)
	for len(r.pf.Queue(t)) > 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	return r.count(t, msgs)
}

// count checks every message against the sink and Postfix's queue.
func (r *faultRig) count(t *testing.T, msgs []*faultMsg) faultCounts {
	arrived := map[string]int{}
	for _, m := range r.sink.Messages() {
		for _, id := range harness.HeaderValues(m, "X-Test-ID") {
			arrived[id]++
		}
	}
	queued := map[string]bool{}
	for _, e := range r.pf.Queue(t) {
		for _, id := range harness.HeaderValues(r.pf.QueuedMessage(t, e.QueueID), "X-Test-ID") {
			queued[id] = true
		}
	}
	var c faultCounts
	byKind := map[string]int{}
	for _, m := range msgs {
		c.sent++
		c.attempts += m.attempts
		c.tempfails += m.tempfailed
		c.greylisted += m.greylisted
		got := arrived[m.token]
		if got > 1 {
			c.duplicated++
			t.Errorf("%s message %s from %s reached the sink %d times", m.kind, m.token, m.client, got)
		}
		switch {
		case m.kind.refusable() && (m.accepted || got > 0 || queued[m.token]):
			c.wronglyAccepted++
			t.Errorf("%s message %s from %s was accepted (%q), delivered %d times", m.kind, m.token, m.client, m.lastReply, got)
		case m.kind.refusable() && m.final:
			c.refused++
			byKind[m.kind.String()+" refused"]++
		case !m.final:
			c.deferredAtSender++
			t.Errorf("%s message %s from %s still tempfailed after %d attempts: %q", m.kind, m.token, m.client, m.attempts, m.lastReply)
		case !m.accepted:
			c.lost++
			t.Errorf("clean %s message %s from %s refused: %q", m.kind, m.token, m.client, m.lastReply)
		case got > 0:
			c.delivered++
			byKind[m.kind.String()+" delivered"]++
		case queued[m.token]:
			c.queued++
		default:
			c.lost++
			t.Errorf("%s message %s from %s accepted by Postfix but neither delivered nor queued", m.kind, m.token, m.client)
		}
	}
	t.Logf("by kind: %v", byKind)
	return c
}

// load makes n messages: 10% EICAR (half from outside, half from the
// site), 5% forgeries from the site, 5% from the latched client, and the
// rest clean, half inbound and half outbound. Every outside message has
// a /24 and a sender of its own, so each is greylisted once; each virus
// or forgery from the site has its own address, since it latches it.
func (r *faultRig) load(n int) []*faultMsg {
	msgs := make([]*faultMsg, 0, n)
	for i := range n {
		var k faultKind
		switch i % 20 {
		case 0:
			k = kindVirusIn
		case 10:
			k = kindVirusOut
		case 5:
			k = kindForgery
		case 15:
			k = kindLatched
		default:
			k = kindInbound
			if i%2 == 1 {
				k = kindOutbound
			}
		}
		msgs = append(msgs, r.message(k, ""))
	}
	rand.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })
	return msgs
}

// message makes one message of kind k, from client or else an address
// of the right kind.
func (r *faultRig) message(k faultKind, client string) *faultMsg {
	seq := r.next.Add(1)
	m := &faultMsg{kind: k, token: fmt.Sprintf("f%d-%x", seq, rand.Uint32())}
	outside := fmt.Sprintf("127.%d.%d.1", 100+seq/250, seq%250)
	ownSite := fmt.Sprintf("127.96.%d.%d", 1+seq/250, 1+seq%250)
	switch k {
	case kindInbound, kindVirusIn:
		m.client, m.from = outside, fmt.Sprintf("sender%d@ext.test", seq)
	case kindOutbound:
		m.client, m.from = fmt.Sprintf("127.96.0.%d", 10+seq%20), faultSiteFrom
	case kindVirusOut:
		m.client, m.from = ownSite, faultSiteFrom
	case kindForgery:
		m.client, m.from = ownSite, "ceo@bank.test"
	case kindLatched:
		m.client, m.from = r.latched, faultSiteFrom
	}
	if client != "" {
		m.client = client
	}
	return m
}

// deliverOnce sends m with retries, outside a phase.
func (r *faultRig) deliverOnce(m *faultMsg, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	r.deliver(ctx, m, make(chan struct{}, 1))
}

// deliver sends m as a sending MTA does: a 4xx or a broken connection
// is retried a second later (the greylist delay is one second), until a
// 2xx or 5xx or ctx ends. sem bounds the connections open at once.
func (r *faultRig) deliver(ctx context.Context, m *faultMsg, sem chan struct{}) {
	for {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		m.attempts++
		code, reply := r.attempt(m)
		<-sem
		m.lastReply = reply
		switch {
		case code >= 200 && code < 300:
			m.final, m.accepted = true, true
			return
		case code >= 500:
			m.final = true
			return
		}
		m.tempfailed++
		if strings.Contains(reply, "Greylisted") {
			m.greylisted++
		}
		select {
		case <-time.After(faultsGreylistDelay + time.Duration(rand.IntN(300))*time.Millisecond):
		case <-ctx.Done():
			return
		}
	}
}

// attempt runs one SMTP transaction for m from its client address and
// returns the deciding reply code and text; 0 means the connection
// broke, which a sending MTA treats as temporary.
func (r *faultRig) attempt(m *faultMsg) (int, string) {
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(m.client)}}
	conn, err := d.Dial("tcp", r.pf.Addr)
	if err != nil {
		return 0, err.Error()
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	c, err := smtp.NewClient(conn, "mx.test")
	if err != nil {
		return replyOf(err)
	}
	defer c.Close()
	if err := c.Hello("client.faults.test"); err != nil {
		return replyOf(err)
	}
	if err := c.Mail(m.from); err != nil {
		return replyOf(err)
	}
	if err := c.Rcpt(rcptTo); err != nil {
		return replyOf(err)
	}
	w, err := c.Data()
	if err != nil {
		return replyOf(err)
	}
	if _, err := w.Write([]byte(r.body(m))); err != nil {
		return replyOf(err)
	}
	if err := w.Close(); err != nil {
		return replyOf(err)
	}
	c.Quit()
	return 250, "250 accepted"
}

// replyOf turns an SMTP error into its code and text.
func replyOf(err error) (int, string) {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code, fmt.Sprintf("%d %s", te.Code, te.Msg)
	}
	return 0, err.Error()
}

// body renders m with its token in Message-ID, X-Test-ID and Subject;
// a virus carries EICAR as a base64 attachment, as a mail client sends it.
func (r *faultRig) body(m *faultMsg) string {
	h := []string{
		"From: <" + m.from + ">",
		"To: <" + rcptTo + ">",
		"Subject: fault load " + m.token,
		"Message-ID: <" + m.token + "@faults.test>",
		"X-Test-ID: " + m.token,
		"Date: " + time.Now().Format(time.RFC1123Z),
		"MIME-Version: 1.0",
	}
	var b string
	if m.kind == kindVirusIn || m.kind == kindVirusOut {
		h = append(h, `Content-Type: multipart/mixed; boundary="b1"`)
		b = "--b1\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n" +
			"--b1\r\nContent-Type: application/octet-stream; name=\"eicar.com\"\r\n" +
			"Content-Disposition: attachment; filename=\"eicar.com\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
			r.eicar + "\r\n--b1--\r\n"
	} else {
		h = append(h, "Content-Type: text/plain")
		b = "A message of the fault load, " + m.kind.String() + ".\r\n"
	}
	return strings.Join(h, "\r\n") + "\r\n\r\n" + b
}

// wrap76 breaks base64 text into lines of 76 characters (RFC 2045 §6.8).
func wrap76(s string) string {
	var lines []string
	for len(s) > 76 {
		lines = append(lines, s[:76])
		s = s[76:]
	}
	return strings.Join(append(lines, s), "\r\n")
}
