package web

import (
	"errors"
	"html"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestOverviewQueueCard(t *testing.T) {
	f := newFixture(t)
	page := f.login(viewerName).get("/")
	for _, want := range []string{`id="queue-card"`, `<span class="n" id="queue-messages">20</span>`,
		`data-queue="deferred">deferred 20</span>`, `<code>office@victim.example</code>`, `id="queue-asof"`} {
		if !strings.Contains(page.Body, want) {
			t.Errorf("overview lacks %s", want)
		}
	}
}

func TestOverviewQueueUnavailable(t *testing.T) {
	f := newFixture(t)
	f.queue.ListErr = errors.New("postqueue -j failed (exit status 69): postqueue: fatal: Queue report unavailable - mail system is down")
	page := f.login(viewerName).get("/")
	if !strings.Contains(page.Body, "queue not available: postqueue -j failed") || strings.Contains(page.Body, `id="queue-messages"`) {
		t.Errorf("overview with a failing postqueue:\n%s", clip(page.Body[strings.Index(page.Body, "queue-card"):]))
	}
}

// TestQueuePageViewer: a viewer sees the summary and no purge form.
func TestQueuePageViewer(t *testing.T) {
	f := newFixture(t)
	c := f.login(viewerName)
	page := c.get("/queue")
	if page.Code != http.StatusOK || !strings.Contains(page.Body, `<strong id="queue-messages">20</strong>`) {
		t.Fatalf("viewer's queue page: %d\n%s", page.Code, clip(page.Body))
	}
	for _, no := range []string{"queue-filter", "queue-confirm", "/queue/purge"} {
		if strings.Contains(page.Body, no) {
			t.Errorf("viewer's queue page has %s", no)
		}
	}
	if r := c.get("/queue/purge?sender=office%40*"); r.Code != http.StatusForbidden {
		t.Errorf("viewer's dry run: %d", r.Code)
	}
}

// TestQueuePurgeDryRunThenApply: the dry run shows the count and a
// sample and changes nothing; the confirm form carries exactly its
// filter; applying deletes exactly the matching messages and is audited
// with who and from where.
func TestQueuePurgeDryRunThenApply(t *testing.T) {
	f := newFixture(t)
	c := f.login(adminName)
	before := f.queue.IDs()
	page := c.get("/queue/purge?sender=office%40*&queue=deferred&older_than=30m&min_size=")
	if page.Code != http.StatusOK {
		t.Fatalf("dry run: %d\n%s", page.Code, clip(page.Body))
	}
	body := html.UnescapeString(page.Body)
	for _, want := range []string{`<strong id="queue-selected">15</strong>`, "--sender 'office@*' --older-than 30m --queue deferred",
		`<input type="hidden" name="sender" value="office@*">`, `<input type="hidden" name="queue" value="deferred">`,
		`<input type="hidden" name="older_than" value="30m">`, `id="queue-apply"`, "The first 10 of 15."} {
		if !strings.Contains(body, want) {
			t.Errorf("dry run page lacks %s", want)
		}
	}
	if n := strings.Count(body, `class="queue-msg"`); n != 10 {
		t.Errorf("dry run shows %d sample rows, want 10", n)
	}
	if !slices.Equal(f.queue.IDs(), before) || f.queue.Deletes != 0 {
		t.Fatal("the dry run changed the queue")
	}

	kind, msg, _ := c.act("/queue/purge", url.Values{"sender": {"office@*"}, "queue": {"deferred"}, "older_than": {"30m"}})
	if kind != "ok" || !strings.Contains(html.UnescapeString(msg), "Deleted 15 messages matching --sender 'office@*'") {
		t.Errorf("flash %s %q", kind, msg)
	}
	if got := f.queue.IDs(); !slices.Equal(got, before[15:]) {
		t.Errorf("left %v, want %v", got, before[15:])
	}
	evs := f.adminEvents()
	if len(evs) == 0 || evs[0].Check != "queue purge" || evs[0].User != "web:"+adminName || evs[0].Client != "192.0.2.10" ||
		!strings.Contains(evs[0].Reason, "via the dashboard from 192.0.2.10") {
		t.Errorf("audit entry %+v", evs[0])
	}
}

// TestQueuePurgeBadInput: an invalid filter is shown as it is, with a
// 400, and nothing is deleted.
func TestQueuePurgeBadInput(t *testing.T) {
	f := newFixture(t)
	c := f.login(adminName)
	for _, tc := range []struct{ query, want string }{
		{"sender_regexp=%28office", "sender regular expression"},
		{"min_size=ten", `min size "ten": want a number of bytes`},
		{"older_than=soon", `older than "soon"`},
		{"", "at least one filter"},
	} {
		r := c.get("/queue/purge?" + tc.query)
		if r.Code != http.StatusBadRequest || !strings.Contains(html.UnescapeString(r.Body), tc.want) {
			t.Errorf("%s: %d, want 400 with %q", tc.query, r.Code, tc.want)
		}
		r = c.post("/queue/purge", mustQuery(t, tc.query))
		if r.Code != http.StatusBadRequest || !strings.Contains(html.UnescapeString(r.Body), tc.want) {
			t.Errorf("POST %s: %d, want 400 with %q", tc.query, r.Code, tc.want)
		}
	}
	if f.queue.Len() != 20 || f.queue.Deletes != 0 {
		t.Errorf("bad input deleted: %d left", f.queue.Len())
	}
}

func mustQuery(t *testing.T, q string) url.Values {
	v, err := url.ParseQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestQueuePurgeRefused: when Postfix will not let the daemon delete,
// the dry run says so and shows the root command instead of a confirm
// button, and an apply is refused with the same command.
func TestQueuePurgeRefused(t *testing.T) {
	const cmd = "mailwarden queue purge --config /etc/mailwarden/mailwarden.yaml --sender 'office@*' --apply"
	f := newFixture(t)
	f.queue.Deny = errors.New("mtaqueue: not privileged to change the queue: postsuper runs only as root or Postfix's mail_owner (postfix), and this daemon runs as mailwarden")
	c := f.login(adminName)
	page := c.get("/queue/purge?sender=office%40*")
	body := html.UnescapeString(page.Body)
	if page.Code != http.StatusOK || !strings.Contains(body, "runs as mailwarden") || !strings.Contains(body, `<pre id="queue-root-command"><code>`+cmd+`</code></pre>`) ||
		strings.Contains(body, `id="queue-apply"`) {
		t.Errorf("refused dry run: %d\n%s", page.Code, clip(body[strings.Index(body, "queue-purge"):]))
	}

	f.queue.Deny = nil
	f.queue.DeleteErr = errors.New("postsuper -d failed (exit status 1): postsuper: fatal: use of this command is reserved for the superuser")
	r := c.post("/queue/purge", url.Values{"sender": {"office@*"}})
	body = html.UnescapeString(r.Body)
	if r.Code != http.StatusForbidden || !strings.Contains(body, "reserved for the superuser") || !strings.Contains(body, "Nothing was deleted") ||
		!strings.Contains(body, `<pre id="queue-root-command"><code>`+cmd+`</code></pre>`) {
		t.Errorf("refused apply: %d\n%s", r.Code, clip(body[strings.Index(body, "<main>"):]))
	}
	if f.queue.Len() != 20 || hasAction(f.adminEvents(), "queue purge") {
		t.Error("a refused purge changed the queue or was recorded")
	}
}
