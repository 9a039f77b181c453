package adminapi

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/adminapi/adminapitest"
	"mailwarden/internal/config"
	"mailwarden/internal/events"
	"mailwarden/internal/mtaqueue"
	"mailwarden/internal/store"
)

// queueServer serves a memory store and a fake queue of 15 messages from
// office@victim.example and 5 from alice@school.example.
func queueServer(t *testing.T) (*Client, *adminapitest.Memory, *adminapitest.Queue) {
	t.Helper()
	mem := adminapitest.New()
	q := (&adminapitest.Queue{}).Add(t0, "office@victim.example", "x@gmail.test", 15).
		Add(t0, "alice@school.example", "parent@district.test", 5)
	now := func() time.Time { return t0 }
	c, _ := start(t, Options{Backend: mem, Now: now,
		Events: events.NewLog(events.LogOptions{Store: mem, Now: now,
			Settings: func() config.Events { return config.Events{Retention: config.Duration(48 * time.Hour)} }}),
		Queue: QueueOptions{Watch: mtaqueue.NewWatcher(mtaqueue.WatchOptions{Open: q.Open, Now: now}), Open: q.Open,
			CommandArgs: []string{"--config", "/etc/mailwarden/mailwarden.yaml"}}})
	return c, mem, q
}

func queueAudits(mem *adminapitest.Memory) []store.Event {
	var out []store.Event
	for _, e := range mem.Events() {
		if e.Kind == store.EventAdmin && e.Check == "queue purge" {
			out = append(out, e)
		}
	}
	return out
}

func TestQueueStatus(t *testing.T) {
	c, _, _ := queueServer(t)
	st, err := c.QueueStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !st.Available || st.Summary == nil || st.Summary.Messages != 20 || !st.Time.Equal(t0) || st.Error != "" {
		t.Fatalf("status %+v", st)
	}
	if top := st.Summary.BySender[0]; top.Key != "office@victim.example" || top.Messages != 15 {
		t.Errorf("top sender %+v", top)
	}

	// A host without Postfix's tools: the reason, not an error answer.
	missing := func() (mtaqueue.Queue, error) {
		return mtaqueue.Open(config.Queue{MTA: config.QueuePostfix, Postqueue: "/nonexistent/postqueue", Postsuper: "/nonexistent/postsuper"})
	}
	c2, _ := start(t, Options{Backend: adminapitest.New(),
		Queue: QueueOptions{Watch: mtaqueue.NewWatcher(mtaqueue.WatchOptions{Open: missing}), Open: missing}})
	st, err = c2.QueueStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Available || st.Summary != nil || !strings.HasPrefix(st.Error, "queue not available: postqueue not found at /nonexistent/postqueue") {
		t.Errorf("no postqueue: %+v", st)
	}
	if _, err := c2.PurgeQueue(context.Background(), QueuePurgeRequest{QueueFilter: QueueFilter{Sender: "x@*"}}); !apiStatus(err, http.StatusServiceUnavailable) ||
		!strings.Contains(err.Error(), "postqueue not found") {
		t.Errorf("purge without postqueue: %v", err)
	}

	// A daemon started without a queue answers 503.
	c3, _ := start(t, Options{Backend: adminapitest.New()})
	if _, err := c3.QueueStatus(context.Background()); !apiStatus(err, http.StatusServiceUnavailable) {
		t.Errorf("no queue configured: %v", err)
	}
}

func apiStatus(err error, status int) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == status
}

// TestQueuePurge: a dry run counts and shows a sample and deletes
// nothing; an apply deletes exactly the selected IDs and records one
// audit entry with who, from where, the filter and the counts.
func TestQueuePurge(t *testing.T) {
	c, mem, q := queueServer(t)
	ctx := context.Background()
	before := q.IDs()
	req := QueuePurgeRequest{QueueFilter: QueueFilter{Sender: "*@victim.example", OlderThan: "30m"}}
	dry, err := c.PurgeQueue(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if dry.Apply || dry.Selected != 15 || dry.Bytes != 15000 || len(dry.Sample) != QueueSample || len(dry.Done) != 0 {
		t.Errorf("dry run: %+v", dry)
	}
	if want := "mailwarden queue purge --config /etc/mailwarden/mailwarden.yaml --sender '*@victim.example' --older-than 30m --apply"; dry.RootCommand != want {
		t.Errorf("root command %q, want %q", dry.RootCommand, want)
	}
	if q.Deletes != 0 || !slices.Equal(q.IDs(), before) || len(queueAudits(mem)) != 0 {
		t.Fatalf("the dry run changed something: %d deletes, %d audits", q.Deletes, len(queueAudits(mem)))
	}

	req.Apply = true
	res, err := c.PurgeQueue(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Apply || res.Selected != 15 || len(res.Done) != 15 || len(res.Gone) != 0 {
		t.Errorf("apply: %+v", res)
	}
	left := q.IDs()
	if !slices.Equal(left, before[15:]) || !slices.Equal(res.Done, before[:15]) {
		t.Errorf("left %v, deleted %v; want exactly the first 15 deleted", left, res.Done)
	}
	audits := queueAudits(mem)
	if len(audits) != 1 {
		t.Fatalf("%d queue purge audit entries, want 1", len(audits))
	}
	a := audits[0]
	for _, want := range []string{"deleted 15 messages", "--sender '*@victim.example' --older-than 30m", "15 selected, 0 already gone", "via the admin socket"} {
		if !strings.Contains(a.Reason, want) {
			t.Errorf("audit reason %q lacks %q", a.Reason, want)
		}
	}
	if a.User != me(t) {
		t.Errorf("audit by %q, want %q", a.User, me(t))
	}
	// The summary is listed again after a purge.
	if st, err := c.QueueStatus(ctx); err != nil || st.Summary == nil || st.Summary.Messages != 5 {
		t.Errorf("status after the purge: %+v, %v", st, err)
	}
}

// TestQueuePurgeBadInput: every invalid filter is a 400 saying what is
// wrong, and nothing is deleted or recorded.
func TestQueuePurgeBadInput(t *testing.T) {
	c, mem, q := queueServer(t)
	for _, tc := range []struct {
		f    QueueFilter
		want string
	}{
		{QueueFilter{SenderRegexp: "(office"}, "sender regular expression"},
		{QueueFilter{RecipientRegexp: "a**"}, "recipient regular expression"},
		{QueueFilter{OlderThan: "yesterday"}, `older than "yesterday"`},
		{QueueFilter{Queue: "spam"}, `queue "spam"`},
		{QueueFilter{SenderDomain: "a@b"}, "sender domain"},
		{QueueFilter{MinSize: 10, MaxSize: 5}, "minimum size"},
		{QueueFilter{MinSize: -1}, "sizes must not be negative"},
		{QueueFilter{Sender: "a\nb"}, "line break"},
		{QueueFilter{}, "at least one filter"},
	} {
		_, err := c.PurgeQueue(context.Background(), QueuePurgeRequest{QueueFilter: tc.f, Apply: true})
		if !BadInput(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want 400 with %q", tc.f, err, tc.want)
		}
	}
	if q.Deletes != 0 || q.Len() != 20 || len(queueAudits(mem)) != 0 {
		t.Errorf("bad input changed something: %d deletes, %d left, %d audits", q.Deletes, q.Len(), len(queueAudits(mem)))
	}
}

// TestQueuePurgeRefused: a daemon the MTA will not obey is told so in
// the dry run and refused with the command for root, up front or from
// postsuper's own message, and nothing is recorded.
func TestQueuePurgeRefused(t *testing.T) {
	ctx := context.Background()
	req := QueuePurgeRequest{QueueFilter: QueueFilter{Sender: "office@*"}}
	const cmd = "mailwarden queue purge --config /etc/mailwarden/mailwarden.yaml --sender 'office@*' --apply"

	c, mem, q := queueServer(t)
	q.Deny = errors.New("mtaqueue: not privileged to change the queue: postsuper runs only as root or Postfix's mail_owner (postfix), and this daemon runs as mailwarden")
	dry, err := c.PurgeQueue(ctx, req)
	if err != nil || !dry.Refused || !strings.Contains(dry.RefusedReason, "runs as mailwarden") || dry.RootCommand != cmd {
		t.Errorf("dry run: %+v, %v", dry, err)
	}
	req.Apply = true
	_, err = c.PurgeQueue(ctx, req)
	if !apiStatus(err, http.StatusForbidden) || !strings.Contains(err.Error(), "nothing was deleted") || !strings.HasSuffix(err.Error(), cmd) {
		t.Errorf("apply refused up front: %v", err)
	}
	if q.Deletes != 0 || q.Len() != 20 || len(queueAudits(mem)) != 0 {
		t.Errorf("a refused purge changed something: %d deletes, %d left, %d audits", q.Deletes, q.Len(), len(queueAudits(mem)))
	}

	c, mem, q = queueServer(t)
	q.DeleteErr = errors.New("postsuper -d failed (exit status 1): postsuper: fatal: use of this command is reserved for the superuser")
	_, err = c.PurgeQueue(ctx, req)
	if !apiStatus(err, http.StatusForbidden) || !strings.Contains(err.Error(), "reserved for the superuser") || !strings.HasSuffix(err.Error(), cmd) {
		t.Errorf("apply refused by postsuper: %v", err)
	}
	if q.Len() != 20 || len(queueAudits(mem)) != 0 {
		t.Errorf("a refused purge changed something: %d left, %d audits", q.Len(), len(queueAudits(mem)))
	}
}
