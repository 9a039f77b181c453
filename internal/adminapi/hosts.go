package adminapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"time"

	"mailwarden/internal/hosts"
)

// Host is a suspect host as the API shows it (hosts.Host).
type Host struct {
	IP        string    `json:"ip"`
	Site      string    `json:"site,omitempty"`
	Internal  bool      `json:"internal"`
	Status    string    `json:"status"`
	FirstSeen time.Time `json:"first_seen,omitzero"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
	// Evidence counts by kind: trap, forgery, virus, rate_trip, latch,
	// backdoor. Kinds never seen are absent.
	Evidence      map[string]int `json:"evidence"`
	Trap          *TrapInfo      `json:"trap,omitempty"`
	OpenPorts     []OpenPort     `json:"open_ports"`
	ActiveLatches []Latch        `json:"active_latches"`
	LastLogin     *MailLogin     `json:"last_login,omitempty"`
	Notes         []HostNote     `json:"notes"`
	Disinfections []Disinfection `json:"disinfections"`
	// Events are the host's newest events; only GET /v1/hosts/{ip}
	// fills them.
	Events []Event `json:"events,omitempty"`
}

// TrapInfo is what the worm trap recorded about a host. The strings are
// what the host sent and are attacker-controlled.
type TrapInfo struct {
	Count        int       `json:"count"`
	FirstSeen    time.Time `json:"first_seen"`
	LastSeen     time.Time `json:"last_seen"`
	LastHelo     string    `json:"last_helo,omitempty"`
	LastMailFrom string    `json:"last_mail_from,omitempty"`
	LastDst      string    `json:"last_dst,omitempty"`
}

// OpenPort is a backdoor port the scanner found on a host.
type OpenPort struct {
	Port        int       `json:"port"`
	Open        bool      `json:"open"`
	FirstOpen   time.Time `json:"first_open,omitzero"`
	LastChecked time.Time `json:"last_checked"`
}

// MailLogin is the last mailbox login from a host.
type MailLogin struct {
	User    string    `json:"user"`
	Service string    `json:"service,omitempty"`
	Time    time.Time `json:"time"`
}

// HostNote is an administrator's note on a host.
type HostNote struct {
	By   string    `json:"by"`
	Text string    `json:"text"`
	Time time.Time `json:"time"`
}

// Disinfection records that an administrator declared a host clean.
type Disinfection struct {
	By   string    `json:"by"`
	Note string    `json:"note"`
	Time time.Time `json:"time"`
}

// TimelineEntry is one line of the outbreak timeline (hosts.Entry).
type TimelineEntry struct {
	Time       time.Time `json:"time"`
	IP         string    `json:"ip"`
	Site       string    `json:"site,omitempty"`
	Kind       string    `json:"kind"`
	Detail     string    `json:"detail,omitempty"`
	User       string    `json:"user,omitempty"`
	Recipients []string  `json:"recipients,omitempty"`
}

// NoteRequest is the body of POST /v1/hosts/{ip}/note.
type NoteRequest struct {
	Text string `json:"text"`
}

// DisinfectRequest is the body of POST /v1/hosts/{ip}/disinfect.
type DisinfectRequest struct {
	Note string `json:"note"`
}

// DisinfectResult is the answer to POST /v1/hosts/{ip}/disinfect.
type DisinfectResult struct {
	IP string `json:"ip"`
	// Cleared are the latches the disinfection cleared.
	Cleared []Latch `json:"cleared"`
}

// HostFromRegistry converts a host, judging its latches at now.
func HostFromRegistry(h hosts.Host, now time.Time) Host {
	out := Host{IP: h.IP.String(), Site: h.Site, Internal: h.Internal, Status: h.Status,
		FirstSeen: h.FirstSeen, LastSeen: h.LastSeen, Evidence: h.Evidence,
		OpenPorts: []OpenPort{}, ActiveLatches: []Latch{}, Notes: []HostNote{}, Disinfections: []Disinfection{}}
	if out.Evidence == nil {
		out.Evidence = map[string]int{}
	}
	if t := h.Trap; t.Count > 0 {
		out.Trap = &TrapInfo{Count: t.Count, FirstSeen: t.FirstSeen, LastSeen: t.LastSeen,
			LastHelo: t.LastHelo, LastMailFrom: t.LastMailFrom, LastDst: t.LastDst}
	}
	for _, p := range h.OpenPorts {
		out.OpenPorts = append(out.OpenPorts, OpenPort{Port: p.Port, Open: p.Open, FirstOpen: p.FirstOpen, LastChecked: p.LastChecked})
	}
	for _, l := range h.ActiveLatches {
		out.ActiveLatches = append(out.ActiveLatches, LatchFromStore(l, now))
	}
	if l := h.LastLogin; l.User != "" {
		out.LastLogin = &MailLogin{User: l.User, Service: l.Service, Time: l.Time}
	}
	for _, n := range h.Notes {
		out.Notes = append(out.Notes, HostNote{By: n.By, Text: n.Text, Time: n.Time})
	}
	for _, d := range h.Disinfections {
		out.Disinfections = append(out.Disinfections, Disinfection{By: d.By, Note: d.Note, Time: d.Time})
	}
	for _, e := range h.Events {
		out.Events = append(out.Events, EventFromStore(e))
	}
	return out
}

// hostStatuses are the values of GET /v1/hosts?status=.
var hostStatuses = []string{hosts.StatusSuspect, hosts.StatusLatched, hosts.StatusDisinfected}

// noHosts answers when the daemon was started without a host registry.
func (s *Server) noHosts(w http.ResponseWriter) bool {
	if s.hosts == nil {
		writeError(w, http.StatusServiceUnavailable, "the host registry is not configured in this daemon")
		return true
	}
	return false
}

// hostIP parses the {ip} path value.
func hostIP(w http.ResponseWriter, r *http.Request) (netip.Addr, bool) {
	s := r.PathValue("ip")
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%q is not an IP address", s))
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func (s *Server) listHosts(w http.ResponseWriter, r *http.Request) {
	if s.noHosts(w) {
		return
	}
	q := r.URL.Query()
	f := hosts.HostFilter{Site: q.Get("site"), Status: q.Get("status")}
	var err error
	if f.Status != "" && !slices.Contains(hostStatuses, f.Status) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("status %q: want suspect, latched or disinfected", f.Status))
		return
	}
	if f.Since, err = parseTime("since", q.Get("since")); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if f.Limit, err = parseLimit(q.Get("limit"), 0, 0); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	hs, err := s.hosts.List(r.Context(), f)
	if err != nil {
		s.storeError(w, "listing hosts", err)
		return
	}
	now := s.now()
	writeList(w, hs, func(h hosts.Host) Host { return HostFromRegistry(h, now) })
}

func (s *Server) getHost(w http.ResponseWriter, r *http.Request) {
	if s.noHosts(w) {
		return
	}
	ip, ok := hostIP(w, r)
	if !ok {
		return
	}
	h, err := s.hosts.Get(r.Context(), ip)
	if errors.Is(err, hosts.ErrUnknownHost) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("nothing is known about %s (hosts list shows suspect hosts)", ip))
		return
	}
	if err != nil {
		s.storeError(w, "reading host "+ip.String(), err)
		return
	}
	writeJSON(w, http.StatusOK, HostFromRegistry(h, s.now()))
}

func (s *Server) noteHost(w http.ResponseWriter, r *http.Request) {
	ip, ok := hostIP(w, r)
	if !ok {
		return
	}
	serveAction(w, r, func(req NoteRequest) (HostNote, error) {
		return s.NoteHost(r.Context(), s.who(r), ip, req.Text)
	})
}

func (s *Server) disinfectHost(w http.ResponseWriter, r *http.Request) {
	ip, ok := hostIP(w, r)
	if !ok {
		return
	}
	serveAction(w, r, func(req DisinfectRequest) (DisinfectResult, error) {
		return s.DisinfectHost(r.Context(), s.who(r), ip, req.Note)
	})
}

func (s *Server) timeline(w http.ResponseWriter, r *http.Request) {
	if s.noHosts(w) {
		return
	}
	q := r.URL.Query()
	since, err := parseTime("since", q.Get("since"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	limit, err := parseLimit(q.Get("limit"), 0, 0)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	es, err := s.hosts.Timeline(r.Context(), since, limit)
	if err != nil {
		s.storeError(w, "building the timeline", err)
		return
	}
	writeList(w, es, func(e hosts.Entry) TimelineEntry {
		return TimelineEntry{Time: e.Time, IP: e.IP, Site: e.Site, Kind: e.Kind,
			Detail: e.Detail, User: e.User, Recipients: e.Recipients}
	})
}

// Hosts lists suspect hosts matching f, newest evidence first.
func (c *Client) Hosts(ctx context.Context, f hosts.HostFilter) ([]Host, error) {
	q := url.Values{}
	setIf(q, "site", f.Site)
	setIf(q, "status", f.Status)
	if !f.Since.IsZero() {
		q.Set("since", f.Since.Format(time.RFC3339Nano))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out []Host
	return out, c.do(ctx, http.MethodGet, "/v1/hosts", q, nil, &out)
}

// Host returns everything known about ip; an address with no record is
// an *APIError matching store.ErrNotFound.
func (c *Client) Host(ctx context.Context, ip netip.Addr) (Host, error) {
	var out Host
	return out, c.do(ctx, http.MethodGet, "/v1/hosts/"+url.PathEscape(ip.String()), nil, nil, &out)
}

// NoteHost adds a note to ip; the daemon records the caller as its author.
func (c *Client) NoteHost(ctx context.Context, ip netip.Addr, text string) (HostNote, error) {
	var out HostNote
	return out, c.do(ctx, http.MethodPost, "/v1/hosts/"+url.PathEscape(ip.String())+"/note", nil, NoteRequest{Text: text}, &out)
}

// DisinfectHost declares ip clean with a note saying what was done, and
// returns the latches that were cleared.
func (c *Client) DisinfectHost(ctx context.Context, ip netip.Addr, note string) (DisinfectResult, error) {
	var out DisinfectResult
	return out, c.do(ctx, http.MethodPost, "/v1/hosts/"+url.PathEscape(ip.String())+"/disinfect", nil, DisinfectRequest{Note: note}, &out)
}

// Timeline returns the outbreak timeline from since, oldest first;
// limit 0 means all.
func (c *Client) Timeline(ctx context.Context, since time.Time, limit int) ([]TimelineEntry, error) {
	q := url.Values{}
	if !since.IsZero() {
		q.Set("since", since.Format(time.RFC3339Nano))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out []TimelineEntry
	return out, c.do(ctx, http.MethodGet, "/v1/timeline", q, nil, &out)
}
