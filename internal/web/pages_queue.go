package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/mtaqueue"
)

// The queue page shows the daemon's summary of the MTA queue to every
// user and gives admins the purge form of "mailwarden queue purge": a
// dry run first (GET: it changes nothing), then a confirm form that
// posts exactly the filter the dry run used. Both go through adminapi's
// PurgeQueue, which validates, deletes and records the audit event.

// queueFields are the filter's form fields, in the form's order.
var queueFields = []string{"sender", "recipient", "sender_domain", "recipient_domain", "sender_regexp",
	"recipient_regexp", "auth_user", "older_than", "newer_than", "queue", "min_size", "max_size"}

// queueView is the queue page's data.
type queueView struct {
	Status    adminapi.QueueStatus
	StatusErr string
	// Form is the filter as typed, to fill the form again.
	Form   adminapi.QueueFilter
	Queues []string
	// DryRun is the dry run's result, when one was asked for.
	DryRun *adminapi.QueuePurgeResult
	// Hidden are the confirm form's fields: the dry run's filter.
	Hidden []hiddenField
	// Error is why the dry run or the purge failed; RootCommand, when
	// set, is what to run as root instead.
	Error       string
	RootCommand string
}

type hiddenField struct{ Name, Value string }

// queueCard is the overview's queue panel.
type queueCard struct {
	Status adminapi.QueueStatus
	Err    string
	Off    bool
}

// queueCardFor reads the queue summary for the overview.
func (s *Server) queueCardFor(ctx context.Context) queueCard {
	st, err := s.admin.QueueStatus(ctx)
	var ae *adminapi.APIError
	switch {
	case errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable:
		return queueCard{Off: true}
	case err != nil:
		s.log.Error("web: reading the queue summary failed", "err", err)
		return queueCard{Err: err.Error()}
	}
	return queueCard{Status: st}
}

// Top returns the first n counts.
func (queueCard) Top(cs []mtaqueue.Count, n int) []mtaqueue.Count {
	return cs[:min(n, len(cs))]
}

// formFilter reads the filter fields of a form or query.
func formFilter(v url.Values) (adminapi.QueueFilter, error) {
	get := func(k string) string { return strings.TrimSpace(v.Get(k)) }
	f := adminapi.QueueFilter{Sender: get("sender"), Recipient: get("recipient"), SenderDomain: get("sender_domain"),
		RecipientDomain: get("recipient_domain"), SenderRegexp: get("sender_regexp"),
		RecipientRegexp: get("recipient_regexp"), AuthUser: get("auth_user"), OlderThan: get("older_than"),
		NewerThan: get("newer_than"), Queue: get("queue")}
	for _, sz := range []struct {
		name string
		dst  *int64
	}{{"min_size", &f.MinSize}, {"max_size", &f.MaxSize}} {
		if t := get(sz.name); t != "" {
			n, err := strconv.ParseInt(t, 10, 64)
			if err != nil || n < 0 {
				return f, fmt.Errorf("%s %q: want a number of bytes", strings.ReplaceAll(sz.name, "_", " "), t)
			}
			*sz.dst = n
		}
	}
	return f, nil
}

// hidden returns f as the confirm form's hidden fields.
func hidden(f adminapi.QueueFilter) []hiddenField {
	vals := map[string]string{"sender": f.Sender, "recipient": f.Recipient, "sender_domain": f.SenderDomain,
		"recipient_domain": f.RecipientDomain, "sender_regexp": f.SenderRegexp, "recipient_regexp": f.RecipientRegexp,
		"auth_user": f.AuthUser, "older_than": f.OlderThan, "newer_than": f.NewerThan, "queue": f.Queue}
	if f.MinSize > 0 {
		vals["min_size"] = strconv.FormatInt(f.MinSize, 10)
	}
	if f.MaxSize > 0 {
		vals["max_size"] = strconv.FormatInt(f.MaxSize, 10)
	}
	var out []hiddenField
	for _, k := range queueFields {
		if vals[k] != "" {
			out = append(out, hiddenField{k, vals[k]})
		}
	}
	return out
}

func (s *Server) newQueueView(ctx context.Context) queueView {
	v := queueView{Queues: mtaqueue.QueueNames}
	c := s.queueCardFor(ctx)
	v.Status = c.Status
	switch {
	case c.Off:
		v.StatusErr = "The MTA queue is not configured in this daemon."
	case c.Err != "":
		v.StatusErr = c.Err
	}
	return v
}

func (s *Server) queuePage(w http.ResponseWriter, r *http.Request, u *sessionUser) {
	s.render(w, r, http.StatusOK, "queue.html", "Queue", "queue", u, s.newQueueView(r.Context()))
}

// queueDryRun shows what the filter in the query selects, and a confirm
// form for it. It is admins only: it is the first step of a purge.
func (s *Server) queueDryRun(w http.ResponseWriter, r *http.Request, u *sessionUser) {
	v := s.newQueueView(r.Context())
	f, err := formFilter(r.URL.Query())
	v.Form = f
	if err != nil {
		v.Error = err.Error()
		s.render(w, r, http.StatusBadRequest, "queue.html", "Queue", "queue", u, v)
		return
	}
	res, err := s.admin.PurgeQueue(r.Context(), who(u), clientIP(r), adminapi.QueuePurgeRequest{QueueFilter: f})
	if status := s.queueError(&v, err, res); status != 0 {
		s.render(w, r, status, "queue.html", "Queue", "queue", u, v)
		return
	}
	v.DryRun, v.Hidden = &res, hidden(f)
	s.render(w, r, http.StatusOK, "queue.html", "Queue", "queue", u, v)
}

// purgeQueue deletes what the confirmed filter selects now, which is
// the dry run's selection less what left the queue meanwhile and plus
// what arrived matching it.
func (s *Server) purgeQueue(w http.ResponseWriter, r *http.Request, u *sessionUser) {
	v := s.newQueueView(r.Context())
	f, err := formFilter(r.PostForm)
	v.Form = f
	if err != nil {
		v.Error = err.Error()
		s.render(w, r, http.StatusBadRequest, "queue.html", "Queue", "queue", u, v)
		return
	}
	// postsuper takes its time on a large queue: the write deadline of
	// the dashboard's server must not cut the answer off.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(10 * time.Minute))
	res, err := s.admin.PurgeQueue(r.Context(), who(u), clientIP(r), adminapi.QueuePurgeRequest{QueueFilter: f, Apply: true})
	if status := s.queueError(&v, err, res); status != 0 {
		s.render(w, r, status, "queue.html", "Queue", "queue", u, v)
		return
	}
	s.setFlash(w, "ok", fmt.Sprintf("Deleted %d messages matching %s; %d had already left the queue.",
		len(res.Done), res.Filter, len(res.Gone)))
	redirect(w, "/queue")
}

// queueError puts a purge's error on the page and returns the status to
// answer with; 0 when there was none.
func (s *Server) queueError(v *queueView, err error, res adminapi.QueuePurgeResult) int {
	if err == nil {
		return 0
	}
	var ae *adminapi.APIError
	if !errors.As(err, &ae) {
		s.log.Error("web: queue purge failed", "err", err)
		v.Error = "The purge failed; the daemon's log has the details."
		return http.StatusInternalServerError
	}
	v.Error = ae.Message
	if res.Refused {
		v.Error = "The MTA refuses to let the daemon delete queued mail (" + res.RefusedReason + "). Nothing was deleted."
		v.RootCommand = res.RootCommand
	}
	return ae.Status
}
