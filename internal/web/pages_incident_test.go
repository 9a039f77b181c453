package web

import (
	"strings"
	"testing"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/store"
)

// TestIncidentPage: the incident page shows every section; admins get
// the forms and links that act on each, viewers the same report without
// them; what an attacker sent is escaped.
func TestIncidentPage(t *testing.T) {
	f := newFixture(t)
	l := f.forgery("10.1.4.23", "boss@evil.example", f.now.Add(-time.Minute))
	f.trap("10.1.7.7", f.now.Add(-2*time.Minute), 12, "<script>alert(1)</script>", "worm@evil.example")
	f.events(store.Event{Time: f.now.Add(-time.Minute), Kind: store.EventRateTrip, Check: "ratelimit", Action: "tempfail",
		Client: "10.1.4.30", User: "office@victim.example", Sender: "office@victim.example"})

	sections := []string{"incident-freeze", "incident-latches", "incident-hosts", "incident-senders", "incident-queue",
		"incident-mailboxes", "incident-ratetrips", "incident-antivirus", "incident-store", "incident-alerts"}
	admin := f.login(adminName).get("/incident")
	viewer := f.login(viewerName).get("/incident")
	for _, page := range []struct {
		name, body string
		admin      bool
	}{{"admin", admin.Body, true}, {"viewer", viewer.Body, false}} {
		for _, id := range sections {
			if !strings.Contains(page.body, `id="`+id+`"`) {
				t.Errorf("%s: no section %s", page.name, id)
			}
		}
		for _, want := range []string{`data-id="` + l.ID + `"`, `data-ip="10.1.7.7"`, "office@victim.example",
			"alerts are not configured", `id="nav-incident" href="/incident" class="current"`} {
			if !strings.Contains(page.body, want) {
				t.Errorf("%s: page lacks %q", page.name, want)
			}
		}
		if strings.Contains(page.body, "<script>alert(1)") {
			t.Errorf("%s: trap HELO not escaped", page.name)
		}
		actions := []string{`action="/latches/` + l.ID + `/clear"`, `href="/hosts/10.1.4.23#disinfect-form"`,
			`href="/queue/purge?sender=office%40victim.example"`, `id="incident-freeze-action" href="/freeze"`,
			`$ mailwarden latch clear ` + l.ID}
		for _, a := range actions {
			if got := strings.Contains(page.body, a); got != page.admin {
				t.Errorf("%s: action %q shown: %v", page.name, a, got)
			}
		}
	}
	if r := f.login(viewerName).get("/"); !strings.Contains(r.Body, `<a href="/incident">`) {
		t.Error("the overview does not link the incident page")
	}
	if !strings.Contains(admin.Body, "sqlite: writing") || !strings.Contains(admin.Body, "$ mailwarden store backup FILE") {
		t.Error("the store section does not show a writing SQLite store and how to back it up")
	}

	// A Redis store whose server may evict latches says so, and how to
	// copy it is store copy, not SQLite's backup.
	f.store = &adminapi.StoreStatus{Backend: "redis", Up: true, Since: f.now, Checked: f.now,
		Warnings: []string{"maxmemory-policy allkeys-lru with maxmemory 1073741824: a full server may evict <latches> and freezes"}}
	body := f.login(adminName).get("/incident").Body
	for _, want := range []string{"redis: writing",
		`<p class="notice">Warning: maxmemory-policy allkeys-lru with maxmemory 1073741824: a full server may evict &lt;latches&gt; and freezes</p>`,
		"$ mailwarden store copy --from config:FILE --to sqlite:DIR"} {
		if !strings.Contains(body, want) {
			t.Errorf("incident page with a warned Redis store lacks %q", want)
		}
	}
	if strings.Contains(body, "store backup FILE") {
		t.Error("incident page offers SQLite's store backup for a Redis store")
	}
}
