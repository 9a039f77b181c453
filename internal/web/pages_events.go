package web

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/events"
	"mailwarden/internal/store"
)

// Event-list sizes: the page's default and the most one page or CSV
// export holds (the admin API's own bound).
const (
	defaultEventRows = 100
	maxEventRows     = adminapi.MaxEventLimit
)

// eventKinds are the kinds the events page filters by: all of them.
func eventKinds() []string { return events.Kinds() }

// eventForm is the events filter as the form shows it.
type eventForm struct {
	Since, Until string
	Kind         string
	Host, User   string
	Limit        int
}

// Query is the filter as a query string, for the CSV link.
func (f eventForm) Query() string {
	v := url.Values{}
	for k, s := range map[string]string{"since": f.Since, "until": f.Until, "kind": f.Kind, "host": f.Host, "user": f.User} {
		if s != "" {
			v.Set(k, s)
		}
	}
	v.Set("limit", strconv.Itoa(f.Limit))
	return v.Encode()
}

// parseEventQuery reads the events filter. Times are RFC 3339 or what a
// datetime-local field sends (local time, to the minute or second).
func parseEventQuery(q url.Values, defLimit int) (store.EventFilter, eventForm, error) {
	form := eventForm{Since: strings.TrimSpace(q.Get("since")), Until: strings.TrimSpace(q.Get("until")),
		Kind: q.Get("kind"), Host: strings.TrimSpace(q.Get("host")), User: strings.TrimSpace(q.Get("user")),
		Limit: defLimit}
	if form.Kind == "all" {
		form.Kind = ""
	}
	var f store.EventFilter
	var errs []string
	var err error
	if f.Since, err = parseFormTime("since", form.Since); err != nil {
		errs = append(errs, err.Error())
	} else if !f.Since.IsZero() {
		form.Since = f.Since.Local().Format(formTimeLayout)
	}
	if f.Until, err = parseFormTime("until", form.Until); err != nil {
		errs = append(errs, err.Error())
	} else if !f.Until.IsZero() {
		form.Until = f.Until.Local().Format(formTimeLayout)
	}
	if form.Kind != "" && !slices.Contains(eventKinds(), form.Kind) {
		errs = append(errs, fmt.Sprintf("unknown event kind %q", form.Kind))
	}
	f.Kind = form.Kind
	if form.Host != "" {
		a, err := netip.ParseAddr(form.Host)
		if err != nil || a.Zone() != "" {
			errs = append(errs, fmt.Sprintf("host %q is not an IP address", form.Host))
		} else {
			form.Host = a.Unmap().String()
			f.Client = form.Host
		}
	}
	f.User = form.User
	if s := strings.TrimSpace(q.Get("limit")); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxEventRows {
			errs = append(errs, fmt.Sprintf("limit %q: want a number from 1 to %d", s, maxEventRows))
		} else {
			form.Limit = n
		}
	}
	f.Limit = form.Limit
	if len(errs) > 0 {
		return f, form, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return f, form, nil
}

// formTimeLayout is how the filter form shows a time: what a
// datetime-local field takes.
const formTimeLayout = "2006-01-02T15:04:05"

func parseFormTime(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{formTimeLayout, "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%s %q is not a time such as 2006-01-02T15:04 or 2006-01-02T15:04:05Z", name, s)
}

// eventsView is the events page's data.
type eventsView struct {
	Form   eventForm
	Kinds  []string
	Error  string
	Events []store.Event
	Capped bool
}

// CSVURL is the CSV export of the same filter.
func (v eventsView) CSVURL() string { return "/events.csv?" + v.Form.Query() }

func (s *Server) eventsPage(w http.ResponseWriter, r *http.Request, u *sessionUser) {
	f, form, err := parseEventQuery(r.URL.Query(), defaultEventRows)
	v := eventsView{Form: form, Kinds: eventKinds()}
	if err != nil {
		// The form comes back with the error, so the administrator can
		// fix the value rather than start over.
		v.Error = err.Error()
		s.render(w, r, http.StatusBadRequest, "events.html", "Events", "events", u, v)
		return
	}
	if v.Events, err = s.store.QueryEvents(r.Context(), f); err != nil {
		s.serverError(w, r, u, "querying events", err)
		return
	}
	v.Capped = len(v.Events) >= f.Limit
	s.render(w, r, http.StatusOK, "events.html", "Events", "events", u, v)
}

// auditView is the audit page's data.
type auditView struct {
	Before string // the page's upper bound, as given
	Limit  int
	Error  string
	Events []store.Event
	Older  string // the link to the next older page, "" on the last
}

func (s *Server) auditPage(w http.ResponseWriter, r *http.Request, u *sessionUser) {
	q := r.URL.Query()
	v := auditView{Before: q.Get("before"), Limit: defaultEventRows}
	f := store.EventFilter{Kind: store.EventAdmin}
	var errs []string
	if v.Before != "" {
		t, err := parseFormTime("before", v.Before)
		if err != nil {
			errs = append(errs, err.Error())
		}
		f.Until = t
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > maxEventRows {
			errs = append(errs, fmt.Sprintf("limit %q: want a number from 1 to %d", l, maxEventRows))
		} else {
			v.Limit = n
		}
	}
	if len(errs) > 0 {
		v.Error = strings.Join(errs, "; ")
		s.render(w, r, http.StatusBadRequest, "audit.html", "Audit log", "audit", u, v)
		return
	}
	f.Limit = v.Limit
	evs, err := s.store.QueryEvents(r.Context(), f)
	if err != nil {
		s.serverError(w, r, u, "querying the audit log", err)
		return
	}
	v.Events = evs
	if len(evs) == v.Limit {
		// Paging by time: the next page ends where this one did. Events
		// are stored with millisecond times, so two in the same instant
		// across a page boundary are the only ones paging can skip.
		older := url.Values{"before": {evs[len(evs)-1].Time.Format(time.RFC3339Nano)},
			"limit": {strconv.Itoa(v.Limit)}}
		v.Older = "/audit?" + older.Encode()
	}
	s.render(w, r, http.StatusOK, "audit.html", "Audit log", "audit", u, v)
}
