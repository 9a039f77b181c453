// Package adminapi is the running daemon's admin API and its client. The
// API is HTTP/1.1 with JSON bodies on a unix socket; whoever can open the
// socket (mode 0660, owner and group configurable) is an administrator,
// and the socket's peer credentials, never anything the client sends,
// say who made each change. Every change is recorded as an admin event.
//
// Endpoints:
//
//	GET    /v1/latches?active=1&kind=&key=&limit=
//	GET    /v1/latches/{id}
//	POST   /v1/latches/{id}/clear          {"note": "..."}
//	GET    /v1/freezes
//	POST   /v1/freezes                     {"scope": "...", "value": "...", "note": "..."}
//	DELETE /v1/freezes?scope=&value=&note=
//	GET    /v1/events?since=&until=&kind=&client=&user=&limit=
//	GET    /v1/status
//	GET    /v1/hosts?site=&status=&since=&limit=
//	GET    /v1/hosts/{ip}
//	POST   /v1/hosts/{ip}/note             {"text": "..."}
//	POST   /v1/hosts/{ip}/disinfect        {"note": "..."}
//	GET    /v1/timeline?since=&limit=
//	POST   /v1/scan                        {"ranges": ["10.1.0.0/24", ...]}
//	POST   /v1/greylist/allow              {"client": "...", "sender": "...", "recipient": "..."}
//	GET    /v1/queue
//	POST   /v1/queue/purge                 {"sender": "*@spam.example", ..., "apply": false}
//
// Times are RFC 3339. Errors are {"error": "..."} with a status code:
// 400 bad input or a refused scan range, 403 a queue purge the MTA will
// not let the daemon make, 404 unknown latch, freeze or host, 409 latch
// not active, 503 a feature this daemon was started without or an MTA
// queue that cannot be listed.
package adminapi

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"mailwarden/internal/config"
	"mailwarden/internal/store"
)

// Event-listing limits: the default when none is asked for, and the most
// one request returns, so a typo cannot make the daemon serialise the
// whole event log.
const (
	DefaultEventLimit = 50
	MaxEventLimit     = 10000
)

// SocketPath returns the admin socket path for cfg: admin.socket, or
// admin.sock in the data directory.
func SocketPath(cfg config.Config) string {
	if cfg.Admin.Socket != "" {
		return cfg.Admin.Socket
	}
	return filepath.Join(cfg.DataDir, "admin.sock")
}

// ParseMode parses admin.mode, octal permission bits such as "0660".
func ParseMode(s string) (os.FileMode, error) {
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("adminapi: socket mode %q is not octal permission bits like 0660", s)
	}
	return os.FileMode(m), nil
}

// Latch is a latch as the API shows it.
type Latch struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	Key       string    `json:"key"`
	Rule      string    `json:"rule"`
	Reason    string    `json:"reason"`
	Site      string    `json:"site,omitempty"`
	Evidence  string    `json:"evidence,omitempty"`
	Count     int       `json:"count"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Expires   time.Time `json:"expires,omitzero"`
	// Status is "active", "cleared" or "expired" when the daemon answered.
	Status    string    `json:"status"`
	ClearedAt time.Time `json:"cleared_at,omitzero"`
	ClearedBy string    `json:"cleared_by,omitempty"`
	ClearNote string    `json:"clear_note,omitempty"`
}

// LatchFromStore converts a stored latch, judging its status at now.
func LatchFromStore(l store.Latch, now time.Time) Latch {
	status := "active"
	switch {
	case !l.ClearedAt.IsZero():
		status = "cleared"
	case !l.Active(now):
		status = "expired"
	}
	return Latch{
		ID: l.ID, Kind: l.Kind, Key: l.Key, Rule: l.Rule, Reason: l.Reason, Site: l.Site,
		Evidence: l.Evidence, Count: l.Count, FirstSeen: l.FirstSeen, LastSeen: l.LastSeen,
		Expires: l.Expires, Status: status, ClearedAt: l.ClearedAt, ClearedBy: l.ClearedBy,
		ClearNote: l.ClearNote,
	}
}

// Freeze is an outbound freeze as the API shows it.
type Freeze struct {
	Scope string    `json:"scope"`
	Value string    `json:"value"`
	Since time.Time `json:"since"`
	By    string    `json:"by"`
	Note  string    `json:"note,omitempty"`
}

// FreezeFromStore converts a stored freeze.
func FreezeFromStore(f store.Freeze) Freeze {
	return Freeze{Scope: f.Scope, Value: f.Value, Since: f.Since, By: f.By, Note: f.Note}
}

// FreezeRequest is the body of POST /v1/freezes.
type FreezeRequest struct {
	Scope string `json:"scope"`
	Value string `json:"value"`
	Note  string `json:"note"`
}

// ClearRequest is the body of POST /v1/latches/{id}/clear.
type ClearRequest struct {
	Note string `json:"note"`
}

// Event is an event as the API shows it.
type Event struct {
	ID         int64     `json:"id"`
	Time       time.Time `json:"time"`
	Kind       string    `json:"kind"`
	Check      string    `json:"check,omitempty"`
	Action     string    `json:"action,omitempty"`
	Client     string    `json:"client,omitempty"`
	Site       string    `json:"site,omitempty"`
	User       string    `json:"user,omitempty"`
	Sender     string    `json:"sender,omitempty"`
	Recipients []string  `json:"recipients,omitempty"`
	QueueID    string    `json:"queue_id,omitempty"`
	Reason     string    `json:"reason,omitempty"`
}

// EventFromStore converts a stored event.
func EventFromStore(e store.Event) Event {
	return Event{
		ID: e.ID, Time: e.Time, Kind: e.Kind, Check: e.Check, Action: e.Action, Client: e.Client,
		Site: e.Site, User: e.User, Sender: e.Sender, Recipients: e.Recipients, QueueID: e.QueueID,
		Reason: e.Reason,
	}
}

// errorBody is every error response.
type errorBody struct {
	Error string `json:"error"`
}

// APIError is an error the daemon answered with.
type APIError struct {
	Status  int    // HTTP status code
	Message string // the daemon's explanation
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("the daemon answered %d %s", e.Status, http.StatusText(e.Status))
	}
	return e.Message
}

// Is lets callers test a 404 answer against store.ErrNotFound and a 409
// answer against store.ErrNotActive, as they would with a local store.
func (e *APIError) Is(target error) bool {
	switch e.Status {
	case http.StatusNotFound:
		return target == store.ErrNotFound
	case http.StatusConflict:
		return target == store.ErrNotActive
	}
	return false
}

// BadInput reports whether err is the daemon refusing the request's
// input (status 400), which the CLI reports as a usage error.
func BadInput(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusBadRequest
}
