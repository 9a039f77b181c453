package adminapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"mailwarden/internal/config"
	"mailwarden/internal/events"
	"mailwarden/internal/scan"
)

// ScanFunc runs a backdoor-port scan of targets (nil: every configured
// range) and returns its summary and findings. It refuses targets
// outside the configured ranges with scan.ErrOutsideRange.
type ScanFunc func(ctx context.Context, targets []netip.Prefix) (scan.Summary, []scan.Finding, error)

// ScanRequest is the body of POST /v1/scan.
type ScanRequest struct {
	// Ranges are CIDR networks or addresses; empty scans every
	// configured range.
	Ranges []string `json:"ranges"`
}

// ScanResult is the answer to POST /v1/scan. Only open ports are
// listed: a /16 has 65,534 closed ones.
type ScanResult struct {
	Probed          int        `json:"probed"`
	Open            int        `json:"open"`
	Closed          int        `json:"closed"`
	Errors          int        `json:"errors"`
	DurationSeconds float64    `json:"duration_seconds"`
	OpenPorts       []ScanOpen `json:"open_ports"`
}

// ScanOpen is one open port a scan found.
type ScanOpen struct {
	IP   string    `json:"ip"`
	Port int       `json:"port"`
	Time time.Time `json:"time"`
}

// runScan scans the ranges asked for. It answers when the scan is done,
// which for a large range takes minutes, so the write deadline is lifted.
func (s *Server) runScan(w http.ResponseWriter, r *http.Request) {
	if s.scan == nil {
		writeError(w, http.StatusServiceUnavailable, "the scanner is not configured in this daemon (scan.ranges is empty)")
		return
	}
	var req ScanRequest
	if err := decode(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var targets []netip.Prefix
	for _, t := range req.Ranges {
		p, err := config.ParsePrefix(t)
		if err != nil || !p.IsValid() {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("%q is not a network such as 10.1.0.0/24 or an address", t))
			return
		}
		targets = append(targets, p.Prefix)
	}
	// Errors here mean only that the deadline stays; the scan still runs.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	sum, findings, err := s.scan(r.Context(), targets)
	switch {
	case errors.Is(err, scan.ErrOutsideRange), errors.Is(err, scan.ErrTooLarge), errors.Is(err, scan.ErrInvalidTarget):
		writeError(w, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		s.log.Error("admin API: scan failed", "err", err)
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("scanning: %v", err))
		return
	}
	what := "the configured ranges"
	if len(req.Ranges) > 0 {
		what = strings.Join(req.Ranges, ", ")
	}
	// The scan itself is done; its record is the audit entry. A failure
	// to record it does not undo the findings the caller is owed.
	if err := s.events.Audit(r.Context(), events.Admin{Who: s.who(r), Action: "scan",
		Reason: fmt.Sprintf("scanned %s: %d probed, %d open", what, sum.Probed, sum.Open)}, nil); err != nil {
		s.log.Error("admin API: recording the scan failed", "err", err)
	}
	out := ScanResult{Probed: sum.Probed, Open: sum.Open, Closed: sum.Closed, Errors: sum.Errors,
		DurationSeconds: sum.Duration.Seconds(), OpenPorts: []ScanOpen{}}
	for _, f := range findings {
		if f.Open {
			out.OpenPorts = append(out.OpenPorts, ScanOpen{IP: f.Addr.String(), Port: f.Port, Time: f.Time})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// Scan asks the daemon to scan ranges (CIDR networks or addresses; none:
// every configured range) and waits for the result, however long the
// scan takes, unless ctx ends first. A refused range is an *APIError
// with status 400 (BadInput).
func (c *Client) Scan(ctx context.Context, ranges []string) (ScanResult, error) {
	var out ScanResult
	if ranges == nil {
		ranges = []string{}
	}
	return out, c.doWith(c.slow, ctx, http.MethodPost, "/v1/scan", nil, ScanRequest{Ranges: ranges}, &out)
}
