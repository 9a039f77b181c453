// Package load is mailwarden's own load generator: full milter
// transactions and Postfix policy-delegation requests driven against a
// loopback server, with throughput, latency percentiles and the verdicts
// the server gave. The go test benchmarks, bench/cmd/mwload and
// bench/run.sh all use it, so every figure comes from the same code.
//
// Client addresses, HELO names and envelope addresses are only text inside
// the protocol; the only socket ever opened is to the server address.
package load

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Result is what one run measured.
type Result struct {
	// N is the number of transactions or requests that were timed.
	N       int           `json:"n"`
	Elapsed time.Duration `json:"elapsed_ns"`
	// Rate is N per second of Elapsed.
	Rate float64       `json:"rate"`
	P50  time.Duration `json:"p50_ns"`
	P99  time.Duration `json:"p99_ns"`
	Max  time.Duration `json:"max_ns"`
	// Verdicts counts what the server answered: for the milter "accept",
	// "reject", "tempfail", "discard" or "codeNNN" (a reply with a custom
	// SMTP code); for the policy server the first word of the action
	// ("DUNNO", "451", "DEFER_IF_PERMIT"). Failures count as "error".
	Verdicts map[string]int `json:"verdicts"`
	// FirstError is the first failure seen, if any.
	FirstError string `json:"first_error,omitempty"`
}

// String formats r on one line, the way the shared reference tools do, so
// their output and mwload's read alike.
func (r Result) String() string {
	s := fmt.Sprintf("n=%d elapsed=%.3fs rate=%.0f/s p50=%v p99=%v max=%v verdicts=%v",
		r.N, r.Elapsed.Seconds(), r.Rate, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond),
		r.Max.Round(time.Microsecond), r.Verdicts)
	if r.FirstError != "" {
		s += " first_error=" + strconv.Quote(r.FirstError)
	}
	return s
}

// Errors returned before any load is sent.
var (
	ErrBadOptions = errors.New("load: invalid options")
	// ErrAllFailed means not one transaction or request got an answer;
	// the Result still holds the counts and the first error.
	ErrAllFailed = errors.New("load: every attempt failed")
)

// Common holds the options both generators share.
type Common struct {
	// Addr is the server's host:port; it should be on loopback.
	Addr string
	// N is how many transactions or requests to send in all.
	N int
	// C is how many run at once (milter sessions, policy connections).
	C int
	// Uniq is how many distinct (client, sender, recipient) triplets the
	// load draws from, uniformly; 0 means 1,000,000.
	Uniq int
	// ClientPattern is the client address with the letters x, y and z
	// standing for the bytes of the triplet number; "" means "10.x.y.z".
	// The letters may also appear in IPv6 form, e.g. "2001:db8::x:y:z".
	ClientPattern string
	// Seed picks which triplets are drawn and tags every sender, so runs
	// with different seeds never share a triplet; 0 means the clock.
	Seed int64
	// Timeout bounds each network read and write; 0 means 10s.
	Timeout time.Duration
}

// triplets is the normalised form of Common used while running.
type triplets struct {
	uniq    uint64
	seed    uint64
	tag     string
	pattern string
}

func (c Common) validate(kind string) (triplets, error) {
	switch {
	case c.Addr == "":
		return triplets{}, fmt.Errorf("%w: %s: no server address", ErrBadOptions, kind)
	case c.N < 1:
		return triplets{}, fmt.Errorf("%w: %s: N=%d, want at least 1", ErrBadOptions, kind, c.N)
	case c.C < 1:
		return triplets{}, fmt.Errorf("%w: %s: C=%d, want at least 1", ErrBadOptions, kind, c.C)
	case c.Uniq < 0:
		return triplets{}, fmt.Errorf("%w: %s: Uniq=%d is negative", ErrBadOptions, kind, c.Uniq)
	}
	t := triplets{uniq: uint64(c.Uniq), seed: uint64(c.Seed), pattern: c.ClientPattern}
	if t.uniq == 0 {
		t.uniq = 1_000_000
	}
	if t.seed == 0 {
		t.seed = uint64(time.Now().UnixNano())
	}
	if t.pattern == "" {
		t.pattern = "10.x.y.z"
	}
	if _, err := netip.ParseAddr(t.client(0)); err != nil {
		return triplets{}, fmt.Errorf("%w: %s: client pattern %q does not give an IP address: %v", ErrBadOptions, kind, c.ClientPattern, err)
	}
	t.tag = strconv.FormatUint(t.seed%(36*36*36*36*36*36), 36)
	return t, nil
}

// key returns the triplet number for the i-th request. It depends only on
// the seed and i, not on which worker sends the request.
func (t triplets) key(i int) int {
	return int(splitmix64(t.seed+uint64(i)) % t.uniq)
}

// fraction returns a number in [0, 1) for request i, independent of its
// key, for choosing which requests carry something (a virus).
func (t triplets) fraction(i int) float64 {
	return float64(splitmix64(^(t.seed+uint64(i)))>>11) / (1 << 53)
}

// client returns the client address for triplet k: the pattern with x, y
// and z replaced by bytes 2, 1 and 0 of k.
func (t triplets) client(k int) string {
	b := make([]byte, 0, len(t.pattern)+6)
	for i := 0; i < len(t.pattern); i++ {
		switch c := t.pattern[i]; c {
		case 'x':
			b = strconv.AppendInt(b, int64((k>>16)&255), 10)
		case 'y':
			b = strconv.AppendInt(b, int64((k>>8)&255), 10)
		case 'z':
			b = strconv.AppendInt(b, int64(k&255), 10)
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

func (t triplets) sender(k int) string    { return "s" + strconv.Itoa(k) + "-" + t.tag + "@example.net" }
func (t triplets) recipient(k int) string { return "r" + strconv.Itoa(k) + "@dest.test" }
func (t triplets) host(k int) string      { return "host" + strconv.Itoa(k) + ".example.net" }

// splitmix64 is a small, good mixing function (Steele et al., 2014).
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// tally collects what the workers measured. Each worker writes only its
// own latency slots and its own verdict map, so no lock is needed until
// the end.
type tally struct {
	lat      []time.Duration
	done     []bool
	verdicts []map[string]int
	errMu    sync.Mutex
	firstErr error
}

func newTally(n, c int) *tally {
	t := &tally{lat: make([]time.Duration, n), done: make([]bool, n), verdicts: make([]map[string]int, c)}
	for w := range t.verdicts {
		t.verdicts[w] = map[string]int{}
	}
	return t
}

func (t *tally) record(w, i int, d time.Duration, verdict string, err error) {
	t.lat[i], t.done[i] = d, true
	if err != nil {
		verdict = "error"
		t.errMu.Lock()
		if t.firstErr == nil {
			t.firstErr = err
		}
		t.errMu.Unlock()
	}
	t.verdicts[w][verdict]++
}

// result sums the tally. Only requests that were actually sent count, so
// a cancelled run reports what it did.
func (t *tally) result(elapsed time.Duration) (Result, error) {
	r := Result{Elapsed: elapsed, Verdicts: map[string]int{}}
	var all []time.Duration
	for i, d := range t.lat {
		if t.done[i] {
			all = append(all, d)
		}
	}
	for _, m := range t.verdicts {
		for k, v := range m {
			r.Verdicts[k] += v
		}
	}
	if t.firstErr != nil {
		r.FirstError = t.firstErr.Error()
	}
	r.N = len(all)
	if r.N == 0 {
		return r, nil
	}
	slices.Sort(all)
	// The same percentile rule as the shared reference tools, so figures
	// compare: the element at q*(n-1), rounded down.
	p := func(q float64) time.Duration { return all[int(q*float64(len(all)-1))] }
	r.P50, r.P99, r.Max = p(0.50), p(0.99), all[len(all)-1]
	if elapsed > 0 {
		r.Rate = float64(r.N) / elapsed.Seconds()
	}
	if r.Verdicts["error"] == r.N {
		return r, fmt.Errorf("%w: %d of %d, first: %s", ErrAllFailed, r.N, r.N, r.FirstError)
	}
	return r, nil
}

// counter hands out request numbers 0..n-1 to the workers.
type counter struct {
	next atomic.Int64
	n    int64
}

func (c *counter) take() (int, bool) {
	i := c.next.Add(1) - 1
	return int(i), i < c.n
}
