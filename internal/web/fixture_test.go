package web

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/adminapi/adminapitest"
	"mailwarden/internal/config"
	"mailwarden/internal/hosts"
	"mailwarden/internal/mtaqueue"
	"mailwarden/internal/series"
	"mailwarden/internal/sites"
	"mailwarden/internal/store"
	"mailwarden/internal/store/sqlite"
	"mailwarden/internal/store/storetest"
)

// Test users. Their hashes use bcrypt's lowest cost so that the many
// logins the tests make stay quick; account.Check reads the cost from
// the hash.
const (
	adminName  = "alice"
	viewerName = "victor"
	password   = "correct horse battery"
)

// fixture is a dashboard over a real SQLite store, host registry and
// admin API server, with a clock the test moves.
type fixture struct {
	t      testing.TB
	st     *sqlite.Store
	hosts  *hosts.Registry
	admin  *adminapi.Server
	series *series.Recorder
	srv    *Server
	cfg    config.Config
	now    time.Time
	faults *storetest.Faulty // set by withPanic
	// store is what the daemon's store health reports; nil: nothing.
	store *adminapi.StoreStatus
	// queue is the MTA queue the queue pages read and purge: 15
	// messages from office@victim.example, then 5 from
	// alice@school.example.
	queue *adminapitest.Queue
}

type fixtureOpt func(*fixture, *Options)

// secure serves the dashboard as if over TLS.
func secure(_ *fixture, o *Options) { o.Secure = true }

func newFixture(t testing.TB, opts ...fixtureOpt) *fixture {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := sqlite.OpenWith(t.TempDir(), log, sqlite.Options{Mirror: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	// The store filters expired events by the real clock, so the test
	// clock starts at the real time and moves only minutes.
	f := &fixture{t: t, st: st, now: time.UnixMilli(time.Now().UnixMilli())}
	clock := func() time.Time { return f.now }

	f.cfg = config.Default()
	f.cfg.Sites = []config.Site{
		{Name: "lincoln", Networks: []config.Prefix{config.MustPrefix("10.1.0.0/16")}},
		{Name: "oak", Networks: []config.Prefix{config.MustPrefix("10.2.0.0/16")}},
	}
	f.cfg.InternalNetworks = []config.Prefix{config.MustPrefix("10.0.0.0/8")}
	f.cfg.Web.LookupURLs = []config.LookupURL{
		{Name: "DHCP", URL: "https://dhcp.example/lease?ip={ip}&show=1"},
		{Name: "Wiki", URL: "http://wiki.example/hosts/{ip}"},
	}
	sr, err := sites.New([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, []sites.Site{
		{Name: "lincoln", Networks: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}},
		{Name: "oak", Networks: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if f.hosts, err = hosts.New(hosts.Options{Store: st, Sites: func() *sites.Registry { return sr }, Now: clock, Log: log}); err != nil {
		t.Fatal(err)
	}
	f.queue = (&adminapitest.Queue{}).Add(f.now, "office@victim.example", "x@gmail.test", 15).
		Add(f.now, "alice@school.example", "parent@district.test", 5)
	queueOpen := func() (mtaqueue.Queue, error) { return f.queue, nil }
	f.admin = adminapi.NewServer(adminapi.Options{Backend: st, Log: log, Now: clock, Hosts: f.hosts,
		Store: func() adminapi.StoreStatus {
			if f.store == nil {
				return adminapi.StoreStatus{Backend: "sqlite", Up: true, Since: f.now, Checked: f.now}
			}
			return *f.store
		},
		Greylist: st, Version: "test", Queue: adminapi.QueueOptions{Open: queueOpen,
			Watch:       mtaqueue.NewWatcher(mtaqueue.WatchOptions{Open: queueOpen, Now: clock}),
			CommandArgs: []string{"--config", "/etc/mailwarden/mailwarden.yaml"}}})
	f.series = series.New(10*time.Minute, 144)

	reg := prometheus.NewRegistry()
	o := Options{Log: log, Now: clock, Config: func() config.Config { return f.cfg }, Store: st,
		Hosts: f.hosts, Admin: f.admin, Series: f.series, Version: "test",
		Ops: Ops(OpsOptions{Metrics: reg})}
	for _, opt := range opts {
		opt(f, &o)
	}
	if f.srv, err = New(o); err != nil {
		t.Fatal(err)
	}
	// Refused logins answer at once here; TestLoginRefusalIsDelayed
	// covers the delay.
	f.srv.delay = &delayer{}
	f.addUser(adminName, store.RoleAdmin)
	f.addUser(viewerName, store.RoleViewer)
	return f
}

func (f *fixture) addUser(name, role string) {
	f.t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.st.AddUser(context.Background(), store.User{Name: name, Role: role, Hash: h, Created: f.now}); err != nil {
		f.t.Fatal(err)
	}
}

// client is a browser: it keeps cookies and comes from one address.
type client struct {
	f       *fixture
	ip      string
	cookies map[string]*http.Cookie
	header  http.Header // extra headers for every request
}

func (f *fixture) anon() *client {
	return &client{f: f, ip: "192.0.2.10", cookies: map[string]*http.Cookie{}, header: http.Header{}}
}

// login returns a client logged in as name.
func (f *fixture) login(name string) *client {
	f.t.Helper()
	c := f.anon()
	if resp := c.post("/login", url.Values{"username": {name}, "password": {password}}); resp.Code != http.StatusSeeOther {
		f.t.Fatalf("login as %s: %d %s", name, resp.Code, resp.Body)
	}
	return c
}

// response is a recorded answer.
type response struct {
	Code   int
	Header http.Header
	Body   string
	rec    *httptest.ResponseRecorder
}

func (c *client) do(method, path string, body io.Reader, contentType string) *response {
	c.f.t.Helper()
	req := httptest.NewRequest(method, path, body)
	req.RemoteAddr = c.ip + ":40000"
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, vs := range c.header {
		req.Header[k] = vs
	}
	for _, ck := range c.cookies {
		req.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value})
	}
	rec := httptest.NewRecorder()
	c.f.srv.ServeHTTP(rec, req)
	for _, ck := range rec.Result().Cookies() {
		if ck.MaxAge < 0 {
			delete(c.cookies, ck.Name)
		} else {
			c.cookies[ck.Name] = ck
		}
	}
	return &response{Code: rec.Code, Header: rec.Header(), Body: rec.Body.String(), rec: rec}
}

func (c *client) get(path string) *response { return c.do("GET", path, nil, "") }

func (c *client) post(path string, form url.Values) *response {
	return c.do("POST", path, strings.NewReader(form.Encode()), "application/x-www-form-urlencoded")
}

// follow gets the page a 303 points to.
func (c *client) follow(r *response) *response {
	c.f.t.Helper()
	if r.Code != http.StatusSeeOther {
		c.f.t.Fatalf("want a 303, got %d: %s", r.Code, r.Body)
	}
	return c.get(r.Header.Get("Location"))
}

// Evidence makers, as the checks and the trap record it.

func (f *fixture) trap(ip string, at time.Time, n int, helo, mailFrom string) {
	f.t.Helper()
	if err := f.st.AddTrapHits(context.Background(), store.TrapRecord{Client: ip, FirstSeen: at, LastSeen: at,
		Count: n, LastHelo: helo, LastMailFrom: mailFrom, LastDst: "192.0.2.25:25"}); err != nil {
		f.t.Fatal(err)
	}
}

// forgery latches ip as the sender check does.
func (f *fixture) forgery(ip, sender string, at time.Time) store.Latch {
	f.t.Helper()
	reason := "envelope sender domain not allowed for site lincoln"
	l, err := f.st.AddLatch(context.Background(), store.Latch{Kind: store.LatchClient, Key: ip,
		Rule: "sender_domain", Reason: reason, Evidence: sender, Site: "lincoln"}, at)
	if err != nil {
		f.t.Fatal(err)
	}
	f.events(store.Event{Time: at, Kind: store.EventLatch, Check: "sender", Action: "reject", Client: ip,
		Sender: sender, Recipients: []string{"someone@example.org"}, Reason: reason})
	return l
}

func (f *fixture) events(evs ...store.Event) {
	f.t.Helper()
	for i := range evs {
		if evs[i].Expires.IsZero() {
			evs[i].Expires = evs[i].Time.Add(24 * time.Hour)
		}
	}
	if err := f.st.AppendEvents(context.Background(), evs...); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) mailLogin(ip, user string, at time.Time) {
	f.t.Helper()
	if err := f.st.RecordLogin(context.Background(), store.MailLogin{Client: ip, User: user, Service: "imap", Time: at}); err != nil {
		f.t.Fatal(err)
	}
}

// adminEvents counts the audit log.
func (f *fixture) adminEvents() []store.Event {
	f.t.Helper()
	evs, err := f.st.QueryEvents(context.Background(), store.EventFilter{Kind: store.EventAdmin})
	if err != nil {
		f.t.Fatal(err)
	}
	return evs
}

func (f *fixture) activeLatches() []store.Latch {
	f.t.Helper()
	ls, err := f.st.ListLatches(context.Background(), store.LatchFilter{Active: true}, f.now)
	if err != nil {
		f.t.Fatal(err)
	}
	return ls
}

func (f *fixture) freezes() []store.Freeze {
	f.t.Helper()
	fs, err := f.st.ListFreezes(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return fs
}
