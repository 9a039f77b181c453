package web

import (
	"encoding/csv"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"mailwarden/internal/hosts"
)

// csvWriter writes an export. Cells are neutralised against formula
// injection: HELO names and addresses are chosen by whoever connects, and
// a spreadsheet would run "=cmd|..." as a formula (OWASP, "CSV
// Injection").
type csvWriter struct {
	w *csv.Writer
}

// startCSV sends the headers of a download named name-TIME.csv and the
// header row.
func (s *Server) startCSV(w http.ResponseWriter, name string, header ...string) *csvWriter {
	file := fmt.Sprintf("mailwarden-%s-%s.csv", name, s.now().UTC().Format("20060102-150405"))
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+file+`"`)
	c := &csvWriter{w: csv.NewWriter(w)}
	c.row(header...)
	return c
}

func (c *csvWriter) row(cells ...string) {
	for i, v := range cells {
		cells[i] = neutralise(v)
	}
	c.w.Write(cells)
}

func (c *csvWriter) flush() error {
	c.w.Flush()
	return c.w.Error()
}

// neutralise prefixes a cell a spreadsheet would read as a formula with
// an apostrophe, which makes it text.
func neutralise(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}

func csvTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func (s *Server) hostsCSV(w http.ResponseWriter, r *http.Request, u *sessionUser) {
	if s.hosts == nil {
		s.errorPage(w, r, u, http.StatusServiceUnavailable, "Host registry off",
			"The host registry is not configured in this daemon.")
		return
	}
	q, err := parseHostQuery(r.URL.Query())
	if err != nil {
		s.errorPage(w, r, u, http.StatusBadRequest, "Bad filter", err.Error())
		return
	}
	hs, err := s.listHosts(r.Context(), q)
	if err != nil {
		s.serverError(w, r, u, "listing hosts", err)
		return
	}
	header := append([]string{"ip", "site", "status"}, hosts.Kinds...)
	header = append(header, "first_seen", "last_seen", "last_user", "trap_helo", "trap_mail_from", "trap_dst")
	c := s.startCSV(w, "hosts", header...)
	for _, h := range hs {
		row := []string{h.IP.String(), h.Site, h.Status}
		for _, k := range hosts.Kinds {
			row = append(row, strconv.Itoa(h.Evidence[k]))
		}
		row = append(row, csvTime(h.FirstSeen), csvTime(h.LastSeen), h.LastLogin.User,
			h.Trap.LastHelo, h.Trap.LastMailFrom, h.Trap.LastDst)
		c.row(row...)
	}
	if err := c.flush(); err != nil {
		s.log.Warn("web: writing the hosts CSV failed", "err", err)
	}
}

func (s *Server) latchesCSV(w http.ResponseWriter, r *http.Request, u *sessionUser) {
	ls, err := s.listLatches(r, r.URL.Query().Get("all") == "1", 0)
	if err != nil {
		s.serverError(w, r, u, "listing latches", err)
		return
	}
	c := s.startCSV(w, "latches", "id", "kind", "key", "rule", "reason", "site", "evidence", "count",
		"first_seen", "last_seen", "expires", "status", "cleared_at", "cleared_by", "clear_note")
	for _, l := range ls {
		c.row(l.ID, l.Kind, l.Key, l.Rule, l.Reason, l.Site, l.Evidence, strconv.Itoa(l.Count),
			csvTime(l.FirstSeen), csvTime(l.LastSeen), csvTime(l.Expires), l.Status,
			csvTime(l.ClearedAt), l.ClearedBy, l.ClearNote)
	}
	if err := c.flush(); err != nil {
		s.log.Warn("web: writing the latches CSV failed", "err", err)
	}
}

func (s *Server) eventsCSV(w http.ResponseWriter, r *http.Request, u *sessionUser) {
	f, _, err := parseEventQuery(r.URL.Query(), maxEventRows)
	if err != nil {
		s.errorPage(w, r, u, http.StatusBadRequest, "Bad filter", err.Error())
		return
	}
	evs, err := s.store.QueryEvents(r.Context(), f)
	if err != nil {
		s.serverError(w, r, u, "querying events", err)
		return
	}
	c := s.startCSV(w, "events", "id", "time", "kind", "check", "action", "client", "site", "user",
		"sender", "recipients", "queue_id", "reason")
	for _, e := range evs {
		c.row(strconv.FormatInt(e.ID, 10), csvTime(e.Time), e.Kind, e.Check, e.Action, e.Client, e.Site,
			e.User, e.Sender, strings.Join(e.Recipients, " "), e.QueueID, e.Reason)
	}
	if err := c.flush(); err != nil {
		s.log.Warn("web: writing the events CSV failed", "err", err)
	}
}
