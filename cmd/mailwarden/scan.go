package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"text/tabwriter"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/config"
)

// cmdScan asks the daemon to scan for open backdoor ports now and waits
// for the result. The daemon does the scanning, so it alone decides what
// may be scanned: only inside scan.ranges.
func cmdScan(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("scan", flag.ContinueOnError)
	a := newAdminCmd("scan", fs, stdout, stderr)
	pos, err := parseFlags(fs, args, stderr)
	if err != nil {
		return 2
	}
	for _, r := range pos {
		if p, err := config.ParsePrefix(r); err != nil || !p.IsValid() {
			return a.usage("%q is not a network such as 10.1.0.0/24 or an address", r)
		}
	}
	c, code := a.client()
	if c == nil {
		return code
	}
	defer c.Close()
	// A scan of a /16 takes minutes; it runs until done or interrupted.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := c.Scan(ctx, pos)
	if err != nil {
		// A refused range is not a typo in the command line but the
		// scanner's safety limit: report it as a failure.
		fmt.Fprintf(stderr, "mailwarden scan: %v\n", err)
		return 1
	}
	if *a.asJSON {
		return a.json(res)
	}
	printScan(stdout, res)
	return 0
}

func printScan(w io.Writer, res adminapi.ScanResult) {
	if len(res.OpenPorts) > 0 {
		tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "IP\tPORT\tFOUND")
		for _, o := range res.OpenPorts {
			fmt.Fprintf(tw, "%s\t%d\t%s\n", printable(o.IP), o.Port, localTime(o.Time))
		}
		tw.Flush()
	} else {
		fmt.Fprintln(w, "no open ports found")
	}
	fmt.Fprintf(w, "probed %d: %d open, %d closed, %d errors in %.1fs\n",
		res.Probed, res.Open, res.Closed, res.Errors, res.DurationSeconds)
}
