package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/hosts"
)

// The hosts commands show and annotate the suspect hosts the daemon has
// evidence about: trap hits, forged senders, viruses, rate trips, open
// backdoors.

func hostsList(fs *flag.FlagSet) runFunc {
	asJSON := jsonFlag(fs)
	site := fs.String("site", "", "list only hosts in this `site`")
	status := fs.String("status", "", "list only hosts with this `status`: suspect, latched or disinfected")
	since := fs.String("since", "", "only evidence from this `time` on: a duration back from now (7d, 12h) or RFC 3339")
	limit := fs.Int("limit", 0, "show at most `N` hosts (0: all)")
	return func(c *call) int {
		if *status != "" && !slices.Contains([]string{hosts.StatusSuspect, hosts.StatusLatched, hosts.StatusDisinfected}, *status) {
			return c.usage("--status %q: want suspect, latched or disinfected", *status)
		}
		now := time.Now()
		from, code := sinceFlag(c, *since, *limit, now)
		if code != 0 {
			return code
		}
		return ask(c, *asJSON, func(ctx context.Context, cl *adminapi.Client) ([]adminapi.Host, error) {
			return cl.Hosts(ctx, hosts.HostFilter{Site: *site, Status: *status, Since: from, Limit: *limit})
		},
			func(w io.Writer, hs []adminapi.Host) {
				printHosts(w, hs, now)
			})
	}
}

func hostsTimeline(fs *flag.FlagSet) runFunc {
	asJSON := jsonFlag(fs)
	since := fs.String("since", "", "only evidence from this `time` on: a duration back from now (30d, 12h) or RFC 3339")
	limit := fs.Int("limit", 0, "show at most `N` entries (0: all)")
	return func(c *call) int {
		from, code := sinceFlag(c, *since, *limit, time.Now())
		if code != 0 {
			return code
		}
		return ask(c, *asJSON, func(ctx context.Context, cl *adminapi.Client) ([]adminapi.TimelineEntry, error) {
			return cl.Timeline(ctx, from, *limit)
		},
			func(w io.Writer, es []adminapi.TimelineEntry) {
				printTimeline(w, es)
			})
	}
}

// sinceFlag checks --since and --limit of hosts list and timeline.
func sinceFlag(c *call, since string, limit int, now time.Time) (time.Time, int) {
	if limit < 0 {
		return time.Time{}, c.usage("--limit %d: want 0 (all) or more", limit)
	}
	from, err := parseWhen(since, now)
	if err != nil {
		return time.Time{}, c.usage("--since: %v", err)
	}
	return from, 0
}

// hostIP reads the host address every hosts command but list and
// timeline starts with.
func hostIP(c *call) (netip.Addr, int) {
	ip, err := netip.ParseAddr(c.pos[0])
	if err != nil {
		return netip.Addr{}, c.usage("%q is not an IP address", c.pos[0])
	}
	return ip, 0
}

func hostsShow(fs *flag.FlagSet) runFunc {
	asJSON := jsonFlag(fs)
	return func(c *call) int {
		ip, code := hostIP(c)
		if code != 0 {
			return code
		}
		return ask(c, *asJSON, func(ctx context.Context, cl *adminapi.Client) (adminapi.Host, error) { return cl.Host(ctx, ip) },
			func(w io.Writer, h adminapi.Host) {
				printHost(w, h, time.Now())
			})
	}
}

func hostsNote(fs *flag.FlagSet) runFunc {
	asJSON := jsonFlag(fs)
	return func(c *call) int {
		ip, code := hostIP(c)
		if code != 0 {
			return code
		}
		return ask(c, *asJSON, func(ctx context.Context, cl *adminapi.Client) (adminapi.HostNote, error) {
			return cl.NoteHost(ctx, ip, strings.Join(c.pos[1:], " "))
		},
			func(w io.Writer, n adminapi.HostNote) {
				fmt.Fprintf(w, "noted on %s (by %s): %s\n", ip, printable(n.By), printableText(n.Text))
			})
	}
}

func hostsDisinfect(fs *flag.FlagSet) runFunc {
	asJSON := jsonFlag(fs)
	note := fs.String("note", "", "`text` saying what was done to the machine, for the audit log (required)")
	return func(c *call) int {
		ip, code := hostIP(c)
		if code != 0 {
			return code
		}
		if strings.TrimSpace(*note) == "" {
			return c.usage(`--note is required: say what was done, e.g. --note "reimaged, ticket 4411"; it goes into the audit log`)
		}
		return ask(c, *asJSON, func(ctx context.Context, cl *adminapi.Client) (adminapi.DisinfectResult, error) {
			return cl.DisinfectHost(ctx, ip, *note)
		},
			func(w io.Writer, d adminapi.DisinfectResult) {
				ids := make([]string, 0, len(d.Cleared))
				for _, l := range d.Cleared {
					ids = append(ids, printable(l.ID))
				}
				cleared := "no active latches"
				if len(ids) > 0 {
					cleared = "cleared latches " + strings.Join(ids, ", ")
				}
				fmt.Fprintf(w, "%s declared disinfected; %s\n", d.IP, cleared)
			})
	}
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
	printTable(w, hs, "no suspect hosts", "IP\tSITE\tSTATUS\tTRAP\tFORGERY\tVIRUS\tRATE\tBACKDOOR\tLAST MAIL USER\tLAST SEEN",
		func(h adminapi.Host) []string {
			return []string{h.IP, orDash(printable(h.Site)), h.Status,
				count(h.Evidence, hosts.KindTrap), count(h.Evidence, hosts.KindForgery), count(h.Evidence, hosts.KindVirus),
				count(h.Evidence, hosts.KindRateTrip), count(h.Evidence, hosts.KindBackdoor), lastUser(h), when(h.LastSeen, now)}
		})
}

func printHost(w io.Writer, h adminapi.Host, now time.Time) {
	printDetails(w, func(line func(k, v string)) {
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
	})
	if len(h.Events) > 0 {
		fmt.Fprintln(w, "\nRecent events:")
		printEvents(w, h.Events)
	}
}

func printTimeline(w io.Writer, es []adminapi.TimelineEntry) {
	printTable(w, es, "no evidence in this period", "TIME\tIP\tSITE\tKIND\tLAST MAIL USER\tDETAIL", func(e adminapi.TimelineEntry) []string {
		detail := printableText(e.Detail)
		if len(e.Recipients) > 0 {
			rs := make([]string, 0, len(e.Recipients))
			for _, r := range e.Recipients {
				rs = append(rs, printable(r))
			}
			detail += " (to " + strings.Join(rs, ", ") + ")"
		}
		return []string{localTime(e.Time), printable(e.IP), orDash(printable(e.Site)), printable(e.Kind), orDash(printable(e.User)), detail}
	})
}
