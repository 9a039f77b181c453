package main

import (
	"context"
	"flag"
	"io"
	"time"

	"mailwarden/internal/adminapi"
)

// auditCmd lists the audit trail: every admin change, login and purge,
// newest first, read from the daemon's event log (the admin events,
// kept for events.audit_retention). It only reads: nothing edits or
// deletes an entry.
func auditCmd(fs *flag.FlagSet) runFunc {
	asJSON := jsonFlag(fs)
	win := eventWindowFlags(fs, "7d", "entries")
	who := fs.String("who", "", "only changes by this `user`: a system user, or web:NAME for a dashboard user")
	return func(c *call) int {
		since, _, code := win.check(c, time.Now())
		if code != 0 {
			return code
		}
		f := adminapi.AuditFilter(since, *who, *win.limit)
		return ask(c, *asJSON, func(ctx context.Context, cl *adminapi.Client) ([]adminapi.AuditEntry, error) {
			evs, err := cl.Events(ctx, f)
			out := make([]adminapi.AuditEntry, len(evs))
			for i, e := range evs {
				out[i] = adminapi.AuditEntryFromEvent(e)
			}
			return out, err
		}, printAuditLog)
	}
}

func printAuditLog(w io.Writer, es []adminapi.AuditEntry) {
	printTable(w, es, "no audit entries", "TIME\tWHO\tFROM\tWHAT\tCLIENT\tNOTE",
		func(e adminapi.AuditEntry) []string {
			return []string{localTime(e.Time), printable(e.Who), orDash(printableText(e.From)), printableText(e.What),
				orDash(printable(e.Client)), orDash(printableText(e.Note))}
		})
}
