package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"mailwarden/internal/config"
	"mailwarden/internal/daemon"
	"mailwarden/internal/policy/greylist"
	"mailwarden/internal/store"
	"mailwarden/internal/store/sqlite"
)

func cmdGreylist(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, "usage: mailwarden greylist list|allow|stats [--config FILE] [--data DIR]\n")
		return 2
	}
	verb := args[0]
	fs := flag.NewFlagSet("greylist "+verb, flag.ContinueOnError)
	configPath := fs.String("config", "", "config `file` (default: built-in defaults)")
	dataDir := fs.String("data", "", "data `directory` (overrides data_dir)")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	pending := fs.Bool("pending", false, "list only triplets still waiting")
	passed := fs.Bool("passed", false, "list only triplets that passed")
	limit := fs.Int("limit", 0, "list at most `N` triplets, newest first (0: all)")
	pos, err := parseFlags(fs, args[1:], stderr)
	if err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "mailwarden greylist %s: %v\n", verb, err)
		return 1
	}
	cfg, err := daemon.LoadConfig(*configPath, *dataDir)
	if err != nil {
		fmt.Fprintf(stderr, "mailwarden greylist %s: %v\n", verb, err)
		return 2
	}
	want := map[string]int{"list": 0, "allow": 3, "stats": 0}
	n, known := want[verb]
	if !known {
		fmt.Fprintf(stderr, "mailwarden greylist: unknown command %q (want list, allow or stats)\n", verb)
		return 2
	}
	if len(pos) != n {
		if verb == "allow" {
			return usageErr(stderr, verb, "CLIENT SENDER RECIPIENT (CLIENT is an IP address or a netblock as listed; SENDER \"<>\" or \"\" for the null sender)")
		}
		return usageErr(stderr, verb, "no arguments")
	}
	var client string
	if verb == "allow" {
		if client, err = clientKey(cfg, pos[0]); err != nil {
			return usageErr(stderr, verb, err.Error())
		}
	}
	st, err := sqlite.Open(cfg.DataDir, slog.New(slog.DiscardHandler))
	if err != nil {
		return fail(err)
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	now := time.Now()
	switch verb {
	case "list":
		ts, err := st.ListTriplets(ctx, store.TripletFilter{Pending: *pending, Passed: *passed, Limit: *limit}, now)
		if err != nil {
			return fail(err)
		}
		if *asJSON {
			return writeJSON(stdout, stderr, tripletsJSON(ts))
		}
		printTriplets(stdout, ts)
	case "allow":
		sender := pos[1]
		if sender == "<>" {
			sender = ""
		}
		if err := greylist.Allow(ctx, st, client, strings.ToLower(sender), strings.ToLower(pos[2]), now, cfg.Greylist.PassedLifetime.D()); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "allowed: %s %s -> %s (passes from now on)\n", client, displayAddr(sender), pos[2])
	case "stats":
		s, err := st.GreylistStats(ctx, now, cfg.Greylist.AutoWhitelistAfter)
		if err != nil {
			return fail(err)
		}
		if *asJSON {
			return writeJSON(stdout, stderr, map[string]int{
				"pending": s.Pending, "passed": s.Passed, "autowhitelisted_clients": s.WhitelistedClients,
			})
		}
		fmt.Fprintf(stdout, "pending triplets:         %d\npassed triplets:          %d\nauto-whitelisted clients: %d\n",
			s.Pending, s.Passed, s.WhitelistedClients)
	}
	return 0
}

func usageErr(stderr io.Writer, verb, want string) int {
	fmt.Fprintf(stderr, "mailwarden greylist %s: want %s\n", verb, want)
	return 2
}

// clientKey turns an IP address into its greylist netblock; a netblock
// as printed by `greylist list` is taken as it is.
func clientKey(cfg config.Config, s string) (string, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return greylist.Netblock(a, cfg.Greylist.IPv4Prefix, cfg.Greylist.IPv6Prefix), nil
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked().String(), nil
	}
	if s == "unknown" {
		return s, nil
	}
	return "", fmt.Errorf("CLIENT %q is neither an IP address nor a netblock", s)
}

type tripletJSON struct {
	Client    string    `json:"client"`
	Sender    string    `json:"sender"`
	Recipient string    `json:"recipient"`
	State     string    `json:"state"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	PassedAt  time.Time `json:"passed_at,omitzero"`
	Attempts  int       `json:"attempts"`
	Expires   time.Time `json:"expires"`
}

func tripletsJSON(ts []store.Triplet) []tripletJSON {
	out := make([]tripletJSON, 0, len(ts))
	for _, t := range ts {
		out = append(out, tripletJSON{t.Client, t.Sender, t.Recipient, state(t), t.FirstSeen, t.LastSeen, t.PassedAt, t.Attempts, t.Expires})
	}
	return out
}

func state(t store.Triplet) string {
	if t.Passed() {
		return "passed"
	}
	return "pending"
}

func printTriplets(w io.Writer, ts []store.Triplet) {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT\tSENDER\tRECIPIENT\tSTATE\tATTEMPTS\tFIRST SEEN\tLAST SEEN")
	for _, t := range ts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", printable(t.Client), printable(displayAddr(t.Sender)),
			printable(t.Recipient), state(t), t.Attempts,
			t.FirstSeen.Local().Format(time.DateTime), t.LastSeen.Local().Format(time.DateTime))
	}
	tw.Flush()
}

func displayAddr(a string) string {
	if a == "" {
		return "<>"
	}
	return a
}

// printable quotes a value that holds control characters or spaces, so
// an attacker-chosen address cannot move the cursor or forge table rows.
func printable(s string) string {
	for _, r := range s {
		if r < 0x21 || r == 0x7f || r == '"' {
			return strconv.QuoteToASCII(s)
		}
	}
	return s
}

func writeJSON(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(stderr, "mailwarden: writing JSON: %v\n", err)
		return 1
	}
	return 0
}
