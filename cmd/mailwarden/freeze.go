package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/store"
)

// freezeScope defines the flags that say what a freeze covers, for
// freeze on and freeze off.
type freezeScope struct {
	fs   *flag.FlagSet
	note *string
}

func newFreezeScope(fs *flag.FlagSet) *freezeScope {
	fs.Bool("all", false, "every outbound message")
	fs.String("domain", "", "outbound mail from sender `domain`")
	fs.String("user", "", "outbound mail from SASL `user`")
	fs.String("network", "", "outbound mail from clients in `CIDR`")
	return &freezeScope{fs: fs, note: fs.String("note", "", "`text` saying why, for the audit log")}
}

// scope returns the one scope flag given and its value, or an exit
// status. The scope is whichever scope flag was given, even as ""
// (which the daemon then refuses with its reason).
func (s *freezeScope) scope(c *call) (scope, value string, code int) {
	var scopes []string
	s.fs.Visit(func(f *flag.Flag) {
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
	case len(scopes) == 0:
		return "", "", c.usage("say what to freeze: --all, --domain DOMAIN, --user USER or --network CIDR")
	case len(scopes) > 1:
		return "", "", c.usage("give one scope at a time, got %s", strings.Join(scopes, " and "))
	}
	return scope, value, 0
}

// freezeOn switches an outbound freeze on (PRODUCT.md §1 Day B):
// matching outbound mail is tempfailed inside mailwarden, so nothing is
// lost and restarting the MTA cannot undo it.
func freezeOn(fs *flag.FlagSet) runFunc { return freezeSwitch(fs, true) }

// freezeOff lifts an outbound freeze.
func freezeOff(fs *flag.FlagSet) runFunc { return freezeSwitch(fs, false) }

func freezeSwitch(fs *flag.FlagSet, on bool) runFunc {
	asJSON := jsonFlag(fs)
	s := newFreezeScope(fs)
	return func(c *call) int {
		scope, value, code := s.scope(c)
		if code != 0 {
			return code
		}
		cl, ctx, done, code := c.connect()
		if cl == nil {
			return code
		}
		defer done()
		var f adminapi.Freeze
		var err error
		if on {
			f, err = cl.Freeze(ctx, scope, value, *s.note)
		} else {
			f, err = cl.Unfreeze(ctx, scope, value, *s.note)
		}
		if err != nil {
			return c.fail(err)
		}
		if *asJSON {
			return c.json(f)
		}
		what := printableText(adminapi.DescribeScope(f.Scope, f.Value))
		if on {
			fmt.Fprintf(c.stdout, "frozen: %s. Matching outbound mail is tempfailed (kept by the sending MTA) until\n  mailwarden freeze off %s\n",
				what, scopeFlag(f))
		} else {
			fmt.Fprintf(c.stdout, "lifted the freeze on %s (in force since %s, set by %s)\n", what, when(f.Since, time.Now()), printable(f.By))
		}
		return 0
	}
}

var freezeStatus = askCmd(func(ctx context.Context, cl *adminapi.Client, _ []string) ([]adminapi.Freeze, error) {
	return cl.Freezes(ctx)
}, printFreezes)

// scopeFlag is the command-line flag that names f's scope.
func scopeFlag(f adminapi.Freeze) string {
	if f.Scope == store.FreezeAll {
		return "--all"
	}
	return "--" + f.Scope + " " + printable(f.Value)
}

func printFreezes(w io.Writer, fz []adminapi.Freeze, now time.Time) {
	printTable(w, fz, "no outbound freeze in force", "SCOPE\tVALUE\tSINCE\tBY\tNOTE", func(f adminapi.Freeze) []string {
		return []string{f.Scope, orDash(printable(f.Value)), when(f.Since, now), printable(f.By), orDash(printableText(f.Note))}
	})
}
