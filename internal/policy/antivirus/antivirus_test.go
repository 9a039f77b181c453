package antivirus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"mailwarden/internal/clamd"
	"mailwarden/internal/policy"
	"mailwarden/internal/policy/latch"
	"mailwarden/internal/store"
	"mailwarden/internal/store/memory"
	"mailwarden/internal/store/storetest"
)

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

const eicar = "Eicar-Test-Signature"

// The clamd client is what the daemon passes as Options.Scanner.
var _ Scanner = (*clamd.Client)(nil)

// fakeScanner answers every scan with res and err, after reading the
// message the way clamd would be sent it.
type fakeScanner struct {
	mu    sync.Mutex
	res   clamd.Result
	err   error
	calls int
	got   []byte // the message as read through open
	size  int64
	// infectedIf, if set, makes a scan infected with res.Virus exactly
	// when what is read contains it, as clamd's EICAR signature does.
	infectedIf string
}

func (f *fakeScanner) ScanOpen(ctx context.Context, open func() (io.ReadCloser, error), size int64) (clamd.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.size = size
	r, err := open()
	if err != nil {
		return clamd.Result{}, err
	}
	defer r.Close()
	if f.got, err = io.ReadAll(r); err != nil {
		return clamd.Result{}, err
	}
	if f.infectedIf != "" && f.err == nil {
		res := f.res
		res.Infected = bytes.Contains(f.got, []byte(f.infectedIf))
		return res, nil
	}
	return f.res, f.err
}

// message is a policy.Message in memory.
type message []byte

func (m message) Size() int64                  { return int64(len(m)) }
func (m message) Open() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(m)), nil }

// fakeClock advances a second every time it is read.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Second)
	return c.now
}

type env struct {
	t       *testing.T
	scanner *fakeScanner
	latches *storetest.Faulty // a memory store, failing when told
	logs    *bytes.Buffer
	c       *Check
}

// newEnv builds a check with a latch on a fake store; mod changes the
// options first.
func newEnv(t *testing.T, mod func(*Options)) *env {
	t.Helper()
	clock := &fakeClock{now: t0}
	e := &env{t: t, scanner: &fakeScanner{res: clamd.Result{Server: "tcp:127.0.0.1:3310"}}, latches: storetest.WithFaults(memory.New()), logs: &bytes.Buffer{}}
	log := slog.New(slog.NewTextHandler(e.logs, nil))
	l, err := latch.New(latch.Options{Store: e.latches, Now: clock.Now, Log: log,
		ExemptClients: []netip.Prefix{netip.MustParsePrefix("10.0.0.25/32")}})
	if err != nil {
		t.Fatal(err)
	}
	o := Options{
		Scanner:         e.scanner,
		Latch:           l,
		InternalDomains: []string{"district.example", "School.Example."},
		MaxScanSize:     1 << 20,
		OversizeAction:  ActionAccept,
		Inbound:         ActionReject,
		Outbound:        ActionReject,
		OnError:         ActionTempfail,
		AddHeaders:      true,
		Hostname:        "mx1.district.example",
		Now:             clock.Now,
		Log:             log,
	}
	if mod != nil {
		mod(&o)
	}
	if e.c, err = New(o); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) infected() {
	e.scanner.res = clamd.Result{Infected: true, Virus: eicar, Server: "tcp:127.0.0.1:3310"}
}

func (e *env) check(req *policy.Request) policy.Verdict {
	e.t.Helper()
	v, err := e.c.Check(context.Background(), req)
	if err != nil {
		e.t.Fatalf("Check: %v", err)
	}
	return v
}

const body = "From: a@b.example\r\nSubject: x\r\n\r\nhello\r\n"

// inbound is a message from an outside client to rcpts.
func inbound(rcpts ...string) *policy.Request {
	return &policy.Request{Stage: policy.StageEOM, Time: t0, Frontend: "milter",
		ClientIP: netip.MustParseAddr("198.51.100.7"), Sender: "x@outside.example",
		Recipients: rcpts, QueueID: "4Q1", Message: message(body)}
}

// outbound is a message from an internal client at ip.
func outbound(ip string) *policy.Request {
	return &policy.Request{Stage: policy.StageEOM, Time: t0, Frontend: "milter", Internal: true, Site: "lincoln",
		ClientIP: netip.MustParseAddr(ip), Sender: "pupil@district.example",
		Recipients: []string{"friend@outside.example"}, QueueID: "4Q2", Message: message(body)}
}

func header(v policy.Verdict, name string) (string, bool) {
	for _, h := range v.Headers {
		if h.Name == name {
			return h.Value, true
		}
	}
	return "", false
}

func TestOnlyEndOfMessageWithAMessageIsScanned(t *testing.T) {
	e := newEnv(t, nil)
	for _, req := range []*policy.Request{
		{Stage: policy.StageRcpt, Message: message(body)},
		{Stage: policy.StageData, Message: message(body)},
		{Stage: policy.StageEOM}, // policy server, or no spool
	} {
		if v := e.check(req); v.Action != policy.Continue || len(v.Headers) != 0 {
			t.Errorf("stage %v: %+v, want a plain continue", req.Stage, v)
		}
	}
	if e.scanner.calls != 0 {
		t.Errorf("scanner called %d times", e.scanner.calls)
	}
}

func TestCleanMessageGetsHeaders(t *testing.T) {
	e := newEnv(t, nil)
	v := e.check(inbound("bob@district.example"))
	if v.Action != policy.Continue {
		t.Fatalf("action %v, want continue", v.Action)
	}
	if got, _ := header(v, HeaderScanned); got != "clamav via mailwarden at mx1.district.example" {
		t.Errorf("%s = %q", HeaderScanned, got)
	}
	if got, _ := header(v, HeaderStatus); got != "Clean" {
		t.Errorf("%s = %q, want Clean", HeaderStatus, got)
	}
	if string(e.scanner.got) != body || e.scanner.size != int64(len(body)) {
		t.Errorf("scanner got %d bytes %q (size %d), want the whole message", len(e.scanner.got), e.scanner.got, e.scanner.size)
	}

	e = newEnv(t, func(o *Options) { o.AddHeaders = false })
	if v := e.check(inbound("bob@district.example")); v.Action != policy.Continue || len(v.Headers) != 0 {
		t.Errorf("add_headers off: %+v", v)
	}
}

func TestOversize(t *testing.T) {
	big := message(strings.Repeat("x", 101))
	for _, tc := range []struct {
		action       string
		want         policy.Action
		code         int
		status, text string
	}{
		{ActionAccept, policy.Continue, 0, "", ""},
		{ActionTempfail, policy.Tempfail, 451, "4.7.1", "Message too large to scan, please try again later"},
		{ActionReject, policy.Reject, 552, "5.3.4", "Message too large to scan"},
	} {
		t.Run(tc.action, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.MaxScanSize, o.OversizeAction = 100, tc.action })
			req := inbound("bob@district.example")
			req.Message = big
			v := e.check(req)
			if v.Action != tc.want || v.Code != tc.code || v.Status != tc.status || v.Text != tc.text {
				t.Errorf("verdict %v %d %s %q, want %v %d %s %q", v.Action, v.Code, v.Status, v.Text, tc.want, tc.code, tc.status, tc.text)
			}
			if e.scanner.calls != 0 {
				t.Error("an oversized message was sent to clamd")
			}
			if !strings.Contains(v.Reason, "101 bytes") {
				t.Errorf("reason %q does not give the size", v.Reason)
			}
			status, ok := header(v, HeaderStatus)
			if tc.action == ActionAccept && status != "Unscanned (too large)" {
				t.Errorf("%s = %q, want Unscanned (too large)", HeaderStatus, status)
			}
			if _, scanned := header(v, HeaderScanned); scanned || tc.action != ActionAccept && ok {
				t.Errorf("headers %+v on an unscanned message", v.Headers)
			}
		})
	}
	// A message exactly at the limit is scanned.
	e := newEnv(t, func(o *Options) { o.MaxScanSize = int64(len(body)) })
	e.check(inbound("bob@district.example"))
	if e.scanner.calls != 1 {
		t.Error("a message of exactly max_scan_size was not scanned")
	}
}

// TestClamdTooLargeIsOversize covers clamd's StreamMaxLength being lower
// than max_scan_size.
func TestClamdTooLargeIsOversize(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.OversizeAction = ActionReject })
	e.scanner.err = fmt.Errorf("clamd tcp:127.0.0.1:3310: %w", clamd.ErrTooLarge)
	v := e.check(inbound("bob@district.example"))
	if v.Action != policy.Reject || v.Code != 552 || v.Status != "5.3.4" {
		t.Errorf("verdict %+v, want 552 5.3.4", v)
	}
	if !strings.Contains(v.Reason, "StreamMaxLength") {
		t.Errorf("reason %q does not point at StreamMaxLength", v.Reason)
	}
}

func TestInboundVirus(t *testing.T) {
	for _, tc := range []struct {
		action string
		want   policy.Action
		code   int
		status string
		text   string
	}{
		{ActionReject, policy.Reject, 554, "5.7.1", "Virus found: " + eicar},
		{ActionDiscard, policy.Discard, 0, "", ""},
		{ActionQuarantine, policy.Quarantine, 0, "", "virus " + eicar},
	} {
		t.Run(tc.action, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.Inbound, o.Outbound = tc.action, ActionReject })
			e.infected()
			v := e.check(inbound("friend@elsewhere.example", "Head@Lincoln.School.example", "bob@district.example"))
			if v.Action != tc.want || v.Code != tc.code || v.Status != tc.status || v.Text != tc.text {
				t.Errorf("verdict %v %d %s %q, want %v %d %s %q", v.Action, v.Code, v.Status, v.Text, tc.want, tc.code, tc.status, tc.text)
			}
			if v.Event != store.EventVirus {
				t.Errorf("event %q, want %q", v.Event, store.EventVirus)
			}
			for _, s := range []string{eicar, "tcp:127.0.0.1:3310", "inbound", "internal recipients Head@Lincoln.School.example, bob@district.example"} {
				if !strings.Contains(v.Reason, s) {
					t.Errorf("reason %q does not contain %q", v.Reason, s)
				}
			}
			if strings.Contains(v.Reason, "friend@elsewhere") {
				t.Errorf("reason %q names an outside recipient as internal", v.Reason)
			}
			if len(v.Headers) != 0 {
				t.Errorf("headers %+v on an infected message", v.Headers)
			}
			if ls, _ := e.latches.ListLatches(context.Background(), store.LatchFilter{}, t0); len(ls) != 0 {
				t.Errorf("inbound virus latched %+v", ls)
			}
		})
	}
}

func TestInboundVirusToOutsideOnly(t *testing.T) {
	e := newEnv(t, nil)
	e.infected()
	v := e.check(inbound("a@elsewhere.example"))
	if v.Action != policy.Reject || strings.Contains(v.Reason, "internal recipients") {
		t.Errorf("verdict %+v", v)
	}
}

func TestOutboundVirusLatchesClient(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Outbound = ActionQuarantine })
	e.infected()
	v := e.check(outbound("10.1.2.3"))
	if v.Action != policy.Quarantine || v.Text != "virus "+eicar {
		t.Errorf("verdict %v %q, want quarantine", v.Action, v.Text)
	}
	if v.Event != store.EventVirus {
		t.Errorf("event %q, want %q: every infected message is a virus event", v.Event, store.EventVirus)
	}
	l, err := e.latches.ActiveLatch(context.Background(), store.LatchClient, "10.1.2.3", t0.Add(time.Hour))
	if err != nil {
		t.Fatalf("client not latched: %v", err)
	}
	if l.Rule != RuleVirus || l.Evidence != eicar || l.Site != "lincoln" || !strings.Contains(l.Reason, eicar) {
		t.Errorf("latch %+v", l)
	}
	if !strings.Contains(v.Reason, "outbound") || !strings.Contains(v.Reason, "ref "+l.ID) {
		t.Errorf("reason %q does not say outbound and the latch ref %s", v.Reason, l.ID)
	}
	if !strings.HasPrefix(v.Latched, "latched client 10.1.2.3 (ref "+l.ID+", rule virus)") {
		t.Errorf("Latched = %q, want the latch described for its own event", v.Latched)
	}
}

func TestOutboundVirusLatchesUser(t *testing.T) {
	e := newEnv(t, nil)
	e.infected()
	req := inbound("friend@outside.example")
	req.SASLUser = "alice" // an outside address, but logged in: outbound
	v := e.check(req)
	if v.Action != policy.Reject || v.Code != 554 || v.Event != store.EventVirus {
		t.Errorf("verdict %+v, want 554 and a virus event", v)
	}
	if _, err := e.latches.ActiveLatch(context.Background(), store.LatchUser, "alice", t0.Add(time.Hour)); err != nil {
		t.Errorf("user not latched: %v", err)
	}
	if _, err := e.latches.ActiveLatch(context.Background(), store.LatchClient, "198.51.100.7", t0.Add(time.Hour)); err == nil {
		t.Error("the client of an authenticated user was latched")
	}
}

func TestExemptClientNotLatched(t *testing.T) {
	e := newEnv(t, nil)
	e.infected()
	v := e.check(outbound("10.0.0.25"))
	if v.Action != policy.Reject || v.Event != store.EventVirus {
		t.Errorf("verdict %v event %q, want reject recorded as a virus event", v.Action, v.Event)
	}
	if ls, _ := e.latches.ListLatches(context.Background(), store.LatchFilter{}, t0); len(ls) != 0 {
		t.Errorf("exempt client latched: %+v", ls)
	}
}

func TestOutboundVirusWithoutLatch(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Latch = nil; o.Outbound = ActionDiscard })
	e.infected()
	if v := e.check(outbound("10.1.2.3")); v.Action != policy.Discard || v.Event != store.EventVirus {
		t.Errorf("verdict %v event %q, want discard recorded as a virus event", v.Action, v.Event)
	}
}

// TestLatchFailureStillRefuses keeps a store outage from letting a virus
// through, or its sender free: the message is tempfailed, so its retry
// is refused and latched once the store writes (issue 21: the sender of
// a virus refused during a disk-full window was never latched).
func TestLatchFailureStillRefuses(t *testing.T) {
	e := newEnv(t, nil)
	e.infected()
	e.latches.FailAll(errors.New("database is locked"))
	v, err := e.c.Check(context.Background(), outbound("10.1.2.3"))
	if err != nil {
		t.Fatalf("Check returned %v; a fail-open pipeline would then pass the virus", err)
	}
	if v.Action != policy.Tempfail || v.Event != store.EventVirus || !strings.Contains(v.Reason, "latching failed") {
		t.Errorf("verdict %+v, want a tempfail recorded as a virus, saying latching failed", v)
	}
	e.latches.Heal()
	v, err = e.c.Check(context.Background(), outbound("10.1.2.3"))
	if err != nil || v.Action != policy.Reject || v.Latched == "" {
		t.Errorf("the retry after the store heals: %+v, %v; want refused and latched", v, err)
	}
}

func TestScanErrorTempfails(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("scanning: %w", clamd.ErrUnavailable),
		fmt.Errorf("clamd unix:/run/clamd.ctl: %w: %q", clamd.ErrProtocol, "garbage"),
		context.DeadlineExceeded,
		errors.New("something else"),
	} {
		e := newEnv(t, nil)
		e.scanner.err = err
		v := e.check(inbound("bob@district.example"))
		if v.Action != policy.Tempfail || v.Code != 451 || v.Status != "4.7.1" ||
			v.Text != "Virus scan temporarily unavailable, please try again later" {
			t.Errorf("%v: verdict %v %d %s %q", err, v.Action, v.Code, v.Status, v.Text)
		}
		if !strings.Contains(v.Reason, err.Error()) {
			t.Errorf("reason %q does not give the error %q", v.Reason, err)
		}
	}
}

func TestScanErrorFailOpen(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.OnError = ActionAccept })
	e.scanner.err = clamd.ErrUnavailable
	v := e.check(inbound("bob@district.example"))
	if v.Action != policy.Continue {
		t.Fatalf("action %v, want continue", v.Action)
	}
	if got, _ := header(v, HeaderStatus); got != "Unscanned (scan error)" {
		t.Errorf("%s = %q", HeaderStatus, got)
	}
	if _, ok := header(v, HeaderScanned); ok {
		t.Error("X-Virus-Scanned on a message that was not scanned")
	}
	if !strings.Contains(v.Reason, "accepted unscanned") {
		t.Errorf("reason %q", v.Reason)
	}
	if !strings.Contains(e.logs.String(), "level=WARN") || !strings.Contains(e.logs.String(), "scan failed") {
		t.Errorf("no warning logged:\n%s", e.logs)
	}
}

// TestScanErrorWhileClamdDown: while the clamd client skips a server
// that stopped answering, each message fails at once; the outage is the
// client's to log (once, with a summary), not a warning per message.
func TestScanErrorWhileClamdDown(t *testing.T) {
	down := fmt.Errorf("%w: %w", clamd.ErrUnavailable,
		fmt.Errorf("clamd tcp:127.0.0.1:3310: %w (down for 3s: no answer within 5s)", clamd.ErrDown))
	for _, onError := range []string{ActionTempfail, ActionAccept} {
		e := newEnv(t, func(o *Options) { o.OnError = onError })
		e.scanner.err = down
		for range 10 {
			v := e.check(inbound("bob@district.example"))
			if onError == ActionTempfail && v.Action != policy.Tempfail || onError == ActionAccept && v.Action != policy.Continue {
				t.Errorf("on_error %s: action %v", onError, v.Action)
			}
			if !strings.Contains(v.Reason, "down for 3s") {
				t.Errorf("on_error %s: reason %q does not give the error", onError, v.Reason)
			}
		}
		if strings.Contains(e.logs.String(), "level=WARN") {
			t.Errorf("on_error %s: a warning per message while clamd is down:\n%s", onError, e.logs)
		}
	}
}

func TestVirusNameMadeSafe(t *testing.T) {
	e := newEnv(t, nil)
	e.scanner.res = clamd.Result{Infected: true, Virus: "Evil\r\n250 OK\x00" + strings.Repeat("A", 300)}
	v := e.check(inbound("bob@district.example"))
	if strings.ContainsFunc(v.Text, func(r rune) bool { return r < ' ' || r > '~' }) || len(v.Text) > 250 {
		t.Errorf("reply text %q is not one safe line", v.Text)
	}
	e.scanner.res = clamd.Result{Infected: true}
	if v := e.check(inbound("bob@district.example")); v.Text != "Virus found: unknown" {
		t.Errorf("text %q for a nameless virus", v.Text)
	}
}

func TestNewListsEveryProblem(t *testing.T) {
	_, err := New(Options{OversizeAction: "bounce", Inbound: "drop", Outbound: "reject", OnError: "retry",
		InternalDomains: []string{" "}, Hostname: "mx 1"})
	if err == nil {
		t.Fatal("bad options accepted")
	}
	for _, s := range []string{"no scanner", "max scan size", `oversize action "bounce"`, `inbound action "drop"`,
		`on-error action "retry"`, "empty internal domain", "hostname"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
	if strings.Contains(err.Error(), "outbound action") {
		t.Errorf("error %q complains about a good outbound action", err)
	}
}

// TestPipelineRecordsRecipients checks that what the event recorder sees
// of an infected inbound message names its recipients.
func TestPipelineRecordsRecipients(t *testing.T) {
	e := newEnv(t, nil)
	e.infected()
	var seenReq *policy.Request
	var seenV policy.Verdict
	p := policy.NewPipeline([]policy.Check{e.c}, policy.PipelineOptions{
		Observe: func(req *policy.Request, v policy.Verdict, _ time.Duration) { seenReq, seenV = req, v },
	})
	v := p.Evaluate(context.Background(), inbound("bob@district.example", "carol@district.example"))
	if v.Action != policy.Reject || v.Check != "antivirus" {
		t.Fatalf("verdict %+v", v)
	}
	if seenV.Event != store.EventVirus || len(seenReq.Recipients) != 2 {
		t.Errorf("observed event %q with recipients %q", seenV.Event, seenReq.Recipients)
	}
}

// TestReportedVirusIsTheSameAsAScannedOne: a virus the MTA's own scan
// found and reported through the policy server (Exim, docs/exim.md)
// gets the verdict, event and latch that clamd finding it here gives,
// without a scan; an outside client's is refused and latches nobody.
func TestReportedVirusIsTheSameAsAScannedOne(t *testing.T) {
	scanned := newEnv(t, nil)
	scanned.infected()
	want := scanned.check(outbound("10.1.2.3"))
	wantLatch, err := scanned.latches.ActiveLatch(context.Background(), store.LatchClient, "10.1.2.3", t0.Add(time.Hour))
	if err != nil {
		t.Fatalf("clamd's find did not latch: %v", err)
	}

	e := newEnv(t, nil)
	req := outbound("10.1.2.3")
	req.Frontend, req.Message, req.Virus = "policy", nil, eicar
	v := e.check(req)
	if e.scanner.calls != 0 {
		t.Errorf("scanner called %d times for a reported virus", e.scanner.calls)
	}
	if v.Action != want.Action || v.Reply() != want.Reply() || v.Event != want.Event || v.Check != want.Check {
		t.Errorf("reported: %v %q event %q, want %v %q event %q as for clamd's find", v.Action, v.Reply(), v.Event, want.Action, want.Reply(), want.Event)
	}
	if !strings.Contains(v.Reason, "found in outbound message by the MTA's own scan") {
		t.Errorf("reason %q does not say who found it", v.Reason)
	}
	l, err := e.latches.ActiveLatch(context.Background(), store.LatchClient, "10.1.2.3", t0.Add(time.Hour))
	if err != nil {
		t.Fatalf("reported virus did not latch: %v", err)
	}
	if l.Rule != wantLatch.Rule || l.Evidence != wantLatch.Evidence || l.Reason != wantLatch.Reason || l.Site != wantLatch.Site {
		t.Errorf("latch %+v, want rule, evidence, reason and site of %+v", l, wantLatch)
	}
	if v.Latched == "" || strings.Replace(v.Latched, l.ID, wantLatch.ID, 1) != want.Latched {
		t.Errorf("Latched = %q, want %q (but for the ref)", v.Latched, want.Latched)
	}

	out := inbound("bob@district.example")
	out.Frontend, out.Message, out.Virus = "policy", nil, eicar
	if v := e.check(out); v.Action != policy.Reject || v.Latched != "" || v.Event != store.EventVirus {
		t.Errorf("outside client: %v latched %q event %q, want a reject latching nobody", v.Action, v.Latched, v.Event)
	}
	if _, err := e.latches.ActiveLatch(context.Background(), store.LatchClient, "198.51.100.7", t0.Add(time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("outside client latched: %v", err)
	}

	// Only at end of message: a report at RCPT is nothing to act on.
	rcpt := outbound("10.1.2.4")
	rcpt.Stage, rcpt.Message, rcpt.Virus = policy.StageRcpt, nil, eicar
	if v := e.check(rcpt); v.Action != policy.Continue {
		t.Errorf("virus at RCPT: %v, want continue", v.Action)
	}
}
