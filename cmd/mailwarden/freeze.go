package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/store"
)

const freezeUsage = `usage: mailwarden freeze on|off --all|--domain DOMAIN|--user USER|--network CIDR [--note TEXT]
       mailwarden freeze status [--json]
`

// cmdFreeze switches outbound freezes (PRODUCT.md §1 Day B): matching
// outbound mail is tempfailed inside mailwarden, so nothing is lost and
// restarting the MTA cannot undo it.
func cmdFreeze(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, freezeUsage)
		return 2
	}
	verb := args[0]
	fs := flag.NewFlagSet("freeze "+verb, flag.ContinueOnError)
	a := newAdminCmd("freeze "+verb, fs, stdout, stderr)
	fs.Bool("all", false, "every outbound message")
	fs.String("domain", "", "outbound mail from sender `domain`")
	fs.String("user", "", "outbound mail from SASL `user`")
	fs.String("network", "", "outbound mail from clients in `CIDR`")
	note := fs.String("note", "", "why, for the audit log")
	pos, err := parseFlags(fs, args[1:], stderr)
	if err != nil {
		return 2
	}
	if verb != "on" && verb != "off" && verb != "status" {
		fmt.Fprintf(stderr, "mailwarden freeze: unknown command %q (want on, off or status)\n%s", verb, freezeUsage)
		return 2
	}
	if len(pos) != 0 {
		return a.usage("unexpected argument %q (a scope is a flag: --all, --domain, --user or --network)", pos[0])
	}
	// The scope is whichever scope flag was given, even as "" (which
	// the daemon then refuses with its reason).
	var scopes []string
	var scope, value string
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "all", "domain", "user", "network":
			if f.Name == "all" && f.Value.String() != "true" {
				return
			}
			scopes = append(scopes, "--"+f.Name)
			scope = f.Name
			if f.Name != "all" {
				value = f.Value.String()
			}
		}
	})
	switch {
	case verb == "status" && len(scopes) > 0:
		return a.usage("takes no scope; it lists every freeze in force")
	case verb != "status" && len(scopes) == 0:
		return a.usage("say what to freeze: --all, --domain DOMAIN, --user USER or --network CIDR")
	case len(scopes) > 1:
		return a.usage("give one scope at a time, got %s", strings.Join(scopes, " and "))
	}
	c, ctx, done, code := a.connect()
	if c == nil {
		return code
	}
	defer done()
	switch verb {
	case "on":
		f, err := c.Freeze(ctx, scope, value, *note)
		if err != nil {
			return a.fail(err)
		}
		if *a.asJSON {
			return a.json(f)
		}
		fmt.Fprintf(stdout, "frozen: %s. Matching outbound mail is tempfailed (kept by the sending MTA) until\n  mailwarden freeze off %s\n",
			printableText(adminapi.DescribeScope(f.Scope, f.Value)), scopeFlag(f))
	case "off":
		f, err := c.Unfreeze(ctx, scope, value, *note)
		if err != nil {
			return a.fail(err)
		}
		if *a.asJSON {
			return a.json(f)
		}
		fmt.Fprintf(stdout, "lifted the freeze on %s (in force since %s, set by %s)\n",
			printableText(adminapi.DescribeScope(f.Scope, f.Value)), when(f.Since, time.Now()), printable(f.By))
	case "status":
		fz, err := c.Freezes(ctx)
		if err != nil {
			return a.fail(err)
		}
		if *a.asJSON {
			return a.json(fz)
		}
		printFreezes(stdout, fz, time.Now())
	}
	return 0
}

// scopeFlag is the command-line flag that names f's scope.
func scopeFlag(f adminapi.Freeze) string {
	if f.Scope == store.FreezeAll {
		return "--all"
	}
	return "--" + f.Scope + " " + printable(f.Value)
}

func printFreezes(w io.Writer, fz []adminapi.Freeze, now time.Time) {
	if len(fz) == 0 {
		fmt.Fprintln(w, "no outbound freeze in force")
		return
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SCOPE\tVALUE\tSINCE\tBY\tNOTE")
	for _, f := range fz {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Scope, orDash(printable(f.Value)), when(f.Since, now),
			printable(f.By), orDash(printableText(f.Note)))
	}
	tw.Flush()
}
