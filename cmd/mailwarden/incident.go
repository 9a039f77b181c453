package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/hosts"
	"mailwarden/internal/human"
	"mailwarden/internal/mtaqueue"
)

// incidentCmd prints the worst day on one screen, from the running
// daemon: what is frozen and latched, which machines are suspect, who
// is sending, what waits in the queue, new mailboxes, rate trips,
// antivirus, the store and alerts, each with the command that acts on
// it. It only reads.
var incidentCmd = askCmd(func(ctx context.Context, cl *adminapi.Client, _ []string) (adminapi.Incident, error) {
	return cl.Incident(ctx)
}, printIncident)

func printIncident(w io.Writer, in adminapi.Incident, now time.Time) {
	fmt.Fprintf(w, "Incident report of %s; senders and rate trips over the last %s.\n", localTime(in.Time), in.Window)

	section(w, "Outbound freeze")
	if len(in.Freezes.Freezes) == 0 {
		fmt.Fprintln(w, "none: outbound mail flows")
	}
	for _, f := range in.Freezes.Freezes {
		v := "FROZEN: " + printableText(adminapi.DescribeScope(f.Scope, f.Value)) + ", since " + when(f.Since, now) + " by " + printable(f.By)
		if f.Note != "" {
			v += ": " + printableText(f.Note)
		}
		fmt.Fprintln(w, v)
	}
	actions(w, in.Freezes.Actions)

	section(w, fmt.Sprintf("Active latches (%d)", len(in.Latches.Latches)))
	printTable(w, in.Latches.Latches, "none", "ID\tKIND\tKEY\tRULE\tSITE\tCOUNT\tLAST SEEN",
		func(l adminapi.Latch) []string {
			return []string{printable(l.ID), printable(l.Kind), printable(l.Key), printable(l.Rule), orDash(printableText(l.Site)),
				strconv.Itoa(l.Count), when(l.LastSeen, now)}
		})
	actions(w, in.Latches.Actions)

	section(w, fmt.Sprintf("Latched and suspect hosts (%d)", in.Hosts.Total))
	switch {
	case !in.Hosts.Available:
		fmt.Fprintln(w, "not available: the daemon has no host registry")
	case len(in.Hosts.Sites) == 0:
		fmt.Fprintln(w, "none")
	}
	for _, s := range in.Hosts.Sites {
		name := "site " + printableText(s.Site)
		if s.Site == "" {
			name = "in no site"
		}
		fmt.Fprintf(w, "%s (%d):\n", name, len(s.Hosts))
		printTable(w, s.Hosts, "", "  IP\tSTATUS\tLAST SEEN\tEVIDENCE\tLAST MAIL USER", func(h adminapi.IncidentHost) []string {
			return []string{"  " + printable(h.IP), printable(h.Status), when(h.LastSeen, now),
				evidence(h.Evidence), orDash(printable(h.LastUser))}
		})
	}
	if shown := hostCount(in.Hosts.Sites); shown < in.Hosts.Total {
		fmt.Fprintf(w, "%d more: mailwarden hosts list\n", in.Hosts.Total-shown)
	}
	actions(w, in.Hosts.Actions)

	section(w, fmt.Sprintf("Top senders in the last %s (%d events)", in.Window, in.Senders.Events))
	counts(w, "SENDER", in.Senders.Senders)
	counts(w, "AUTHENTICATED USER", in.Senders.Users)
	counts(w, "CLIENT", in.Senders.Clients)
	if in.Senders.Truncated {
		fmt.Fprintln(w, "(only the newest events were counted: there were more)")
	}
	actions(w, in.Senders.Actions)

	section(w, "MTA queue")
	if q := in.Queue; !q.Available {
		fmt.Fprintln(w, printableText(q.Error))
	} else if sum := q.Summary; sum != nil {
		fmt.Fprintf(w, "%d messages, %d recipients, %s (listed %s)\n", sum.Messages, sum.Recipients,
			human.Bytes(sum.Bytes), when(q.Time, now))
		counts(w, "QUEUED SENDER", sum.BySender)
		counts(w, "QUEUED AUTH USER", sum.ByAuthUser)
	}
	actions(w, in.Queue.Actions)

	section(w, "New mailboxes")
	m := in.Mailboxes
	switch {
	case !m.Available:
		fmt.Fprintln(w, printableText(m.Error))
	case !m.HasSnapshot:
		fmt.Fprintf(w, "%d mailboxes; no snapshot in %s to tell new ones: take one with mailwarden mailbox snapshot\n",
			m.Mailboxes, printableText(m.Snapshot))
	default:
		fmt.Fprintf(w, "%d of %d mailboxes are new since the snapshot of %s\n", m.NewCount, m.Mailboxes, when(m.Taken, now))
		for _, a := range m.New {
			fmt.Fprintf(w, "  %s\n", printable(a))
		}
		if m.NewCount > len(m.New) {
			fmt.Fprintf(w, "  and %d more\n", m.NewCount-len(m.New))
		}
	}
	for _, b := range m.Bursts {
		fmt.Fprintf(w, "burst %s: %s\n", when(b.Time, now), printableText(b.Reason))
	}
	actions(w, m.Actions)

	section(w, fmt.Sprintf("Rate trips in the last %s (%d)", in.Window, in.RateTrips.Trips))
	counts(w, "TRIPPED BY", in.RateTrips.ByKey)
	actions(w, in.RateTrips.Actions)

	section(w, "Antivirus")
	av := in.Antivirus
	switch {
	case !av.Enabled:
		fmt.Fprintln(w, "disabled")
	case len(av.Servers) == 0:
		fmt.Fprintln(w, "enabled, no clamd checked yet")
	}
	for _, s := range av.Servers {
		fmt.Fprintf(w, "clamd %s: %s, signatures %s\n", printable(s.Addr), serverState(s), signatures(s))
	}
	actions(w, in.AVActions)

	section(w, "Store")
	if st := in.Store; st == nil {
		fmt.Fprintln(w, "-")
	} else if st.Up {
		fmt.Fprintf(w, "%s, writing (checked %s), %d lost writes\n", orDash(printable(st.Backend)), checked(st.Checked, now), st.LostWrites)
	} else {
		fmt.Fprintf(w, "%s, CANNOT WRITE since %s: %s\n", orDash(printable(st.Backend)), when(st.Since, now), printableText(st.LastError))
	}
	if st := in.Store; st != nil {
		for _, warn := range st.Warnings {
			fmt.Fprintf(w, "warning: %s\n", printableText(warn))
		}
	}
	actions(w, in.StoreActions)

	section(w, fmt.Sprintf("Open alerts (%d)", len(in.Alerts.Open)))
	if in.Alerts.Note != "" {
		fmt.Fprintln(w, printableText(in.Alerts.Note))
	}
	if in.Alerts.Configured {
		printTable(w, in.Alerts.Open, "none", "ID\tSINCE\tKIND\tCOUNT\tSUMMARY", func(a adminapi.IncidentAlert) []string {
			return []string{printable(a.ID), when(a.Time, now), printable(a.Kind), strconv.Itoa(a.Count), printableText(a.Summary)}
		})
	}
	actions(w, in.Alerts.Actions)
}

func section(w io.Writer, title string) {
	fmt.Fprintf(w, "\n== %s ==\n", title)
}

// actions prints the commands that act on a section, one a line, as
// they are typed.
func actions(w io.Writer, cmds []string) {
	for _, c := range cmds {
		fmt.Fprintf(w, "  $ %s\n", printableText(c))
	}
}

// counts prints a top-N count, or nothing when it is empty.
func counts(w io.Writer, what string, cs []mtaqueue.Count) {
	printTable(w, cs, strings.ToLower(what)+": none", what+"\tCOUNT", func(c mtaqueue.Count) []string {
		return []string{printable(c.Key), strconv.Itoa(c.Messages)}
	})
}

// evidence says "trap 3, forgery 1" in the registry's kind order.
func evidence(m map[string]int) string {
	var parts []string
	for _, k := range hosts.Kinds {
		if n := m[k]; n > 0 {
			parts = append(parts, k+" "+strconv.Itoa(n))
		}
	}
	return orDash(strings.Join(parts, ", "))
}

func hostCount(sites []adminapi.IncidentSite) int {
	n := 0
	for _, s := range sites {
		n += len(s.Hosts)
	}
	return n
}
