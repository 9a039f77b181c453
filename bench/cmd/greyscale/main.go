// Command greyscale measures a store backend as its greylist grows
// (issue 17): it fills the store with triplets in steps (100 thousand,
// 1 million, 10 million by default) and at each step reports the insert
// rate, the latency of greylisting decisions under concurrent load, the
// disk (SQLite) or memory (Redis) the store uses per entry, and what
// Expire costs when a tenth of the entries have expired.
//
//	greyscale [-backend sqlite|redis] [-sizes 100000,1000000,10000000] [-k 4,16] [-decisions 100000]
//
// The store is opened the way the daemon opens it (store/backend.Open
// with Options{Daemon: true}): SQLite in a fresh data directory, Redis
// on a redis-server that greyscale starts on a free loopback port and
// stops at the end. Triplets go in through PutTriplet, as the greylist
// check writes them, and a decision is the check's store calls: GetTriplet
// then PutTriplet.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"mailwarden/internal/store"
)

const usage = `usage: greyscale [-backend sqlite|redis] [-sizes N,N,...] [-k K,K,...] [-decisions D]
                 [-existing F] [-insert-workers W] [-dir DIR] [-redis-server PATH]
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// options are the command line.
type options struct {
	backend       string
	sizes         []int
	ks            []int
	decisions     int
	existing      float64
	insertWorkers int
	dir           string
	redisServer   string
	redisConfig   string
}

func parse(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("greyscale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	var o options
	var sizes, ks string
	fs.StringVar(&o.backend, "backend", "sqlite", "store backend: sqlite or redis")
	fs.StringVar(&sizes, "sizes", "100000,1000000,10000000", "store sizes to measure at, ascending, comma-separated")
	fs.StringVar(&ks, "k", "4,16", "concurrent deciders for the latency measurements, comma-separated")
	fs.IntVar(&o.decisions, "decisions", 100000, "decisions measured at each size for each k")
	fs.Float64Var(&o.existing, "existing", 0.5, "fraction of decisions for triplets already stored (the rest are new)")
	fs.IntVar(&o.insertWorkers, "insert-workers", 8, "goroutines inserting triplets")
	fs.StringVar(&o.dir, "dir", "", "directory for the store's files (default: a new temporary directory, removed at the end)")
	fs.StringVar(&o.redisServer, "redis-server", "redis-server", "redis-server program, for -backend redis")
	fs.StringVar(&o.redisConfig, "redis-config", defaultRedisConfig,
		"store config for -backend redis, YAML; %s is replaced by the server's host:port")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if o.sizes, err = ints(sizes); err != nil {
		return o, fmt.Errorf("-sizes: %w", err)
	}
	for i := 1; i < len(o.sizes); i++ {
		if o.sizes[i] <= o.sizes[i-1] {
			return o, errors.New("-sizes: sizes must be ascending and distinct")
		}
	}
	if o.ks, err = ints(ks); err != nil {
		return o, fmt.Errorf("-k: %w", err)
	}
	switch {
	case o.backend != "sqlite" && o.backend != "redis":
		return o, fmt.Errorf("-backend: unknown backend %q (sqlite or redis)", o.backend)
	case o.decisions < 100:
		return o, errors.New("-decisions: at least 100, for a p99 to mean anything")
	case o.existing < 0 || o.existing > 1:
		return o, errors.New("-existing: a fraction between 0 and 1")
	case o.insertWorkers < 1:
		return o, errors.New("-insert-workers: at least 1")
	}
	return o, nil
}

// ints parses a comma-separated list of positive integers.
func ints(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "greyscale: %v\n", err)
		return 2
	}
	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "greyscale-"); err != nil {
			fmt.Fprintf(stderr, "greyscale: %v\n", err)
			return 1
		}
		defer os.RemoveAll(dir)
	}
	b, err := openBackend(ctx, o, dir)
	if err != nil {
		fmt.Fprintf(stderr, "greyscale: opening the %s store: %v\n", o.backend, err)
		return 1
	}
	defer b.close()
	fmt.Fprintf(stdout, "greyscale backend=%s %s cpus=%d k=%v decisions=%d existing=%.2f insert-workers=%d\n",
		o.backend, b.describe(), runtime.NumCPU(), o.ks, o.decisions, o.existing, o.insertWorkers)
	tab := newTable(stdout, o, b)
	steps, err := measure(ctx, o, b, tab, stderr)
	tab.end(o, b, steps)
	if err != nil {
		fmt.Fprintf(stderr, "greyscale: %v\n", err)
		return 1
	}
	return 0
}

// The clock of the run: every triplet is first seen at t0. A tenth of
// them expire at t0+shortLife, the rest at t0+longLife; Expire at
// t0+expireAt removes exactly that tenth.
const (
	shortLife = time.Hour
	longLife  = 48 * time.Hour
	expireAt  = 2 * time.Hour
)

// short reports whether triplet i is one of the tenth that expire early.
func short(i int) bool { return i%10 == 0 }

// triplet is stored triplet number i: 65,536 /24 netblocks, a sender
// unique to i and 5,000 recipients, so the keys are as long as real
// ones (about 60 bytes together).
func triplet(i int, t0 time.Time) store.Triplet {
	exp := t0.Add(longLife)
	if short(i) {
		exp = t0.Add(shortLife)
	}
	return store.Triplet{
		Client:    fmt.Sprintf("10.%d.%d.0/24", (i>>8)&0xff, i&0xff),
		Sender:    fmt.Sprintf("sender%d@example.org", i),
		Recipient: fmt.Sprintf("user%d@example.net", i%5000),
		FirstSeen: t0,
		LastSeen:  t0,
		Attempts:  1,
		Expires:   exp,
	}
}

// step is what was measured at one size.
type step struct {
	size       int
	insertRate float64 // triplets/s
	decide     []latency
	used       int64 // bytes: database and WAL, or Redis used_memory over the empty server's
	detail     string
	stored     int // triplets in the store when weighed: size, plus the new ones earlier decisions added
	heap       uint64
	expired    int
	expireTook time.Duration // Expire at t0+expireAt, removing the tenth
	expireNow  time.Duration // Expire at the real time, as the daemon's runner calls it
	err        error
}

type latency struct {
	k        int
	n        int
	rate     float64 // decisions/s
	p50, p99 time.Duration
	found    int // decisions that found their triplet
}

// measure fills the store step by step and measures at each size.
func measure(ctx context.Context, o options, b target, tab *table, stderr io.Writer) ([]step, error) {
	t0 := time.Now()
	st := b.store()
	have := 0
	added := 0 // new triplets the decisions stored
	var steps []step
	var newSeq atomic.Int64
	for si, size := range o.sizes {
		s := step{size: size}
		fmt.Fprintf(stderr, "greyscale: filling to %d\n", size)
		start := time.Now()
		if err := insert(ctx, st, have, size, o.insertWorkers, t0, stderr); err != nil {
			return steps, fmt.Errorf("inserting up to %d: %w", size, err)
		}
		// Probe writes through the same queue as PutTriplet and waits
		// for its commit, so the rate counts triplets written, not
		// merely queued.
		if err := st.Probe(ctx); err != nil {
			return steps, fmt.Errorf("committing the inserts: %w", err)
		}
		s.insertRate = float64(size-have) / time.Since(start).Seconds()
		have = size
		// Weighed now, while the store holds exactly size triplets:
		// the decisions below add new ones.
		s.stored = size + added
		var err error
		if s.used, s.detail, err = b.used(ctx); err != nil {
			return steps, fmt.Errorf("measuring the space used: %w", err)
		}
		s.heap = heapInUse()
		for _, k := range o.ks {
			fmt.Fprintf(stderr, "greyscale: %d decisions at %d with k=%d\n", o.decisions, size, k)
			l, err := decide(ctx, st, k, o.decisions, size, o.existing, &newSeq, t0)
			if err != nil {
				return steps, fmt.Errorf("deciding at %d with k=%d: %w", size, k, err)
			}
			s.decide = append(s.decide, l)
			added += l.n - l.found
		}
		if err := st.Probe(ctx); err != nil {
			return steps, fmt.Errorf("committing the decisions: %w", err)
		}
		// What the daemon's periodic expiry costs at this size: it
		// passes the real time, when nothing here has expired yet.
		start = time.Now()
		if _, err := st.Expire(ctx, time.Now()); err != nil {
			return steps, fmt.Errorf("expiring at %d: %w", size, err)
		}
		s.expireNow = time.Since(start)
		fmt.Fprintf(stderr, "greyscale: expiring a tenth at %d\n", size)
		start = time.Now()
		s.expired, err = st.Expire(ctx, t0.Add(expireAt))
		s.expireTook = time.Since(start)
		if err != nil {
			return steps, fmt.Errorf("expiring at %d: %w", size, err)
		}
		steps = append(steps, s)
		tab.row(s)
		if si < len(o.sizes)-1 {
			// Put the expired tenth back, untimed, so the next size
			// again holds exactly its triplets and again a tenth to
			// expire.
			if err := reinsertShort(ctx, st, size, o.insertWorkers, t0); err != nil {
				return steps, fmt.Errorf("putting the expired tenth back: %w", err)
			}
		}
	}
	return steps, nil
}

// heapInUse is the Go heap after a collection: for SQLite, the daemon's
// in-memory copy of the triplets lives there.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// insert puts triplets [from, to) with w goroutines, saying how far it
// got every million.
func insert(ctx context.Context, st store.Store, from, to, w int, t0 time.Time, progress io.Writer) error {
	start := time.Now()
	return parallel(ctx, w, from, to, func(i int) error {
		if i > from && i%1_000_000 == 0 {
			fmt.Fprintf(progress, "greyscale: %d triplets, %.0f/s since %d\n", i, float64(i-from)/time.Since(start).Seconds(), from)
		}
		return st.PutTriplet(ctx, triplet(i, t0))
	})
}

func reinsertShort(ctx context.Context, st store.Store, to, w int, t0 time.Time) error {
	return parallel(ctx, w, 0, (to+9)/10, func(j int) error { return st.PutTriplet(ctx, triplet(j*10, t0)) })
}

// parallel calls fn for every i in [from, to) from w goroutines and
// returns the first error.
func parallel(ctx context.Context, w, from, to int, fn func(i int) error) error {
	var next atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range w {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= to || ctx.Err() != nil {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(to))
					return
				}
			}
		})
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// decide runs n greylisting decisions from k goroutines and times each.
// A decision is what the greylist check asks of the store: GetTriplet,
// then PutTriplet of the new or updated triplet. A fraction existing of
// them are for stored triplets (never one of the tenth that will be
// expired, so the expiry measurement stays a tenth); the rest are new.
func decide(ctx context.Context, st store.Store, k, n, size int, existing float64, newSeq *atomic.Int64, t0 time.Time) (latency, error) {
	var left atomic.Int64
	left.Store(int64(n))
	times := make([][]time.Duration, k)
	found := make([]int, k)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	start := time.Now()
	for g := range k {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), uint64(size)))
			d := make([]time.Duration, 0, n/k+1)
			for left.Add(-1) >= 0 && ctx.Err() == nil {
				var key store.Triplet
				if rng.Float64() < existing {
					i := rng.IntN(size)
					if short(i) {
						i++
					}
					key = triplet(min(i, size-1), t0)
				} else {
					j := int(newSeq.Add(1))
					key = store.Triplet{Client: fmt.Sprintf("192.0.%d.0/24", j&0xff),
						Sender: fmt.Sprintf("new%d@example.com", j), Recipient: fmt.Sprintf("user%d@example.net", j%5000)}
				}
				begin := time.Now()
				now := begin
				t, err := st.GetTriplet(ctx, key.Client, key.Sender, key.Recipient, now)
				switch {
				case errors.Is(err, store.ErrNotFound):
					t = store.Triplet{Client: key.Client, Sender: key.Sender, Recipient: key.Recipient,
						FirstSeen: now, LastSeen: now, Attempts: 1, Expires: now.Add(longLife)}
				case err != nil:
					once.Do(func() { first = err })
					return
				default:
					found[g]++
					t.LastSeen = now
					t.Attempts++
					if t.PassedAt.IsZero() {
						t.PassedAt = now
					}
					// The expiry stays: a tenth of the store is to
					// expire at the same instant.
				}
				if err := st.PutTriplet(ctx, t); err != nil {
					once.Do(func() { first = err })
					return
				}
				d = append(d, time.Since(begin))
			}
			times[g] = d
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if first == nil {
		first = ctx.Err()
	}
	all := slices.Concat(times...)
	slices.Sort(all)
	l := latency{k: k, n: len(all), rate: float64(len(all)) / elapsed.Seconds()}
	for _, f := range found {
		l.found += f
	}
	if len(all) > 0 {
		l.p50 = all[len(all)*50/100]
		l.p99 = all[len(all)*99/100]
	}
	return l, first
}

// table prints the results as they come, one row per size, so a long
// run that is stopped keeps what it measured; columns are wide enough to
// line up without seeing every row first.
type table struct {
	w  io.Writer
	tw *tabwriter.Writer
}

func newTable(w io.Writer, o options, b target) *table {
	t := &table{w: w, tw: tabwriter.NewWriter(w, 11, 0, 1, ' ', tabwriter.AlignRight)}
	head := []string{"entries", "insert/s"}
	for _, k := range o.ks {
		head = append(head, fmt.Sprintf("k=%d dec/s", k), fmt.Sprintf("k=%d p50", k), fmt.Sprintf("k=%d p99", k))
	}
	used, detail := b.usedName()
	head = append(head, "stored", used, "B/entry", detail, "go heap", "Expire(now)", "expired", "expire took")
	fmt.Fprintln(t.tw, strings.Join(head, "\t")+"\t")
	t.tw.Flush()
	return t
}

func (t *table) row(s step) {
	row := []string{strconv.Itoa(s.size), fmt.Sprintf("%.0f", s.insertRate)}
	for _, l := range s.decide {
		row = append(row, fmt.Sprintf("%.0f", l.rate), dur(l.p50), dur(l.p99))
	}
	row = append(row, strconv.Itoa(s.stored), mib(s.used), fmt.Sprintf("%.0f", float64(s.used)/float64(s.stored)), s.detail, mib(int64(s.heap)),
		dur(s.expireNow), strconv.Itoa(s.expired), dur(s.expireTook))
	fmt.Fprintln(t.tw, strings.Join(row, "\t")+"\t")
	t.tw.Flush()
}

// end prints the growth of p99 from the smallest size to the largest
// measured, and the backend's note.
func (t *table) end(o options, b target, steps []step) {
	if len(steps) >= 2 {
		first, last := steps[0], steps[len(steps)-1]
		for i, k := range o.ks {
			if i < len(first.decide) && i < len(last.decide) && first.decide[i].p99 > 0 {
				fmt.Fprintf(t.w, "p99 ratio k=%d: %d entries / %d entries = %.2f\n", k, last.size, first.size,
					float64(last.decide[i].p99)/float64(first.decide[i].p99))
			}
		}
	}
	if note := b.note(); note != "" {
		fmt.Fprintln(t.w, note)
	}
}

func dur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond))
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20)) }
