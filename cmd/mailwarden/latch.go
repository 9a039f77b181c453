package main

import (
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/store"
)

const latchUsage = `usage: mailwarden latch list [--all] [--kind client|user] [--key KEY] [--limit N] [--json]
       mailwarden latch show ID [--json]
       mailwarden latch clear ID --note TEXT [--json]
`

func cmdLatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, latchUsage)
		return 2
	}
	verb := args[0]
	fs := flag.NewFlagSet("latch "+verb, flag.ContinueOnError)
	a := newAdminCmd("latch "+verb, fs, stdout, stderr)
	all := fs.Bool("all", false, "list cleared and expired latches too")
	kind := fs.String("kind", "", "list only latches of this `kind`: client or user")
	key := fs.String("key", "", "list only latches on this `key` (an IP address or user name)")
	limit := fs.Int("limit", 0, "list at most `N` latches, most recently seen first (0: all)")
	note := fs.String("note", "", "why the latch is cleared, for the audit log (required)")
	pos, err := parseFlags(fs, args[1:], stderr)
	if err != nil {
		return 2
	}
	want := map[string]int{"list": 0, "show": 1, "clear": 1}
	n, known := want[verb]
	if !known {
		fmt.Fprintf(stderr, "mailwarden latch: unknown command %q (want list, show or clear)\n%s", verb, latchUsage)
		return 2
	}
	if len(pos) != n {
		if n == 0 {
			return a.usage("takes no arguments, got %q", pos[0])
		}
		return a.usage("want one latch ID (latch list shows them), got %d arguments", len(pos))
	}
	if verb == "clear" && *note == "" {
		return a.usage(`--note is required: say why, e.g. --note "reimaged, ticket 4411"; it goes into the audit log`)
	}
	if *kind != "" && *kind != store.LatchClient && *kind != store.LatchUser {
		return a.usage("--kind %q: want client or user", *kind)
	}
	c, ctx, done, code := a.connect()
	if c == nil {
		return code
	}
	defer done()
	now := time.Now()
	switch verb {
	case "list":
		ls, err := c.Latches(ctx, store.LatchFilter{Active: !*all, Kind: *kind, Key: *key, Limit: *limit})
		if err != nil {
			return a.fail(err)
		}
		if *a.asJSON {
			return a.json(ls)
		}
		printLatches(stdout, ls, *all, now)
	case "show":
		l, err := c.Latch(ctx, pos[0])
		if err != nil {
			return a.fail(err)
		}
		if *a.asJSON {
			return a.json(l)
		}
		printLatch(stdout, l, now)
	case "clear":
		l, err := c.ClearLatch(ctx, pos[0], *note)
		if err != nil {
			return a.fail(err)
		}
		if *a.asJSON {
			return a.json(l)
		}
		fmt.Fprintf(stdout, "cleared latch %s on %s %s (by %s: %s)\n", l.ID, l.Kind, printable(l.Key),
			printable(l.ClearedBy), printableText(l.ClearNote))
	}
	return 0
}

func printLatches(w io.Writer, ls []adminapi.Latch, all bool, now time.Time) {
	if len(ls) == 0 {
		if all {
			fmt.Fprintln(w, "no latches")
		} else {
			fmt.Fprintln(w, "no active latches")
		}
		return
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tKEY\tSITE\tRULE\tEVIDENCE\tCOUNT\tSTATUS\tLAST SEEN\tREASON")
	for _, l := range ls {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", printable(l.ID), l.Kind, printable(l.Key),
			orDash(printableText(l.Site)), printable(l.Rule), orDash(printable(l.Evidence)), l.Count, l.Status,
			when(l.LastSeen, now), printableText(l.Reason))
	}
	tw.Flush()
}

func printLatch(w io.Writer, l adminapi.Latch, now time.Time) {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	line := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
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
	tw.Flush()
}
