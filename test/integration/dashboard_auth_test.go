package integration_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"mailwarden/test/harness"
)

// TestDashboardAuth is PRODUCT.md's "no one in who does not belong" in
// the browser: every page sends a visitor without a session to the login
// page and back after the login; the login shows who is logged in and
// logout ends it; a form on another site cannot make the logged-in
// administrator's browser freeze outbound mail, while the same form on
// the dashboard can; and five wrong passwords lock the login out, even
// for the right one.
func TestDashboardAuth(t *testing.T) {
	t.Parallel()
	mw := harness.StartMailwarden(t, binary(t), `internal_networks: ["127.0.85.0/24"]`)
	d := newDashboard(t, mw)
	var pages []*harness.Page
	defer func() { requireNoDialogs(t, pages...) }()

	t.Run("anonymous pages redirect to login and back", func(t *testing.T) {
		for _, path := range []string{"/hosts", "/", "/hosts/127.0.85.9", "/events", "/events?kind=trap"} {
			p := d.page(t)
			pages = append(pages, p)
			p.Navigate(t, d.url(path))
			u := d.requirePath(t, p, "/login")
			if next := u.Query().Get("next"); next != path {
				t.Errorf("GET %s led to %s: next=%q, want %q", path, u, next, path)
			}
			p.WaitVisible(t, "form#login-form")
			if n := p.Count(t, "#whoami"); n != 0 {
				t.Errorf("the login page for %s shows #whoami before any login", path)
			}
			submitLogin(t, p, adminName, adminPass)
			d.requirePath(t, p, path)
			requireWhoami(t, p, adminName, "admin")
		}
	})

	t.Run("login shows the user and logout ends the session", func(t *testing.T) {
		v := d.loginAs(t, viewName, viewPass, "viewer")
		pages = append(pages, v)
		d.requirePath(t, v, "/")
		v.WaitVisible(t, "nav#nav")
		for _, id := range []string{"overview", "hosts", "latches", "greylist", "events", "freeze", "audit"} {
			if n := v.Count(t, "nav#nav #nav-"+id); n != 1 {
				t.Errorf("nav#nav has %d #nav-%s, want 1", n, id)
			}
		}
		v.ClickAndWait(t, "form#logout-form button#logout")
		d.requirePath(t, v, "/login")
		v.Navigate(t, d.url("/hosts"))
		d.requirePath(t, v, "/login")
		v.WaitVisible(t, "form#login-form")
	})

	t.Run("cross-origin POST is refused", func(t *testing.T) {
		a := d.loginAs(t, adminName, adminPass, "admin")
		pages = append(pages, a)
		evil := evilSite(t, d.url("/freeze"), map[string]string{"scope": "all", "value": "", "note": "prize"})
		a.Navigate(t, evil)
		st := a.ClickAndWait(t, "#attack-submit")
		if st != http.StatusForbidden {
			t.Errorf("the other origin's form POST /freeze: status %d, want 403", st)
		}
		if body := bodyText(t, a); !strings.Contains(strings.ToLower(body), "cross-origin") {
			t.Errorf("the refusal does not say it was a cross-origin request:\n%s", body)
		}
		if fs := freezesOf(t, mw); len(fs) != 0 {
			t.Fatalf("a form on another origin froze outbound mail: freeze status shows %v", fs)
		}

		// The same request from the dashboard's own form goes through:
		// the refusal above was for the origin, not the session.
		a.Navigate(t, d.url("/freeze"))
		if got := a.Text(t, "#freeze-state"); !strings.Contains(got, "No outbound freeze") {
			t.Errorf("#freeze-state reads %q with no freeze, want it to say No outbound freeze", got)
		}
		a.SetValue(t, "form#freeze-form select[name=scope]", "all")
		a.SetValue(t, "form#freeze-form input[name=note]", "incident 7")
		if st := a.ClickAndWait(t, "button#freeze-submit"); st != http.StatusOK {
			t.Errorf("freezing from the dashboard's form: status %d, want 200", st)
		}
		a.WaitVisible(t, "#freeze-banner")
		fs := freezesOf(t, mw)
		if len(fs) != 1 || field(fs[0], "scope") != "all" {
			t.Fatalf("after the dashboard's freeze form, freeze status --json = %v, want one freeze of scope all", fs)
		}
		a.Navigate(t, d.url("/freeze"))
		a.ClickAndWait(t, "form.lift-freeze button")
		if fs := freezesOf(t, mw); len(fs) != 0 {
			t.Errorf("after lifting the freeze in the dashboard, freeze status --json = %v", fs)
		}
		if n := a.Count(t, "#freeze-banner"); n != 0 {
			t.Errorf("#freeze-banner still shown after the freeze was lifted")
		}
	})

	// Last: the lockout refuses every login from this address for a
	// while, which would fail any subtest after it.
	t.Run("five wrong passwords lock the login out", func(t *testing.T) {
		p := d.page(t)
		pages = append(pages, p)
		p.Navigate(t, d.url("/login"))
		for i := 1; i <= 5; i++ {
			st := submitLogin(t, p, adminName, "wrong password "+string(rune('0'+i)))
			switch {
			case i < 5 && st != http.StatusUnauthorized:
				t.Errorf("wrong password %d: status %d, want 401", i, st)
			case i == 5 && st != http.StatusUnauthorized && st != http.StatusTooManyRequests:
				t.Errorf("wrong password %d: status %d, want 401 or 429", i, st)
			}
			if n := p.Count(t, "#login-error"); n != 1 {
				t.Errorf("wrong password %d: no #login-error", i)
			}
		}
		st := submitLogin(t, p, adminName, adminPass)
		if st != http.StatusTooManyRequests {
			t.Errorf("the right password after five wrong ones: status %d, want 429", st)
		}
		if got := p.Text(t, "#login-error"); !strings.Contains(strings.ToLower(got), "too many failed logins") {
			t.Errorf("#login-error reads %q, want it to say too many failed logins", got)
		}
		if n := p.Count(t, "#whoami"); n != 0 {
			t.Errorf("a locked-out login still logged in: %q", p.Text(t, "#whoami"))
		}
		p.Navigate(t, d.url("/hosts"))
		if u, _ := url.Parse(p.URL(t)); u.Path != "/login" {
			t.Errorf("after the locked-out login, /hosts led to %s, want the login page", u)
		}
	})
}
