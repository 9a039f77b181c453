package policy

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"mailwarden/internal/logx"
)

// Pipeline runs checks in order until one returns a final action.
type Pipeline struct {
	checks   []Check
	failOpen map[string]bool
	log      *slog.Logger // daemon log
	mailLog  *slog.Logger // one line per decision
	observe  func(req *Request, v Verdict, took time.Duration)
	classify func(req *Request)
}

// PipelineOptions configures a Pipeline.
type PipelineOptions struct {
	// FailOpen names checks whose internal errors let mail through instead
	// of tempfailing it. Empty by default: no mail is lost to an error.
	FailOpen map[string]bool
	Log      *slog.Logger
	MailLog  *slog.Logger
	// Observe, if set, is called after every evaluation (metrics, the
	// event log).
	Observe func(req *Request, v Verdict, took time.Duration)
	// Classify, if set, fills in what the checks need to know about the
	// client (Internal, Site) before any check runs.
	Classify func(req *Request)
}

// NewPipeline returns a pipeline running checks in the given order.
func NewPipeline(checks []Check, o PipelineOptions) *Pipeline {
	o.Log = logx.Or(o.Log)
	o.MailLog = logx.Or(o.MailLog)
	return &Pipeline{checks: checks, failOpen: o.FailOpen, log: o.Log, mailLog: o.MailLog, observe: o.Observe, classify: o.Classify}
}

// HeaderOwner is a check that adds header fields of its own to messages.
// A sender's copies of those fields are forgeries (X-Virus-Status: Clean,
// X-Greylist) and the milter deletes them from every message, whether or
// not the check adds its own to this one.
type HeaderOwner interface {
	OwnedHeaders() []string
}

// OwnedHeaders returns the header field names the pipeline's checks own.
func (p *Pipeline) OwnedHeaders() []string {
	var names []string
	for _, c := range p.checks {
		if o, ok := c.(HeaderOwner); ok {
			names = append(names, o.OwnedHeaders()...)
		}
	}
	return names
}

// TempfailInternal is the verdict for any failure inside mailwarden: the
// sending MTA keeps the message and retries.
func TempfailInternal(check, reason string) Verdict {
	return Verdict{Action: Tempfail, Code: 451, Status: "4.3.0",
		Text: "Temporary local problem, please try again later", Check: check, Reason: reason}
}

// Evaluate runs the checks for req. It never panics: a panicking or failing
// check yields a temporary failure (or Continue when that check is
// fail-open). Headers from non-final verdicts are collected.
func (p *Pipeline) Evaluate(ctx context.Context, req *Request) (v Verdict) {
	start := time.Now()
	if req.Time.IsZero() {
		req.Time = start
	}
	if p.classify != nil {
		p.classify(req)
	}
	var headers []Header
	defer func() {
		v.Headers = append(headers, v.Headers...)
		p.record(req, v, time.Since(start))
	}()
	for _, c := range p.checks {
		cv, err := p.run(ctx, c, req)
		if err != nil {
			if p.failOpen[c.Name()] {
				p.log.Warn("check failed, continuing (fail-open)", "check", c.Name(), "err", err)
				continue
			}
			p.log.Error("check failed, tempfailing", "check", c.Name(), "err", err)
			return TempfailInternal(c.Name(), err.Error())
		}
		if cv.Check == "" {
			cv.Check = c.Name()
		}
		if cv.Action.Final() {
			return cv
		}
		headers = append(headers, cv.Headers...)
		if cv.Reason != "" {
			v.Reason, v.Check = cv.Reason, cv.Check
		}
	}
	return Verdict{Action: Continue, Reason: v.Reason, Check: v.Check}
}

func (p *Pipeline) run(ctx context.Context, c Check, req *Request) (v Verdict, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("policy: check %s panicked: %v", c.Name(), r)
		}
	}()
	return c.Check(ctx, req)
}

func (p *Pipeline) record(req *Request, v Verdict, took time.Duration) {
	if p.observe != nil {
		p.observe(req, v, took)
	}
	if v.Action == Continue && v.Reason == "" {
		return
	}
	LogDecision(p.mailLog, req, v)
}

// LogDecision writes one mail-log line for a decision. slog's text handler
// quotes every attacker-controlled value, so a crafted HELO cannot forge a
// second log line.
func LogDecision(l *slog.Logger, req *Request, v Verdict) {
	// LogAttrs rather than Info's key-value list: every message and
	// recipient is logged, and boxing each value cost an allocation.
	l.LogAttrs(context.Background(), slog.LevelInfo, "decision",
		slog.String("frontend", req.Frontend),
		slog.String("stage", req.Stage.String()),
		slog.String("action", v.Action.String()),
		slog.String("check", v.Check),
		slog.String("client", req.ClientIP.String()),
		slog.String("client_name", req.ClientName),
		slog.String("helo", req.Helo),
		slog.String("sender", req.Sender),
		slog.String("recipient", req.Recipient),
		slog.String("user", req.SASLUser),
		slog.String("site", req.Site),
		slog.String("queue_id", req.QueueID),
		slog.String("reply", replyIfAny(v)),
		slog.String("reason", v.Reason),
	)
}

func replyIfAny(v Verdict) string {
	if v.Action == Continue || v.Action == Accept {
		return ""
	}
	return v.Reply()
}
