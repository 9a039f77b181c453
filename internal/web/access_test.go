package web

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/store"
)

// world is the state every access-matrix row starts from: a latched
// suspect host, a pending greylist triplet and nothing frozen.
type world struct {
	ip    string
	latch store.Latch
}

func (f *fixture) world() world {
	f.t.Helper()
	w := world{ip: "10.1.4.23"}
	f.trap(w.ip, f.now.Add(-time.Hour), 3, "pc17", "x@evil.example")
	w.latch = f.forgery(w.ip, "boss@evil.example", f.now.Add(-30*time.Minute))
	if err := f.st.PutTriplet(context.Background(), store.Triplet{Client: "198.51.100.0/24", Sender: "a@b.example",
		Recipient: "x@school.example", FirstSeen: f.now.Add(-time.Minute), LastSeen: f.now.Add(-time.Minute),
		Attempts: 1, Expires: f.now.Add(time.Hour)}); err != nil {
		f.t.Fatal(err)
	}
	return w
}

// state sums up everything an admin action can change, so a refused
// request can be shown to have changed nothing.
func (f *fixture) state(ip string) string {
	f.t.Helper()
	ctx := context.Background()
	notes, err := f.st.HostNotes(ctx, ip)
	if err != nil {
		f.t.Fatal(err)
	}
	dis, err := f.st.Disinfections(ctx, ip)
	if err != nil {
		f.t.Fatal(err)
	}
	pending, err := f.st.ListTriplets(ctx, store.TripletFilter{Pending: true}, f.now)
	if err != nil {
		f.t.Fatal(err)
	}
	var latches []string
	for _, l := range f.activeLatches() {
		latches = append(latches, l.ID)
	}
	var admin []string
	for _, e := range f.adminEvents() {
		if !strings.HasPrefix(e.Check, "web ") { // logins are not changes
			admin = append(admin, e.Check)
		}
	}
	return fmt.Sprintf("notes=%d disinfections=%d pending=%d latches=%v freezes=%v admin=%v queued=%d",
		len(notes), len(dis), len(pending), latches, f.freezes(), admin, f.queue.Len())
}

// accessRow is one route of the access matrix: a concrete request and
// the status anonymous, viewer and admin clients get.
type accessRow struct {
	pattern string
	method  string
	path    func(w world) string
	form    url.Values
	json    string // a JSON body instead of a form
	want    [3]int // anonymous, viewer, admin
	// changed, for a route that changes state, reports whether the
	// admin's request did what it says.
	changed func(f *fixture, w world) bool
}

func fixed(p string) func(world) string { return func(world) string { return p } }

func accessRows() []accessRow {
	const (
		ok    = http.StatusOK
		see   = http.StatusSeeOther
		unau  = http.StatusUnauthorized
		forbd = http.StatusForbidden
	)
	hostPath := func(suffix string) func(world) string {
		return func(w world) string { return "/hosts/" + w.ip + suffix }
	}
	return []accessRow{
		{pattern: "GET /login", method: "GET", path: fixed("/login"), want: [3]int{ok, ok, ok}},
		{pattern: "POST /login", method: "POST", path: fixed("/login"),
			form: url.Values{"username": {viewerName}, "password": {password}}, want: [3]int{see, see, see}},
		{pattern: "GET /static/", method: "GET", path: fixed("/static/style.css"), want: [3]int{ok, ok, ok}},
		{pattern: "GET /metrics", method: "GET", path: fixed("/metrics"), want: [3]int{ok, ok, ok}},
		{pattern: "GET /-/healthy", method: "GET", path: fixed("/-/healthy"), want: [3]int{ok, ok, ok}},
		{pattern: "GET /-/ready", method: "GET", path: fixed("/-/ready"), want: [3]int{ok, ok, ok}},
		{pattern: "POST /logout", method: "POST", path: fixed("/logout"), want: [3]int{see, see, see}},
		{pattern: "GET /{$}", method: "GET", path: fixed("/"), want: [3]int{see, ok, ok}},
		{pattern: "GET /hosts", method: "GET", path: fixed("/hosts?status=latched"), want: [3]int{see, ok, ok}},
		{pattern: "GET /hosts/rows", method: "GET", path: fixed("/hosts/rows"), want: [3]int{unau, ok, ok}},
		{pattern: "GET /hosts.csv", method: "GET", path: fixed("/hosts.csv"), want: [3]int{unau, ok, ok}},
		{pattern: "GET /hosts/{ip}", method: "GET", path: hostPath(""), want: [3]int{see, ok, ok}},
		{pattern: "GET /latches", method: "GET", path: fixed("/latches?all=1"), want: [3]int{see, ok, ok}},
		{pattern: "GET /latches.csv", method: "GET", path: fixed("/latches.csv"), want: [3]int{unau, ok, ok}},
		{pattern: "GET /greylist", method: "GET", path: fixed("/greylist"), want: [3]int{see, ok, ok}},
		{pattern: "GET /events", method: "GET", path: fixed("/events?kind=latch"), want: [3]int{see, ok, ok}},
		{pattern: "GET /events.csv", method: "GET", path: fixed("/events.csv"), want: [3]int{unau, ok, ok}},
		{pattern: "GET /freeze", method: "GET", path: fixed("/freeze"), want: [3]int{see, ok, ok}},
		{pattern: "GET /audit", method: "GET", path: fixed("/audit"), want: [3]int{see, ok, ok}},
		{pattern: "GET /incident", method: "GET", path: fixed("/incident"), want: [3]int{see, ok, ok}},
		{pattern: "GET /queue", method: "GET", path: fixed("/queue"), want: [3]int{see, ok, ok}},
		{pattern: "GET /queue/purge", method: "GET", path: fixed("/queue/purge?sender=office%40*"), want: [3]int{see, forbd, ok},
			changed: func(f *fixture, w world) bool { return f.queue.Len() == 20 }},
		{pattern: "GET /api/v1/", method: "GET", path: fixed("/api/v1/hosts"), want: [3]int{unau, ok, ok}},
		{pattern: "/", method: "GET", path: fixed("/nowhere"), want: [3]int{http.StatusNotFound, http.StatusNotFound, http.StatusNotFound}},

		{pattern: "POST /hosts/{ip}/note", method: "POST", path: hostPath("/note"),
			form: url.Values{"text": {"in room 12"}}, want: [3]int{unau, forbd, see},
			changed: func(f *fixture, w world) bool {
				ns, _ := f.st.HostNotes(context.Background(), w.ip)
				return len(ns) == 1 && ns[0].Text == "in room 12" && ns[0].By == "web:"+adminName
			}},
		{pattern: "POST /hosts/{ip}/disinfect", method: "POST", path: hostPath("/disinfect"),
			form: url.Values{"note": {"reimaged"}}, want: [3]int{unau, forbd, see},
			changed: func(f *fixture, w world) bool {
				ds, _ := f.st.Disinfections(context.Background(), w.ip)
				return len(ds) == 1 && len(f.activeLatches()) == 0
			}},
		{pattern: "POST /latches/{id}/clear", method: "POST",
			path: func(w world) string { return "/latches/" + w.latch.ID + "/clear" },
			form: url.Values{"note": {"false alarm"}}, want: [3]int{unau, forbd, see},
			changed: func(f *fixture, w world) bool {
				l, err := f.st.GetLatch(context.Background(), w.latch.ID)
				return err == nil && !l.ClearedAt.IsZero() && l.ClearedBy == "web:"+adminName && l.ClearNote == "false alarm"
			}},
		{pattern: "POST /greylist/allow", method: "POST", path: fixed("/greylist/allow"),
			form: url.Values{"client": {"198.51.100.0/24"}, "sender": {"a@b.example"}, "recipient": {"x@school.example"}},
			want: [3]int{unau, forbd, see},
			changed: func(f *fixture, w world) bool {
				t, err := f.st.GetTriplet(context.Background(), "198.51.100.0/24", "a@b.example", "x@school.example", f.now)
				return err == nil && t.Passed()
			}},
		{pattern: "POST /freeze", method: "POST", path: fixed("/freeze"),
			form: url.Values{"scope": {"domain"}, "value": {"School.Example"}, "note": {"day B"}}, want: [3]int{unau, forbd, see},
			changed: func(f *fixture, w world) bool {
				fs := f.freezes()
				return len(fs) == 1 && fs[0].Value == "school.example" && fs[0].By == "web:"+adminName
			}},
		{pattern: "POST /freeze/lift", method: "POST", path: fixed("/freeze/lift"),
			form: url.Values{"scope": {"all"}, "value": {""}, "note": {"over"}}, want: [3]int{unau, forbd, see},
			changed: func(f *fixture, w world) bool { return len(f.freezes()) == 0 }},
		{pattern: "POST /queue/purge", method: "POST", path: fixed("/queue/purge"),
			form: url.Values{"sender": {"office@*"}}, want: [3]int{unau, forbd, see},
			changed: func(f *fixture, w world) bool {
				evs := f.adminEvents()
				return f.queue.Len() == 5 && len(evs) > 0 && evs[0].Check == "queue purge" && evs[0].User == "web:"+adminName
			}},
		{pattern: "/api/v1/", method: "POST", path: fixed("/api/v1/freezes"),
			json: `{"scope": "user", "value": "spammer", "note": "api"}`, want: [3]int{unau, forbd, ok},
			changed: func(f *fixture, w world) bool {
				fs := f.freezes()
				return slices.ContainsFunc(fs, func(z store.Freeze) bool { return z.Value == "spammer" && z.By == "web:"+adminName })
			}},
	}
}

// TestAccessMatrix requests every route as an anonymous visitor, a
// viewer and an admin. A change refused must leave the state as it was;
// a change allowed must have happened.
func TestAccessMatrix(t *testing.T) {
	rows := accessRows()
	var covered []string
	for _, r := range rows {
		covered = append(covered, r.pattern)
	}
	probe := newFixture(t)
	for _, p := range probe.srv.Routes() {
		if !slices.Contains(covered, p) {
			t.Errorf("route %q has no row in the access matrix", p)
		}
	}
	for _, p := range covered {
		if !slices.Contains(probe.srv.Routes(), p) {
			t.Errorf("access-matrix row %q is not a route", p)
		}
	}

	for _, row := range rows {
		name := row.pattern
		if !strings.HasPrefix(name, row.method+" ") {
			name = row.method + " " + name
		}
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			w := f.world()
			if row.pattern == "POST /freeze/lift" {
				if err := f.st.SetFreeze(context.Background(), store.Freeze{Scope: store.FreezeAll, Since: f.now, By: "root"}); err != nil {
					t.Fatal(err)
				}
			}
			clients := []*client{f.anon(), f.login(viewerName), f.login(adminName)}
			for i, c := range clients {
				who := []string{"anonymous", "viewer", "admin"}[i]
				before := f.state(w.ip)
				path := row.path(w)
				var resp *response
				switch {
				case row.json != "":
					resp = c.do(row.method, path, strings.NewReader(row.json), "application/json")
				case row.method == "POST":
					resp = c.post(path, row.form)
				default:
					resp = c.get(path)
				}
				if resp.Code != row.want[i] {
					t.Errorf("%s %s as %s: %d, want %d\n%s", row.method, path, who, resp.Code, row.want[i], clip(resp.Body))
				}
				if row.changed == nil {
					continue
				}
				after := f.state(w.ip)
				if resp.Code == http.StatusSeeOther || resp.Code == http.StatusOK {
					if !row.changed(f, w) {
						t.Errorf("%s %s as %s answered %d but did not change the state: %s", row.method, path, who, resp.Code, after)
					}
				} else if after != before {
					t.Errorf("%s %s as %s was refused (%d) but changed the state:\nbefore %s\nafter  %s",
						row.method, path, who, resp.Code, before, after)
				}
				if i == 1 && !strings.Contains(resp.Body, "viewer role cannot change anything") {
					t.Errorf("viewer's refusal does not say why: %s", clip(resp.Body))
				}
			}
		})
	}
}

// TestAnonymousRedirectKeepsThePage: after logging in, the visitor lands
// on the page they asked for.
func TestAnonymousRedirectKeepsThePage(t *testing.T) {
	f := newFixture(t)
	c := f.anon()
	resp := c.get("/hosts?status=latched&site=oak")
	want := "/login?next=" + url.QueryEscape("/hosts?status=latched&site=oak")
	if resp.Code != http.StatusSeeOther || resp.Header.Get("Location") != want {
		t.Fatalf("anonymous page: %d to %q, want 303 to %q", resp.Code, resp.Header.Get("Location"), want)
	}
	page := c.follow(resp)
	if !strings.Contains(page.Body, `name="next" value="/hosts?status=latched&amp;site=oak"`) {
		t.Errorf("login form does not carry next:\n%s", clip(page.Body))
	}
	login := c.post("/login", url.Values{"username": {viewerName}, "password": {password},
		"next": {"/hosts?status=latched&site=oak"}})
	if got := login.Header.Get("Location"); login.Code != http.StatusSeeOther || got != "/hosts?status=latched&site=oak" {
		t.Errorf("login sent to %d %q", login.Code, got)
	}
}

// TestUnknownHostIs404 covers the host page's answers for addresses with
// nothing recorded and for things that are not addresses.
func TestUnknownHostIs404(t *testing.T) {
	f := newFixture(t)
	c := f.login(viewerName)
	for _, p := range []string{"/hosts/10.9.9.9", "/hosts/not-an-ip", "/hosts/fe80::1%25eth0"} {
		if r := c.get(p); r.Code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", p, r.Code)
		}
	}
	// A note makes an address known even without evidence.
	if _, err := f.admin.NoteHost(context.Background(), "root", netip.MustParseAddr("10.9.9.9"), "told about it"); err != nil {
		t.Fatal(err)
	}
	if r := c.get("/hosts/10.9.9.9"); r.Code != http.StatusOK || !strings.Contains(r.Body, "told about it") {
		t.Errorf("noted host: %d", r.Code)
	}
}

// clip shortens a body for an error message.
func clip(s string) string {
	if len(s) > 1500 {
		return s[:1500] + "…"
	}
	return s
}

// TestAPIAccessMatrix requests every admin API route through the
// dashboard's /api/v1/ as an anonymous visitor, a viewer and an admin,
// taking the routes from the API server, so a route added there is
// covered here at once. Reads need a login; changes need the admin role
// and, refused, change nothing. The bodies are empty: an admin's request
// may be refused as malformed (4xx) or for a part the fixture lacks
// (503), but never as unauthorised.
func TestAPIAccessMatrix(t *testing.T) {
	probe := newFixture(t)
	routes := probe.admin.Routes()
	if len(routes) == 0 {
		t.Fatal("the admin API lists no routes")
	}
	for _, route := range routes {
		method, pattern, ok := strings.Cut(route, " ")
		if !ok || !strings.HasPrefix(pattern, "/v1/") {
			t.Errorf("admin API route %q is not METHOD /v1/...: the dashboard serves only /api/v1/", route)
			continue
		}
		t.Run(route, func(t *testing.T) {
			f := newFixture(t)
			w := f.world()
			path := "/api" + strings.NewReplacer("{ip}", w.ip, "{id}", w.latch.ID).Replace(pattern)
			if strings.Contains(path, "{") {
				t.Fatalf("%s: no value for a wildcard in %s; teach this test one", route, path)
			}
			for i, c := range []*client{f.anon(), f.login(viewerName), f.login(adminName)} {
				who := []string{"anonymous", "viewer", "admin"}[i]
				before := f.state(w.ip)
				var body io.Reader
				if method != http.MethodGet {
					body = strings.NewReader("{}")
				}
				resp := c.do(method, path, body, "application/json")
				switch {
				case i == 0:
					if resp.Code != http.StatusUnauthorized {
						t.Errorf("%s %s as %s: %d, want 401", method, path, who, resp.Code)
					}
				case i == 1 && method != http.MethodGet:
					if resp.Code != http.StatusForbidden {
						t.Errorf("%s %s as %s: %d, want 403", method, path, who, resp.Code)
					}
				default:
					if resp.Code == http.StatusUnauthorized || resp.Code == http.StatusForbidden || resp.Code == http.StatusInternalServerError {
						t.Errorf("%s %s as %s: %d\n%s", method, path, who, resp.Code, clip(resp.Body))
					}
				}
				if i < 2 || method == http.MethodGet {
					if after := f.state(w.ip); after != before {
						t.Errorf("%s %s as %s (%d) changed the state:\nbefore %s\nafter  %s", method, path, who, resp.Code, before, after)
					}
				}
			}
		})
	}
}
