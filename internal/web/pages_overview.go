package web

import (
	"net/http"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/hosts"
	"mailwarden/internal/series"
)

// overviewView is the overview page's data.
type overviewView struct {
	Counts    []kindCount
	Charts    []chart
	SeriesOff bool
	Status    adminapi.Status
	StatusErr string
	HostsOff  bool
	HostsErr  string
	Suspect   int
	Latched   int
	Cleaned   int
	// MaxAge is antivirus.signature_max_age, shown beside stale warnings.
	MaxAge time.Duration
	Queue  queueCard
}

// kindCount is one kind's total over the charted span.
type kindCount struct {
	Kind, Label string
	Total       int64
	Known       bool // false: no series recorder, the total is unknown
}

// ClamdAge is a server's signature age.
func (v overviewView) ClamdAge(c adminapi.ClamdServer) time.Duration {
	return time.Duration(c.SignatureAgeSeconds) * time.Second
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request, u *sessionUser) {
	now := s.now()
	v := overviewView{}
	if s.series == nil {
		v.SeriesOff = true
		for _, k := range series.Kinds() {
			v.Counts = append(v.Counts, kindCount{Kind: k, Label: kindLabel(k)})
		}
	} else {
		for _, sr := range s.series.Snapshot(now) {
			v.Counts = append(v.Counts, kindCount{Kind: sr.Kind, Label: kindLabel(sr.Kind), Total: sr.Total, Known: true})
			v.Charts = append(v.Charts, newChart(sr, s.series.Step()))
		}
	}
	st, err := s.admin.Status(r.Context())
	if err != nil {
		s.log.Error("web: reading the daemon status failed", "err", err)
		v.StatusErr = err.Error()
	}
	v.Status = st
	v.MaxAge = time.Duration(st.Antivirus.SignatureMaxAgeSeconds) * time.Second
	if s.hosts == nil {
		v.HostsOff = true
	} else if counts, err := s.hostCounts(r.Context()); err != nil {
		s.log.Error("web: counting hosts failed", "err", err)
		v.HostsErr = "Counting the hosts failed; the daemon's log has the details."
	} else {
		v.Suspect, v.Latched, v.Cleaned = counts[hosts.StatusSuspect], counts[hosts.StatusLatched], counts[hosts.StatusDisinfected]
	}
	v.Queue = s.queueCardFor(r.Context())
	s.render(w, r, http.StatusOK, "overview.html", "Overview", "overview", u, v)
}
