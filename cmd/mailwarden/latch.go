package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/store"
)

func latchList(fs *flag.FlagSet) runFunc {
	asJSON := jsonFlag(fs)
	all := fs.Bool("all", false, "list cleared and expired latches too")
	kind := fs.String("kind", "", "list only latches of this `kind`: client or user")
	key := fs.String("key", "", "list only latches on this `key` (an IP address or user name)")
	limit := fs.Int("limit", 0, "list at most `N` latches, most recently seen first (0: all)")
	return func(c *call) int {
		if *kind != "" && *kind != store.LatchClient && *kind != store.LatchUser {
			return c.usage("--kind %q: want client or user", *kind)
		}
		return ask(c, *asJSON, func(ctx context.Context, cl *adminapi.Client) ([]adminapi.Latch, error) {
			return cl.Latches(ctx, store.LatchFilter{Active: !*all, Kind: *kind, Key: *key, Limit: *limit})
		},
			func(w io.Writer, ls []adminapi.Latch) {
				printLatches(w, ls, *all, time.Now())
			})
	}
}

var latchShow = askCmd(func(ctx context.Context, cl *adminapi.Client, args []string) (adminapi.Latch, error) {
	return cl.Latch(ctx, args[0])
}, printLatch)

func latchClear(fs *flag.FlagSet) runFunc {
	asJSON := jsonFlag(fs)
	note := fs.String("note", "", "`text` saying why the latch is cleared, for the audit log (required)")
	return func(c *call) int {
		if *note == "" {
			return c.usage(`--note is required: say why, e.g. --note "reimaged, ticket 4411"; it goes into the audit log`)
		}
		return ask(c, *asJSON, func(ctx context.Context, cl *adminapi.Client) (adminapi.Latch, error) {
			return cl.ClearLatch(ctx, c.pos[0], *note)
		},
			func(w io.Writer, l adminapi.Latch) {
				fmt.Fprintf(w, "cleared latch %s on %s %s (by %s: %s)\n", l.ID, l.Kind, printable(l.Key),
					printable(l.ClearedBy), printableText(l.ClearNote))
			})
	}
}

func printLatches(w io.Writer, ls []adminapi.Latch, all bool, now time.Time) {
	ifEmpty := "no active latches"
	if all {
		ifEmpty = "no latches"
	}
	printTable(w, ls, ifEmpty, "ID\tKIND\tKEY\tSITE\tRULE\tEVIDENCE\tCOUNT\tSTATUS\tLAST SEEN\tREASON", func(l adminapi.Latch) []string {
		return []string{printable(l.ID), l.Kind, printable(l.Key), orDash(printableText(l.Site)), printable(l.Rule),
			orDash(printable(l.Evidence)), strconv.Itoa(l.Count), l.Status, when(l.LastSeen, now), printableText(l.Reason)}
	})
}

func printLatch(w io.Writer, l adminapi.Latch, now time.Time) {
	printDetails(w, func(line func(k, v string)) {
		line("ID", printable(l.ID))
		line("Status", l.Status)
		line("Kind", l.Kind)
		line("Key", printable(l.Key))
		line("Site", orDash(printableText(l.Site)))
		line("Rule", printableText(l.Rule))
		line("Reason", printableText(l.Reason))
		line("Evidence", orDash(printableText(l.Evidence)))
		line("Count", fmt.Sprint(l.Count))
		line("First seen", when(l.FirstSeen, now))
		line("Last seen", when(l.LastSeen, now))
		if l.Expires.IsZero() {
			line("Expires", "never (until cleared)")
		} else {
			line("Expires", when(l.Expires, now))
		}
		if !l.ClearedAt.IsZero() {
			line("Cleared", when(l.ClearedAt, now)+" by "+printableText(l.ClearedBy))
			line("Note", printableText(l.ClearNote))
		}
	})
}
