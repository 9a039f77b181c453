// Package events is the event log (Log): the pipeline's non-trivial
// decisions, admin actions and what the watchers notice, from which the
// host registry, the dashboard and `mailwarden events` read.
package events

import (
	"context"
	"time"

	"mailwarden/internal/policy"
	"mailwarden/internal/store"
)

// Kind returns the event kind for a verdict, or "" when it is not an
// event: every reject and tempfail is one, and whatever a check marked.
func (l *Log) Kind(v policy.Verdict) string {
	switch {
	case v.Event == store.EventGreylist && !l.o.Settings().RecordGreylist:
		return ""
	case v.Event != "":
		return v.Event
	case v.Action == policy.Reject:
		return store.EventReject
	case v.Action == policy.Tempfail:
		return store.EventTempfail
	}
	return ""
}

// Observe records the decision v on req if it is an event, and the
// latch it set, if any, as a latch event beside it. Its signature fits
// policy.PipelineOptions.Observe.
func (l *Log) Observe(req *policy.Request, v policy.Verdict, _ time.Duration) {
	kind := l.Kind(v)
	if kind == "" && v.Latched == "" {
		return
	}
	rcpts := req.Recipients
	if req.Recipient != "" {
		rcpts = []string{req.Recipient}
	}
	ev := store.Event{
		Time:       req.Time,
		Kind:       kind,
		Check:      v.Check,
		Action:     v.Action.String(),
		Client:     addr(req),
		Site:       req.Site,
		User:       req.SASLUser,
		Sender:     req.Sender,
		Recipients: rcpts,
		QueueID:    req.QueueID,
		Reason:     v.Reason,
	}
	var evs []store.Event
	if kind != "" {
		evs = append(evs, ev)
	}
	// The message's event says what it did (a forgery, a rate trip); the
	// latch is what followed, an event of its own.
	if v.Latched != "" {
		l := ev
		l.Kind, l.Reason = store.EventLatch, v.Latched
		evs = append(evs, l)
	}
	// The store writes events behind, so this does not wait for a disk.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Record(ctx, evs...); err != nil {
		l.o.Log.Error("recording event failed", "kind", kind, "client", ev.Client, "err", err)
	}
}

func addr(req *policy.Request) string {
	if !req.ClientIP.IsValid() {
		return ""
	}
	return req.ClientIP.String()
}
