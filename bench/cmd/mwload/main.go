// Command mwload drives a milter or a Postfix policy server on loopback
// with mailwarden's load generator (package mailwarden/bench/load) and
// prints one line of results, or JSON with -json.
//
//	mwload milter -addr 127.0.0.1:10029 -n 4000 -c 8 [-size 2048] [-uniq U]
//	mwload policy -addr 127.0.0.1:10023 -n 20000 -c 4 [-uniq U]
//
// It works against any milter or policy server, so bench/run.sh measures
// mailwarden and the reference systems with the very same client.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"mailwarden/bench/load"
)

const usage = `usage:
  mwload milter -addr HOST:PORT [-n N] [-c C] [-size BYTES] [-uniq U] [-client PATTERN] [-seed S] [-json]
  mwload policy -addr HOST:PORT [-n N] [-c C] [-uniq U] [-client PATTERN] [-seed S] [-json]
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// report is the -json output: durations in milliseconds, for scripts.
type report struct {
	Kind       string         `json:"kind"`
	Addr       string         `json:"addr"`
	C          int            `json:"c"`
	N          int            `json:"n"`
	ElapsedS   float64        `json:"elapsed_s"`
	Rate       float64        `json:"rate"`
	P50ms      float64        `json:"p50_ms"`
	P99ms      float64        `json:"p99_ms"`
	Maxms      float64        `json:"max_ms"`
	Verdicts   map[string]int `json:"verdicts"`
	FirstError string         `json:"first_error,omitempty"`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "milter" && args[0] != "policy") {
		fmt.Fprint(stderr, usage)
		return 2
	}
	kind := args[0]
	fs := flag.NewFlagSet("mwload "+kind, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c load.Common
	defaultAddr, defaultN, defaultC := "127.0.0.1:10029", 4000, 8
	if kind == "policy" {
		defaultAddr, defaultN, defaultC = "127.0.0.1:10023", 20000, 4
	}
	fs.StringVar(&c.Addr, "addr", defaultAddr, "server `host:port` (loopback)")
	fs.IntVar(&c.N, "n", defaultN, "transactions or requests in all")
	fs.IntVar(&c.C, "c", defaultC, "concurrent milter sessions or policy connections")
	fs.IntVar(&c.Uniq, "uniq", 1_000_000, "distinct client/sender/recipient triplets to draw from")
	fs.StringVar(&c.ClientPattern, "client", "10.x.y.z", "client address `pattern`; x, y, z are bytes of the triplet number")
	fs.Int64Var(&c.Seed, "seed", 0, "triplet seed; runs with different seeds share no triplet (0: the clock)")
	fs.DurationVar(&c.Timeout, "timeout", 10*time.Second, "bound on each network read or write")
	size := fs.Int("size", 2048, "message body `bytes` (milter only)")
	rate := fs.Float64("rate", 0, "pace policy requests at this many `per second` in all (0: as fast as answered)")
	virus := fs.Float64("virus", 0, "`fraction` of milter messages carrying a base64 EICAR attachment")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "mwload %s: unexpected argument %q\n%s", kind, fs.Arg(0), usage)
		return 2
	}

	var (
		r   load.Result
		err error
	)
	if kind == "milter" {
		r, err = load.RunMilter(ctx, load.MilterOptions{Common: c, Size: *size, Virus: *virus})
	} else {
		r, err = load.RunPolicy(ctx, load.PolicyOptions{Common: c, Rate: *rate})
	}
	if errors.Is(err, load.ErrBadOptions) {
		fmt.Fprintf(stderr, "mwload %s: %v\n", kind, err)
		return 2
	}
	if r.N > 0 {
		if *asJSON {
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			enc := json.NewEncoder(stdout)
			enc.Encode(report{Kind: kind, Addr: c.Addr, C: c.C, N: r.N, ElapsedS: r.Elapsed.Seconds(),
				Rate: r.Rate, P50ms: ms(r.P50), P99ms: ms(r.P99), Maxms: ms(r.Max),
				Verdicts: r.Verdicts, FirstError: r.FirstError})
		} else {
			fmt.Fprintf(stdout, "%s addr=%s c=%d %s\n", kind, c.Addr, c.C, r)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "mwload %s: %v\n", kind, err)
		return 1
	}
	return 0
}
