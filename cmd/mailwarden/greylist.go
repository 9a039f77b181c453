package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/config"
	"mailwarden/internal/store"
)

func greylistList(fs *flag.FlagSet) runFunc {
	configPath, dataDir := configFlags(fs)
	asJSON := jsonFlag(fs)
	pending := fs.Bool("pending", false, "list only triplets still waiting")
	passed := fs.Bool("passed", false, "list only triplets that passed")
	limit := fs.Int("limit", 0, "list at most `N` triplets, newest first (0: all)")
	return func(c *call) int {
		ts, code := readStore(c, *configPath, *dataDir, func(ctx context.Context, st store.Store, _ config.Config) ([]store.Triplet, error) {
			return st.ListTriplets(ctx, store.TripletFilter{Pending: *pending, Passed: *passed, Limit: *limit}, time.Now())
		})
		if code != 0 {
			return code
		}
		if *asJSON {
			return c.json(tripletsJSON(ts))
		}
		printTriplets(c.stdout, ts)
		return 0
	}
}

func greylistStats(fs *flag.FlagSet) runFunc {
	configPath, dataDir := configFlags(fs)
	asJSON := jsonFlag(fs)
	return func(c *call) int {
		s, code := readStore(c, *configPath, *dataDir, func(ctx context.Context, st store.Store, cfg config.Config) (store.GreylistStats, error) {
			return st.GreylistStats(ctx, time.Now(), cfg.Greylist.AutoWhitelistAfter)
		})
		if code != 0 {
			return code
		}
		if *asJSON {
			return c.json(map[string]int{
				"pending": s.Pending, "passed": s.Passed, "autowhitelisted_clients": s.WhitelistedClients,
			})
		}
		fmt.Fprintf(c.stdout, "pending triplets:         %d\npassed triplets:          %d\nauto-whitelisted clients: %d\n",
			s.Pending, s.Passed, s.WhitelistedClients)
		return 0
	}
}

// greylistAllow lets a waiting triplet through at once. It goes through
// the daemon, which checks the input, turns an address into the netblock
// of its live config and records who did it.
func greylistAllow(fs *flag.FlagSet) runFunc {
	asJSON := jsonFlag(fs)
	return func(c *call) int {
		return ask(c, *asJSON, func(ctx context.Context, cl *adminapi.Client) (adminapi.AllowRequest, error) {
			return cl.AllowTriplet(ctx, adminapi.AllowRequest{Client: c.pos[0], Sender: c.pos[1], Recipient: c.pos[2]})
		},
			func(w io.Writer, t adminapi.AllowRequest) {
				fmt.Fprintf(w, "allowed: %s %s -> %s (passes from now on)\n", printable(t.Client),
					printable(displayAddr(t.Sender)), printable(t.Recipient))
			})
	}
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
	printTable(w, ts, "", "CLIENT\tSENDER\tRECIPIENT\tSTATE\tATTEMPTS\tFIRST SEEN\tLAST SEEN", func(t store.Triplet) []string {
		return []string{printable(t.Client), printable(displayAddr(t.Sender)),
			printable(t.Recipient), state(t), strconv.Itoa(t.Attempts),
			t.FirstSeen.Local().Format(time.DateTime), t.LastSeen.Local().Format(time.DateTime)}
	})
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
