package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"mailwarden/internal/alert"
	"mailwarden/internal/config"
	"mailwarden/internal/store"
)

// alertsTestTimeout bounds `alerts test`: every receiver is tried at
// once, each within its own timeout.
const alertsTestTimeout = time.Minute

// alertsTest sends a test alert to every receiver in the config and
// says for each whether it arrived. It needs only the config, so it
// checks receivers before the daemon runs, as `config check` does.
func alertsTest(fs *flag.FlagSet) runFunc {
	return withConfig(fs, func(c *call, cfg config.Config) int {
		if len(cfg.Alerts.Receivers) == 0 {
			fmt.Fprintln(c.stderr, "mailwarden: no alert receivers are configured (alerts.receivers); nothing to test")
			return 1
		}
		ctx, cancel := context.WithTimeout(context.Background(), alertsTestTimeout)
		defer cancel()
		res := alert.Test(ctx, cfg.Alerts, cfg.Hostname, time.Now())
		code := 0
		for _, r := range cfg.Alerts.Receivers {
			if err := res[r.Name]; err != nil {
				fmt.Fprintf(c.stdout, "%s: FAILED: %s\n", r.Name, printableText(err.Error()))
				code = 1
				continue
			}
			fmt.Fprintf(c.stdout, "%s: sent\n", r.Name)
		}
		return code
	})
}

// alertJSON is an alert as `alerts list --json` shows it.
type alertJSON struct {
	ID       int64     `json:"id"`
	Created  time.Time `json:"created"`
	Kind     string    `json:"kind"`
	Severity string    `json:"severity"`
	Receiver string    `json:"receiver"`
	Digest   bool      `json:"digest"`
	Subject  string    `json:"subject"`
	Items    int       `json:"items"`
	State    string    `json:"state"`
	Attempts int       `json:"attempts"`
	NextTry  time.Time `json:"next_try,omitzero"`
	SentAt   time.Time `json:"sent_at,omitzero"`
	Error    string    `json:"error,omitempty"`
}

// alertsList shows the newest alerts and what became of them, from the
// store's outbox: it works with the daemon stopped, like greylist list.
func alertsList(fs *flag.FlagSet) runFunc {
	configPath, dataDir := configFlags(fs)
	asJSON := jsonFlag(fs)
	limit := fs.Int("limit", 50, "show at most `N` alerts, newest first")
	return func(c *call) int {
		if *limit < 1 {
			return c.usage("--limit %d: want at least 1", *limit)
		}
		as, code := readStore(c, *configPath, *dataDir, func(ctx context.Context, st store.Store, _ config.Config) ([]store.Alert, error) {
			return st.RecentAlerts(ctx, *limit)
		})
		if code != 0 {
			return code
		}
		if *asJSON {
			out := make([]alertJSON, len(as))
			for i, a := range as {
				out[i] = alertJSON{ID: a.ID, Created: a.Created, Kind: a.Kind, Severity: a.Severity, Receiver: a.Receiver,
					Digest: a.Digest, Subject: a.Subject, Items: len(a.Items), State: a.State, Attempts: a.Attempts,
					NextTry: a.NextTry, SentAt: a.SentAt, Error: a.Error}
			}
			return c.json(out)
		}
		printAlerts(c.stdout, as, time.Now())
		return 0
	}
}

func printAlerts(w io.Writer, as []store.Alert, now time.Time) {
	slices.Reverse(as) // oldest first reads as a story; the newest stay at the bottom, by the prompt
	printTable(w, as, "no alerts", "ID\tCREATED\tKIND\tSEVERITY\tRECEIVER\tITEMS\tSTATE\tTRIES\tSUBJECT / LAST ERROR",
		func(a store.Alert) []string {
			state, detail := a.State, a.Subject
			switch {
			case a.State == store.AlertSent:
				state += " " + localTime(a.SentAt)
			case a.State == store.AlertPending && !a.NextTry.IsZero():
				state += ", next " + when(a.NextTry, now)
			}
			if a.Error != "" {
				detail += " / " + a.Error
			}
			items := strconv.Itoa(len(a.Items))
			if a.Digest {
				items += " (digest)"
			}
			return []string{strconv.FormatInt(a.ID, 10), localTime(a.Created), printable(a.Kind), printable(a.Severity),
				printable(a.Receiver), items, state, strconv.Itoa(a.Attempts), printableText(detail)}
		})
}
