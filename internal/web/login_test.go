package web

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"mailwarden/internal/store"
)

// sessionCookie returns the Set-Cookie of the session in r.
func sessionCookie(t *testing.T, r *response, name string) *http.Cookie {
	t.Helper()
	for _, c := range r.rec.Result().Cookies() {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no %s cookie in %v", name, r.Header.Values("Set-Cookie"))
	return nil
}

func loginForm(name, pw string) url.Values {
	return url.Values{"username": {name}, "password": {pw}}
}

var whoamiRE = regexp.MustCompile(`<span id="whoami">([^<]*)</span>`)

func whoami(body string) string {
	m := whoamiRE.FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

func TestLoginCookie(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   []fixtureOpt
		cookie string
		secure bool
	}{
		{"plain HTTP", nil, "mw_session", false},
		{"TLS", []fixtureOpt{secure}, "__Host-mw_session", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.opts...)
			c := f.anon()
			resp := c.post("/login", loginForm(adminName, password))
			if resp.Code != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
				t.Fatalf("login: %d to %q", resp.Code, resp.Header.Get("Location"))
			}
			ck := sessionCookie(t, resp, tc.cookie)
			if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" || ck.Secure != tc.secure {
				t.Errorf("cookie attributes: %s", resp.Header.Get("Set-Cookie"))
			}
			if want := int(f.cfg.Web.SessionTTL.D() / time.Second); ck.MaxAge != want {
				t.Errorf("Max-Age %d, want %d", ck.MaxAge, want)
			}
			if len(ck.Value) < 43 {
				t.Errorf("token %q is shorter than 32 bytes of base64", ck.Value)
			}
			page := c.get("/")
			if page.Code != http.StatusOK || whoami(page.Body) != "alice (admin)" {
				t.Errorf("after login: %d, whoami %q", page.Code, whoami(page.Body))
			}
			// The other name does not work: over TLS only the __Host-
			// cookie counts, so a cookie planted without it is useless.
			other := map[bool]string{true: "mw_session", false: "__Host-mw_session"}[tc.secure]
			forged := f.anon()
			forged.cookies[other] = &http.Cookie{Name: other, Value: ck.Value}
			if r := forged.get("/"); r.Code != http.StatusSeeOther {
				t.Errorf("session under the cookie name %s accepted: %d", other, r.Code)
			}
		})
	}
}

func TestSessionLifecycle(t *testing.T) {
	f := newFixture(t)
	c := f.login(adminName)
	first := c.cookies["mw_session"].Value

	// A new login gets a new token and drops the old one.
	if r := c.post("/login", loginForm(adminName, password)); r.Code != http.StatusSeeOther {
		t.Fatalf("second login: %d", r.Code)
	}
	second := c.cookies["mw_session"].Value
	if second == first {
		t.Error("the token did not change at the second login")
	}
	old := f.anon()
	old.cookies["mw_session"] = &http.Cookie{Name: "mw_session", Value: first}
	if r := old.get("/"); r.Code != http.StatusSeeOther {
		t.Errorf("the token before the second login still works: %d", r.Code)
	}

	// Logout ends the session on the server, not just in the browser.
	r := c.post("/logout", nil)
	if r.Code != http.StatusSeeOther || r.Header.Get("Location") != "/login" {
		t.Errorf("logout: %d to %q", r.Code, r.Header.Get("Location"))
	}
	if _, ok := c.cookies["mw_session"]; ok {
		t.Error("logout did not delete the cookie")
	}
	replay := f.anon()
	replay.cookies["mw_session"] = &http.Cookie{Name: "mw_session", Value: second}
	if r := replay.get("/"); r.Code != http.StatusSeeOther {
		t.Errorf("the token works after logout: %d", r.Code)
	}
	checks := []string{}
	for _, e := range f.adminEvents() {
		checks = append(checks, e.Check+" "+e.User+" "+e.Client)
	}
	for _, want := range []string{"web login web:alice 192.0.2.10", "web logout web:alice 192.0.2.10"} {
		if !slices.Contains(checks, want) {
			t.Errorf("audit log lacks %q: %q", want, checks)
		}
	}

	// Sessions expire after session_ttl.
	c = f.login(viewerName)
	f.now = f.now.Add(f.cfg.Web.SessionTTL.D())
	if r := c.get("/"); r.Code != http.StatusSeeOther {
		t.Errorf("session past its TTL: %d", r.Code)
	}
}

func TestUserChangesApplyAtOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.login(adminName)

	// Demoted: the next request is a viewer's.
	u, err := f.st.GetUser(ctx, adminName)
	if err != nil {
		t.Fatal(err)
	}
	u.Role = store.RoleViewer
	if err := f.st.UpdateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if got := whoami(c.get("/").Body); got != "alice (viewer)" {
		t.Errorf("after demotion whoami %q", got)
	}
	if r := c.post("/freeze", url.Values{"scope": {"all"}}); r.Code != http.StatusForbidden || len(f.freezes()) != 0 {
		t.Errorf("demoted admin froze: %d %v", r.Code, f.freezes())
	}

	// A new password ends the sessions opened with the old one.
	u.Hash, _ = bcrypt.GenerateFromPassword([]byte("another long password"), bcrypt.MinCost)
	if err := f.st.UpdateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if r := c.get("/"); r.Code != http.StatusSeeOther {
		t.Errorf("session survived a password change: %d", r.Code)
	}

	// Deleted: the session is gone.
	v := f.login(viewerName)
	if err := f.st.DeleteUser(ctx, viewerName); err != nil {
		t.Fatal(err)
	}
	if r := v.get("/hosts"); r.Code != http.StatusSeeOther {
		t.Errorf("deleted user's page: %d", r.Code)
	}
	if r := v.get("/api/v1/hosts"); r.Code != http.StatusUnauthorized {
		t.Errorf("deleted user's API call: %d", r.Code)
	}
}

var loginErrorRE = regexp.MustCompile(`<p id="login-error"[^>]*>([^<]*)</p>`)

func loginError(body string) string {
	m := loginErrorRE.FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

func TestLoginThrottlePerName(t *testing.T) {
	f := newFixture(t)
	max := f.cfg.Web.LoginMaxFailures
	c := f.anon()
	for i := 1; i <= max; i++ {
		c.ip = fmt.Sprintf("192.0.2.%d", 100+i) // a different address each time: the name's count locks
		// The count is per name in any case; the wrong-case name is an
		// unknown user, refused as slowly as a wrong password, so only
		// the last attempt uses it.
		name := adminName
		if i == max {
			name = "ALICE"
		}
		r := c.post("/login", loginForm(name, "wrong password!"))
		want := http.StatusUnauthorized
		if i == max {
			want = http.StatusTooManyRequests
		}
		if r.Code != want {
			t.Fatalf("wrong password %d: %d, want %d", i, r.Code, want)
		}
		if i < max && loginError(r.Body) != "Wrong user name or password." {
			t.Errorf("wrong password %d: error %q", i, loginError(r.Body))
		}
	}
	// Locked: even the right password is refused, without a session.
	c.ip = "192.0.2.200"
	r := c.post("/login", loginForm(adminName, password))
	if r.Code != http.StatusTooManyRequests || !strings.Contains(loginError(r.Body), "Too many failed logins") ||
		!strings.Contains(loginError(r.Body), "try again later") && !strings.Contains(loginError(r.Body), "Try again later") {
		t.Fatalf("right password while locked: %d %q", r.Code, loginError(r.Body))
	}
	if _, ok := c.cookies["mw_session"]; ok {
		t.Fatal("a locked login got a session")
	}
	locked := 0
	for _, e := range f.adminEvents() {
		if e.Check == "web login locked" {
			locked++
		}
	}
	if locked != 1 {
		t.Errorf("%d 'web login locked' events, want 1", locked)
	}

	// Still locked just before the lockout ends, open after it.
	f.now = f.now.Add(f.cfg.Web.LoginLockout.D() - time.Second)
	if r := c.post("/login", loginForm(adminName, password)); r.Code != http.StatusTooManyRequests {
		t.Errorf("a second before the lockout ends: %d", r.Code)
	}
	f.now = f.now.Add(time.Second)
	if r := c.post("/login", loginForm(adminName, password)); r.Code != http.StatusSeeOther {
		t.Errorf("after the lockout: %d", r.Code)
	}
}

func TestLoginThrottlePerAddress(t *testing.T) {
	f := newFixture(t)
	c := f.anon()
	c.ip = "203.0.113.7"
	for i := range f.cfg.Web.LoginMaxFailures {
		// A different name each time, so that only the address's count
		// can lock.
		name := fmt.Sprintf("user%d", i)
		f.addUser(name, store.RoleViewer)
		c.post("/login", loginForm(name, "wrong password!"))
	}
	if r := c.post("/login", loginForm(adminName, password)); r.Code != http.StatusTooManyRequests {
		t.Errorf("right password from a locked address: %d", r.Code)
	}
	other := f.anon()
	other.ip = "203.0.113.8"
	if r := other.post("/login", loginForm(adminName, password)); r.Code != http.StatusSeeOther {
		t.Errorf("right password from another address: %d", r.Code)
	}
}

func TestLoginThrottleForgets(t *testing.T) {
	f := newFixture(t)
	max := f.cfg.Web.LoginMaxFailures
	c := f.anon()
	addr := 0
	fail := func(n int) {
		for range n {
			addr++ // from a new address each time: only the name's count matters here
			c.ip = fmt.Sprintf("198.51.100.%d", addr)
			c.post("/login", loginForm(adminName, "wrong password!"))
		}
	}
	// A successful login resets the name's count.
	fail(max - 1)
	if r := c.post("/login", loginForm(adminName, password)); r.Code != http.StatusSeeOther {
		t.Fatalf("right password: %d", r.Code)
	}
	fail(max - 1)
	if r := c.post("/login", loginForm(adminName, password)); r.Code != http.StatusSeeOther {
		t.Errorf("after a success and %d more failures: %d", max-1, r.Code)
	}
	// Failures further apart than the lockout do not add up.
	for i := range max + 2 {
		if i > 0 {
			f.now = f.now.Add(f.cfg.Web.LoginLockout.D())
		}
		fail(1)
	}
	if r := c.post("/login", loginForm(adminName, password)); r.Code != http.StatusSeeOther {
		t.Errorf("after spaced-out failures: %d", r.Code)
	}
}

func TestThrottleIsBounded(t *testing.T) {
	th := newThrottle(100)
	lim := limits{max: 3, lockout: time.Minute}
	now := time.Unix(1700000000, 0)
	for range 3 {
		th.reserve("victim", "192.0.2.1", now, lim)
	}
	for i := range 5000 {
		th.reserve(fmt.Sprintf("flood%d", i), fmt.Sprintf("10.0.%d.%d", i/250, i%250), now, lim)
	}
	if n, a := th.size(); n > 100 || a > 100 {
		t.Errorf("throttle holds %d names and %d addresses, want at most 100 each", n, a)
	}
	// Entries that are not locked go first, so a flood of single
	// guesses does not free a locked name.
	if ok, _ := th.reserve("victim", "192.0.2.99", now, lim); ok {
		t.Error("the flood evicted a locked name")
	}
}

// TestLoginConcurrentGuessesAreCounted sends guesses at one name all at
// once, as the outside probe of issue 19 did: every guess that arrives
// while another's password is being compared must still be counted, so
// no more than the allowed number are ever compared and the right
// password afterwards meets the lock.
func TestLoginConcurrentGuessesAreCounted(t *testing.T) {
	f := newFixture(t)
	// A real cost, so comparisons overlap as they do in production, and
	// a pool wide enough that only the throttle limits them.
	h, err := bcrypt.GenerateFromPassword([]byte(password), 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.AddUser(context.Background(), store.User{Name: "victim", Role: store.RoleAdmin, Hash: h, Created: f.now}); err != nil {
		t.Fatal(err)
	}
	f.srv.checks = newPassChecks(32, 32)
	max := f.cfg.Web.LoginMaxFailures
	const guesses = 19
	codes := make([]int, guesses)
	var start, done sync.WaitGroup
	start.Add(1)
	for i := range guesses {
		done.Add(1)
		go func() {
			defer done.Done()
			c := f.anon()
			c.ip = fmt.Sprintf("192.0.2.%d", 10+i) // the name's count must lock, not an address's
			start.Wait()
			codes[i] = c.post("/login", loginForm("victim", fmt.Sprintf("wrong guess %d", i))).Code
		}()
	}
	start.Done()
	done.Wait()
	compared := f.srv.checks.compared.Load()
	t.Logf("%d concurrent wrong guesses: %d passwords compared (limit %d), replies %v", guesses, compared, max, codes)
	if compared > int64(max) {
		t.Errorf("%d passwords compared, want at most %d", compared, max)
	}
	refused := 0
	for _, c := range codes {
		if c == http.StatusTooManyRequests {
			refused++
		}
	}
	if refused < guesses-max+1 {
		t.Errorf("%d guesses refused with 429, want at least %d", refused, guesses-max+1)
	}
	c := f.anon()
	c.ip = "192.0.2.200"
	if r := c.post("/login", loginForm("victim", password)); r.Code != http.StatusTooManyRequests {
		t.Errorf("right password after the burst: %d, want 429", r.Code)
	}
	if after := f.srv.checks.compared.Load(); after != compared {
		t.Errorf("the locked login compared a password (%d comparisons, was %d)", after, compared)
	}
}

// TestLoginFloodIsRefusedBeyondQueue: when every password check and the
// queue behind them are taken, a login is refused at once with 429, and
// it does not count against the name.
func TestLoginFloodIsRefusedBeyondQueue(t *testing.T) {
	f := newFixture(t)
	f.srv.checks = newPassChecks(1, 1)
	release := make(chan struct{})
	running := make(chan struct{})
	for range 2 {
		if !f.srv.checks.admit() {
			t.Fatal("an empty pool refused")
		}
	}
	go f.srv.checks.run(context.Background(), func() error { close(running); <-release; return nil })
	<-running
	c := f.anon()
	r := c.post("/login", loginForm(adminName, password))
	if r.Code != http.StatusTooManyRequests || !strings.Contains(loginError(r.Body), "Too many logins at once") ||
		r.Header.Get("Retry-After") == "" {
		t.Errorf("login with the pool full: %d %q Retry-After %q", r.Code, loginError(r.Body), r.Header.Get("Retry-After"))
	}
	close(release)
	// The queued place the test holds is given back; the refused attempt
	// was not counted, so a login now works.
	go f.srv.checks.run(context.Background(), func() error { return nil })
	deadline := time.Now().Add(5 * time.Second)
	for f.srv.checks.waiting.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	for i := range f.cfg.Web.LoginMaxFailures + 2 {
		f.srv.checks = newPassChecks(1, 0)
		f.srv.checks.admit() // full again
		c.ip = fmt.Sprintf("192.0.2.%d", 50+i)
		c.post("/login", loginForm(adminName, password))
	}
	f.srv.checks = newPassChecks(1, 1)
	if r := c.post("/login", loginForm(adminName, password)); r.Code != http.StatusSeeOther {
		t.Errorf("after logins refused as busy: %d, want 303 (refusals must not count as failures)", r.Code)
	}
}

// TestLoginRefusalIsDelayed: a wrong password and a locked login are
// answered no sooner than the fail delay, so a client that waits for
// its answers cannot flood; a right one is not held back.
func TestLoginRefusalIsDelayed(t *testing.T) {
	f := newFixture(t)
	const delay = 200 * time.Millisecond
	f.srv.delay = &delayer{delay: delay}
	c := f.anon()
	for i := range f.cfg.Web.LoginMaxFailures + 1 {
		start := time.Now()
		r := c.post("/login", loginForm(adminName, "wrong password!"))
		if took := time.Since(start); took < delay {
			t.Errorf("refusal %d (%d) answered after %v, want at least %v", i+1, r.Code, took, delay)
		}
	}
	other := f.anon()
	other.ip = "192.0.2.99"
	f.now = f.now.Add(f.cfg.Web.LoginLockout.D())
	start := time.Now()
	if r := other.post("/login", loginForm(adminName, password)); r.Code != http.StatusSeeOther {
		t.Fatalf("right password: %d", r.Code)
	}
	if took := time.Since(start); took >= delay {
		t.Errorf("a right password waited %v, the fail delay is for refusals only", took)
	}
}

func TestLoginPage(t *testing.T) {
	f := newFixture(t)
	c := f.anon()
	r := c.get("/login")
	for _, want := range []string{`<form id="login-form" method="post" action="/login">`,
		`<input id="username" name="username"`, `<input id="password" name="password" type="password"`,
		`<button id="login-submit" type="submit"`} {
		if !strings.Contains(r.Body, want) {
			t.Errorf("login page lacks %s", want)
		}
	}
	if strings.Contains(r.Body, "mailwarden user add") {
		t.Error("login page says to create a user although there are users")
	}
	for _, n := range []string{adminName, viewerName} {
		if err := f.st.DeleteUser(context.Background(), n); err != nil {
			t.Fatal(err)
		}
	}
	if r := c.get("/login"); !strings.Contains(r.Body, "mailwarden user add --role admin NAME") {
		t.Errorf("login page with no users does not say how to add one:\n%s", clip(r.Body))
	}
	if r := c.post("/login", loginForm("nobody", password)); r.Code != http.StatusUnauthorized ||
		loginError(r.Body) != "Wrong user name or password." {
		t.Errorf("unknown user: %d %q", r.Code, loginError(r.Body))
	}
}

func TestLoginRedirectStaysLocal(t *testing.T) {
	f := newFixture(t)
	for _, next := range []string{"//evil.example", "https://evil.example", `/\evil.example`, "/\t/evil.example",
		"evil.example", "", "javascript:alert(1)", "/%0a/evil.example\n"} {
		c := f.anon()
		if page := c.get("/login?next=" + url.QueryEscape(next)); !strings.Contains(page.Body, `name="next" value="/"`) {
			t.Errorf("login form for next=%q does not carry /", next)
		}
		form := loginForm(viewerName, password)
		form.Set("next", next)
		r := c.post("/login", form)
		if got := r.Header.Get("Location"); r.Code != http.StatusSeeOther || got != "/" {
			t.Errorf("next=%q: %d to %q, want 303 to /", next, r.Code, got)
		}
	}
	// A path with a percent-escaped slash is still a local path.
	c := f.anon()
	form := loginForm(viewerName, password)
	form.Set("next", "/hosts/10.1.4.23")
	if r := c.post("/login", form); r.Header.Get("Location") != "/hosts/10.1.4.23" {
		t.Errorf("local next lost: %q", r.Header.Get("Location"))
	}
}
