package policy

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
)

type fn struct {
	name string
	f    func(*Request) (Verdict, error)
	runs int
}

func (c *fn) Name() string { return c.name }
func (c *fn) Check(_ context.Context, r *Request) (Verdict, error) {
	c.runs++
	return c.f(r)
}

func TestPipelineStopsAtFirstFinalVerdict(t *testing.T) {
	first := &fn{name: "first", f: func(*Request) (Verdict, error) {
		return Verdict{Headers: []Header{{"X-A", "1"}}}, nil
	}}
	second := &fn{name: "second", f: func(*Request) (Verdict, error) {
		return Verdict{Action: Reject, Code: 550, Status: "5.7.1", Text: "no"}, nil
	}}
	third := &fn{name: "third", f: func(*Request) (Verdict, error) { return Verdict{}, nil }}
	v := NewPipeline([]Check{first, second, third}, PipelineOptions{}).Evaluate(context.Background(), &Request{})
	if v.Action != Reject || v.Check != "second" || v.Reply() != "550 5.7.1 no" {
		t.Fatalf("verdict = %+v (%s)", v, v.Reply())
	}
	if third.runs != 0 {
		t.Error("a check after the final verdict ran")
	}
	if len(v.Headers) != 1 || v.Headers[0].Name != "X-A" {
		t.Errorf("headers from earlier checks lost: %+v", v.Headers)
	}
}

func TestPipelineErrorsTempfailUnlessFailOpen(t *testing.T) {
	broken := &fn{name: "broken", f: func(*Request) (Verdict, error) { return Verdict{}, errors.New("store down") }}
	v := NewPipeline([]Check{broken}, PipelineOptions{}).Evaluate(context.Background(), &Request{})
	if v.Action != Tempfail || !strings.HasPrefix(v.Reply(), "451 4.3.0") {
		t.Fatalf("error verdict = %+v", v)
	}
	v = NewPipeline([]Check{broken}, PipelineOptions{FailOpen: map[string]bool{"broken": true}}).Evaluate(context.Background(), &Request{})
	if v.Action != Continue {
		t.Fatalf("fail-open verdict = %+v", v)
	}
}

func TestPipelinePanicTempfails(t *testing.T) {
	p := &fn{name: "p", f: func(*Request) (Verdict, error) { panic("boom") }}
	var logs bytes.Buffer
	v := NewPipeline([]Check{p}, PipelineOptions{Log: slog.New(slog.NewTextHandler(&logs, nil))}).Evaluate(context.Background(), &Request{})
	if v.Action != Tempfail {
		t.Fatalf("panic verdict = %+v", v)
	}
	if !strings.Contains(logs.String(), "panicked") {
		t.Errorf("panic not logged: %s", logs.String())
	}
}

func TestDecisionLogQuotesAttackerInput(t *testing.T) {
	var out bytes.Buffer
	c := &fn{name: "g", f: func(*Request) (Verdict, error) {
		return Verdict{Action: Tempfail, Code: 451, Status: "4.7.1", Text: "wait", Reason: "greylist: new triplet"}, nil
	}}
	pl := NewPipeline([]Check{c}, PipelineOptions{MailLog: slog.New(slog.NewTextHandler(&out, nil))})
	pl.Evaluate(context.Background(), &Request{
		Frontend: "policy", Stage: StageRcpt, ClientIP: netip.MustParseAddr("192.0.2.1"),
		Helo: "evil\nlevel=INFO msg=decision action=accept", Sender: "a@b", Recipient: "c@d",
	})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("a HELO with a newline produced %d log lines:\n%s", len(lines), out.String())
	}
	for _, want := range []string{"action=tempfail", "check=g", "client=192.0.2.1", `reply="451 4.7.1 wait"`, `reason="greylist: new triplet"`} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("log line lacks %s: %s", want, lines[0])
		}
	}
}

func TestReplyDefaults(t *testing.T) {
	for _, c := range []struct {
		v    Verdict
		want string
	}{
		{Verdict{Action: Tempfail}, "451 4.7.1"},
		{Verdict{Action: Reject, Text: "go away"}, "550 5.7.1 go away"},
		{Verdict{Action: Tempfail, Code: 451, Status: "4.7.0", Text: "frozen"}, "451 4.7.0 frozen"},
		{Verdict{Action: Tempfail, Code: 9999}, "451"},
	} {
		if got := c.v.Reply(); got != c.want {
			t.Errorf("%+v.Reply() = %q, want %q", c.v, got, c.want)
		}
	}
	if Domain("User@Example.COM") != "example.com" || Domain("nobody") != "" {
		t.Error("Domain")
	}
}
