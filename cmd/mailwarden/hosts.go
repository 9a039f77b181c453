package main

import (
	"flag"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/hosts"
)

const hostsUsage = `usage: mailwarden hosts list [--site S] [--status suspect|latched|disinfected] [--since 7d] [--limit N] [--json]
       mailwarden hosts show IP [--json]
       mailwarden hosts note IP TEXT
       mailwarden hosts disinfect IP --note TEXT
       mailwarden hosts timeline [--since 30d] [--limit N] [--json]
`

// cmdHosts shows and annotates the suspect hosts the daemon has evidence
// about: trap hits, forged senders, viruses, rate trips, open backdoors.
func cmdHosts(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, hostsUsage)
		return 2
	}
	verb := args[0]
	fs := flag.NewFlagSet("hosts "+verb, flag.ContinueOnError)
	a := newAdminCmd("hosts "+verb, fs, stdout, stderr)
	site := fs.String("site", "", "list only hosts in this `site`")
	status := fs.String("status", "", "list only hosts with this `status`: suspect, latched or disinfected")
	since := fs.String("since", "", "only evidence from this `time` on: a duration back from now (7d, 12h) or RFC 3339")
	limit := fs.Int("limit", 0, "show at most `N` hosts or timeline entries (0: all)")
	note := fs.String("note", "", "what was done to the machine, for the audit log (required by disinfect)")
	pos, err := parseFlags(fs, args[1:], stderr)
	if err != nil {
		return 2
	}
	switch verb {
	case "list", "timeline":
		if len(pos) != 0 {
			return a.usage("takes no arguments, got %q", pos[0])
		}
	case "show", "disinfect":
		if len(pos) != 1 {
			return a.usage("want one IP address, got %d arguments", len(pos))
		}
	case "note":
		if len(pos) < 2 {
			return a.usage(`want an IP address and the note's text, e.g. hosts note 10.1.2.3 "owner is in room 12"`)
		}
	default:
		fmt.Fprintf(stderr, "mailwarden hosts: unknown command %q (want list, show, note, disinfect or timeline)\n%s", verb, hostsUsage)
		return 2
	}
	var ip netip.Addr
	if len(pos) > 0 && verb != "list" && verb != "timeline" {
		if ip, err = netip.ParseAddr(pos[0]); err != nil {
			return a.usage("%q is not an IP address", pos[0])
		}
	}
	if *status != "" && !slices.Contains([]string{hosts.StatusSuspect, hosts.StatusLatched, hosts.StatusDisinfected}, *status) {
		return a.usage("--status %q: want suspect, latched or disinfected", *status)
	}
	if *limit < 0 {
		return a.usage("--limit %d: want 0 (all) or more", *limit)
	}
	if verb == "disinfect" && strings.TrimSpace(*note) == "" {
		return a.usage(`--note is required: say what was done, e.g. --note "reimaged, ticket 4411"; it goes into the audit log`)
	}
	now := time.Now()
	from, err := parseWhen(*since, now)
	if err != nil {
		return a.usage("--since: %v", err)
	}
	c, ctx, done, code := a.connect()
	if c == nil {
		return code
	}
	defer done()
	switch verb {
	case "list":
		hs, err := c.Hosts(ctx, hosts.HostFilter{Site: *site, Status: *status, Since: from, Limit: *limit})
		if err != nil {
			return a.fail(err)
		}
		if *a.asJSON {
			return a.json(hs)
		}
		printHosts(stdout, hs, now)
	case "show":
		h, err := c.Host(ctx, ip)
		if err != nil {
			return a.fail(err)
		}
		if *a.asJSON {
			return a.json(h)
		}
		printHost(stdout, h, now)
	case "note":
		n, err := c.NoteHost(ctx, ip, strings.Join(pos[1:], " "))
		if err != nil {
			return a.fail(err)
		}
		if *a.asJSON {
			return a.json(n)
		}
		fmt.Fprintf(stdout, "noted on %s (by %s): %s\n", ip, printable(n.By), printableText(n.Text))
	case "disinfect":
		d, err := c.DisinfectHost(ctx, ip, *note)
		if err != nil {
			return a.fail(err)
		}
		if *a.asJSON {
			return a.json(d)
		}
		ids := make([]string, 0, len(d.Cleared))
		for _, l := range d.Cleared {
			ids = append(ids, printable(l.ID))
		}
		cleared := "no active latches"
		if len(ids) > 0 {
			cleared = "cleared latches " + strings.Join(ids, ", ")
		}
		fmt.Fprintf(stdout, "%s declared disinfected; %s\n", d.IP, cleared)
	case "timeline":
		es, err := c.Timeline(ctx, from, *limit)
		if err != nil {
			return a.fail(err)
		}
		if *a.asJSON {
			return a.json(es)
		}
		printTimeline(stdout, es)
	}
	return 0
}

// count shows an evidence count, "-" for none, so the eye finds the
// kinds a host has.
func count(ev map[string]int, kind string) string {
	if n := ev[kind]; n > 0 {
		return strconv.Itoa(n)
	}
	return "-"
}

func lastUser(h adminapi.Host) string {
	if h.LastLogin == nil {
		return "-"
	}
	return printable(h.LastLogin.User)
}

func printHosts(w io.Writer, hs []adminapi.Host, now time.Time) {
	if len(hs) == 0 {
		fmt.Fprintln(w, "no suspect hosts")
		return
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "IP\tSITE\tSTATUS\tTRAP\tFORGERY\tVIRUS\tRATE\tBACKDOOR\tLAST MAIL USER\tLAST SEEN")
	for _, h := range hs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.IP, orDash(printable(h.Site)), h.Status,
			count(h.Evidence, hosts.KindTrap), count(h.Evidence, hosts.KindForgery), count(h.Evidence, hosts.KindVirus),
			count(h.Evidence, hosts.KindRateTrip), count(h.Evidence, hosts.KindBackdoor), lastUser(h), when(h.LastSeen, now))
	}
	tw.Flush()
}

func printHost(w io.Writer, h adminapi.Host, now time.Time) {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	line := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	line("IP", h.IP)
	line("Site", orDash(printableText(h.Site)))
	line("Internal", strconv.FormatBool(h.Internal))
	line("Status", h.Status)
	line("First seen", when(h.FirstSeen, now))
	line("Last seen", when(h.LastSeen, now))
	var counts []string
	for _, k := range hosts.Kinds {
		if n := h.Evidence[k]; n > 0 {
			counts = append(counts, fmt.Sprintf("%s %d", k, n))
		}
	}
	line("Evidence", orDash(strings.Join(counts, ", ")))
	if t := h.Trap; t != nil {
		line("Trap hits", fmt.Sprintf("%d, %s to %s", t.Count, localTime(t.FirstSeen), when(t.LastSeen, now)))
		// HELO and MAIL FROM are whatever the infected machine sent.
		line("  last HELO", orDash(printable(t.LastHelo)))
		line("  last MAIL FROM", orDash(printable(t.LastMailFrom)))
		line("  last destination", orDash(printable(t.LastDst)))
	} else {
		line("Trap hits", "none")
	}
	var open []string
	for _, p := range h.OpenPorts {
		if p.Open {
			open = append(open, fmt.Sprintf("%d (open since %s, checked %s)", p.Port, localTime(p.FirstOpen), localTime(p.LastChecked)))
		}
	}
	line("Open ports", orDash(strings.Join(open, "; ")))
	if len(h.ActiveLatches) == 0 {
		line("Active latches", "none")
	}
	for _, l := range h.ActiveLatches {
		line("Active latch", fmt.Sprintf("%s %s since %s: %s", printable(l.ID), printable(l.Rule),
			localTime(l.FirstSeen), printableText(l.Reason)))
	}
	if l := h.LastLogin; l != nil {
		line("Last mail login", fmt.Sprintf("%s (%s) %s", printable(l.User), orDash(printable(l.Service)), when(l.Time, now)))
	} else {
		line("Last mail login", "-")
	}
	for _, n := range h.Notes {
		line("Note", fmt.Sprintf("%s by %s: %s", localTime(n.Time), printable(n.By), printableText(n.Text)))
	}
	for _, d := range h.Disinfections {
		line("Disinfected", fmt.Sprintf("%s by %s: %s", localTime(d.Time), printable(d.By), printableText(d.Note)))
	}
	tw.Flush()
	if len(h.Events) > 0 {
		fmt.Fprintln(w, "\nRecent events:")
		printEvents(w, h.Events)
	}
}

func printTimeline(w io.Writer, es []adminapi.TimelineEntry) {
	if len(es) == 0 {
		fmt.Fprintln(w, "no evidence in this period")
		return
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tIP\tSITE\tKIND\tLAST MAIL USER\tDETAIL")
	for _, e := range es {
		detail := printableText(e.Detail)
		if len(e.Recipients) > 0 {
			rs := make([]string, 0, len(e.Recipients))
			for _, r := range e.Recipients {
				rs = append(rs, printable(r))
			}
			detail += " (to " + strings.Join(rs, ", ") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", localTime(e.Time), printable(e.IP), orDash(printable(e.Site)),
			printable(e.Kind), orDash(printable(e.User)), detail)
	}
	tw.Flush()
}
