package integration_test

import (
	"fmt"
	"maps"
	"net/http"
	"strings"
	"testing"

	"mailwarden/test/harness"
)

// TestQueueDashboard is Day B's queue purge from the dashboard, against a
// real Postfix queue: the overview's queue card counts what postqueue -j
// lists; an administrator's dry run shows the count and removes nothing;
// an invalid regular expression is refused with its message; the
// confirmed purge by sender pattern removes exactly the matching
// messages (compared by queue ID before and after) and leaves an audit
// entry; and a viewer sees the summary but no purge form.
func TestQueueDashboard(t *testing.T) {
	t.Parallel()
	bin := binary(t)
	const spam, legit = 30, 10
	p, queueConfig := queuedPostfix(t, []queueSender{
		{"office@victim-one.example", "x@gmail.test", spam},
		{"alice@school.example", "parent@district.test", legit},
	}, func(int) int { return 5 })
	before := snapshot(t, p)
	if len(before.queue) != spam+legit {
		t.Fatalf("the queue holds %d messages after sending %d", len(before.queue), spam+legit)
	}

	mw := harness.StartMailwarden(t, bin, queueConfig)
	d := newDashboard(t, mw)
	admin := d.loginAs(t, adminName, adminPass, "admin")
	viewer := d.loginAs(t, viewName, viewPass, "viewer")
	defer requireNoDialogs(t, admin, viewer)

	t.Run("overview card", func(t *testing.T) {
		admin.Navigate(t, d.url("/"))
		if got := admin.Text(t, "#queue-card #queue-messages"); got != fmt.Sprint(spam+legit) {
			t.Errorf("the overview's queue card shows %q messages; postqueue -j lists %d", got, spam+legit)
		}
		if top := admin.Texts(t, "#queue-top-senders li"); len(top) != 2 || top[0] != "30 office@victim-one.example" {
			t.Errorf("top senders %q", top)
		}
		if asOf := admin.Text(t, "#queue-asof"); asOf == "" {
			t.Error("the queue card does not say when the summary was made")
		}
	})

	t.Run("viewer sees no purge form", func(t *testing.T) {
		viewer.Navigate(t, d.url("/queue"))
		if got := viewer.Text(t, "#queue-messages"); got != fmt.Sprint(spam+legit) {
			t.Errorf("the viewer's queue page shows %q messages", got)
		}
		if n := viewer.Count(t, "form#queue-filter, form#queue-confirm, #queue-purge"); n != 0 {
			t.Errorf("the viewer's queue page has %d purge form parts", n)
		}
		if st := viewer.Navigate(t, d.url("/queue/purge?sender=office%40*")); st != http.StatusForbidden {
			t.Errorf("the viewer's dry run answered %d, want 403", st)
		}
		unchangedQueue(t, p, "the viewer", before)
	})

	t.Run("invalid regular expression", func(t *testing.T) {
		admin.Navigate(t, d.url("/queue"))
		admin.SetValue(t, "form#queue-filter input[name=sender_regexp]", "(office")
		if st := admin.ClickAndWait(t, "#queue-dryrun"); st != http.StatusBadRequest {
			t.Errorf("dry run with an invalid regexp answered %d, want 400", st)
		}
		if msg := admin.Text(t, "#queue-error"); !strings.Contains(msg, "sender regular expression") {
			t.Errorf("the error says %q", msg)
		}
		if n := admin.Count(t, "#queue-apply"); n != 0 {
			t.Error("a confirm button is offered for an invalid filter")
		}
		unchangedQueue(t, p, "an invalid regexp", before)
	})

	t.Run("dry run then purge", func(t *testing.T) {
		admin.Navigate(t, d.url("/queue"))
		admin.SetValue(t, "form#queue-filter input[name=sender]", "*@victim-*.example")
		if st := admin.ClickAndWait(t, "#queue-dryrun"); st != http.StatusOK {
			t.Fatalf("dry run answered %d", st)
		}
		if got := admin.Text(t, "#queue-selected"); got != fmt.Sprint(spam) {
			t.Errorf("the dry run selected %q messages, want %d", got, spam)
		}
		sample := admin.Texts(t, "#queue-sample tr.queue-msg")
		if len(sample) != 10 {
			t.Errorf("the dry run shows %d sample rows, want 10", len(sample))
		}
		for _, row := range sample {
			if !strings.Contains(row, "office@victim-one.example") {
				t.Errorf("sample row %q is not from the spammer", row)
			}
		}
		unchangedQueue(t, p, "the dry run", before)

		if st := admin.ClickAndWait(t, "#queue-apply"); st != http.StatusOK {
			t.Fatalf("the purge led to a page answering %d", st)
		}
		d.requirePath(t, admin, "/queue")
		if flash := admin.Text(t, "#flash.ok"); !strings.Contains(flash, fmt.Sprintf("Deleted %d messages", spam)) {
			t.Errorf("flash %q", flash)
		}
		after := snapshot(t, p)
		for id, q := range before.queue {
			spammer := strings.HasSuffix(before.sender[id], "@victim-one.example")
			_, still := after.queue[id]
			switch {
			case spammer && still:
				t.Errorf("%s from %s is still queued", id, before.sender[id])
			case !spammer && after.queue[id] != q:
				t.Errorf("%s from %s was touched: in %q, was %q", id, before.sender[id], after.queue[id], q)
			}
		}
		if len(after.queue) != legit {
			t.Errorf("%d messages left, want %d", len(after.queue), legit)
		}

		res := mw.CLIWords(t, 1, "events", "--kind", "admin", "--json")
		found := false
		for _, e := range jsonList(t, "events --kind admin", res.Stdout) {
			if field(e, "check") == "queue purge" && field(e, "user") == "web:"+adminName &&
				strings.Contains(field(e, "reason"), fmt.Sprintf("deleted %d messages", spam)) &&
				strings.Contains(field(e, "reason"), "--sender '*@victim-*.example'") {
				found = true
			}
		}
		if !found {
			t.Errorf("no audit entry for the purge by web:%s:\n%s", adminName, res.Stdout)
		}

		// The card is listed again after the purge.
		admin.Navigate(t, d.url("/"))
		if got := admin.Text(t, "#queue-card #queue-messages"); got != fmt.Sprint(legit) {
			t.Errorf("after the purge the queue card shows %q messages, want %d", got, legit)
		}
	})
}

// unchangedQueue fails the test unless the queue is exactly before.
func unchangedQueue(t *testing.T, p *harness.Postfix, what string, before queueSnapshot) {
	t.Helper()
	if now := snapshot(t, p); !maps.Equal(now.queue, before.queue) {
		t.Fatalf("%s changed the queue: %d messages before, %d after", what, len(before.queue), len(now.queue))
	}
}
