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
	since := fs.String("since", "7d", "entries from this `time` on: a duration back from now (90m, 2h, 3d) or RFC 3339")
	who := fs.String("who", "", "only changes by this `user`: a system user, or web:NAME for a dashboard user")
	limit := fs.Int("limit", adminapi.DefaultEventLimit, "show at most `N` entries, newest first")
	return func(c *call) int {
		t, err := parseWhen(*since, time.Now())
		if err != nil {
			return c.usage("--since: %v", err)
		}
		if *limit < 1 || *limit > adminapi.MaxEventLimit {
			return c.usage("--limit %d: want 1 to %d", *limit, adminapi.MaxEventLimit)
		}
		f := adminapi.AuditFilter(t, *who, *limit)
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
