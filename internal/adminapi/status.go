package adminapi

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"mailwarden/internal/avstatus"
	"mailwarden/internal/clamd"
	"mailwarden/internal/store"
)

// AntivirusState is what the daemon tells the admin API about virus
// scanning when GET /v1/status asks (Options.Antivirus).
type AntivirusState struct {
	Enabled bool
	// SignatureMaxAge is antivirus.signature_max_age; 0 means no limit.
	SignatureMaxAge time.Duration
	// Servers are the clamd servers as the client's health checks last
	// saw them.
	Servers []clamd.ServerStatus
}

// Status is the answer to GET /v1/status: a one-look report on the
// running daemon for a bad day.
type Status struct {
	Version       string    `json:"version"`
	Started       time.Time `json:"started,omitzero"`
	UptimeSeconds int64     `json:"uptime_seconds"`
	Freezes       []Freeze  `json:"freezes"`
	ActiveLatches int       `json:"active_latches"`
	// StateError is set when the freezes and latches could not be read
	// (the store is unreachable) and the daemon reports the store's
	// health (Options.Store): Freezes is then null and
	// ActiveLatches 0, meaning unknown, not none. The rest of the
	// report still comes, since a store outage is when it is needed.
	StateError string          `json:"state_error,omitempty"`
	Antivirus  AntivirusStatus `json:"antivirus"`
	// Store is absent when the server was given no Options.Store.
	Store *StoreStatus `json:"store,omitempty"`
}

// StoreStatus is whether the store can write, as the daemon's write
// probe last found (Options.Store), and what failed writes cost.
type StoreStatus struct {
	Backend string `json:"backend"`
	// Up is false while the store cannot write; Since is when the
	// current state began (the daemon's start for a store up since).
	Up    bool      `json:"up"`
	Since time.Time `json:"since,omitzero"`
	// Checked is when the probe last ran.
	Checked time.Time `json:"checked,omitzero"`
	// LastError is the most recent failed probe's error and LastErrorAt
	// its time, kept after the store writes again; empty if none failed.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// LostWrites counts the writes that failed since the daemon started;
	// WriteFailures splits them by kind ("triplet", "event", "latch" ...).
	// A backend that does not count them shows 0 and no kinds.
	LostWrites    uint64            `json:"lost_writes"`
	WriteFailures map[string]uint64 `json:"write_failures,omitempty"`
	// Warnings is what the store found wrong with its server's settings
	// at its last look, at start and every minute after (Redis: an
	// eviction policy that may drop latches and freezes, hash settings
	// that cost memory).
	Warnings []string `json:"warnings,omitempty"`
}

// AntivirusStatus is the antivirus part of Status.
type AntivirusStatus struct {
	Enabled bool `json:"enabled"`
	// SignatureMaxAgeSeconds is the staleness limit; 0 means none.
	SignatureMaxAgeSeconds int64         `json:"signature_max_age_seconds"`
	Servers                []ClamdServer `json:"servers"`
}

// ClamdServer is one clamd as the API shows it. The signature fields are
// absent when clamd's VERSION answer did not give them.
type ClamdServer struct {
	Addr                string    `json:"addr"`
	Up                  bool      `json:"up"`
	LastError           string    `json:"last_error,omitempty"`
	Checked             time.Time `json:"checked,omitzero"` // zero: not checked yet
	Engine              string    `json:"engine,omitempty"`
	SignatureVersion    int       `json:"signature_version,omitempty"`
	SignatureDate       time.Time `json:"signature_date,omitzero"`
	SignatureAgeSeconds int64     `json:"signature_age_seconds,omitempty"`
	// Stale is true when the signatures are older than the limit, as
	// judged for the signatures event (avstatus.Age).
	Stale bool `json:"stale"`
}

// ClamdServerFromStatus converts a server's status, judging its
// signatures' age at now against maxAge.
func ClamdServerFromStatus(s clamd.ServerStatus, maxAge time.Duration, now time.Time) ClamdServer {
	age, stale := avstatus.Age(s.Version, maxAge, now)
	return ClamdServer{
		Addr: s.Addr, Up: s.Up, LastError: s.LastError, Checked: s.Checked, Engine: s.Version.Engine,
		SignatureVersion: s.Version.DBVersion, SignatureDate: s.Version.DBTime,
		SignatureAgeSeconds: int64(age / time.Second), Stale: stale,
	}
}

// Status reports the daemon's version, uptime, freezes, the number of
// active latches, each clamd's health and signature age, and whether
// the store can write.
func (s *Server) Status(ctx context.Context) (Status, error) {
	now := s.now()
	out := Status{Version: s.version, Started: s.started, Freezes: []Freeze{},
		Antivirus: AntivirusStatus{Servers: []ClamdServer{}}}
	if !s.started.IsZero() {
		out.UptimeSeconds = int64(now.Sub(s.started) / time.Second)
	}
	if err := s.state(ctx, &out, now); err != nil {
		if s.store == nil {
			// No store health to report beside it: the error is the answer.
			return Status{}, s.failed("reading freezes and latches", err)
		}
		s.log.Warn("admin: status without freezes and latches", "err", err)
		out.Freezes, out.ActiveLatches, out.StateError = nil, 0, err.Error()
	}
	if s.antivirus != nil {
		av := s.antivirus()
		out.Antivirus.Enabled = av.Enabled
		out.Antivirus.SignatureMaxAgeSeconds = int64(av.SignatureMaxAge / time.Second)
		for _, st := range av.Servers {
			out.Antivirus.Servers = append(out.Antivirus.Servers, ClamdServerFromStatus(st, av.SignatureMaxAge, now))
		}
	}
	if s.store != nil {
		st := s.store()
		out.Store = &st
	}
	return out, nil
}

// state fills in the freezes and the active latch count from the store.
func (s *Server) state(ctx context.Context, out *Status, now time.Time) error {
	fs, err := s.be.ListFreezes(ctx)
	if err != nil {
		return fmt.Errorf("listing freezes: %w", err)
	}
	for _, f := range fs {
		out.Freezes = append(out.Freezes, FreezeFromStore(f))
	}
	ls, err := s.be.ListLatches(ctx, store.LatchFilter{Active: true}, now)
	if err != nil {
		return fmt.Errorf("listing active latches: %w", err)
	}
	out.ActiveLatches = len(ls)
	return nil
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	serveReport(w, r, s.Status)
}

// Status returns the daemon's status report.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var out Status
	return out, c.do(ctx, http.MethodGet, "/v1/status", nil, nil, &out)
}
