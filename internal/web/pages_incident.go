package web

import (
	"net/http"

	"mailwarden/internal/adminapi"
)

// incidentView is the incident page's data: the admin API's incident
// report, or why it could not be made.
type incidentView struct {
	Incident adminapi.Incident
	Error    string
}

// incidentPage shows the worst day on one screen, as `mailwarden
// incident` does. Every section links admins to the page or form that
// acts on it; viewers see the same report without them.
func (s *Server) incidentPage(w http.ResponseWriter, r *http.Request, u *sessionUser) {
	in, err := s.admin.Incident(r.Context())
	v := incidentView{Incident: in}
	if err != nil {
		s.log.Error("web: making the incident report failed", "err", err)
		v.Error = "The incident report could not be made; the daemon's log has the details."
	}
	s.render(w, r, http.StatusOK, "incident.html", "Incident", "incident", u, v)
}
