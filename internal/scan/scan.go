// Package scan looks for backdoor listeners (SOCKS on TCP 1080 by default)
// on the configured internal ranges with a plain TCP connect scan. It is
// built so that it cannot reach any address outside those ranges: every
// target is checked against them before the first connection attempt, and
// every address is checked again just before it is dialled.
package scan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"mailwarden/internal/logx"
)

// Defaults applied by New to zero Options fields.
const (
	DefaultPort         = 1080
	DefaultConcurrency  = 32
	DefaultRate         = 200
	DefaultTimeout      = time.Second
	DefaultMaxAddresses = 65536
)

// Allowed ranges are capped in size so that one scan is bounded work:
// 65,536 addresses per range in either family.
const (
	maxBitsV4 = 16
	maxBitsV6 = 112
)

var (
	// ErrOutsideRange means a target is not wholly inside the allowed
	// ranges; the scan is refused before any connection attempt.
	ErrOutsideRange = errors.New("scan: target outside the allowed ranges")
	// ErrTooLarge means the targets expand to more probes than
	// Options.MaxAddresses; the scan is refused before any connection
	// attempt.
	ErrTooLarge = errors.New("scan: too many probes")
	// ErrInvalidTarget means a target prefix is not a valid IP prefix.
	ErrInvalidTarget = errors.New("scan: invalid target")
)

// Options configures a Scanner. Zero fields take the defaults above.
type Options struct {
	// Allowed are the configured internal ranges, the only addresses ever
	// dialled. Each must be no larger than a /16 (IPv4) or /112 (IPv6).
	Allowed []netip.Prefix
	// Ports are the TCP ports probed on every address, default [1080].
	Ports []int
	// Concurrency caps connection attempts in flight, default 32.
	Concurrency int
	// Rate caps connection attempts started per second, default 200.
	Rate float64
	// Timeout bounds one connection attempt, default 1s. An attempt that
	// runs out of time counts as closed.
	Timeout time.Duration
	// MaxAddresses refuses a scan of more address×port probes than this,
	// default 65536.
	MaxAddresses int
	// Dial opens a connection; default a net.Dialer. It must return
	// promptly once ctx is done. Tests replace it to record or fake dials.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Log receives one line per scan; nil discards.
	Log *slog.Logger
}

// Finding is the result of one probe of one address and port.
type Finding struct {
	Addr netip.Addr
	Port int
	// Open is true when the TCP handshake completed.
	Open bool
	// Err is empty when Open; "refused" or "timeout" for a closed port;
	// otherwise the dial error (no route, permission denied, ...).
	Err string
	// Time is when the probe finished.
	Time time.Time
}

// Summary counts the probes of one scan. Probed = Open + Closed + Errors.
type Summary struct {
	Probed, Open, Closed, Errors int
	Duration                     time.Duration
}

// Scanner runs connect scans restricted to its allowed ranges. It is safe
// for concurrent use; each Scan has its own concurrency and rate limits.
type Scanner struct {
	allowed     []netip.Prefix
	ports       []int
	concurrency int
	rate        float64
	timeout     time.Duration
	maxProbes   int
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	log         *slog.Logger
}

// New validates o, fills in defaults and returns a Scanner.
func New(o Options) (*Scanner, error) {
	if len(o.Allowed) == 0 {
		return nil, errors.New("scan: no allowed ranges configured; the scanner dials only inside them")
	}
	s := &Scanner{
		concurrency: o.Concurrency,
		rate:        o.Rate,
		timeout:     o.Timeout,
		maxProbes:   o.MaxAddresses,
		dial:        o.Dial,
		log:         o.Log,
	}
	for _, p := range o.Allowed {
		n, ok := normalize(p)
		if !ok {
			return nil, fmt.Errorf("scan: allowed range %q is not a valid IP prefix", p)
		}
		if n.Addr().Is4() && n.Bits() < maxBitsV4 || n.Addr().Is6() && n.Bits() < maxBitsV6 {
			return nil, fmt.Errorf("scan: allowed range %s is too large: at most /%d for IPv4 and /%d for IPv6 (65536 addresses), to bound the work of one scan; list several smaller ranges instead", n, maxBitsV4, maxBitsV6)
		}
		if !slices.Contains(s.allowed, n) {
			s.allowed = append(s.allowed, n)
		}
	}
	ports := o.Ports
	if len(ports) == 0 {
		ports = []int{DefaultPort}
	}
	for _, p := range ports {
		if p < 1 || p > 65535 {
			return nil, fmt.Errorf("scan: port %d out of range 1-65535", p)
		}
	}
	s.ports = slices.Compact(slices.Sorted(slices.Values(ports)))
	switch {
	case s.concurrency < 0:
		return nil, fmt.Errorf("scan: concurrency %d is negative", s.concurrency)
	case s.rate < 0:
		return nil, fmt.Errorf("scan: rate %g is negative", s.rate)
	case s.timeout < 0:
		return nil, fmt.Errorf("scan: timeout %s is negative", s.timeout)
	case s.maxProbes < 0:
		return nil, fmt.Errorf("scan: max addresses %d is negative", s.maxProbes)
	}
	if s.concurrency == 0 {
		s.concurrency = DefaultConcurrency
	}
	if s.rate == 0 {
		s.rate = DefaultRate
	}
	if s.timeout == 0 {
		s.timeout = DefaultTimeout
	}
	if s.maxProbes == 0 {
		s.maxProbes = DefaultMaxAddresses
	}
	if s.dial == nil {
		s.dial = (&net.Dialer{}).DialContext
	}
	s.log = logx.Or(s.log)
	return s, nil
}

// Allowed returns the normalized allowed ranges.
func (s *Scanner) Allowed() []netip.Prefix { return slices.Clone(s.allowed) }

// Scan probes every address of targets on every configured port and calls
// report once for every completed probe, open or closed, so a caller can
// record that a machine was checked and found clean as well as found open.
// report is never called concurrently with itself and must not block long.
//
// The whole scan is refused, before any connection attempt, when a target
// is not wholly inside one allowed range (ErrOutsideRange) or the targets
// expand to more than MaxAddresses probes (ErrTooLarge). Network and
// broadcast addresses of IPv4 targets shorter than /31 are skipped
// (RFC 3021 makes both addresses of a /31 usable); addresses covered by
// several targets are probed once.
//
// When ctx ends, no further probe starts, attempts in flight are abandoned
// unreported, and Scan returns the summary so far with ctx's error.
func (s *Scanner) Scan(ctx context.Context, targets []netip.Prefix, report func(Finding)) (Summary, error) {
	start := time.Now()
	addrs, err := s.expand(targets)
	if err != nil {
		return Summary{}, err
	}
	total := len(addrs) * len(s.ports)

	var (
		mu   sync.Mutex
		sum  Summary
		wg   sync.WaitGroup
		sem  = make(chan struct{}, s.concurrency)
		lim  = newLimiter(s.rate)
		stop error
	)
	record := func(f Finding) {
		mu.Lock()
		defer mu.Unlock()
		sum.Probed++
		switch {
		case f.Open:
			sum.Open++
		case f.Err == errRefused || f.Err == errTimeout:
			sum.Closed++
		default:
			sum.Errors++
		}
		if report != nil {
			report(f)
		}
	}
dispatch:
	for _, a := range addrs {
		for _, port := range s.ports {
			// The semaphore is taken before the rate token so that a token
			// is never spent waiting for a free slot, which would let the
			// next attempts start in a burst.
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				stop = ctx.Err()
				break dispatch
			}
			if err := lim.wait(ctx); err != nil {
				<-sem
				stop = err
				break dispatch
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if f, ok := s.probe(ctx, a, port); ok {
					record(f)
				}
			}()
		}
	}
	wg.Wait()
	sum.Duration = time.Since(start)
	if stop == nil {
		stop = ctx.Err()
	}
	s.log.Info("scan finished", "targets", prefixList(targets), "ports", s.ports,
		"probed", sum.Probed, "planned", total, "open", sum.Open, "closed", sum.Closed,
		"errors", sum.Errors, "duration", sum.Duration, "stopped", stop != nil)
	if stop != nil {
		return sum, fmt.Errorf("scan: stopped after %d of %d probes: %w", sum.Probed, total, stop)
	}
	return sum, nil
}

// Classifications of a closed port in Finding.Err.
const (
	errRefused = "refused"
	errTimeout = "timeout"
)

// probe makes one connection attempt. It returns ok=false when the scan was
// cancelled during the attempt, since the port's state is then unknown.
func (s *Scanner) probe(ctx context.Context, a netip.Addr, port int) (Finding, bool) {
	// Checked again here so that no bug in target expansion can ever turn
	// into a connection outside the configured ranges.
	if !s.allows(a) {
		s.log.Error("scan: internal error: address outside the allowed ranges not dialled", "addr", a)
		return Finding{Addr: a, Port: port, Err: "not dialled: outside the allowed ranges", Time: time.Now()}, true
	}
	pctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	conn, err := s.dial(pctx, "tcp", netip.AddrPortFrom(a, uint16(port)).String())
	f := Finding{Addr: a, Port: port, Time: time.Now()}
	if err == nil {
		// Open: close at once and send nothing; the handshake is the evidence.
		conn.Close()
		f.Open = true
		return f, true
	}
	if ctx.Err() != nil {
		return f, false
	}
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		f.Err = errRefused
	case errors.Is(err, context.DeadlineExceeded) || pctx.Err() != nil || errors.As(err, &ne) && ne.Timeout():
		f.Err = errTimeout
	default:
		f.Err = err.Error()
	}
	return f, true
}

// allows reports whether a lies inside an allowed range.
func (s *Scanner) allows(a netip.Addr) bool {
	for _, p := range s.allowed {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// contained returns the allowed range that wholly contains t, if any.
func (s *Scanner) contained(t netip.Prefix) bool {
	for _, p := range s.allowed {
		if p.Bits() <= t.Bits() && p.Contains(t.Addr()) {
			return true
		}
	}
	return false
}

// normalize masks p to its network address and rewrites an IPv4-mapped
// IPv6 prefix as the IPv4 prefix it describes, as the kernel dials it.
func normalize(p netip.Prefix) (netip.Prefix, bool) {
	if !p.IsValid() {
		return netip.Prefix{}, false
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, false
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), true
}

func prefixList(ps []netip.Prefix) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.String()
	}
	return strings.Join(parts, ", ")
}
