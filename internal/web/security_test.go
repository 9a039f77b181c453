package web

import (
	"encoding/csv"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/store"
	"mailwarden/internal/store/storetest"
)

func TestCrossOriginRefused(t *testing.T) {
	f := newFixture(t)
	w := f.world()
	for _, tc := range []struct {
		name   string
		header http.Header
	}{
		{"Sec-Fetch-Site cross-site", http.Header{"Sec-Fetch-Site": {"cross-site"}}},
		{"Sec-Fetch-Site same-site", http.Header{"Sec-Fetch-Site": {"same-site"}}},
		{"foreign Origin", http.Header{"Origin": {"https://evil.example"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := f.login(adminName)
			c.header = tc.header
			before := f.state(w.ip)
			for _, req := range []struct {
				path string
				form url.Values
			}{
				{"/freeze", url.Values{"scope": {"all"}, "note": {"csrf"}}},
				{"/hosts/" + w.ip + "/note", url.Values{"text": {"csrf"}}},
				{"/latches/" + w.latch.ID + "/clear", url.Values{"note": {"csrf"}}},
				{"/logout", nil},
				{"/login", loginForm(adminName, password)},
			} {
				r := c.post(req.path, req.form)
				if r.Code != http.StatusForbidden || !strings.Contains(r.Body, "cross-origin request refused") {
					t.Errorf("POST %s: %d %q, want 403 cross-origin request refused", req.path, r.Code, r.Body)
				}
				checkHeaders(t, "refused POST "+req.path, r)
			}
			if r := c.do("POST", "/api/v1/freezes", strings.NewReader(`{"scope":"all"}`), "application/json"); r.Code != http.StatusForbidden {
				t.Errorf("cross-origin API POST: %d", r.Code)
			}
			if after := f.state(w.ip); after != before {
				t.Errorf("refused requests changed the state:\nbefore %s\nafter  %s", before, after)
			}
			// Reading is allowed from anywhere the cookie is sent;
			// SameSite=Strict keeps it from cross-site requests.
			if r := c.get("/freeze"); r.Code != http.StatusOK {
				t.Errorf("GET with %v: %d", tc.header, r.Code)
			}
		})
	}
	// The same request from the dashboard itself goes through.
	c := f.login(adminName)
	c.header = http.Header{"Sec-Fetch-Site": {"same-origin"}, "Origin": {"http://example.com"}}
	if r := c.post("/freeze", url.Values{"scope": {"all"}, "note": {"ok"}}); r.Code != http.StatusSeeOther || len(f.freezes()) != 1 {
		t.Errorf("same-origin POST: %d, freezes %v", r.Code, f.freezes())
	}
}

// checkHeaders asserts the security headers every response carries.
func checkHeaders(t *testing.T, what string, r *response) {
	t.Helper()
	want := map[string]string{
		"Content-Security-Policy": csp,
		"X-Content-Type-Options":  "nosniff",
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "no-referrer",
	}
	for k, v := range want {
		if got := r.Header.Get(k); got != v {
			t.Errorf("%s: %s is %q, want %q", what, k, got, v)
		}
	}
}

func TestSecurityHeaders(t *testing.T) {
	f := newFixture(t, withPanic)
	f.world()
	c := f.login(adminName)
	anon := f.anon()
	for _, tc := range []struct {
		what   string
		r      *response
		status int
		noStor bool
		ctype  string
	}{
		{"overview", c.get("/"), 200, true, "text/html; charset=utf-8"},
		{"login", anon.get("/login"), 200, true, "text/html; charset=utf-8"},
		{"hosts CSV", c.get("/hosts.csv"), 200, true, "text/csv; charset=utf-8"},
		{"API", c.get("/api/v1/status"), 200, true, "application/json"},
		{"stylesheet", anon.get("/static/style.css"), 200, false, "text/css; charset=utf-8"},
		{"script", anon.get("/static/hosts.js"), 200, false, "text/javascript; charset=utf-8"},
		{"icon", anon.get("/static/favicon.svg"), 200, false, "image/svg+xml"},
		{"missing static file", anon.get("/static/nope.css"), 404, true, ""},
		{"not found", c.get("/nowhere"), 404, true, "text/html; charset=utf-8"},
		{"forbidden", f.login(viewerName).post("/freeze", url.Values{"scope": {"all"}}), 403, true, "text/html; charset=utf-8"},
		{"unauthorized", anon.get("/hosts/rows"), 401, true, "text/html; charset=utf-8"},
		{"panic", c.panicked("/"), 500, true, "text/plain; charset=utf-8"},
		{"metrics", anon.get("/metrics"), 200, true, ""},
	} {
		if tc.r.Code != tc.status {
			t.Errorf("%s: %d, want %d", tc.what, tc.r.Code, tc.status)
		}
		checkHeaders(t, tc.what, tc.r)
		if got := tc.r.Header.Get("Cache-Control") == "no-store"; got != tc.noStor {
			t.Errorf("%s: Cache-Control %q", tc.what, tc.r.Header.Get("Cache-Control"))
		}
		if tc.ctype != "" && tc.r.Header.Get("Content-Type") != tc.ctype {
			t.Errorf("%s: Content-Type %q, want %q", tc.what, tc.r.Header.Get("Content-Type"), tc.ctype)
		}
	}
	// Static files revalidate by ETag.
	css := anon.get("/static/style.css")
	anon.header.Set("If-None-Match", css.Header.Get("ETag"))
	if r := anon.get("/static/style.css"); r.Code != http.StatusNotModified || r.Body != "" {
		t.Errorf("revalidation: %d", r.Code)
	}
	// The page after the panic still works: the server survived.
	if r := c.get("/hosts"); r.Code != http.StatusOK {
		t.Errorf("after a panic: %d", r.Code)
	}
}

// withPanic lets the test make page handlers panic, standing in for a
// bug in a handler: the store is wrapped so that listing freezes can be
// made to panic.
func withPanic(f *fixture, o *Options) {
	f.faults = storetest.WithFaults(o.Store)
	o.Store = f.faults
}

// panicked requests path with handlers panicking.
func (c *client) panicked(path string) *response {
	c.f.faults.PanicOn("ListFreezes", "test panic")
	defer c.f.faults.Heal()
	return c.get(path)
}

func TestEscaping(t *testing.T) {
	f := newFixture(t)
	const (
		helo   = `<script>alert(1)</script>`
		sender = `"><img src=x onerror=alert(1)>@evil.example`
		note   = `<b onmouseover=alert(1)>teacher's</b> laptop`
	)
	ip := "10.1.4.23"
	f.trap(ip, f.now.Add(-time.Hour), 3, helo, sender)
	f.forgery(ip, sender, f.now.Add(-time.Minute))
	f.mailLogin(ip, `<i>jsmith</i>`, f.now)
	c := f.login(adminName)
	if r := c.post("/hosts/"+ip+"/note", url.Values{"text": {note}}); r.Code != http.StatusSeeOther {
		t.Fatalf("note: %d", r.Code)
	}
	raw := []string{"<script>alert", "<img src=x", "<b onmouseover", "<i>jsmith"}
	escaped := map[string][]string{
		"/hosts/" + ip:          {`&lt;script&gt;alert(1)&lt;/script&gt;`, `&#34;&gt;&lt;img src=x onerror=alert(1)&gt;@evil.example`, `&lt;b onmouseover=alert(1)&gt;teacher&#39;s&lt;/b&gt; laptop`},
		"/hosts":                {`&lt;i&gt;jsmith&lt;/i&gt;`},
		"/hosts/rows":           {`&lt;i&gt;jsmith&lt;/i&gt;`},
		"/latches":              {`&#34;&gt;&lt;img src=x onerror=alert(1)&gt;@evil.example`},
		"/events":               {`&#34;&gt;&lt;img src=x onerror=alert(1)&gt;@evil.example`},
		"/audit":                {`&lt;b onmouseover=alert(1)&gt;`},
		"/events?host=" + ip:    {`&#34;&gt;&lt;img`},
		"/events?user=" + helo:  {`value="&lt;script&gt;alert(1)&lt;/script&gt;"`},
		"/events?since=" + helo: {`&lt;script&gt;alert(1)&lt;/script&gt;`},
	}
	for path, wants := range escaped {
		r := c.get(strings.ReplaceAll(path, " ", "+"))
		if r.Code != http.StatusOK && r.Code != http.StatusBadRequest {
			t.Errorf("%s: %d", path, r.Code)
		}
		for _, bad := range raw {
			if strings.Contains(r.Body, bad) {
				t.Errorf("%s contains unescaped %q", path, bad)
			}
		}
		for _, want := range wants {
			if !strings.Contains(r.Body, want) {
				t.Errorf("%s lacks the escaped form %q", path, want)
			}
		}
	}
	// The flash message after an action echoes nothing unescaped either.
	r := c.post("/freeze", url.Values{"scope": {"domain"}, "value": {helo}})
	page := c.follow(r)
	if !strings.Contains(page.Body, `id="flash" class="error"`) || strings.Contains(page.Body, "<script>alert") {
		t.Errorf("flash after a hostile freeze value:\n%s", clip(page.Body))
	}
}

func TestCSVNeutralisesFormulas(t *testing.T) {
	f := newFixture(t)
	ip := "10.1.4.23"
	f.trap(ip, f.now.Add(-time.Hour), 3, "=cmd|' /C calc'!A0", "+SUM(1)@evil.example")
	f.forgery(ip, "@evil@example", f.now.Add(-time.Minute))
	f.events(store.Event{Time: f.now, Kind: store.EventReject, Check: "sender", Client: ip,
		Sender: "-2+3@evil.example", Reason: "\tpadded"})
	c := f.login(viewerName)
	for path, want := range map[string][]string{
		"/hosts.csv":   {"'=cmd|' /C calc'!A0", "'+SUM(1)@evil.example"},
		"/latches.csv": {"'@evil@example"},
		"/events.csv":  {"'-2+3@evil.example", "'\tpadded", "'@evil@example"},
	} {
		r := c.get(path)
		if r.Code != http.StatusOK {
			t.Fatalf("%s: %d", path, r.Code)
		}
		if cd := r.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment; filename=") {
			t.Errorf("%s: Content-Disposition %q", path, cd)
		}
		rows, err := csv.NewReader(strings.NewReader(r.Body)).ReadAll()
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		cells := map[string]bool{}
		for _, row := range rows[1:] {
			for _, cell := range row {
				cells[cell] = true
				if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
					t.Errorf("%s: cell %q starts a formula", path, cell)
				}
			}
		}
		for _, w := range want {
			if !cells[w] {
				t.Errorf("%s lacks the neutralised cell %q", path, w)
			}
		}
	}
}

func TestFormLimits(t *testing.T) {
	f := newFixture(t)
	w := f.world()
	c := f.login(adminName)
	before := f.state(w.ip)
	big := url.Values{"text": {strings.Repeat("x", maxFormBytes+1)}}
	if r := c.post("/hosts/"+w.ip+"/note", big); r.Code != http.StatusBadRequest {
		t.Errorf("oversized form: %d", r.Code)
	}
	if r := c.do("POST", "/hosts/"+w.ip+"/note", strings.NewReader("text=%zz"), "application/x-www-form-urlencoded"); r.Code != http.StatusBadRequest {
		t.Errorf("malformed form: %d", r.Code)
	}
	if r := f.anon().post("/login", url.Values{"username": {strings.Repeat("a", maxFormBytes)}}); r.Code != http.StatusBadRequest {
		t.Errorf("oversized login: %d", r.Code)
	}
	if after := f.state(w.ip); after != before {
		t.Errorf("bad forms changed the state:\nbefore %s\nafter  %s", before, after)
	}
}

// TestWrongMethodIs405: a path the dashboard serves, asked with another
// method, answers 405 with Allow (issue 19: it answered 404); a path it
// does not serve stays 404.
func TestWrongMethodIs405(t *testing.T) {
	f := newFixture(t)
	c := f.login(adminName)
	for _, tc := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"POST", "/hosts", 405, "GET, HEAD"},
		{"DELETE", "/login", 405, "GET, HEAD, POST"},
		{"GET", "/logout", 405, "POST"},
		{"PUT", "/freeze", 405, "GET, HEAD, POST"},
		{"GET", "/no-such-page", 404, ""},
		{"POST", "/no-such-page", 404, ""},
	} {
		r := c.do(tc.method, tc.path, nil, "")
		if r.Code != tc.status || r.Header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d Allow %q, want %d Allow %q", tc.method, tc.path, r.Code, r.Header.Get("Allow"), tc.status, tc.allow)
		}
	}
}

// TestHSTSOverTLS: over TLS every response tells the browser to keep to
// HTTPS; over plain HTTP the header would be ignored and is not sent.
func TestHSTSOverTLS(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []fixtureOpt
		want string
	}{
		{"TLS", []fixtureOpt{secure}, "max-age=31536000"},
		{"plain HTTP", nil, ""},
	} {
		f := newFixture(t, tc.opts...)
		for _, path := range []string{"/login", "/static/style.css", "/no-such-page"} {
			if got := f.anon().get(path).Header.Get("Strict-Transport-Security"); got != tc.want {
				t.Errorf("%s %s: Strict-Transport-Security %q, want %q", tc.name, path, got, tc.want)
			}
		}
	}
}
