package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/events"
	"mailwarden/internal/store"
)

// eventsCmd lists recorded decisions and admin actions, newest first.
func eventsCmd(fs *flag.FlagSet) runFunc {
	asJSON := jsonFlag(fs)
	win := eventWindowFlags(fs, "", "events")
	win.until = fs.String("until", "", "events before this `time`: a duration back from now or RFC 3339")
	kind := fs.String("kind", "", "only this `kind`: "+strings.Join(events.Kinds(), ", "))
	host := fs.String("host", "", "only events for this client `IP`")
	user := fs.String("user", "", "only events for this SASL `user` (or administrator, for admin events)")
	return func(c *call) int {
		f := store.EventFilter{Kind: *kind, Client: *host, User: *user, Limit: *win.limit}
		var code int
		if f.Since, f.Until, code = win.check(c, time.Now()); code != 0 {
			return code
		}
		return ask(c, *asJSON, func(ctx context.Context, cl *adminapi.Client) ([]adminapi.Event, error) { return cl.Events(ctx, f) },
			func(w io.Writer, evs []adminapi.Event) {
				printEvents(w, evs)
			})
	}
}

// eventWindow is --since, --limit and perhaps --until of the commands
// that list the event log newest first: events and audit.
type eventWindow struct {
	since, until *string
	limit        *int
}

// eventWindowFlags defines --since, with its default, and --limit; noun
// names what is listed in their help.
func eventWindowFlags(fs *flag.FlagSet, since, noun string) eventWindow {
	return eventWindow{
		since: fs.String("since", since, noun+" from this `time` on: a duration back from now (90m, 2h, 3d) or RFC 3339"),
		limit: fs.Int("limit", adminapi.DefaultEventLimit, "show at most `N` "+noun+", newest first"),
	}
}

// check reads --since and --until (zero when not given) and checks
// --limit.
func (e eventWindow) check(c *call, now time.Time) (since, until time.Time, code int) {
	var err error
	if since, err = parseWhen(*e.since, now); err != nil {
		return since, until, c.usage("--since: %v", err)
	}
	if e.until != nil {
		if until, err = parseWhen(*e.until, now); err != nil {
			return since, until, c.usage("--until: %v", err)
		}
	}
	if *e.limit < 1 || *e.limit > adminapi.MaxEventLimit {
		return since, until, c.usage("--limit %d: want 1 to %d", *e.limit, adminapi.MaxEventLimit)
	}
	return since, until, 0
}

// parseWhen reads a point in time: "" (none), a duration back from now
// ("90m", "2h", "3d"), RFC 3339, or a local date and time.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil && n >= 0 {
			return now.AddDate(0, 0, -n), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q: give how long ago as a positive duration", s)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{time.DateTime, "2006-01-02T15:04:05", "2006-01-02 15:04", time.DateOnly} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is neither a duration (90m, 2h, 3d) nor a time (2006-01-02T15:04:05Z07:00, or local 2006-01-02 15:04)", s)
}

func printEvents(w io.Writer, evs []adminapi.Event) {
	printTable(w, evs, "no events", "TIME\tKIND\tCHECK\tACTION\tCLIENT\tSITE\tUSER\tSENDER\tREASON",
		func(e adminapi.Event) []string {
			return []string{localTime(e.Time), printable(e.Kind),
				orDash(printableText(e.Check)), orDash(printable(e.Action)), orDash(printable(e.Client)),
				orDash(printableText(e.Site)), orDash(printable(e.User)), orDash(printable(e.Sender)), printableText(e.Reason)}
		})
}
