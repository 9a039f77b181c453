package adminapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"mailwarden/internal/events"
	"mailwarden/internal/mtaqueue"
)

// Queue limits: how many selected messages a purge shows in full, and
// how long one purge may run. A purge is not tied to the request that
// asked for it: a client that goes away does not stop postsuper halfway
// without anyone being told.
const (
	QueueSample       = 10
	queuePurgeTimeout = 5 * time.Minute
)

// QueueOptions connect the admin API to the MTA queue.
type QueueOptions struct {
	// Watch keeps the summary GET /v1/queue answers with.
	Watch *mtaqueue.Watcher
	// Open returns the queue a purge acts on, from the live config.
	Open func() (mtaqueue.Queue, error)
	// CommandArgs are the arguments that make "mailwarden queue purge"
	// use the daemon's config and store (--config, --data), for the
	// command line shown when the daemon may not purge itself.
	CommandArgs []string
}

// QueueStatus is the answer to GET /v1/queue: the watcher's last
// summary, how old it is, and why there is none.
type QueueStatus struct {
	Available  bool              `json:"available"`
	Time       time.Time         `json:"time,omitzero"`
	AgeSeconds float64           `json:"age_seconds"`
	Error      string            `json:"error,omitempty"`
	Summary    *mtaqueue.Summary `json:"summary,omitempty"`
}

// QueueFilter is mtaqueue.Filter as the API takes it; ages are written
// as the CLI takes them ("90m", "2h", "3d").
type QueueFilter struct {
	Sender          string `json:"sender,omitempty"`
	Recipient       string `json:"recipient,omitempty"`
	SenderDomain    string `json:"sender_domain,omitempty"`
	RecipientDomain string `json:"recipient_domain,omitempty"`
	SenderRegexp    string `json:"sender_regexp,omitempty"`
	RecipientRegexp string `json:"recipient_regexp,omitempty"`
	AuthUser        string `json:"auth_user,omitempty"`
	OlderThan       string `json:"older_than,omitempty"`
	NewerThan       string `json:"newer_than,omitempty"`
	Queue           string `json:"queue,omitempty"`
	MinSize         int64  `json:"min_size,omitempty"`
	MaxSize         int64  `json:"max_size,omitempty"`
}

// Filter converts f, checking its ages.
func (f QueueFilter) Filter() (mtaqueue.Filter, error) {
	out := mtaqueue.Filter{Sender: f.Sender, Recipient: f.Recipient, SenderDomain: f.SenderDomain,
		RecipientDomain: f.RecipientDomain, SenderRegexp: f.SenderRegexp, RecipientRegexp: f.RecipientRegexp,
		AuthUser: f.AuthUser, Queue: f.Queue, MinSize: f.MinSize, MaxSize: f.MaxSize}
	var err error
	if f.OlderThan != "" {
		if out.OlderThan, err = mtaqueue.ParseAge(f.OlderThan); err != nil {
			return out, fmt.Errorf("older than %q: %w", f.OlderThan, err)
		}
	}
	if f.NewerThan != "" {
		if out.NewerThan, err = mtaqueue.ParseAge(f.NewerThan); err != nil {
			return out, fmt.Errorf("newer than %q: %w", f.NewerThan, err)
		}
	}
	return out, nil
}

// QueuePurgeRequest is the body of POST /v1/queue/purge. Apply false is
// a dry run that changes nothing.
type QueuePurgeRequest struct {
	QueueFilter
	Apply bool `json:"apply"`
}

// QueuePurgeResult is the answer to POST /v1/queue/purge.
type QueuePurgeResult struct {
	Apply bool `json:"apply"`
	// Filter is the selection as command-line flags.
	Filter string `json:"filter"`
	// Selected and Bytes are the messages the filter selected; Sample
	// the first QueueSample of them.
	Selected int                `json:"selected"`
	Bytes    int64              `json:"bytes"`
	Sample   []mtaqueue.Message `json:"sample"`
	// Done and Gone are what an apply did: deleted, and left the queue
	// before postsuper came to them.
	Done []string `json:"done"`
	Gone []string `json:"gone"`
	// RootCommand is the same purge as a command for root to run, for
	// when the daemon may not change the MTA's queue itself.
	RootCommand string `json:"root_command"`
	// Refused says the MTA refuses the daemon for want of privilege:
	// an apply deleted nothing; a dry run's apply would be refused.
	// RefusedReason says why.
	Refused       bool   `json:"refused,omitempty"`
	RefusedReason string `json:"refused_reason,omitempty"`
}

var errNoQueue = &APIError{Status: http.StatusServiceUnavailable, Message: "the MTA queue is not configured in this daemon"}

// QueueStatus returns the queue summary, listing the queue first when
// the last summary is stale.
func (s *Server) QueueStatus(ctx context.Context) (QueueStatus, error) {
	if s.queue.Watch == nil {
		return QueueStatus{}, errNoQueue
	}
	snap := s.queue.Watch.Fresh(ctx)
	out := QueueStatus{Time: snap.Time, Error: snap.Err, Available: snap.Err == "" && !snap.Time.IsZero()}
	if !snap.Time.IsZero() {
		out.AgeSeconds = s.now().Sub(snap.Time).Seconds()
	}
	if out.Available {
		sum := snap.Summary
		out.Summary = &sum
	}
	return out, nil
}

// QueueRootCommand is the command line that makes the purge req asks
// for as root: what to run when the daemon may not.
func (s *Server) QueueRootCommand(f mtaqueue.Filter) string {
	args := append([]string{"mailwarden", "queue", "purge"}, s.queue.CommandArgs...)
	args = append(append(args, f.Flags()...), "--apply")
	return mtaqueue.ShellJoin(args)
}

// PurgeQueue selects the messages req's filter picks and, with Apply,
// deletes exactly those IDs and records one admin event saying who,
// from where (remote: the dashboard user's address; "" for the admin
// socket), with what filter and what came of it. A filter that does
// not compile is a 400 and nothing is listed or deleted; a daemon the
// MTA will not obey is a 403 whose message, and the result's
// RootCommand, give the command to run as root instead.
func (s *Server) PurgeQueue(ctx context.Context, who, remote string, req QueuePurgeRequest) (QueuePurgeResult, error) {
	if s.queue.Open == nil {
		return QueuePurgeResult{}, errNoQueue
	}
	f, err := req.Filter()
	if err != nil {
		return QueuePurgeResult{}, badInput(err)
	}
	m, err := f.Compile(s.now())
	if err != nil {
		return QueuePurgeResult{}, badInput(err)
	}
	flags := f.Flags()
	if len(flags) == 0 {
		return QueuePurgeResult{}, badInput(errors.New("a purge needs at least one filter (sender, recipient, domain, regular expression, age, queue, size or user); to empty the whole queue, use the CLI"))
	}
	out := QueuePurgeResult{Apply: req.Apply, Filter: mtaqueue.ShellJoin(flags), RootCommand: s.QueueRootCommand(f),
		Sample: []mtaqueue.Message{}, Done: []string{}, Gone: []string{}}
	q, err := s.queue.Open()
	if err != nil {
		return out, &APIError{Status: http.StatusServiceUnavailable, Message: "queue not available: " + err.Error()}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), queuePurgeTimeout)
	defer cancel()
	sel, err := mtaqueue.Select(ctx, q, m, QueueSample)
	if err != nil {
		return out, &APIError{Status: http.StatusServiceUnavailable, Message: "listing the queue: " + err.Error()}
	}
	out.Selected, out.Bytes = len(sel.IDs), sel.Bytes
	out.Sample = append(out.Sample, sel.Sample...)
	if len(sel.IDs) == 0 {
		return out, nil
	}
	// Whether the MTA will obey is told up front, in the dry run too, so
	// that the administrator is shown the command for root before
	// confirming rather than an error after.
	if pc, ok := q.(mtaqueue.PrivilegeChecker); ok {
		if err := pc.CheckPrivilege(ctx); err != nil {
			out.Refused, out.RefusedReason = true, refusedReason(err)
			if req.Apply {
				return out, s.refused(err, out.RootCommand)
			}
		}
	}
	if !req.Apply {
		return out, nil
	}
	res, err := q.Delete(ctx, sel.IDs)
	out.Done = append(out.Done, res.Done...)
	out.Gone = append(out.Gone, res.Gone...)
	if len(res.Done) > 0 || err == nil {
		// Every apply that reached the MTA is recorded, even one that
		// found every message gone: the administrator asked for it.
		if s.queue.Watch != nil {
			s.queue.Watch.Invalidate()
		}
		from := "the admin socket"
		if remote != "" {
			from = "the dashboard from " + remote
		}
		a := events.Admin{Who: who, Action: "queue purge", Client: remote, Reason: fmt.Sprintf(
			"deleted %d messages matching %s from the MTA queue (%d selected, %d already gone) via %s",
			len(res.Done), out.Filter, len(sel.IDs), len(res.Gone), from)}
		if aerr := s.events.Audit(ctx, a, nil); aerr != nil {
			done := fmt.Sprintf("%d messages were deleted", len(res.Done))
			if err == nil {
				return out, unrecorded(done, aerr)
			}
			s.log.Error("admin: recording the queue purge failed", "err", aerr)
		}
	}
	switch {
	case err != nil && mtaqueue.Refused(err):
		out.Refused, out.RefusedReason = true, refusedReason(err)
		return out, s.refused(err, out.RootCommand)
	case err != nil:
		s.log.Error("admin: queue purge failed", "err", err, "done", len(res.Done))
		return out, &APIError{Status: http.StatusInternalServerError, Message: fmt.Sprintf(
			"deleting failed after %d of %d messages: %v", len(res.Done), len(sel.IDs), err)}
	}
	return out, nil
}

// refused explains a purge the MTA will not let the daemon make.
func (s *Server) refused(err error, cmd string) error {
	return &APIError{Status: http.StatusForbidden, Message: fmt.Sprintf(
		"the MTA refuses to let the daemon delete queued mail (%s); nothing was deleted. Run this as root instead: %s",
		refusedReason(err), cmd)}
}

func refusedReason(err error) string {
	return strings.TrimPrefix(err.Error(), "mtaqueue: ")
}

func (s *Server) queueStatus(w http.ResponseWriter, r *http.Request) {
	serveReport(w, r, s.QueueStatus)
}

func (s *Server) purgeQueue(w http.ResponseWriter, r *http.Request) {
	// Errors here mean only that the deadline stays.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	remote, _ := r.Context().Value(remoteKey{}).(string)
	serveAction(w, r, func(req QueuePurgeRequest) (QueuePurgeResult, error) {
		return s.PurgeQueue(r.Context(), s.who(r), remote, req)
	})
}

// remoteKey is the context key of a dashboard user's address.
type remoteKey struct{}

// WithRemote marks ctx as a dashboard request from addr, which the audit
// entries of actions that say where they came from record.
func WithRemote(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, remoteKey{}, addr)
}

// QueueStatus returns the daemon's last summary of the MTA queue.
func (c *Client) QueueStatus(ctx context.Context) (QueueStatus, error) {
	var out QueueStatus
	return out, c.do(ctx, http.MethodGet, "/v1/queue", nil, nil, &out)
}

// PurgeQueue asks the daemon for a dry run (req.Apply false) or a purge
// of the messages req selects, waiting however long it takes unless ctx
// ends first. A bad filter is an *APIError with status 400 (BadInput); a
// daemon the MTA refuses one with 403 naming the command to run as root.
func (c *Client) PurgeQueue(ctx context.Context, req QueuePurgeRequest) (QueuePurgeResult, error) {
	var out QueuePurgeResult
	return out, c.doWith(c.slow, ctx, http.MethodPost, "/v1/queue/purge", nil, req, &out)
}
