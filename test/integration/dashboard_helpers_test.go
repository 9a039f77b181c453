package integration_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailwarden/test/harness"
)

// Shared by the dashboard tests (issue 6): Debian's Chromium, driven by
// chromedp, against the dashboard the daemon serves on listen.http. The
// tests use client addresses in 127.0.81.0-127.0.89.255 only.

// The dashboard's users: one administrator, one viewer.
const (
	adminName = "alice"
	adminPass = "correct horse battery"
	viewName  = "victor"
	viewPass  = "staple viewer only"
)

// dashTrapYAML is a trap on addr flushing its hits every 200ms, so that
// the pages show them almost at once.
func dashTrapYAML(addr string) string {
	return fmt.Sprintf(`trap:
  enabled: true
  listen: %q
  max_conns: 64
  max_per_ip: 8
  read_timeout: 5s
  session_timeout: 10s
  flush_interval: 200ms`, addr)
}

// dashboard is one daemon's dashboard, its users and a browser.
type dashboard struct {
	mw      *harness.Mailwarden
	base    string // http://host:port of listen.http
	browser *harness.Browser
}

// newDashboard adds the admin and the viewer with the built CLI, checks
// that the daemon serves the login page, and starts a browser.
func newDashboard(t *testing.T, mw *harness.Mailwarden) *dashboard {
	t.Helper()
	addUser(t, mw, adminName, "admin", adminPass)
	addUser(t, mw, viewName, "viewer", viewPass)
	d := &dashboard{mw: mw, base: "http://" + mw.HTTPAddr}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(d.base + "/login")
	if err != nil {
		t.Fatalf("GET %s/login: %v", d.base, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/login answered %s, want 200: the daemon does not serve the dashboard on listen.http", d.base, resp.Status)
	}
	d.browser = harness.StartBrowser(t)
	return d
}

// addUser runs `mailwarden user add --role ROLE --password-stdin NAME`
// with the password on standard input, as a setup script would.
func addUser(t *testing.T, mw *harness.Mailwarden, name, role, pass string) {
	t.Helper()
	res := mw.ExecInput(t, pass+"\n", "user", "add", "--config", mw.ConfigFile, "--data", mw.DataDir,
		"--role", role, "--password-stdin", name)
	if res.ExitCode != 0 {
		t.Fatalf("mailwarden user add --role %s --password-stdin %s: exit %d\nstdout:\n%s\nstderr:\n%s", role, name, res.ExitCode, res.Stdout, res.Stderr)
	}
}

// url returns the dashboard address of path.
func (d *dashboard) url(path string) string { return d.base + path }

// page opens a new tab with its own cookies, not logged in.
func (d *dashboard) page(t *testing.T) *harness.Page {
	t.Helper()
	return d.browser.NewPage(t)
}

// loginAs opens a new tab and logs in as name through the login form,
// failing the test unless #whoami then names the user and role.
func (d *dashboard) loginAs(t *testing.T, name, pass, role string) *harness.Page {
	t.Helper()
	p := d.page(t)
	p.Navigate(t, d.url("/login"))
	if st := submitLogin(t, p, name, pass); st != http.StatusOK {
		t.Fatalf("logging in as %s: the page after the login form answered %d, want 200 (at %s)", name, st, p.URL(t))
	}
	requireWhoami(t, p, name, role)
	return p
}

// submitLogin fills the login form on the current page and submits it,
// returning the HTTP status of the page it leads to.
func submitLogin(t *testing.T, p *harness.Page, name, pass string) int {
	t.Helper()
	p.WaitVisible(t, "form#login-form")
	p.SetValue(t, "input#username[name=username]", name)
	p.SetValue(t, "input#password[name=password]", pass)
	return p.ClickAndWait(t, "button#login-submit")
}

// requireWhoami checks the layout's #whoami, such as "alice (admin)".
func requireWhoami(t *testing.T, p *harness.Page, name, role string) {
	t.Helper()
	got := strings.Join(strings.Fields(p.Text(t, "#whoami")), " ")
	if !strings.Contains(got, name) || !strings.Contains(got, "("+role+")") {
		t.Fatalf("#whoami = %q on %s, want %q", got, p.URL(t), name+" ("+role+")")
	}
}

// requirePath checks that the page is at path (and query, if want has
// one) on the dashboard.
func (d *dashboard) requirePath(t *testing.T, p *harness.Page, want string) *url.URL {
	t.Helper()
	u, err := url.Parse(p.URL(t))
	if err != nil {
		t.Fatalf("parsing the page's URL: %v", err)
	}
	got := u.Path
	if strings.Contains(want, "?") {
		got = u.RequestURI()
	}
	if u.Scheme+"://"+u.Host != d.base || got != want {
		t.Fatalf("the browser is at %s, want %s%s", u, d.base, want)
	}
	return u
}

// requireNoDialogs checks that no script opened an alert, confirm or
// prompt in any of the pages.
func requireNoDialogs(t *testing.T, pages ...*harness.Page) {
	t.Helper()
	for _, p := range pages {
		if d := p.Dialogs(); len(d) != 0 {
			t.Errorf("a script ran in the dashboard: JavaScript dialogs opened: %q", d)
		}
	}
}

// bodyText returns the page's rendered text.
func bodyText(t *testing.T, p *harness.Page) string {
	t.Helper()
	var s string
	p.Eval(t, "document.body ? document.body.innerText : ''", &s)
	return s
}

// postFromPage makes a same-origin POST with the page's own cookies, as a
// script on the page could, and returns the HTTP status. Redirects are
// not followed, so a 303 is seen as the 0 of an opaque redirect.
func postFromPage(t *testing.T, p *harness.Page, path string, form map[string]string) int {
	t.Helper()
	var status int
	p.Eval(t, fmt.Sprintf(`fetch(%s, {method: "POST", body: new URLSearchParams(%s), redirect: "manual", credentials: "same-origin"}).then(r => r.status)`,
		jsQuote(path), jsObject(form)), &status)
	return status
}

// jsQuote quotes s as a JavaScript string: JSON's strings are.
func jsQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// jsObject writes a flat map of strings as a JavaScript object literal.
func jsObject(m map[string]string) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, jsQuote(k)+": "+jsQuote(v))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// evilSite serves, from another loopback origin, a page whose form posts
// to the dashboard: what a page on any other site could do while the
// administrator is logged in.
func evilSite(t *testing.T, action string, fields map[string]string) string {
	t.Helper()
	var inputs strings.Builder
	for k, v := range fields {
		fmt.Fprintf(&inputs, `<input type="hidden" name=%q value=%q>`, k, v)
	}
	page := fmt.Sprintf(`<!doctype html><title>Win a prize</title>
<form id="attack" method="post" action=%q>%s<button id="attack-submit">Claim</button></form>`, action, inputs.String())
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatalf("listening on 127.0.0.2 for the other origin: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, page)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "http://" + l.Addr().String() + "/"
}

// freezesOf returns the freezes `freeze status --json` lists.
func freezesOf(t *testing.T, mw *harness.Mailwarden) []map[string]any {
	t.Helper()
	return jsonList(t, "freeze status", cliOK(t, mw, "freeze", "status", "--json").Stdout)
}

// activeLatches returns the latches for client not cleared yet.
func activeLatches(t *testing.T, mw *harness.Mailwarden, client string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range latchesFor(t, mw, client) {
		if field(l, "cleared_at") == "" {
			out = append(out, l)
		}
	}
	return out
}

// world is PRODUCT.md's Day A seen from the dashboard: a daemon behind
// Postfix with the trap, one site and a mail-login log; machines that hit
// the trap, one that sent a forgery and is latched, an outsider's
// greylisted mail; the two users, and the admin logged in.
type world struct {
	*dashboard
	s     *stack
	trap  string
	admin *harness.Page
	// worm hit the trap three times, single once; forger hit it once
	// and sent mail with a forged sender through Postfix, and is latched.
	// outsider is on the Internet and was greylisted.
	worm, single, forger, outsider string
}

// Mail users the login log shows on the world's machines.
const (
	wormUser   = "pat@school.test"
	forgerUser = "lee@school.test"
)

// startWorld builds the world in prefix.0/24 (such as "127.0.81"), with
// outsider as the outside client.
func startWorld(t *testing.T, prefix, outsider string) *world {
	t.Helper()
	w := &world{trap: trapAddr(t), worm: prefix + ".1", single: prefix + ".2", forger: prefix + ".5", outsider: outsider}
	log := filepath.Join(harness.InstanceDir(t, "dovecot"), "dovecot.log")
	logins := dovecotLogin(time.Now().Add(-2*time.Hour), wormUser, w.worm) +
		dovecotLogin(time.Now().Add(-time.Hour), forgerUser, w.forger)
	if err := os.WriteFile(log, []byte(logins), 0o644); err != nil {
		t.Fatalf("writing the login log: %v", err)
	}
	w.s = startStack(t, viaMilter, siteYAML(prefix+".0/24", dashTrapYAML(w.trap), mailLoginYAML(log)))

	for i := 1; i <= 3; i++ {
		helo := fmt.Sprintf("pc1-try%d.lincoln.school.test", i)
		g, h, m := trapSession(t, w.trap, w.worm, helo, "worm@"+helo)
		requireTrapped(t, w.worm, g, h, m)
	}
	g, h, m := trapSession(t, w.trap, w.single, "pc2.lincoln.school.test", "admin@pc2.lincoln.school.test")
	requireTrapped(t, w.single, g, h, m)
	g, h, m = trapSession(t, w.trap, w.forger, "pc5.lincoln.school.test", "invoice@evil.test")
	requireTrapped(t, w.forger, g, h, m)
	requireRefused(t, w.s.send(t, w.forger, "invoice@evil.test", rcptTo, harness.UniqueID(t)), "550 5.7.1 ",
		"Sender domain evil.test is not allowed from "+w.forger)
	waitLatch(t, w.s.mw, w.forger)
	w.s.requireGreylisted(t, w.s.send(t, w.outsider, "news@ext.test", rcptTo, harness.UniqueID(t)), "milter", w.outsider)

	// The pages read what the store holds; wait until it holds it all.
	waitHost(t, w.s.mw, w.worm, "3 trap hits and its mail user", 10*time.Second, func(h map[string]any) bool {
		return evidence(h, "trap") == 3 && lastUser(h) != ""
	})
	waitHost(t, w.s.mw, w.single, "1 trap hit", 10*time.Second, func(h map[string]any) bool {
		return evidence(h, "trap") == 1
	})
	waitHost(t, w.s.mw, w.forger, "its trap hit, the forgery and its latch", 10*time.Second, func(h map[string]any) bool {
		return evidence(h, "trap") == 1 && evidence(h, "forgery") >= 1 && evidence(h, "latch") >= 1 &&
			text(lookup(h, "status")) == "latched"
	})

	w.dashboard = newDashboard(t, w.s.mw)
	w.admin = w.loginAs(t, adminName, adminPass, "admin")
	return w
}
