package web

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/store"
)

// TestEveryActionIsAudited submits every form of the dashboard that
// changes something, taken from the server's own routes, as an admin,
// and requires an admin event from each. A new route without a row here
// fails the test.
func TestEveryActionIsAudited(t *testing.T) {
	f := newFixture(t)
	l := f.forgery("10.1.2.3", "boss@evil.example", f.now.Add(-time.Minute))
	f.forgery("10.1.2.4", "boss@evil.example", f.now.Add(-time.Minute))
	if err := f.st.PutTriplet(context.Background(), store.Triplet{Client: "192.0.2.0/24", Sender: "a@example.org",
		Recipient: "b@school.test", FirstSeen: f.now, LastSeen: f.now, Attempts: 1, Expires: f.now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	rows := map[string]struct {
		path   string
		form   url.Values
		action string
		status int
	}{
		"POST /login":                {"/login", loginForm(adminName, password), "web login", http.StatusSeeOther},
		"POST /logout":               {"/logout", url.Values{}, "web logout", http.StatusSeeOther},
		"POST /hosts/{ip}/note":      {"/hosts/10.1.2.4/note", url.Values{"text": {"in the lab"}}, "hosts note", http.StatusSeeOther},
		"POST /hosts/{ip}/disinfect": {"/hosts/10.1.2.4/disinfect", url.Values{"note": {"reimaged"}}, "hosts disinfect", http.StatusSeeOther},
		"POST /latches/{id}/clear":   {"/latches/" + l.ID + "/clear", url.Values{"note": {"reimaged"}}, "latch clear", http.StatusSeeOther},
		"POST /greylist/allow":       {"/greylist/allow", url.Values{"client": {"192.0.2.0/24"}, "sender": {"a@example.org"}, "recipient": {"b@school.test"}}, "greylist allow", http.StatusSeeOther},
		"POST /freeze":               {"/freeze", url.Values{"scope": {"all"}, "note": {"spam run"}}, "freeze on", http.StatusSeeOther},
		"POST /freeze/lift":          {"/freeze/lift", url.Values{"scope": {"all"}, "note": {"over"}}, "freeze off", http.StatusSeeOther},
		"POST /queue/purge":          {"/queue/purge", url.Values{"sender": {"office@*"}}, "queue purge", http.StatusSeeOther},
	}
	// The JSON API's changes are the admin API's own routes, audited by
	// adminapi.TestEveryChangeIsAudited; the catch-all only answers 404
	// and 405.
	elsewhere := map[string]bool{"/api/v1/": true, "/": true}
	seen := 0
	for _, route := range f.srv.Routes() {
		method, path, found := strings.Cut(route, " ")
		if !found {
			path, method = route, ""
		}
		if method == http.MethodGet || elsewhere[path] {
			continue
		}
		seen++
		row, ok := rows[route]
		if !ok {
			t.Errorf("route %s changes state but has no row in this test: add one, with the admin event it must record", route)
			continue
		}
		c := f.login(adminName)
		before := len(f.adminEvents())
		r := c.post(row.path, row.form)
		if r.Code != row.status {
			t.Errorf("%s: %d, want %d: %s", route, r.Code, row.status, r.Body)
			continue
		}
		evs := f.adminEvents()
		if len(evs) != before+1 || !hasAction(evs, row.action) {
			t.Errorf("%s: admin events went from %d to %d; want one more, %q", route, before, len(evs), row.action)
		}
		// Every entry says where it came from: the dashboard, and from
		// which address when the request had one.
		if len(evs) > 0 && !strings.HasPrefix(evs[0].Action, "dashboard") {
			t.Errorf("%s: newest entry %q came from %q, want the dashboard", route, evs[0].Check, evs[0].Action)
		}
	}
	if seen != len(rows) {
		t.Errorf("%d state-changing routes, %d rows: a row names a route that no longer exists", seen, len(rows))
	}
}

func hasAction(evs []store.Event, action string) bool {
	for _, e := range evs {
		if e.Check == action {
			return true
		}
	}
	return false
}
