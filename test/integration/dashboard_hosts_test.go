package integration_test

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailwarden/test/harness"
)

// Attacker-chosen text a worm gives the trap: a HELO that is a script,
// and a MAIL FROM path (a quoted local part, so RFC 5321 allows it)
// that would be an image with an onerror handler in unescaped HTML. The
// trap keeps the path up to the first '>', so the markup has none.
const (
	markupHelo = `<script>alert(1)</script>`
	markupFrom = `"<img src=x onerror=alert(2)//"@evil.example`
	// injected matches what that markup would make unescaped: a script
	// that is not a file of the dashboard's (data blocks are not run), an
	// image, an event handler.
	injected = `script:not([src]):not([type="application/json"]), img[src="x"], [onerror]`
)

// TestDashboardHosts is PRODUCT.md's Day A in the browser: the hosts page
// lists the machines that hit the trap and the one that sent a forgery
// with the right evidence counts and status, filters and sorts them;
// attacker-chosen HELO and sender render as text; a viewer sees no forms
// and is refused when posting anyway; and an administrator marking the
// latched machine disinfected lets its mail through Postfix again.
func TestDashboardHosts(t *testing.T) {
	t.Parallel()
	w := startWorld(t, "127.0.81", "127.0.82.7")
	xss := "127.0.81.6"
	g, h, m := trapSession(t, w.trap, xss, markupHelo, markupFrom)
	requireTrapped(t, xss, g, h, m)
	host := waitHost(t, w.s.mw, xss, "the HELO "+markupHelo, 10*time.Second, func(h map[string]any) bool {
		return text(lookup(trapOf(h), "last_helo", "helo")) == markupHelo
	})
	if got := text(lookup(trapOf(host), "last_mail_from", "mail_from")); got != markupFrom {
		t.Fatalf("hosts show %s: the trap recorded MAIL FROM %q, want %q", xss, got, markupFrom)
	}
	var pages []*harness.Page
	pages = append(pages, w.admin)
	defer func() { requireNoDialogs(t, pages...) }()

	t.Run("hosts page lists evidence", func(t *testing.T) {
		p := w.admin
		if st := p.Navigate(t, w.url("/hosts")); st != http.StatusOK {
			t.Fatalf("GET /hosts: status %d", st)
		}
		p.WaitVisible(t, "table#hosts-table")
		for _, want := range []struct {
			ip, status, user     string
			trap, forgery, latch int
		}{
			{w.worm, "suspect", wormUser, 3, 0, 0},
			{w.single, "suspect", "", 1, 0, 0},
			{w.forger, "latched", forgerUser, 1, 1, 1},
			{xss, "suspect", "", 1, 0, 0},
		} {
			row := fmt.Sprintf(`tbody#hosts-rows tr.host[data-ip=%q]`, want.ip)
			if n := p.Count(t, row); n != 1 {
				t.Errorf("/hosts has %d rows %s, want 1; rows: %q", n, row, rowIPs(t, p))
				continue
			}
			if n := p.Count(t, fmt.Sprintf(`%s td.ip > a[href="/hosts/%s"]`, row, want.ip)); n != 1 {
				t.Errorf("/hosts: the row of %s has no link to /hosts/%s", want.ip, want.ip)
			}
			for kind, n := range map[string]int{"trap": want.trap, "forgery": want.forgery, "latch": want.latch} {
				if got := cell(t, p, fmt.Sprintf(`%s td.ev[data-kind=%q]`, row, kind)); got != strconv.Itoa(n) {
					t.Errorf("/hosts: %s shows %s count %q, want %d", want.ip, kind, got, n)
				}
			}
			if got := cell(t, p, row+" td.status"); got != want.status {
				t.Errorf("/hosts: %s shows status %q, want %q", want.ip, got, want.status)
			}
			if got := cell(t, p, row+" td.site"); got != siteName {
				t.Errorf("/hosts: %s shows site %q, want %q", want.ip, got, siteName)
			}
			if want.user != "" {
				if got := cell(t, p, row+" td.last-user"); got != want.user {
					t.Errorf("/hosts: %s shows last mail user %q, want %q", want.ip, got, want.user)
				}
			}
		}
	})

	t.Run("filter and sort", func(t *testing.T) {
		p := w.admin
		p.Navigate(t, w.url("/hosts"))
		p.SetValue(t, `form#hosts-filter select[name=status]`, "latched")
		if st := p.Submit(t, "form#hosts-filter"); st != http.StatusOK {
			t.Fatalf("filtering /hosts by status: status %d", st)
		}
		if u := w.requirePath(t, p, "/hosts"); u.Query().Get("status") != "latched" {
			t.Errorf("the filter form led to %s, want status=latched in the query", u)
		}
		if ips := rowIPs(t, p); !slices.Equal(ips, []string{w.forger}) {
			t.Errorf("/hosts filtered by status=latched lists %q, want only %s", ips, w.forger)
		}

		p.Navigate(t, w.url("/hosts?sort=trap&dir=desc"))
		ips := rowIPs(t, p)
		if len(ips) == 0 || ips[0] != w.worm || slices.Index(ips, w.single) < slices.Index(ips, w.worm) {
			t.Errorf("/hosts sorted by trap hits, most first, lists %q; want %s (3 hits) first and before %s (1 hit)", ips, w.worm, w.single)
		}
		p.Navigate(t, w.url("/hosts?sort=trap&dir=asc"))
		ips = rowIPs(t, p)
		if len(ips) == 0 || ips[len(ips)-1] != w.worm || slices.Index(ips, w.single) > slices.Index(ips, w.worm) {
			t.Errorf("/hosts sorted by trap hits, fewest first, lists %q; want %s (3 hits) last", ips, w.worm)
		}
	})

	t.Run("attacker markup renders as text", func(t *testing.T) {
		p := w.admin
		if st := p.Navigate(t, w.url("/hosts/"+xss)); st != http.StatusOK {
			t.Fatalf("GET /hosts/%s: status %d", xss, st)
		}
		if got := p.Text(t, "#host-helo"); got != markupHelo {
			t.Errorf("#host-helo reads %q, want the literal %q", got, markupHelo)
		}
		if got := p.Text(t, "#host-mail-from"); got != markupFrom {
			t.Errorf("#host-mail-from reads %q, want the literal %q", got, markupFrom)
		}
		requireNoInjected(t, p, "#host-helo script, #host-helo img, #host-mail-from script, #host-mail-from img, "+injected)

		for _, path := range []string{"/hosts", "/events"} {
			p.Navigate(t, w.url(path))
			requireNoInjected(t, p, injected)
			// Where the page shows the HELO at all, it shows it as text.
			if body := bodyText(t, p); strings.Contains(body, "alert(1)") && !strings.Contains(body, markupHelo) {
				t.Errorf("%s shows the HELO mangled, not as the literal %q:\n%s", path, markupHelo, body)
			}
		}
		p.Navigate(t, w.url("/hosts"))
		if n := p.Count(t, fmt.Sprintf(`tr.host[data-ip=%q]`, xss)); n != 1 {
			t.Errorf("/hosts does not list %s, whose HELO is markup", xss)
		}
		requireNoDialogs(t, p)
	})

	t.Run("viewer changes nothing", func(t *testing.T) {
		v := w.loginAs(t, viewName, viewPass, "viewer")
		pages = append(pages, v)
		for _, c := range []struct{ path, form string }{
			{"/hosts/" + w.forger, "form#disinfect-form"},
			{"/hosts/" + w.forger, "form#note-form"},
			{"/freeze", "form#freeze-form"},
			{"/latches", "form.clear-latch"},
		} {
			// The admin sees the form, so the viewer's missing one is
			// the role's doing, not an empty page.
			w.admin.Navigate(t, w.url(c.path))
			if n := w.admin.Count(t, c.form); n == 0 {
				t.Errorf("the admin sees no %s on %s", c.form, c.path)
			}
			if st := v.Navigate(t, w.url(c.path)); st != http.StatusOK {
				t.Errorf("the viewer's GET %s: status %d, want 200", c.path, st)
			}
			if n := v.Count(t, c.form); n != 0 {
				t.Errorf("the viewer sees %d %s on %s, want none", n, c.form, c.path)
			}
		}

		ref := field(waitLatch(t, w.s.mw, w.forger), "id")
		v.Navigate(t, w.url("/hosts/"+w.forger))
		for path, form := range map[string]map[string]string{
			"/hosts/" + w.forger + "/disinfect": {"note": "the viewer was here"},
			"/hosts/" + w.forger + "/note":      {"text": "the viewer was here"},
			"/freeze":                           {"scope": "all", "note": "the viewer was here"},
			"/latches/" + ref + "/clear":        {"note": "the viewer was here"},
		} {
			if st := postFromPage(t, v, path, form); st != http.StatusForbidden {
				t.Errorf("the viewer's POST %s from the page: status %d, want 403", path, st)
			}
		}
		if ls := activeLatches(t, w.s.mw, w.forger); len(ls) != 1 {
			t.Errorf("after the viewer's POSTs latch list shows %d active latches for %s, want 1: %v", len(ls), w.forger, ls)
		}
		if fs := freezesOf(t, w.s.mw); len(fs) != 0 {
			t.Errorf("after the viewer's POST /freeze, freeze status shows %v", fs)
		}
		h, res, _ := hostShow(t, w.s.mw, w.forger)
		if got := text(lookup(h, "status")); got != "latched" || strings.Contains(res.Stdout, "the viewer was here") {
			t.Errorf("after the viewer's POSTs hosts show %s says status %q (want latched) or holds the viewer's note:\n%s", w.forger, got, res.Stdout)
		}
	})

	t.Run("disinfect lets mail through", func(t *testing.T) {
		const legit, note = "teacher@school.test", "reimaged by the helpdesk"
		id := harness.UniqueID(t)
		requireRefused(t, w.s.send(t, w.forger, legit, rcptTo, id), "550 5.7.1 ", "Mail from "+w.forger+" is blocked")
		w.s.neverArrived(t, id)

		p := w.admin
		p.Navigate(t, w.url("/hosts/"+w.forger))
		if got := p.Text(t, "#host-status"); got != "latched" {
			t.Errorf("#host-status reads %q before the disinfection, want latched", got)
		}
		p.SetValue(t, "form#disinfect-form textarea[name=note]", note)
		if st := p.ClickAndWait(t, "button#disinfect-submit"); st != http.StatusOK {
			t.Errorf("disinfecting: the page after the form answered %d, want 200", st)
		}
		w.requirePath(t, p, "/hosts/"+w.forger)
		p.WaitVisible(t, "#flash.ok")
		if got := p.Text(t, "#host-status"); got != "disinfected" {
			t.Errorf("#host-status reads %q after the disinfection, want disinfected", got)
		}
		if ls := activeLatches(t, w.s.mw, w.forger); len(ls) != 0 {
			t.Errorf("after the disinfection latch list still shows active latches for %s: %v", w.forger, ls)
		}
		w.s.deliver(t, w.forger, legit)

		// The host page keeps what was done, and takes a note.
		p.Navigate(t, w.url("/hosts/"+w.forger))
		if body := bodyText(t, p); !strings.Contains(body, note) {
			t.Errorf("the host page does not show the disinfection note %q:\n%s", note, body)
		}
		const remark = "owner says the screen flickers"
		p.SetValue(t, "form#note-form textarea[name=text]", remark)
		if st := p.ClickAndWait(t, "button#note-submit"); st != http.StatusOK {
			t.Errorf("adding a note: the page after the form answered %d, want 200", st)
		}
		p.WaitVisible(t, "#flash.ok")
		if got := p.Text(t, "ul#host-notes"); !strings.Contains(got, remark) {
			t.Errorf("ul#host-notes reads %q, want the note %q", got, remark)
		}
	})
}

// rowIPs returns the data-ip of every host row, in page order.
func rowIPs(t *testing.T, p *harness.Page) []string {
	t.Helper()
	var ips []string
	p.Eval(t, `Array.from(document.querySelectorAll("tbody#hosts-rows tr.host"), r => r.dataset.ip)`, &ips)
	return ips
}

// cell returns the trimmed text of the one element sel finds, or reports
// its absence and returns "<missing>".
func cell(t *testing.T, p *harness.Page, sel string) string {
	t.Helper()
	if n := p.Count(t, sel); n != 1 {
		t.Errorf("%s: %d elements match %s, want 1", p.URL(t), n, sel)
		return "<missing>"
	}
	return strings.Join(strings.Fields(p.Text(t, sel)), " ")
}

// requireNoInjected fails unless no element matches sel: elements the
// attacker's markup would have made had it not been escaped.
func requireNoInjected(t *testing.T, p *harness.Page, sel string) {
	t.Helper()
	if n := p.Count(t, sel); n != 0 {
		var html []string
		p.Eval(t, fmt.Sprintf(`Array.from(document.querySelectorAll(%s), e => e.outerHTML)`, jsQuote(sel)), &html)
		t.Errorf("%s: %d elements match %s, want none: %q", p.URL(t), n, sel, html)
	}
}
