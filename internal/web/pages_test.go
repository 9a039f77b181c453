package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/config"
	"mailwarden/internal/events"
	"mailwarden/internal/series"
	"mailwarden/internal/store"
)

var rowIPRE = regexp.MustCompile(`<tr class="host" data-ip="([^"]+)">`)

// rowIPs lists the hosts table's rows in order.
func rowIPs(body string) []string {
	var out []string
	for _, m := range rowIPRE.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1])
	}
	return out
}

// hostsWorld records three hosts at two sites:
//
//	10.1.0.5  lincoln  trap 9, last seen 3h ago, suspect
//	10.1.0.40 lincoln  trap 2, forgery latch, last seen 1h ago, latched
//	10.2.0.7  oak      trap 5, last seen 2h ago, suspect, mail user "zed"
func (f *fixture) hostsWorld() {
	f.trap("10.1.0.5", f.now.Add(-3*time.Hour), 9, "a", "")
	f.trap("10.1.0.40", f.now.Add(-4*time.Hour), 2, "b", "")
	f.forgery("10.1.0.40", "boss@evil.example", f.now.Add(-time.Hour))
	f.trap("10.2.0.7", f.now.Add(-2*time.Hour), 5, "c", "")
	f.mailLogin("10.2.0.7", "zed", f.now)
}

func TestHostsSortAndFilter(t *testing.T) {
	f := newFixture(t)
	f.hostsWorld()
	c := f.login(viewerName)
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{"10.1.0.40", "10.2.0.7", "10.1.0.5"}}, // last seen, newest first
		{"sort=trap&dir=desc", []string{"10.1.0.5", "10.2.0.7", "10.1.0.40"}},
		{"sort=trap&dir=asc", []string{"10.1.0.40", "10.2.0.7", "10.1.0.5"}},
		{"sort=ip", []string{"10.1.0.5", "10.1.0.40", "10.2.0.7"}}, // by address, not text
		{"sort=ip&dir=desc", []string{"10.2.0.7", "10.1.0.40", "10.1.0.5"}},
		{"sort=first_seen&dir=asc", []string{"10.1.0.40", "10.1.0.5", "10.2.0.7"}},
		{"sort=user&dir=desc", []string{"10.2.0.7", "10.1.0.5", "10.1.0.40"}},
		{"sort=forgery&dir=desc", []string{"10.1.0.40", "10.1.0.5", "10.2.0.7"}},
		{"sort=bogus&dir=sideways", []string{"10.1.0.40", "10.2.0.7", "10.1.0.5"}},
		{"site=oak", []string{"10.2.0.7"}},
		{"site=lincoln&sort=ip", []string{"10.1.0.5", "10.1.0.40"}},
		{"status=latched", []string{"10.1.0.40"}},
		{"status=suspect&site=lincoln", []string{"10.1.0.5"}},
		{"status=all&site=all&sort=ip", []string{"10.1.0.5", "10.1.0.40", "10.2.0.7"}},
		{"status=disinfected", nil},
	} {
		page := c.get("/hosts?" + tc.query)
		if page.Code != http.StatusOK {
			t.Errorf("%q: %d", tc.query, page.Code)
		}
		if got := rowIPs(page.Body); !slices.Equal(got, tc.want) {
			t.Errorf("/hosts?%s: rows %v, want %v", tc.query, got, tc.want)
		}
		rows := c.get("/hosts/rows?" + tc.query)
		if got := rowIPs(rows.Body); !slices.Equal(got, tc.want) {
			t.Errorf("/hosts/rows?%s: rows %v, want %v", tc.query, got, tc.want)
		}
	}

	page := c.get("/hosts?site=oak&status=suspect")
	// Sort links keep the filter and flip the direction of the sorted
	// column.
	for _, want := range []string{
		`href="/hosts?dir=asc&amp;site=oak&amp;sort=ip&amp;status=suspect" data-sort="ip"`,
		`href="/hosts?dir=asc&amp;site=oak&amp;sort=last_seen&amp;status=suspect" data-sort="last_seen"`,
		`<option value="oak" selected>oak</option>`,
		`<option value="suspect" selected>suspect</option>`,
		`id="hosts-csv" href="/hosts.csv?dir=desc&amp;site=oak&amp;sort=last_seen&amp;status=suspect"`,
		`id="hosts-json" href="/api/v1/hosts?site=oak&amp;status=suspect"`,
		`data-refresh="30" data-rows-url="/hosts/rows?dir=desc&amp;site=oak&amp;sort=last_seen&amp;status=suspect"`,
		`<script src="/static/hosts.js" defer></script>`,
	} {
		if !strings.Contains(page.Body, want) {
			t.Errorf("hosts page lacks %s", want)
		}
	}
	if r := c.get("/hosts?status=nonsense"); r.Code != http.StatusBadRequest || !strings.Contains(r.Body, `id="hosts-error"`) {
		t.Errorf("unknown status: %d", r.Code)
	}
	if r := c.get("/hosts.csv?status=nonsense"); r.Code != http.StatusBadRequest {
		t.Errorf("unknown status in CSV: %d", r.Code)
	}
}

func TestHostRowsFragment(t *testing.T) {
	f := newFixture(t)
	f.hostsWorld()
	c := f.login(viewerName)
	r := c.get("/hosts/rows?site=oak")
	if !strings.HasPrefix(r.Body, `<tbody id="hosts-rows">`) || !strings.HasSuffix(r.Body, "</tbody>") {
		t.Fatalf("fragment is not one tbody:\n%s", r.Body)
	}
	for _, want := range []string{
		`<td class="ip"><a href="/hosts/10.2.0.7">10.2.0.7</a></td>`,
		`<td class="site">oak</td>`,
		`<td class="status suspect">suspect</td>`,
		`<td class="ev some" data-kind="trap">5</td>`,
		`<td class="ev" data-kind="forgery">0</td>`,
		`<td class="ev" data-kind="virus">0</td>`,
		`<td class="ev" data-kind="rate_trip">0</td>`,
		`<td class="ev" data-kind="latch">0</td>`,
		`<td class="ev" data-kind="refused_while_latched">0</td>`,
		`<td class="ev" data-kind="backdoor">0</td>`,
		`<td class="last-user">zed</td>`,
		`<td class="first-seen"><time datetime=`,
	} {
		if !strings.Contains(r.Body, want) {
			t.Errorf("fragment lacks %s", want)
		}
	}
	// The latched host's row says so.
	r = c.get("/hosts/rows?status=latched")
	if !strings.Contains(r.Body, `<td class="status latched">latched</td>`) || !strings.Contains(r.Body, `data-kind="latch">1<`) {
		t.Errorf("latched row:\n%s", r.Body)
	}
}

func TestLookupURLs(t *testing.T) {
	f := newFixture(t)
	f.trap("10.1.0.5", f.now, 1, "", "")
	f.trap("2001:db8::5", f.now, 1, "", "")
	f.cfg.Web.LookupURLs = append(f.cfg.Web.LookupURLs, config.LookupURL{Name: "Bad", URL: "javascript:alert('{ip}')"})
	c := f.login(viewerName)
	page := c.get("/hosts")
	for _, want := range []string{
		`<a href="https://dhcp.example/lease?ip=10.1.0.5&amp;show=1" rel="noopener noreferrer" target="_blank">DHCP</a>`,
		`<a href="http://wiki.example/hosts/10.1.0.5" rel="noopener noreferrer" target="_blank">Wiki</a>`,
		// In a query the colons are escaped; in a path they may stay.
		`<a href="https://dhcp.example/lease?ip=2001%3Adb8%3A%3A5&amp;show=1" rel="noopener noreferrer" target="_blank">DHCP</a>`,
		`<a href="http://wiki.example/hosts/2001:db8::5" rel="noopener noreferrer" target="_blank">Wiki</a>`,
	} {
		if !strings.Contains(page.Body, want) {
			t.Errorf("hosts page lacks %s", want)
		}
	}
	if strings.Contains(page.Body, "javascript:") || strings.Contains(page.Body, ">Bad<") {
		t.Error("a javascript: look-up URL was linked")
	}
	// Whatever stands in for {ip} cannot break out of its place.
	for _, tc := range []struct{ tmpl, ip, want string }{
		{"https://x.example/?q={ip}", `1"><script>&x=`, "https://x.example/?q=1%22%3E%3Cscript%3E%26x%3D"},
		{"https://x.example/h/{ip}/info", "a/../../b?c", "https://x.example/h/a%2F..%2F..%2Fb%3Fc/info"},
		{"https://x.example/{ip}#{ip}", "1 2", "https://x.example/1%202#1+2"},
	} {
		got, ok := lookupURL(tc.tmpl, tc.ip)
		if !ok || got != tc.want {
			t.Errorf("lookupURL(%q, %q) = %q %v, want %q", tc.tmpl, tc.ip, got, ok, tc.want)
		}
	}
	for _, bad := range []string{"javascript:alert({ip})", "data:text/html,{ip}", "//x.example/{ip}", "ftp://x/{ip}"} {
		if got, ok := lookupURL(bad, "10.0.0.1"); ok {
			t.Errorf("lookupURL(%q) = %q, want refused", bad, got)
		}
	}
}

var (
	countRE = regexp.MustCompile(`<dd data-kind="([a-z_]+)">([^<]*)</dd>`)
	svgRE   = regexp.MustCompile(`(?s)<svg class="chart" data-kind="([a-z]+)".*?</svg>`)
	barRE   = regexp.MustCompile(`<rect class="bar" x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)" data-count="(\d+)"><title>([^<]*)</title>`)
)

func TestOverviewCharts(t *testing.T) {
	f := newFixture(t)
	step := f.series.Step()
	f.series.Add(series.Accepted, f.now, 30)
	f.series.Add(series.Accepted, f.now.Add(-2*step), 10)
	f.series.Add(series.Accepted, f.now.Add(-30*time.Hour), 999) // older than the chart
	f.series.Add(series.Trap, f.now.Add(-5*step), 4)
	c := f.login(viewerName)
	page := c.get("/")
	totals := map[string]string{}
	for _, m := range countRE.FindAllStringSubmatch(page.Body, -1) {
		totals[m[1]] = m[2]
	}
	want := map[string]string{"accepted": "40", "greylisted": "0", "rejected": "0", "virus": "0", "trap": "4", "latch": "0"}
	for k, v := range want {
		if totals[k] != v {
			t.Errorf("count %s = %q, want %q", k, totals[k], v)
		}
	}
	charts := map[string]string{}
	for _, m := range svgRE.FindAllStringSubmatch(page.Body, -1) {
		charts[m[1]] = m[0]
	}
	if len(charts) != len(series.Kinds()) {
		t.Fatalf("%d charts, want one per kind", len(charts))
	}
	bars := barRE.FindAllStringSubmatch(charts["accepted"], -1)
	if len(bars) != 2 {
		t.Fatalf("accepted chart has %d bars, want 2:\n%s", len(bars), charts["accepted"])
	}
	// Oldest first; the tallest bar fills the chart, the other is in
	// proportion.
	full := chartBottom - chartTop
	for i, w := range []struct {
		count  string
		height float64
	}{{"10", full / 3}, {"30", full}} {
		h, _ := strconv.ParseFloat(bars[i][1], 64)
		if bars[i][2] != w.count || h < w.height-0.01 || h > w.height+0.01 {
			t.Errorf("bar %d: count %s height %s, want %s and %.2f", i, bars[i][2], bars[i][1], w.count, w.height)
		}
		if !strings.Contains(bars[i][3], ": "+w.count+" Accepted") {
			t.Errorf("bar %d tooltip %q", i, bars[i][3])
		}
	}
	if n := len(barRE.FindAllString(charts["virus"], -1)); n != 0 {
		t.Errorf("empty chart has %d bars", n)
	}
	for _, want := range []string{`id="freeze-summary"`, `id="clamd-status"`, `Disabled.`, `None: outbound mail flows.`} {
		if !strings.Contains(page.Body, want) {
			t.Errorf("overview lacks %s", want)
		}
	}
}

var flashRE = regexp.MustCompile(`<div id="flash" class="(ok|error)" role="status">([^<]*)</div>`)

// act posts a form and returns the flash on the page it leads to.
func (c *client) act(path string, form url.Values) (kind, msg string, page *response) {
	c.f.t.Helper()
	resp := c.post(path, form)
	if resp.Code != http.StatusSeeOther {
		c.f.t.Fatalf("POST %s: %d, want 303", path, resp.Code)
	}
	page = c.get(resp.Header.Get("Location"))
	m := flashRE.FindStringSubmatch(page.Body)
	if m == nil {
		c.f.t.Fatalf("no flash after POST %s:\n%s", path, clip(page.Body))
	}
	// The flash shows once.
	if again := c.get(resp.Header.Get("Location")); strings.Contains(again.Body, `id="flash"`) {
		c.f.t.Errorf("flash shown twice after POST %s", path)
	}
	return m[1], m[2], page
}

func TestHostActions(t *testing.T) {
	f := newFixture(t)
	w := f.world()
	c := f.login(adminName)
	if kind, msg, page := c.act("/hosts/"+w.ip+"/note", url.Values{"text": {"in room 12\nby the window"}}); kind != "ok" ||
		!strings.Contains(msg, "Note added") || !strings.Contains(page.Body, "in room 12 by the window") {
		t.Errorf("note: %s %q", kind, msg)
	}
	if kind, msg, _ := c.act("/hosts/"+w.ip+"/disinfect", url.Values{"note": {"  "}}); kind != "error" ||
		!strings.Contains(msg, "a note saying what was done is required") {
		t.Errorf("disinfect without a note: %s %q", kind, msg)
	}
	kind, msg, page := c.act("/hosts/"+w.ip+"/disinfect", url.Values{"note": {"reimaged"}})
	if kind != "ok" || !strings.Contains(msg, "1 active latch(es) cleared") {
		t.Errorf("disinfect: %s %q", kind, msg)
	}
	for _, want := range []string{`<span id="host-status" class="badge status disinfected">disinfected</span>`,
		`<li class="disinfection"><span class="by">web:alice</span>`, `<li class="note"><span class="by">web:alice</span>`} {
		if !strings.Contains(page.Body, want) {
			t.Errorf("host page after disinfecting lacks %s", want)
		}
	}
	if n := len(f.activeLatches()); n != 0 {
		t.Errorf("%d latches after disinfecting", n)
	}
	// The viewer sees the page without the forms.
	v := f.login(viewerName).get("/hosts/" + w.ip)
	if strings.Contains(v.Body, `id="note-form"`) || strings.Contains(v.Body, `id="disinfect-form"`) {
		t.Error("viewer is shown the admin forms")
	}
}

func TestLatchGreylistFreezeActions(t *testing.T) {
	f := newFixture(t)
	w := f.world()
	c := f.login(adminName)

	page := c.get("/latches")
	if !strings.Contains(page.Body, `<tr class="latch active" data-id="`+w.latch.ID+`">`) ||
		!strings.Contains(page.Body, `action="/latches/`+w.latch.ID+`/clear"`) {
		t.Fatalf("latches page lacks the latch or its clear form:\n%s", clip(page.Body))
	}
	if kind, msg, _ := c.act("/latches/"+w.latch.ID+"/clear", url.Values{"note": {""}}); kind != "error" || !strings.Contains(msg, "note") {
		t.Errorf("clear without a note: %s %q", kind, msg)
	}
	kind, msg, page := c.act("/latches/"+w.latch.ID+"/clear", url.Values{"note": {"false alarm"}, "back": {"/hosts/" + w.ip}})
	if kind != "ok" || !strings.Contains(msg, w.latch.ID) || !strings.Contains(page.Body, `id="host-ip"`) {
		t.Errorf("clear: %s %q", kind, msg)
	}
	if kind, msg, _ := c.act("/latches/"+w.latch.ID+"/clear", url.Values{"note": {"again"}, "back": {"//evil.example"}}); kind != "error" ||
		!strings.Contains(msg, "not active") {
		t.Errorf("clearing twice: %s %q", kind, msg)
	}
	all := c.get("/latches?all=1")
	if !strings.Contains(all.Body, `<td class="status cleared">cleared</td>`) || !strings.Contains(all.Body, "false alarm") {
		t.Errorf("cleared latch missing from the full list")
	}
	if active := c.get("/latches"); strings.Contains(active.Body, `data-id="`+w.latch.ID+`"`) {
		t.Errorf("cleared latch still in the active list")
	}

	page = c.get("/greylist")
	if !strings.Contains(page.Body, `<form class="allow-triplet inline" method="post" action="/greylist/allow">`) {
		t.Fatalf("greylist page lacks the allow form")
	}
	if kind, msg, page := c.act("/greylist/allow", url.Values{"client": {"198.51.100.0/24"}, "sender": {"a@b.example"},
		"recipient": {"x@school.example"}}); kind != "ok" || !strings.Contains(msg, "let through") ||
		!strings.Contains(page.Body, `<table id="greylist-passed"`) || strings.Count(page.Body, `<tr class="triplet">`) != 1 {
		t.Errorf("allow: %s %q", kind, msg)
	}

	if r := c.get("/freeze"); !strings.Contains(r.Body, "No outbound freeze") || strings.Contains(r.Body, `id="freeze-banner"`) {
		t.Errorf("freeze page before freezing")
	}
	if kind, msg, _ := c.act("/freeze", url.Values{"scope": {"network"}, "value": {"not a cidr"}}); kind != "error" || !strings.Contains(msg, "CIDR") {
		t.Errorf("bad freeze: %s %q", kind, msg)
	}
	if kind, _, page := c.act("/freeze", url.Values{"scope": {"all"}, "note": {"day B"}}); kind != "ok" ||
		!strings.Contains(page.Body, `<form class="lift-freeze inline" method="post" action="/freeze/lift">`) {
		t.Errorf("freeze: %s", kind)
	}
	// The banner is on every page while the freeze holds.
	for _, p := range []string{"/", "/hosts", "/latches", "/events", "/audit", "/greylist"} {
		if r := f.login(viewerName).get(p); !strings.Contains(r.Body, `<div id="freeze-banner" role="alert">`) {
			t.Errorf("%s lacks the freeze banner", p)
		}
	}
	if kind, _, page := c.act("/freeze/lift", url.Values{"scope": {"all"}, "value": {""}}); kind != "ok" ||
		!strings.Contains(page.Body, "No outbound freeze") || strings.Contains(page.Body, `id="freeze-banner"`) {
		t.Errorf("lift: %s", kind)
	}
	audit := c.get("/audit")
	for _, what := range []string{"freeze on", "freeze off", "greylist allow", "latch clear", "web login"} {
		if !strings.Contains(audit.Body, `<td class="what">`+what+`</td>`) {
			t.Errorf("audit log lacks %q", what)
		}
	}
	// Who, from where, when, what and the note, in one row.
	if !regexp.MustCompile(`<td class="time"><time datetime="[^"]+">[^<]+</time></td><td class="who">web:` + adminName +
		`</td><td class="from">dashboard [^<]+</td>\s*<td class="what">freeze on</td><td class="reason">[^<]*day B[^<]*</td>`).MatchString(audit.Body) {
		t.Errorf("audit log lacks who, where, when, what and note for the freeze:\n%s", audit.Body)
	}
}

var eventRowRE = regexp.MustCompile(`<tr class="event kind-([a-z_]+)" data-id="(\d+)">`)

func TestEventsFilter(t *testing.T) {
	f := newFixture(t)
	f.hostsWorld()
	f.events(store.Event{Time: f.now.Add(-10 * time.Minute), Kind: store.EventVirus, Check: "antivirus",
		Client: "10.2.0.7", User: "zed", Sender: "zed@school.example", Reason: "Eicar found"})
	c := f.login(viewerName)
	kinds := func(body string) []string {
		var out []string
		for _, m := range eventRowRE.FindAllStringSubmatch(body, -1) {
			out = append(out, m[1])
		}
		return out
	}
	since := url.QueryEscape(f.now.Add(-90 * time.Minute).Format(time.RFC3339))
	local := f.now.Add(-90 * time.Minute).Local().Format("2006-01-02T15:04")
	for _, tc := range []struct {
		query string
		want  []string
	}{
		// The viewer's login is the newest event.
		{"", []string{"admin", "virus", "latch"}},
		{"kind=virus", []string{"virus"}},
		{"kind=all", []string{"admin", "virus", "latch"}},
		{"host=10.1.0.40", []string{"latch"}},
		{"user=zed", []string{"virus"}},
		{"since=" + since, []string{"admin", "virus", "latch"}},
		{"since=" + local, []string{"admin", "virus", "latch"}},
		{"until=" + url.QueryEscape(f.now.Add(-30*time.Minute).Format(time.RFC3339)), []string{"latch"}},
		{"limit=2", []string{"admin", "virus"}},
		// Every kind the event log has can be filtered on.
		{"kind=mailbox", nil},
	} {
		r := c.get("/events?" + tc.query)
		if r.Code != http.StatusOK || !slices.Equal(kinds(r.Body), tc.want) {
			t.Errorf("/events?%s: %d %v, want %v", tc.query, r.Code, kinds(r.Body), tc.want)
		}
	}
	// Every kind of the one list, which the CLI and the admin API check
	// against too, can be filtered on.
	for _, k := range events.Kinds() {
		if r := c.get("/events?kind=" + k); r.Code != http.StatusOK {
			t.Errorf("/events?kind=%s: %d, want 200", k, r.Code)
		}
	}
	for _, q := range []string{"since=yesterday", "until=2024-13-01", "kind=nonsense", "host=10.1", "limit=0", "limit=x", "limit=100000"} {
		r := c.get("/events?" + q)
		if r.Code != http.StatusBadRequest || !strings.Contains(r.Body, `id="events-error"`) || !strings.Contains(r.Body, `id="events-filter"`) {
			t.Errorf("/events?%s: %d, want 400 with the form and an error", q, r.Code)
		}
		if r := c.get("/events.csv?" + q); r.Code != http.StatusBadRequest {
			t.Errorf("/events.csv?%s: %d", q, r.Code)
		}
	}
	page := c.get("/events?kind=virus&user=zed")
	if !strings.Contains(page.Body, `id="events-csv" href="/events.csv?kind=virus&amp;limit=100&amp;user=zed"`) {
		t.Errorf("CSV link does not carry the filter")
	}
	csvBody := c.get("/events.csv?kind=virus&user=zed").Body
	if lines := strings.Split(strings.TrimSpace(csvBody), "\n"); len(lines) != 2 || !strings.Contains(lines[1], "Eicar found") {
		t.Errorf("filtered CSV: %q", csvBody)
	}
}

func TestAuditPaging(t *testing.T) {
	f := newFixture(t)
	for i := range 5 {
		f.events(store.Event{Time: f.now.Add(-time.Duration(5-i) * time.Minute), Kind: store.EventAdmin,
			Check: fmt.Sprintf("step %d", i), User: "root"})
	}
	f.events(store.Event{Time: f.now, Kind: store.EventReject, Check: "sender"})
	c := f.login(viewerName) // adds "web login", the newest
	what := regexp.MustCompile(`<td class="what">([^<]*)</td>`)
	var seen []string
	next := "/audit?limit=2"
	for next != "" {
		r := c.get(next)
		for _, m := range what.FindAllStringSubmatch(r.Body, -1) {
			seen = append(seen, m[1])
		}
		next = ""
		if m := regexp.MustCompile(`<a id="audit-older" href="([^"]+)">`).FindStringSubmatch(r.Body); m != nil {
			next = strings.ReplaceAll(m[1], "&amp;", "&")
		}
		if len(seen) > 10 {
			t.Fatal("paging does not end")
		}
	}
	want := []string{"web login", "step 4", "step 3", "step 2", "step 1", "step 0"}
	if !slices.Equal(seen, want) {
		t.Errorf("audit pages: %v, want %v", seen, want)
	}
	if r := c.get("/audit?before=soon"); r.Code != http.StatusBadRequest || !strings.Contains(r.Body, `id="audit-error"`) {
		t.Errorf("bad before: %d", r.Code)
	}
}

func TestAPIActsAsTheWebUser(t *testing.T) {
	f := newFixture(t)
	w := f.world()
	admin := f.login(adminName)
	r := admin.do("POST", "/api/v1/hosts/"+w.ip+"/note", strings.NewReader(`{"text": "via the API"}`), "application/json")
	if r.Code != http.StatusOK {
		t.Fatalf("API note: %d %s", r.Code, r.Body)
	}
	var n adminapi.HostNote
	if err := json.Unmarshal([]byte(r.Body), &n); err != nil || n.By != "web:"+adminName {
		t.Errorf("API note by %q (%v)", n.By, err)
	}
	viewer := f.login(viewerName)
	r = viewer.get("/api/v1/hosts")
	var hs []adminapi.Host
	if err := json.Unmarshal([]byte(r.Body), &hs); err != nil || len(hs) != 1 || hs[0].IP != w.ip {
		t.Errorf("API hosts as viewer: %d %s", r.Code, r.Body)
	}
	r = viewer.do("DELETE", "/api/v1/freezes?scope=all", nil, "")
	if r.Code != http.StatusForbidden || r.Header.Get("Content-Type") != "application/json" ||
		!strings.Contains(r.Body, `"error"`) {
		t.Errorf("viewer DELETE: %d %s %s", r.Code, r.Header.Get("Content-Type"), r.Body)
	}
	if r := f.anon().get("/api/v1/status"); r.Code != http.StatusUnauthorized || !strings.Contains(r.Body, `"error"`) {
		t.Errorf("anonymous API: %d %s", r.Code, r.Body)
	}
}
