package adminapi

import (
	"time"

	"mailwarden/internal/store"
)

// AuditEntry is one admin event as the audit trail shows it: who
// changed what, from where, when and why. Entries are read through
// GET /v1/events?kind=admin; no route edits or deletes one.
type AuditEntry struct {
	ID     int64     `json:"id"`
	Time   time.Time `json:"time"`
	Who    string    `json:"who"`
	From   string    `json:"from,omitempty"`
	What   string    `json:"what"`
	Client string    `json:"client,omitempty"`
	Site   string    `json:"site,omitempty"`
	Note   string    `json:"note,omitempty"`
}

// AuditEntryFromEvent reads an admin event (store.EventAdmin) as an
// audit entry; the event log keeps where it came from in Action.
func AuditEntryFromEvent(e Event) AuditEntry {
	return AuditEntry{ID: e.ID, Time: e.Time, Who: e.User, From: e.Action, What: e.Check,
		Client: e.Client, Site: e.Site, Note: e.Reason}
}

// AuditFilter is the events filter that selects the audit trail.
func AuditFilter(since time.Time, who string, limit int) store.EventFilter {
	return store.EventFilter{Kind: store.EventAdmin, Since: since, User: who, Limit: limit}
}
