package scan

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Every test configures loopback ranges only, and every dial goes through
// a recorder that refuses (and fails the test on) anything outside
// 127.0.0.0/8 and ::1 before it could reach the network.

var loopback4 = netip.MustParsePrefix("127.0.0.0/8")

// recorder is a Dial hook that records every attempt. Its fake function,
// when set, answers instead of the network.
type recorder struct {
	t     *testing.T
	mu    sync.Mutex
	dials []string
	fake  func(ctx context.Context, addr string) (net.Conn, error)
}

func (r *recorder) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || network != "tcp" || !(loopback4.Contains(ap.Addr()) || ap.Addr() == netip.IPv6Loopback()) {
		r.t.Errorf("scanner tried to dial %s %q: not loopback", network, addr)
		return nil, errors.New("test guard: non-loopback dial refused")
	}
	r.mu.Lock()
	r.dials = append(r.dials, addr)
	r.mu.Unlock()
	if r.fake != nil {
		return r.fake(ctx, addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func (r *recorder) recorded() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.dials)
}

func refused(context.Context, string) (net.Conn, error) {
	return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
}

// storeMax raises m to n if n is larger.
func storeMax(m *atomic.Int32, n int32) {
	for {
		p := m.Load()
		if n <= p || m.CompareAndSwap(p, n) {
			return
		}
	}
}

func prefixes(t *testing.T, ss ...string) []netip.Prefix {
	t.Helper()
	var ps []netip.Prefix
	for _, s := range ss {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}

func newScanner(t *testing.T, o Options) *Scanner {
	t.Helper()
	if o.Allowed == nil {
		o.Allowed = prefixes(t, "127.0.70.0/24")
	}
	if o.Rate == 0 {
		o.Rate = 10000
	}
	s, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// collect returns a report function and the findings it gathered.
func collect() (func(Finding), func() []Finding) {
	var (
		mu sync.Mutex
		fs []Finding
	)
	return func(f Finding) {
			mu.Lock()
			fs = append(fs, f)
			mu.Unlock()
		}, func() []Finding {
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(fs)
		}
}

func TestFindsOpenLoopbackPorts(t *testing.T) {
	l1, err := net.Listen("tcp", "127.0.70.2:0")
	if err != nil {
		t.Skipf("cannot listen on 127.0.70.2 (loopback is not all of 127/8 here?): %v", err)
	}
	defer l1.Close()
	port := l1.Addr().(*net.TCPAddr).Port
	l2, err := net.Listen("tcp", "127.0.70.5:"+strconv.Itoa(port))
	if err != nil {
		t.Skipf("cannot listen on 127.0.70.5:%d: %v", port, err)
	}
	defer l2.Close()
	for _, l := range []net.Listener{l1, l2} {
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}

	rec := &recorder{t: t}
	s := newScanner(t, Options{Ports: []int{port}, Dial: rec.dial})
	report, found := collect()
	sum, err := s.Scan(context.Background(), prefixes(t, "127.0.70.0/29"), report)
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}

	// A /29 holds six hosts: .1 to .6, without network and broadcast.
	if sum.Probed != 6 || sum.Open != 2 || sum.Closed != 4 || sum.Errors != 0 {
		t.Errorf("summary = %+v, want 6 probed, 2 open, 4 closed, 0 errors", sum)
	}
	fs := found()
	if len(fs) != 6 {
		t.Fatalf("got %d findings, want 6 (one per probe): %+v", len(fs), fs)
	}
	var open []string
	for _, f := range fs {
		if f.Port != port || f.Time.IsZero() {
			t.Errorf("finding %+v: want port %d and a time", f, port)
		}
		if f.Open {
			open = append(open, f.Addr.String())
		} else if f.Err != "refused" {
			t.Errorf("closed finding %+v: Err = %q, want refused", f, f.Err)
		}
	}
	slices.Sort(open)
	if want := []string{"127.0.70.2", "127.0.70.5"}; !slices.Equal(open, want) {
		t.Errorf("open = %v, want %v", open, want)
	}
	dials := rec.recorded()
	slices.Sort(dials)
	var want []string
	for i := 1; i <= 6; i++ {
		want = append(want, "127.0.70."+strconv.Itoa(i)+":"+strconv.Itoa(port))
	}
	if !slices.Equal(dials, want) {
		t.Errorf("dialled %v, want %v", dials, want)
	}
}

// TestDefaultDialer runs the same scan without a hook, so the net.Dialer
// that New installs is the one used. The targets are loopback only.
func TestDefaultDialer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.70.3:0")
	if err != nil {
		t.Skipf("cannot listen on 127.0.70.3: %v", err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	s := newScanner(t, Options{Allowed: prefixes(t, "127.0.70.0/29"), Ports: []int{port}})
	report, found := collect()
	sum, err := s.Scan(context.Background(), prefixes(t, "127.0.70.3/32", "127.0.70.4/32"), report)
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if sum.Open != 1 || sum.Closed != 1 {
		t.Errorf("summary = %+v, want 1 open and 1 closed", sum)
	}
	for _, f := range found() {
		if f.Open != (f.Addr.String() == "127.0.70.3") {
			t.Errorf("finding %+v: only 127.0.70.3 should be open", f)
		}
	}
}

func TestRefusesTargetsOutsideAllowed(t *testing.T) {
	cases := map[string][]string{
		"other loopback range":  {"127.0.71.0/29"},
		"private range":         {"10.0.0.0/8"},
		"public host":           {"8.8.8.8/32"},
		"partly overlapping":    {"127.0.70.0/23"},
		"unmasked wider prefix": {"127.0.70.5/16"},
		"one bad among good":    {"127.0.70.0/29", "8.8.8.8/32"},
		"other family":          {"::1/128"},
		"mapped outside":        {"::ffff:8.8.8.8/128"},
	}
	for name, targets := range cases {
		t.Run(name, func(t *testing.T) {
			rec := &recorder{t: t, fake: refused}
			s := newScanner(t, Options{Allowed: prefixes(t, "127.0.70.0/24"), Dial: rec.dial})
			var reports int
			_, err := s.Scan(context.Background(), prefixes(t, targets...), func(Finding) { reports++ })
			if !errors.Is(err, ErrOutsideRange) {
				t.Fatalf("Scan(%v) error = %v, want ErrOutsideRange", targets, err)
			}
			if !strings.Contains(err.Error(), "127.0.70.0/24") {
				t.Errorf("error %q does not name the allowed range", err)
			}
			bad := netip.MustParsePrefix(targets[len(targets)-1]).Masked()
			if n, ok := normalize(bad); ok && !strings.Contains(err.Error(), n.String()) {
				t.Errorf("error %q does not name the offending target %s", err, n)
			}
			if d := rec.recorded(); len(d) != 0 || reports != 0 {
				t.Errorf("refused scan dialled %v and reported %d findings; want none", d, reports)
			}
		})
	}
}

func TestMappedTargetInsideAllowed(t *testing.T) {
	rec := &recorder{t: t, fake: refused}
	s := newScanner(t, Options{Dial: rec.dial})
	if _, err := s.Scan(context.Background(), prefixes(t, "::ffff:127.0.70.9/128"), nil); err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if d := rec.recorded(); !slices.Equal(d, []string{"127.0.70.9:1080"}) {
		t.Errorf("dialled %v, want [127.0.70.9:1080]", d)
	}
}

func TestExpansion(t *testing.T) {
	rec := &recorder{t: t, fake: refused}
	s := newScanner(t, Options{Allowed: prefixes(t, "127.0.70.0/24", "::1/128"), Ports: []int{1081, 1080, 1080}, Dial: rec.dial})
	// The /30 and /32 lie inside the /29, so each address is probed once.
	sum, err := s.Scan(context.Background(),
		prefixes(t, "127.0.70.0/29", "127.0.70.2/32", "127.0.70.0/30", "127.0.70.16/31", "::1/128"), nil)
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	var want []string
	for _, a := range []string{"127.0.70.1", "127.0.70.2", "127.0.70.3", "127.0.70.4", "127.0.70.5", "127.0.70.6", "127.0.70.16", "127.0.70.17", "[::1]"} {
		want = append(want, a+":1080", a+":1081")
	}
	got := rec.recorded()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("dialled\n %v\nwant\n %v", got, want)
	}
	if sum.Probed != len(want) || sum.Closed != len(want) {
		t.Errorf("summary = %+v, want %d probed and closed", sum, len(want))
	}
}

func TestMaxAddresses(t *testing.T) {
	for _, tc := range []struct {
		target string
		ports  []int
	}{
		{"127.0.70.0/28", nil},                  // 14 probes
		{"127.0.70.0/29", []int{1080, 1081}},    // 12 probes
		{"127.0.70.0/24", []int{1, 2, 3, 4, 5}}, // 1270 probes
	} {
		rec := &recorder{t: t, fake: refused}
		s := newScanner(t, Options{Ports: tc.ports, MaxAddresses: 10, Dial: rec.dial})
		_, err := s.Scan(context.Background(), prefixes(t, tc.target), nil)
		if !errors.Is(err, ErrTooLarge) {
			t.Errorf("Scan(%s, ports %v) error = %v, want ErrTooLarge", tc.target, tc.ports, err)
		}
		if d := rec.recorded(); len(d) != 0 {
			t.Errorf("refused scan dialled %v", d)
		}
	}
	// Exactly at the limit is allowed: a /29 has six hosts.
	rec := &recorder{t: t, fake: refused}
	s := newScanner(t, Options{MaxAddresses: 6, Dial: rec.dial})
	if _, err := s.Scan(context.Background(), prefixes(t, "127.0.70.0/29"), nil); err != nil {
		t.Errorf("scan of exactly MaxAddresses probes: %v", err)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	const limit = 4
	var inFlight, peak atomic.Int32
	rec := &recorder{t: t, fake: func(ctx context.Context, _ string) (net.Conn, error) {
		storeMax(&peak, inFlight.Add(1))
		defer inFlight.Add(-1)
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
		}
		return refused(ctx, "")
	}}
	s := newScanner(t, Options{Concurrency: limit, Dial: rec.dial})
	sum, err := s.Scan(context.Background(), prefixes(t, "127.0.70.0/27"), nil)
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if sum.Probed != 30 {
		t.Errorf("probed %d, want 30", sum.Probed)
	}
	if p := peak.Load(); p > limit || p < 2 {
		t.Errorf("peak concurrent dials = %d, want between 2 and %d", p, limit)
	}
}

func TestRateLimit(t *testing.T) {
	rec := &recorder{t: t, fake: refused}
	s, err := New(Options{Allowed: prefixes(t, "127.0.70.0/24"), Rate: 50, Dial: rec.dial})
	if err != nil {
		t.Fatal(err)
	}
	// 25 probes at 50 per second, one every 20 ms, cannot all have
	// started before 24 × 20 ms = 0.48 s.
	var targets []netip.Prefix
	for i := 1; i <= 25; i++ {
		targets = append(targets, netip.PrefixFrom(netip.AddrFrom4([4]byte{127, 0, 70, byte(i)}), 32))
	}
	start := time.Now()
	sum, err := s.Scan(context.Background(), targets, nil)
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if sum.Probed != 25 {
		t.Errorf("probed %d, want 25", sum.Probed)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("25 probes at rate 50/s took %s, want at least 0.4s", d)
	}
}

func TestCancelStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var started atomic.Int32
	rec := &recorder{t: t, fake: func(ctx context.Context, _ string) (net.Conn, error) {
		if started.Add(1) == 3 {
			cancel()
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	s := newScanner(t, Options{Concurrency: 4, Timeout: time.Hour, Dial: rec.dial})
	var reports atomic.Int32
	done := make(chan error, 1)
	go func() {
		_, err := s.Scan(ctx, prefixes(t, "127.0.70.0/24"), func(Finding) { reports.Add(1) })
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Scan error = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Scan did not return after its context was cancelled")
	}
	if n := len(rec.recorded()); n > 4 {
		t.Errorf("%d dials after cancel at the third; want at most the 4 in flight", n)
	}
	if n := reports.Load(); n != 0 {
		t.Errorf("%d abandoned probes were reported; want none", n)
	}
}

func TestTimeoutIsClosed(t *testing.T) {
	rec := &recorder{t: t, fake: func(ctx context.Context, _ string) (net.Conn, error) {
		<-ctx.Done()
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: ctx.Err()}
	}}
	s := newScanner(t, Options{Timeout: 10 * time.Millisecond, Dial: rec.dial})
	report, found := collect()
	sum, err := s.Scan(context.Background(), prefixes(t, "127.0.70.1/32"), report)
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if sum.Closed != 1 {
		t.Errorf("summary = %+v, want 1 closed", sum)
	}
	if fs := found(); len(fs) != 1 || fs[0].Open || fs[0].Err != "timeout" {
		t.Errorf("findings = %+v, want one closed with Err timeout", fs)
	}
}

func TestOtherDialErrorsCounted(t *testing.T) {
	rec := &recorder{t: t, fake: func(context.Context, string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.EHOSTUNREACH}
	}}
	s := newScanner(t, Options{Dial: rec.dial})
	report, found := collect()
	sum, err := s.Scan(context.Background(), prefixes(t, "127.0.70.1/32"), report)
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if sum.Errors != 1 || sum.Closed != 0 {
		t.Errorf("summary = %+v, want 1 error", sum)
	}
	if fs := found(); len(fs) != 1 || !strings.Contains(fs[0].Err, "no route") {
		t.Errorf("findings = %+v, want the dial error in Err", fs)
	}
}

func TestNewValidates(t *testing.T) {
	lo := prefixes(t, "127.0.70.0/24")
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no ranges", Options{}, "no allowed ranges"},
		{"invalid range", Options{Allowed: []netip.Prefix{{}}}, "not a valid IP prefix"},
		{"v4 too large", Options{Allowed: prefixes(t, "127.0.0.0/8")}, "at most /16 for IPv4"},
		{"v6 too large", Options{Allowed: prefixes(t, "::/111")}, "/112 for IPv6"},
		{"mapped too large", Options{Allowed: prefixes(t, "::ffff:127.0.0.0/104")}, "too large"},
		{"port zero", Options{Allowed: lo, Ports: []int{0}}, "port 0 out of range"},
		{"port too high", Options{Allowed: lo, Ports: []int{1080, 65536}}, "port 65536 out of range"},
		{"negative concurrency", Options{Allowed: lo, Concurrency: -1}, "concurrency"},
		{"negative rate", Options{Allowed: lo, Rate: -1}, "rate"},
		{"negative timeout", Options{Allowed: lo, Timeout: -time.Second}, "timeout"},
		{"negative max", Options{Allowed: lo, MaxAddresses: -1}, "max addresses"},
	} {
		if _, err := New(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New error = %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	s, err := New(Options{Allowed: prefixes(t, "127.0.70.0/16", "::ffff:127.0.71.0/120")})
	if err != nil {
		t.Fatalf("New with /16: %v", err)
	}
	if got := prefixList(s.Allowed()); got != "127.0.0.0/16, 127.0.71.0/24" {
		t.Errorf("Allowed() = %s, want masked and unmapped ranges", got)
	}
	if !slices.Equal(s.ports, []int{DefaultPort}) || s.concurrency != DefaultConcurrency ||
		s.rate != DefaultRate || s.timeout != DefaultTimeout || s.maxProbes != DefaultMaxAddresses {
		t.Errorf("defaults not applied: %+v", s)
	}
}
