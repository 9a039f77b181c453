package adminapi

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"mailwarden/internal/hosts"
	"mailwarden/internal/mtaqueue"
	"mailwarden/internal/store"
)

// The incident report looks back IncidentWindow for senders and rate
// trips, reads at most incidentEvents events for it (a flood must not
// make the page slow) and shows the top incidentTop of each count.
const (
	IncidentWindow = time.Hour
	incidentEvents = 20000
	incidentTop    = 10
	incidentHosts  = 50
)

// note is the placeholder the commands show where the administrator
// says why; every action that needs a note refuses an empty one.
const note = `--note "…"`

// Incident is the answer to GET /v1/incident: everything the worst day
// needs on one screen, each section with the commands that act on it.
// It only reads.
type Incident struct {
	Time      time.Time         `json:"time"`
	Window    string            `json:"window"` // how far back Senders and RateTrips look
	Freezes   IncidentFreezes   `json:"freezes"`
	Latches   IncidentLatches   `json:"latches"`
	Hosts     IncidentHosts     `json:"hosts"`
	Senders   IncidentSenders   `json:"senders"`
	Queue     IncidentQueue     `json:"queue"`
	Mailboxes IncidentMailboxes `json:"mailboxes"`
	RateTrips IncidentRateTrips `json:"rate_trips"`
	Antivirus AntivirusStatus   `json:"antivirus"`
	AVActions []string          `json:"antivirus_actions"`
	// Store is absent when the server was given no Options.Store.
	Store        *StoreStatus   `json:"store,omitempty"`
	StoreActions []string       `json:"store_actions"`
	Alerts       IncidentAlerts `json:"alerts"`
}

// IncidentFreezes are the outbound freezes in force.
type IncidentFreezes struct {
	Freezes []Freeze `json:"freezes"`
	// Actions lift each freeze, or freeze all outbound mail when none
	// holds.
	Actions []string `json:"actions"`
}

// IncidentLatches are the active latches, newest first.
type IncidentLatches struct {
	Latches []Latch  `json:"latches"`
	Actions []string `json:"actions"`
}

// IncidentHosts are the latched and suspect hosts, by site.
type IncidentHosts struct {
	// Available is false when the daemon has no host registry.
	Available bool           `json:"available"`
	Sites     []IncidentSite `json:"sites"`
	// Total counts every latched or suspect host; Sites lists at most
	// incidentHosts of them, most recently seen first.
	Total   int      `json:"total"`
	Actions []string `json:"actions"`
}

// IncidentSite is one site's latched and suspect hosts; Site "" is the
// hosts in no site.
type IncidentSite struct {
	Site  string         `json:"site"`
	Hosts []IncidentHost `json:"hosts"`
}

// IncidentHost is one host in brief.
type IncidentHost struct {
	IP       string         `json:"ip"`
	Status   string         `json:"status"`
	LastSeen time.Time      `json:"last_seen,omitzero"`
	Evidence map[string]int `json:"evidence"`
	LastUser string         `json:"last_user,omitempty"`
}

// IncidentSenders are who sent most in the window, from the events:
// envelope senders and authenticated users of the decisions recorded.
type IncidentSenders struct {
	Events  int              `json:"events"`
	Senders []mtaqueue.Count `json:"senders"`
	Users   []mtaqueue.Count `json:"users"`
	Clients []mtaqueue.Count `json:"clients"`
	// Truncated says the window held more events than were read.
	Truncated bool     `json:"truncated,omitempty"`
	Actions   []string `json:"actions"`
}

// IncidentQueue is the MTA queue as the daemon's watcher last
// summarised it, or why it could not.
type IncidentQueue struct {
	Available  bool              `json:"available"`
	Error      string            `json:"error,omitempty"`
	Time       time.Time         `json:"time,omitzero"`
	AgeSeconds float64           `json:"age_seconds,omitempty"`
	Summary    *mtaqueue.Summary `json:"summary,omitempty"`
	Actions    []string          `json:"actions"`
}

// MailboxNews are the mailboxes created since the last snapshot, as the
// daemon's Options.Mailboxes finds them.
type MailboxNews struct {
	// Available is false when the passwd files or the snapshot could
	// not be read; Error says why.
	Available bool   `json:"available"`
	Error     string `json:"error,omitempty"`
	// Snapshot is the snapshot file compared with and Taken its time;
	// HasSnapshot is false when there is none yet.
	Snapshot    string    `json:"snapshot,omitempty"`
	HasSnapshot bool      `json:"has_snapshot"`
	Taken       time.Time `json:"taken,omitzero"`
	Mailboxes   int       `json:"mailboxes"`
	// New are the addresses not in the snapshot (the first
	// incidentTop*5), NewCount all of them.
	New      []string `json:"new"`
	NewCount int      `json:"new_count"`
}

// IncidentMailboxes is the mailbox section of the report.
type IncidentMailboxes struct {
	MailboxNews
	// Bursts are the mailbox watch's events in the last day.
	Bursts  []Event  `json:"bursts"`
	Actions []string `json:"actions"`
}

// IncidentRateTrips are the rate-limit trips in the window.
type IncidentRateTrips struct {
	Trips   int              `json:"trips"`
	ByKey   []mtaqueue.Count `json:"by_key"`
	Actions []string         `json:"actions"`
}

// IncidentAlerts are the open alerts, from Options.Alerts.
type IncidentAlerts struct {
	Configured bool            `json:"configured"`
	Note       string          `json:"note,omitempty"`
	Open       []IncidentAlert `json:"open"`
	Actions    []string        `json:"actions"`
}

// IncidentAlert is one open alert as the report shows it.
type IncidentAlert struct {
	ID      string    `json:"id"`
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Summary string    `json:"summary"`
	Count   int       `json:"count,omitempty"`
}

// ErrAlertsOff is what an AlertSource returns when no alert receiver is
// configured.
var ErrAlertsOff = errors.New("alerts are not configured (the alerts: section of the config)")

// AlertSource is where the incident report finds the open alerts. The
// alerts subsystem provides it (Options.Alerts); without one the report
// says alerts are not configured.
type AlertSource interface {
	// OpenAlerts returns the alerts not yet resolved at now, newest
	// first, and the commands that act on them.
	OpenAlerts(ctx context.Context, now time.Time) ([]IncidentAlert, []string, error)
}

// Incident gathers the report. A section whose source fails says so in
// its own place; only a store that cannot list freezes or latches fails
// the whole report.
func (s *Server) Incident(ctx context.Context) (Incident, error) {
	now := s.now()
	out := Incident{Time: now, Window: "1h"}
	if err := s.incidentFreezes(ctx, &out); err != nil {
		return Incident{}, err
	}
	ls, err := s.be.ListLatches(ctx, store.LatchFilter{Active: true}, now)
	if err != nil {
		return Incident{}, s.failed("listing active latches", err)
	}
	out.Latches.Latches = []Latch{}
	for _, l := range ls {
		out.Latches.Latches = append(out.Latches.Latches, LatchFromStore(l, now))
	}
	if len(ls) > 0 {
		out.Latches.Actions = []string{"mailwarden latch clear " + shellWord(ls[0].ID) + " " + note,
			"mailwarden latch list"}
	}
	s.incidentHosts(ctx, &out)
	if err := s.incidentEvents(ctx, now, &out); err != nil {
		return Incident{}, err
	}
	s.incidentQueue(ctx, &out)
	s.incidentMailboxes(ctx, now, &out)
	st, err := s.Status(ctx)
	if err != nil {
		return Incident{}, err
	}
	out.Antivirus, out.Store = st.Antivirus, st.Store
	out.AVActions = []string{"mailwarden status"}
	backup := "mailwarden store backup FILE"
	if st.Store != nil && st.Store.Backend == "redis" {
		// store backup is SQLite's; a copy of a Redis store is a copy
		// into a new embedded store (docs/redis.md, Data-loss guard).
		backup = "mailwarden store copy --from config:FILE --to sqlite:DIR"
	}
	out.StoreActions = []string{"mailwarden status", backup}
	out.Alerts = IncidentAlerts{Open: []IncidentAlert{}, Actions: []string{}}
	if s.alerts == nil {
		out.Alerts.Note = ErrAlertsOff.Error()
	} else {
		as, acts, err := s.alerts.OpenAlerts(ctx, now)
		out.Alerts.Configured = !errors.Is(err, ErrAlertsOff)
		switch {
		case !out.Alerts.Configured:
			out.Alerts.Note = ErrAlertsOff.Error()
		case err != nil:
			out.Alerts.Note = "not available: " + err.Error()
		}
		out.Alerts.Open = append(out.Alerts.Open, as...)
		out.Alerts.Actions = append(out.Alerts.Actions, acts...)
	}
	return out, nil
}

func (s *Server) incidentFreezes(ctx context.Context, out *Incident) error {
	fs, err := s.be.ListFreezes(ctx)
	if err != nil {
		return s.failed("listing freezes", err)
	}
	out.Freezes.Freezes = []Freeze{}
	for _, f := range fs {
		out.Freezes.Freezes = append(out.Freezes.Freezes, FreezeFromStore(f))
		out.Freezes.Actions = append(out.Freezes.Actions, "mailwarden freeze off "+scopeFlag(f.Scope, f.Value)+" "+note)
	}
	if len(fs) == 0 {
		out.Freezes.Actions = []string{"mailwarden freeze on --all " + note}
	}
	return nil
}

// scopeFlag is the freeze command's flag for a scope.
func scopeFlag(scope, value string) string {
	if scope == store.FreezeAll {
		return "--all"
	}
	return "--" + scope + " " + shellWord(value)
}

func (s *Server) incidentHosts(ctx context.Context, out *Incident) {
	out.Hosts.Sites = []IncidentSite{}
	out.Hosts.Actions = []string{}
	if s.hosts == nil {
		return
	}
	out.Hosts.Available = true
	var hs []hosts.Host
	for _, status := range []string{hosts.StatusLatched, hosts.StatusSuspect} {
		l, err := s.hosts.List(ctx, hosts.HostFilter{Status: status})
		if err != nil {
			s.log.Warn("incident: listing hosts failed", "err", err)
			out.Hosts.Available = false
			return
		}
		hs = append(hs, l...)
	}
	out.Hosts.Total = len(hs)
	if len(hs) > incidentHosts {
		hs = hs[:incidentHosts]
	}
	bySite := map[string]*IncidentSite{}
	for _, h := range hs {
		site := bySite[h.Site]
		if site == nil {
			site = &IncidentSite{Site: h.Site}
			bySite[h.Site] = site
		}
		site.Hosts = append(site.Hosts, IncidentHost{IP: h.IP.String(), Status: h.Status, LastSeen: h.LastSeen,
			Evidence: h.Evidence, LastUser: h.LastLogin.User})
	}
	for _, site := range bySite {
		out.Hosts.Sites = append(out.Hosts.Sites, *site)
	}
	// Sites by name, the hosts in no site last.
	slices.SortFunc(out.Hosts.Sites, func(a, b IncidentSite) int {
		if (a.Site == "") != (b.Site == "") {
			return cmp.Compare(b.Site, a.Site)
		}
		return cmp.Compare(a.Site, b.Site)
	})
	if len(hs) > 0 {
		out.Hosts.Actions = []string{"mailwarden hosts disinfect " + hs[0].IP.String() + " " + note,
			"mailwarden hosts timeline --since 3d"}
	}
}

// incidentEvents reads the window's events once for the senders and
// the rate trips, and the last day's mailbox bursts.
func (s *Server) incidentEvents(ctx context.Context, now time.Time, out *Incident) error {
	evs, err := s.be.QueryEvents(ctx, store.EventFilter{Since: now.Add(-IncidentWindow), Limit: incidentEvents})
	if err != nil {
		return s.failed("reading the last hour's events", err)
	}
	senders, users, clients, trips := map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}
	n := 0
	for _, e := range evs {
		if e.Kind == store.EventAdmin {
			continue
		}
		n++
		if e.Sender != "" {
			senders[e.Sender]++
		}
		if e.User != "" {
			users[e.User]++
		}
		if e.Client != "" {
			clients[e.Client]++
		}
		if e.Kind == store.EventRateTrip {
			out.RateTrips.Trips++
			key := cmp.Or(e.User, e.Sender, e.Client)
			trips[key]++
		}
	}
	out.Senders = IncidentSenders{Events: n, Senders: topCounts(senders), Users: topCounts(users),
		Clients: topCounts(clients), Truncated: len(evs) == incidentEvents, Actions: []string{}}
	if len(out.Senders.Users) > 0 {
		out.Senders.Actions = append(out.Senders.Actions, "mailwarden freeze on --user "+shellWord(out.Senders.Users[0].Key)+" "+note)
	}
	if len(out.Senders.Senders) > 0 {
		if _, dom, ok := strings.Cut(out.Senders.Senders[0].Key, "@"); ok && dom != "" {
			out.Senders.Actions = append(out.Senders.Actions, "mailwarden freeze on --domain "+shellWord(dom)+" "+note)
		}
	}
	out.Senders.Actions = append(out.Senders.Actions, "mailwarden events --since 1h")
	out.RateTrips.ByKey = topCounts(trips)
	out.RateTrips.Actions = []string{"mailwarden events --kind rate_trip --since 1h"}
	if len(out.RateTrips.ByKey) > 0 {
		out.RateTrips.Actions = append(out.RateTrips.Actions, "mailwarden latch list")
	}
	bursts, err := s.be.QueryEvents(ctx, store.EventFilter{Since: now.Add(-24 * time.Hour), Kind: store.EventMailbox, Limit: incidentTop})
	if err != nil {
		return s.failed("reading the mailbox events", err)
	}
	out.Mailboxes.Bursts = []Event{}
	for _, e := range bursts {
		out.Mailboxes.Bursts = append(out.Mailboxes.Bursts, EventFromStore(e))
	}
	return nil
}

func topCounts(m map[string]int) []mtaqueue.Count {
	out := make([]mtaqueue.Count, 0, len(m))
	for k, n := range m {
		out = append(out, mtaqueue.Count{Key: k, Messages: n})
	}
	slices.SortFunc(out, func(a, b mtaqueue.Count) int {
		return cmp.Or(cmp.Compare(b.Messages, a.Messages), cmp.Compare(a.Key, b.Key))
	})
	return out[:min(len(out), incidentTop)]
}

func (s *Server) incidentQueue(ctx context.Context, out *Incident) {
	q := &out.Queue
	q.Actions = []string{}
	if s.queue.Watch == nil {
		q.Error = "not available: the MTA queue is not configured in this daemon"
		return
	}
	st, err := s.QueueStatus(ctx)
	if err != nil {
		q.Error = "not available: " + err.Error()
		return
	}
	q.Available, q.Time, q.AgeSeconds, q.Summary = st.Available, st.Time, st.AgeSeconds, st.Summary
	if !st.Available {
		q.Error = cmp.Or(st.Error, "not available: the queue has not been listed yet")
		if !strings.HasPrefix(q.Error, "not available") && !strings.HasPrefix(q.Error, "queue not available") {
			q.Error = "not available: " + q.Error
		}
		return
	}
	q.Actions = append(q.Actions, "mailwarden queue summary")
	if sum := st.Summary; sum != nil && len(sum.BySender) > 0 {
		top := shellWord(sum.BySender[0].Key)
		q.Actions = append(q.Actions, "mailwarden queue purge --sender "+top,
			"mailwarden queue purge --sender "+top+" --apply")
	}
}

func (s *Server) incidentMailboxes(ctx context.Context, now time.Time, out *Incident) {
	m := &out.Mailboxes
	m.New = []string{}
	if s.mailboxes == nil {
		m.Error = "not available: the daemon does not read the mailbox files (set mailbox: in the config)"
		m.Actions = []string{"mailwarden mailbox audit"}
		return
	}
	m.MailboxNews = s.mailboxes(ctx, now)
	if m.New == nil {
		m.New = []string{}
	}
	switch {
	case !m.Available:
		m.Actions = []string{"mailwarden mailbox audit"}
	case !m.HasSnapshot:
		m.Actions = []string{"mailwarden mailbox snapshot", "mailwarden mailbox audit"}
	case m.NewCount > 0:
		m.Actions = []string{"mailwarden mailbox audit --json > audit.json",
			"mailwarden mailbox remove --from-audit audit.json", "mailwarden mailbox remove --from-audit audit.json --apply"}
	default:
		m.Actions = []string{"mailwarden mailbox audit"}
	}
}

// plainWord is a word a shell takes as it is.
var plainWord = regexp.MustCompile(`^[A-Za-z0-9@%+=:,./_-]+$`)

// shellWord quotes s for a POSIX shell when it needs it, so a command
// shown with an attacker's sender address in it is still one word and
// runs nothing else when pasted.
func shellWord(s string) string {
	if plainWord.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (s *Server) incident(w http.ResponseWriter, r *http.Request) {
	serveReport(w, r, s.Incident)
}

// Incident returns the daemon's incident report.
func (c *Client) Incident(ctx context.Context) (Incident, error) {
	var out Incident
	return out, c.do(ctx, http.MethodGet, "/v1/incident", nil, nil, &out)
}
