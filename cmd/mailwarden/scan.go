package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/config"
)

// scanCmd asks the daemon to scan for open backdoor ports now and waits
// for the result. The daemon does the scanning, so it alone decides what
// may be scanned: only inside scan.ranges.
func scanCmd(fs *flag.FlagSet) runFunc {
	asJSON := jsonFlag(fs)
	return func(c *call) int {
		for _, r := range c.pos {
			if p, err := config.ParsePrefix(r); err != nil || !p.IsValid() {
				return c.usage("%q is not a network such as 10.1.0.0/24 or an address", r)
			}
		}
		cl, code := c.client()
		if cl == nil {
			return code
		}
		defer cl.Close()
		// A scan of a /16 takes minutes; it runs until done or interrupted.
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		res, err := cl.Scan(ctx, c.pos)
		if err != nil {
			// A refused range is not a typo in the command line but the
			// scanner's safety limit: report it as a failure.
			fmt.Fprintf(c.stderr, "mailwarden scan: %v\n", err)
			return 1
		}
		if *asJSON {
			return c.json(res)
		}
		printScan(c.stdout, res)
		return 0
	}
}

func printScan(w io.Writer, res adminapi.ScanResult) {
	printTable(w, res.OpenPorts, "no open ports found", "IP\tPORT\tFOUND", func(o adminapi.ScanOpen) []string {
		return []string{printable(o.IP), strconv.Itoa(o.Port), localTime(o.Time)}
	})
	fmt.Fprintf(w, "probed %d: %d open, %d closed, %d errors in %.1fs\n",
		res.Probed, res.Open, res.Closed, res.Errors, res.DurationSeconds)
}
