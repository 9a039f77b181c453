package web

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"mailwarden/internal/config"
	"mailwarden/internal/hosts"
)

// hostSortKeys are the columns the hosts table sorts by, in column order:
// an evidence column for each of hosts.Kinds, as the rows have.
var hostSortKeys = slices.Concat([]string{"ip", "site", "status"}, hosts.Kinds,
	[]string{"first_seen", "last_seen", "user"})

// hostStatuses are the statuses the hosts table filters by.
var hostStatuses = []string{hosts.StatusSuspect, hosts.StatusLatched, hosts.StatusDisinfected}

// hostQuery is the hosts table's filter and order, from the URL.
type hostQuery struct {
	Site, Status string // "" for all
	Sort, Dir    string
}

// parseHostQuery reads the filter; an unknown status is an error, an
// unknown sort column or direction falls back to the default order.
func parseHostQuery(q url.Values) (hostQuery, error) {
	hq := hostQuery{Site: q.Get("site"), Status: q.Get("status"), Sort: q.Get("sort"), Dir: q.Get("dir")}
	if hq.Site == "all" {
		hq.Site = ""
	}
	if hq.Status == "all" {
		hq.Status = ""
	}
	if !slices.Contains(hostSortKeys, hq.Sort) {
		hq.Sort, hq.Dir = "last_seen", ""
	}
	if hq.Dir != "asc" && hq.Dir != "desc" {
		hq.Dir = defaultDir(hq.Sort)
	}
	if hq.Status != "" && !slices.Contains(hostStatuses, hq.Status) {
		st := hq.Status
		hq.Status = ""
		return hq, errors.New("unknown status " + strconv.Quote(st) + ": want suspect, latched or disinfected")
	}
	return hq, nil
}

// defaultDir puts the most interesting hosts first: most evidence, most
// recent; names and addresses read best ascending.
func defaultDir(key string) string {
	switch key {
	case "ip", "site", "status", "user":
		return "asc"
	}
	return "desc"
}

// encode returns the query string for q with another order.
func (q hostQuery) encode(sort, dir string) string {
	v := url.Values{}
	if q.Site != "" {
		v.Set("site", q.Site)
	}
	if q.Status != "" {
		v.Set("status", q.Status)
	}
	if sort != "" {
		v.Set("sort", sort)
		v.Set("dir", dir)
	}
	return v.Encode()
}

// Query is the current query string, for the rows, CSV and JSON links.
func (q hostQuery) Query() string { return q.encode(q.Sort, q.Dir) }

// filterOnly is the query string without the order, for the JSON API.
func (q hostQuery) filterOnly() string { return q.encode("", "") }

// column is one sortable column header.
type column struct {
	Key, Label string
	Href       string
	Sorted     string // "asc" or "desc" when the table is sorted by it
}

func (q hostQuery) columns() []column {
	labels := map[string]string{"ip": "IP", "site": "Site", "status": "Status", "trap": "Trap",
		"forgery": "Forgery", "virus": "Virus", "rate_trip": "Rate", "latch": "Latch",
		"refused_while_latched": "Refused while latched", "backdoor": "Backdoor",
		"first_seen": "First seen", "last_seen": "Last seen", "user": "Last mail user"}
	out := make([]column, 0, len(hostSortKeys))
	for _, k := range hostSortKeys {
		c := column{Key: k, Label: cmp.Or(labels[k], k)}
		dir := defaultDir(k)
		if k == q.Sort {
			c.Sorted = q.Dir
			dir = "asc"
			if q.Dir == "asc" {
				dir = "desc"
			}
		}
		c.Href = "/hosts?" + q.encode(k, dir)
		out = append(out, c)
	}
	return out
}

// link is an external look-up link.
type link struct {
	Name, URL string
}

// hostRow is one row of the hosts table.
type hostRow struct {
	IP, Site, Status    string
	Evidence            []evidence
	FirstSeen, LastSeen time.Time
	LastUser            string
	Lookups             []link
}

// evidence is one kind's count.
type evidence struct {
	Kind string
	N    int
}

func evidenceOf(h hosts.Host) []evidence {
	out := make([]evidence, 0, len(hosts.Kinds))
	for _, k := range hosts.Kinds {
		out = append(out, evidence{Kind: k, N: h.Evidence[k]})
	}
	return out
}

// hostsView is the hosts page's data.
type hostsView struct {
	Off      bool // no host registry
	Error    string
	Query    hostQuery
	Sites    []string
	Statuses []string
	Columns  []column
	Rows     []hostRow
	Refresh  int // seconds
	Updated  time.Time
}

// RowsURL, CSVURL and JSONURL are the table's other forms.
func (v hostsView) RowsURL() string { return "/hosts/rows?" + v.Query.Query() }
func (v hostsView) CSVURL() string  { return "/hosts.csv?" + v.Query.Query() }
func (v hostsView) JSONURL() string { return "/api/v1/hosts?" + v.Query.filterOnly() }

// listHosts returns the hosts matching q in q's order.
func (s *Server) listHosts(ctx context.Context, q hostQuery) ([]hosts.Host, error) {
	hs, err := s.hosts.List(ctx, hosts.HostFilter{Site: q.Site, Status: q.Status})
	if err != nil {
		return nil, err
	}
	by := hostOrder(q.Sort)
	slices.SortStableFunc(hs, func(a, b hosts.Host) int {
		c := by(a, b)
		if q.Dir == "desc" {
			c = -c
		}
		if c == 0 {
			c = a.IP.Compare(b.IP)
		}
		return c
	})
	return hs, nil
}

func hostOrder(key string) func(a, b hosts.Host) int {
	switch key {
	case "ip":
		return func(a, b hosts.Host) int { return a.IP.Compare(b.IP) }
	case "site":
		return func(a, b hosts.Host) int { return strings.Compare(a.Site, b.Site) }
	case "status":
		return func(a, b hosts.Host) int { return strings.Compare(a.Status, b.Status) }
	case "first_seen":
		return func(a, b hosts.Host) int { return a.FirstSeen.Compare(b.FirstSeen) }
	case "user":
		return func(a, b hosts.Host) int { return strings.Compare(a.LastLogin.User, b.LastLogin.User) }
	case "last_seen":
		return func(a, b hosts.Host) int { return a.LastSeen.Compare(b.LastSeen) }
	}
	// An evidence kind.
	return func(a, b hosts.Host) int { return cmp.Compare(a.Evidence[key], b.Evidence[key]) }
}

// hostsData builds the hosts view for r.
func (s *Server) hostsData(r *http.Request) (hostsView, int) {
	cfg := s.config()
	v := hostsView{Statuses: hostStatuses, Refresh: int(cfg.Web.Refresh.D() / time.Second), Updated: s.now()}
	for _, site := range cfg.Sites {
		v.Sites = append(v.Sites, site.Name)
	}
	q, err := parseHostQuery(r.URL.Query())
	v.Query = q
	v.Columns = q.columns()
	if err != nil {
		v.Error = err.Error()
		return v, http.StatusBadRequest
	}
	if s.hosts == nil {
		v.Off = true
		return v, http.StatusOK
	}
	hs, err := s.listHosts(r.Context(), q)
	if err != nil {
		s.log.Error("web: listing hosts failed", "err", err)
		v.Error = "Listing the hosts failed; the daemon's log has the details."
		return v, http.StatusInternalServerError
	}
	for _, h := range hs {
		v.Rows = append(v.Rows, hostRow{IP: h.IP.String(), Site: h.Site, Status: h.Status,
			Evidence: evidenceOf(h), FirstSeen: h.FirstSeen, LastSeen: h.LastSeen,
			LastUser: h.LastLogin.User, Lookups: lookups(cfg.Web.LookupURLs, h.IP)})
	}
	return v, http.StatusOK
}

func (s *Server) hostsPage(w http.ResponseWriter, r *http.Request, u *sessionUser) {
	v, status := s.hostsData(r)
	s.render(w, r, status, "hosts.html", "Hosts", "hosts", u, v)
}

// hostRows answers the table body alone, which hosts.js swaps in.
func (s *Server) hostRows(w http.ResponseWriter, r *http.Request, u *sessionUser) {
	v, status := s.hostsData(r)
	s.execute(w, status, "hosts.html", "hostrows", v)
}

// lookups fills the configured look-up URLs for ip. The address is
// escaped for where "{ip}" stands (path or query), and only http and
// https links are made, whatever the configuration says.
func lookups(tmpls []config.LookupURL, ip netip.Addr) []link {
	var out []link
	for _, l := range tmpls {
		if u, ok := lookupURL(l.URL, ip.String()); ok {
			out = append(out, link{Name: l.Name, URL: u})
		}
	}
	return out
}

func lookupURL(tmpl, ip string) (string, bool) {
	var b strings.Builder
	rest := tmpl
	for {
		i := strings.Index(rest, "{ip}")
		if i < 0 {
			b.WriteString(rest)
			break
		}
		b.WriteString(rest[:i])
		if strings.ContainsAny(b.String(), "?#") {
			b.WriteString(url.QueryEscape(ip))
		} else {
			b.WriteString(url.PathEscape(ip))
		}
		rest = rest[i+len("{ip}"):]
	}
	u, err := url.Parse(b.String())
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", false
	}
	return u.String(), true
}

// hostView is the host page's data.
type hostView struct {
	Off      bool
	IP       string
	Host     hosts.Host
	Evidence []evidence
	Lookups  []link
}

func (s *Server) hostPage(w http.ResponseWriter, r *http.Request, u *sessionUser) {
	if s.hosts == nil {
		s.render(w, r, http.StatusServiceUnavailable, "host.html", "Host", "hosts", u, hostView{Off: true})
		return
	}
	ip, err := netip.ParseAddr(r.PathValue("ip"))
	if err != nil || ip.Zone() != "" {
		s.notFound(w, r, u)
		return
	}
	ip = ip.Unmap()
	h, err := s.hosts.Get(r.Context(), ip)
	if errors.Is(err, hosts.ErrUnknownHost) {
		s.errorPage(w, r, u, http.StatusNotFound, "Unknown host",
			"Nothing is known about "+ip.String()+": no evidence, notes or disinfections.")
		return
	}
	if err != nil {
		s.serverError(w, r, u, "reading host "+ip.String(), err)
		return
	}
	v := hostView{IP: ip.String(), Host: h, Evidence: evidenceOf(h),
		Lookups: lookups(s.config().Web.LookupURLs, ip)}
	s.render(w, r, http.StatusOK, "host.html", ip.String(), "hosts", u, v)
}

// hostCounts counts hosts by status for the overview.
func (s *Server) hostCounts(ctx context.Context) (map[string]int, error) {
	hs, err := s.hosts.List(ctx, hosts.HostFilter{})
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, h := range hs {
		out[h.Status]++
	}
	return out, nil
}
