package policyd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"mailwarden/internal/clamd"
	"mailwarden/internal/policy"
	"mailwarden/internal/policy/antivirus"
	"mailwarden/internal/policy/latch"
	"mailwarden/internal/store"
	"mailwarden/internal/store/memory"
)

const eicarName = "Eicar-Test-Signature"

// eicarScanner is clamd finding EICAR in every message.
type eicarScanner struct{}

func (eicarScanner) ScanOpen(ctx context.Context, open func() (io.ReadCloser, error), size int64) (clamd.Result, error) {
	return clamd.Result{Infected: true, Virus: eicarName, Server: "tcp:127.0.0.1:3310"}, nil
}

// message is a policy.Message in memory, as the milter spools one.
type message string

func (m message) Size() int64 { return int64(len(m)) }
func (m message) Open() (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader(string(m))), nil
}

// decision is what the pipeline's Observe hook sees: what the daemon
// records as events.
type decision struct {
	req policy.Request
	v   policy.Verdict
}

// avPipeline is the daemon's pipeline in small: the latch check, then
// the antivirus check latching with it, on a memory store; 10.0.0.0/8 is
// the site "lincoln". Every decision is kept.
type avPipeline struct {
	st *memory.Store
	p  *policy.Pipeline

	mu        sync.Mutex
	decisions []decision
}

func newAVPipeline(t *testing.T) *avPipeline {
	t.Helper()
	a := &avPipeline{st: memory.New()}
	lc, err := latch.New(latch.Options{Store: a.st, DefaultContact: "the helpdesk"})
	if err != nil {
		t.Fatal(err)
	}
	av, err := antivirus.New(antivirus.Options{Scanner: eicarScanner{}, Latch: lc, MaxScanSize: 1 << 20,
		OversizeAction: antivirus.ActionAccept, Inbound: antivirus.ActionReject, Outbound: antivirus.ActionReject,
		OnError: antivirus.ActionTempfail})
	if err != nil {
		t.Fatal(err)
	}
	site := netip.MustParsePrefix("10.0.0.0/8")
	a.p = policy.NewPipeline([]policy.Check{lc, av}, policy.PipelineOptions{
		Classify: func(r *policy.Request) {
			if site.Contains(r.ClientIP) {
				r.Internal, r.Site = true, "lincoln"
			}
		},
		Observe: func(r *policy.Request, v policy.Verdict, _ time.Duration) {
			a.mu.Lock()
			defer a.mu.Unlock()
			a.decisions = append(a.decisions, decision{*r, v})
		},
	})
	return a
}

func (a *avPipeline) last(t *testing.T) decision {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.decisions) == 0 {
		t.Fatal("no decision recorded")
	}
	return a.decisions[len(a.decisions)-1]
}

func (a *avPipeline) latch(t *testing.T, ip string) store.Latch {
	t.Helper()
	l, err := a.st.ActiveLatch(context.Background(), store.LatchClient, ip, time.Now())
	if err != nil {
		t.Fatalf("client %s not latched: %v", ip, err)
	}
	return l
}

// eomRequest is what docs/exim.md's data ACL sends when Exim's malware
// condition found a virus; extra lines go before the empty line.
func eomRequest(client string, extra ...string) string {
	return "request=smtpd_access_policy\nprotocol_state=END-OF-MESSAGE\nprotocol_name=ESMTP\n" +
		"instance=mx.test.4711.1733529600123\nclient_address=" + client + "\nclient_name=unknown\n" +
		"helo_name=pc17.lincoln.example\nsender=pupil@district.example\nrecipient=\nrecipient_count=1\n" +
		"sasl_username=\nqueue_id=1tJqkL-000123-AB\n" + strings.Join(extra, "") + "\n"
}

func rcptFrom(client string) string {
	return "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=" + client +
		"\nsender=pupil@district.example\nrecipient=friend@outside.example\ninstance=next\n\n"
}

// TestReportedVirusLatchesAsTheMilterDoes: a virus Exim found, reported
// at END-OF-MESSAGE, gives the same verdict, records and latch as clamd
// finding it in the milter, and the client's next message is refused
// with the same latch reply.
func TestReportedVirusLatchesAsTheMilterDoes(t *testing.T) {
	a := newAVPipeline(t)
	h := startServer(t, Options{Pipeline: func() *policy.Pipeline { return a.p }})

	// The milter's request for an infected message from 10.1.2.3.
	milterReq := policy.Request{Stage: policy.StageEOM, Frontend: "milter",
		ClientIP: netip.MustParseAddr("10.1.2.3"), ClientName: "unknown", Sender: "pupil@district.example",
		Recipients: []string{"friend@outside.example"}, QueueID: "4Q1", Message: message("Subject: x\r\n\r\nX5O!\r\n")}
	mv := a.p.Evaluate(context.Background(), &milterReq)
	ml := a.latch(t, "10.1.2.3")
	mNext := a.p.Evaluate(context.Background(), &policy.Request{Stage: policy.StageRcpt, Frontend: "milter",
		ClientIP: netip.MustParseAddr("10.1.2.3"), Sender: "pupil@district.example", Recipient: "friend@outside.example"})

	// Exim's report for 10.1.2.4.
	got := dial(t, h.addr).ask(eomRequest("10.1.2.4", "virus="+eicarName+"\n"))
	if want := FormatAction(mv); got != want || got != "554 5.7.1 Virus found: "+eicarName {
		t.Errorf("answer %q, want %q as the milter's reply", got, want)
	}
	d := a.last(t)
	if d.req.Stage != policy.StageEOM || d.req.Virus != eicarName || d.req.Site != "lincoln" {
		t.Errorf("request %+v", d.req)
	}
	if d.v.Event != mv.Event || d.v.Event != store.EventVirus || d.v.Check != mv.Check || d.v.Action != mv.Action {
		t.Errorf("verdict %+v, want the milter's %+v", d.v, mv)
	}
	pl := a.latch(t, "10.1.2.4")
	same := func(s string, l store.Latch) string {
		return strings.NewReplacer(l.Key, "IP", l.ID, "ID").Replace(s)
	}
	if same(d.v.Latched, pl) != same(mv.Latched, ml) || d.v.Latched == "" {
		t.Errorf("Latched %q, want %q as the milter's", d.v.Latched, mv.Latched)
	}
	if pl.Rule != ml.Rule || pl.Evidence != ml.Evidence || pl.Evidence != eicarName || pl.Reason != ml.Reason || pl.Site != ml.Site {
		t.Errorf("latch %+v, want rule, evidence, reason and site of the milter's %+v", pl, ml)
	}

	next := dial(t, h.addr).ask(rcptFrom("10.1.2.4"))
	if want := FormatAction(mNext); same(next, pl) != same(want, ml) || !strings.HasPrefix(next, "550 5.7.1 Mail from 10.1.2.4 is blocked: sent a message infected with "+eicarName) {
		t.Errorf("next RCPT %q, want the milter's latch reply %q", next, want)
	}
}

// TestReportedVirusFromOutside: an outside client's virus is refused and
// recorded, and nobody is latched.
func TestReportedVirusFromOutside(t *testing.T) {
	a := newAVPipeline(t)
	h := startServer(t, Options{Pipeline: func() *policy.Pipeline { return a.p }})
	if got := dial(t, h.addr).ask(eomRequest("192.0.2.7", "virus="+eicarName+"\n")); got != "554 5.7.1 Virus found: "+eicarName {
		t.Errorf("answer %q", got)
	}
	if d := a.last(t); d.v.Event != store.EventVirus || d.v.Latched != "" {
		t.Errorf("verdict %+v, want a virus event and no latch", d.v)
	}
	ls, err := a.st.ListLatches(context.Background(), store.LatchFilter{}, time.Now())
	if err != nil || len(ls) != 0 {
		t.Errorf("latches %+v, %v; want none", ls, err)
	}
}

// TestEndOfMessageWithoutVirus: Postfix sends END-OF-MESSAGE requests
// when smtpd_end_of_data_restrictions asks the policy service; without a
// report they pass as before.
func TestEndOfMessageWithoutVirus(t *testing.T) {
	a := newAVPipeline(t)
	h := startServer(t, Options{Pipeline: func() *policy.Pipeline { return a.p }})
	for _, client := range []string{"10.1.2.5", "192.0.2.7"} {
		if got := dial(t, h.addr).ask(eomRequest(client)); got != "DUNNO" {
			t.Errorf("client %s: %q, want DUNNO", client, got)
		}
	}
	if got := dial(t, h.addr).ask(rcptFrom("10.1.2.5")); got != "DUNNO" {
		t.Errorf("next RCPT %q, want DUNNO: nothing latched", got)
	}
}

// TestMalformedVirusIgnored: a report that is not a scanner's name is
// logged and not acted on; the request is answered as one without it.
func TestMalformedVirusIgnored(t *testing.T) {
	a := newAVPipeline(t)
	h := startServer(t, Options{Pipeline: func() *policy.Pipeline { return a.p }})
	for i, bad := range []string{
		"",
		"   ",
		strings.Repeat("W", policy.MaxVirusName+1),
		"Eicar\x01Sig",
		"Eicar\x7fSig",
		"Eicar-\xc3\xa9",
		"550 5.7.1 ok\tbad",
	} {
		client := fmt.Sprintf("10.9.0.%d", i+1)
		if got := dial(t, h.addr).ask(eomRequest(client, "virus="+bad+"\n")); got != "DUNNO" {
			t.Errorf("virus=%q: %q, want DUNNO", bad, got)
		}
		if _, err := a.st.ActiveLatch(context.Background(), store.LatchClient, client, time.Now()); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("virus=%q latched %s: %v", bad, client, err)
		}
	}
	if n := strings.Count(h.logs.String(), "ignoring a virus report that is not well-formed"); n != 7 {
		t.Errorf("%d warnings logged, want 7:\n%s", n, h.logs)
	}
	// At RCPT the attribute is no report either.
	if got := dial(t, h.addr).ask(strings.Replace(rcptFrom("10.9.1.1"), "\n\n", "\nvirus="+eicarName+"\n\n", 1)); got != "DUNNO" {
		t.Errorf("virus at RCPT: %q, want DUNNO", got)
	}
}

// TestReportWithoutAntivirusWarns: with the antivirus check off nothing
// acts on a report; the log says so instead of staying silent.
func TestReportWithoutAntivirusWarns(t *testing.T) {
	h := startServer(t, Options{})
	if got := dial(t, h.addr).ask(eomRequest("10.1.2.6", "virus="+eicarName+"\n")); got != "DUNNO" {
		t.Errorf("answer %q, want DUNNO", got)
	}
	if !strings.Contains(h.logs.String(), "virus report not acted on") {
		t.Errorf("no warning logged:\n%s", h.logs)
	}
}

func TestReportedVirus(t *testing.T) {
	long := strings.Repeat("W", policy.MaxVirusName)
	for _, tc := range []struct {
		attrs   Attrs
		stage   policy.Stage
		want    string
		wantErr bool
	}{
		{Attrs{}, policy.StageEOM, "", false},
		{Attrs{"virus": eicarName}, policy.StageEOM, eicarName, false},
		{Attrs{"virus": " Win.Test.EICAR_HDB-1 "}, policy.StageEOM, "Win.Test.EICAR_HDB-1", false},
		{Attrs{"virus": "Name With Spaces"}, policy.StageEOM, "Name With Spaces", false},
		{Attrs{"virus": long}, policy.StageEOM, long, false},
		{Attrs{"virus": long + "W"}, policy.StageEOM, "", true},
		{Attrs{"virus": ""}, policy.StageEOM, "", true},
		{Attrs{"virus": "a\x1bb"}, policy.StageEOM, "", true},
		{Attrs{"virus": "caf\xc3\xa9"}, policy.StageEOM, "", true},
		{Attrs{"virus": "\xff"}, policy.StageEOM, "", true},
		{Attrs{"virus": eicarName}, policy.StageRcpt, "", true},
		{Attrs{"virus": eicarName}, policy.StageData, "", true},
	} {
		got, err := ReportedVirus(tc.attrs, tc.stage)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("ReportedVirus(%q, %v) = %q, %v; want %q, error %v", tc.attrs["virus"], tc.stage, got, err, tc.want, tc.wantErr)
		}
	}
}
