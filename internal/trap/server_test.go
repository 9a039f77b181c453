package trap

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// startTrap serves a trap on a free loopback port and shuts it down at
// the end of the test.
func startTrap(t testing.TB, o Options) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if o.Hostname == "" {
		o.Hostname = "trap.test"
	}
	s := NewServer(o)
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, ln.Addr().String()
}

// client is one SMTP client connection from a chosen loopback source.
type client struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

func dialFrom(t testing.TB, addr, src string) *client {
	t.Helper()
	nc, err := dialRaw(addr, src)
	if err != nil {
		t.Fatal(err)
	}
	return &client{t: t, nc: nc, br: bufio.NewReader(nc)}
}

// dialRaw connects from source address src (any when empty); Linux
// accepts any 127/8 address as a loopback source.
func dialRaw(addr, src string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial from %s: %w", src, err)
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	return nc, nil
}

// line reads one reply line without its CRLF.
func (c *client) line() string {
	c.t.Helper()
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("reading reply: %v (got %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("reply %q does not end in CRLF", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// cmd sends a command and returns the reply line.
func (c *client) cmd(s string) string {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, s+"\r\n"); err != nil {
		c.t.Fatalf("sending %q: %v", s, err)
	}
	return c.line()
}

// expectClosed checks the server closed the connection.
func (c *client) expectClosed() {
	c.t.Helper()
	if b, err := c.br.ReadByte(); err == nil {
		c.t.Fatalf("connection still open, read %q", b)
	}
}

// session runs a full HELO + MAIL FROM conversation.
func session(t testing.TB, addr, src, helo, from string) {
	t.Helper()
	if err := trySession(addr, src, helo, from); err != nil {
		t.Fatal(err)
	}
}

// trySession is session for goroutines other than the test's own, which
// must not call t.Fatal.
func trySession(addr, src, helo, from string) error {
	nc, err := dialRaw(addr, src)
	if err != nil {
		return err
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	for _, step := range []struct{ send, want string }{
		{"", "220 trap.test ESMTP"},
		{"EHLO " + helo, "250 trap.test"},
		{"MAIL FROM:<" + from + "> SIZE=100", replyTempFail},
	} {
		if step.send != "" {
			if _, err := io.WriteString(nc, step.send+"\r\n"); err != nil {
				return fmt.Errorf("sending %q: %w", step.send, err)
			}
		}
		got, err := br.ReadString('\n')
		if err != nil || got != step.want+"\r\n" {
			return fmt.Errorf("after %q: got %q, %v; want %q", step.send, got, err, step.want)
		}
	}
	if _, err := br.ReadByte(); err == nil {
		return fmt.Errorf("connection from %s still open after 451", src)
	}
	return nil
}

func hostFor(t *testing.T, hosts []Host, ip string) Host {
	t.Helper()
	want := netip.MustParseAddr(ip)
	for _, h := range hosts {
		if h.Client == want {
			return h
		}
	}
	t.Fatalf("no host %s in %+v", ip, hosts)
	return Host{}
}

func TestSessionsAggregatePerHost(t *testing.T) {
	agg := NewAggregator(100)
	var mu sync.Mutex
	var hits []Hit
	s, addr := startTrap(t, Options{Aggregator: agg, OnHit: func(h Hit) {
		mu.Lock()
		hits = append(hits, h)
		mu.Unlock()
	}})
	var wg sync.WaitGroup
	for n := 1; n <= 3; n++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := fmt.Sprintf("127.0.9.%d", n)
			for i := 1; i <= n; i++ {
				if err := trySession(addr, src, fmt.Sprintf("pc%d-%d.school.example", n, i),
					fmt.Sprintf("worm%d@evil.example", i)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	hosts := agg.Snapshot()
	if len(hosts) != 3 {
		t.Fatalf("got %d hosts, want 3: %+v", len(hosts), hosts)
	}
	for n := 1; n <= 3; n++ {
		h := hostFor(t, hosts, fmt.Sprintf("127.0.9.%d", n))
		if h.Count != n {
			t.Errorf("%s: count %d, want %d", h.Client, h.Count, n)
		}
		if want := fmt.Sprintf("pc%d-%d.school.example", n, n); h.LastHelo != want {
			t.Errorf("%s: last HELO %q, want %q", h.Client, h.LastHelo, want)
		}
		if want := fmt.Sprintf("worm%d@evil.example", n); h.LastMailFrom != want {
			t.Errorf("%s: last MAIL FROM %q, want %q", h.Client, h.LastMailFrom, want)
		}
		if h.LastDst.IsValid() {
			t.Errorf("%s: not redirected, but last destination %v", h.Client, h.LastDst)
		}
		if h.FirstSeen.After(h.LastSeen) {
			t.Errorf("%s: first seen %v after last seen %v", h.Client, h.FirstSeen, h.LastSeen)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(hits) != 6 {
		t.Errorf("OnHit called %d times, want 6", len(hits))
	}
}

func TestConversationReplies(t *testing.T) {
	agg := NewAggregator(10)
	s, addr := startTrap(t, Options{Aggregator: agg})
	c := dialFrom(t, addr, "127.0.9.20")
	c.line()
	for _, tc := range []struct{ send, want string }{
		{"NOOP", replyOK},
		{"rset", replyOK},
		{"DATA", replyUnknown},
		{"HELO", replyHeloSyntax},
		{"helo  Infected-PC ", "250 trap.test"},
		{"MAIL TO:<x@y>", replyMailSyntax},
		{"QUIT", replyBye},
	} {
		if got := c.cmd(tc.send); got != tc.want {
			t.Errorf("%q: reply %q, want %q", tc.send, got, tc.want)
		}
	}
	c.expectClosed()
	s.Shutdown(context.Background())
	h := hostFor(t, agg.Snapshot(), "127.0.9.20")
	if h.LastHelo != "Infected-PC" || h.LastMailFrom != "" {
		t.Errorf("recorded HELO %q MAIL FROM %q, want Infected-PC and none", h.LastHelo, h.LastMailFrom)
	}
}

func TestTooManyCommands(t *testing.T) {
	_, addr := startTrap(t, Options{})
	c := dialFrom(t, addr, "127.0.9.21")
	c.line()
	for range maxCommands {
		if got := c.cmd("NOOP"); got != replyOK {
			t.Fatalf("NOOP reply %q", got)
		}
	}
	if got := c.cmd("NOOP"); got != replyTooMany {
		t.Fatalf("command past the limit: reply %q, want %q", got, replyTooMany)
	}
	c.expectClosed()
}

func TestLongLineRefused(t *testing.T) {
	agg := NewAggregator(10)
	s, addr := startTrap(t, Options{Aggregator: agg})
	c := dialFrom(t, addr, "127.0.9.22")
	c.line()
	// The write may fail once the server closes; the reply must still
	// arrive.
	go c.nc.Write([]byte("HELO " + strings.Repeat("x", 100<<10) + "\r\n"))
	if got := c.line(); got != replyTooLong {
		t.Fatalf("reply %q, want %q", got, replyTooLong)
	}
	c.expectClosed()
	s.Shutdown(context.Background())
	if h := hostFor(t, agg.Snapshot(), "127.0.9.22"); h.Count != 1 || h.LastHelo != "" {
		t.Errorf("host %+v, want one hit without HELO", h)
	}
}

func TestLineAtLimitAccepted(t *testing.T) {
	_, addr := startTrap(t, Options{})
	c := dialFrom(t, addr, "127.0.9.23")
	c.line()
	// 510 characters and CRLF: exactly the RFC 5321 §4.5.3.1.4 limit.
	if got := c.cmd("NOOP " + strings.Repeat("x", 505)); got != replyOK {
		t.Fatalf("512-byte line: reply %q", got)
	}
}

func TestSilentClientTimesOut(t *testing.T) {
	agg := NewAggregator(10)
	s, addr := startTrap(t, Options{Aggregator: agg, ReadTimeout: 200 * time.Millisecond})
	c := dialFrom(t, addr, "127.0.9.24")
	c.line()
	if got := c.line(); got != replyTimeout {
		t.Fatalf("reply %q, want %q", got, replyTimeout)
	}
	c.expectClosed()
	s.Shutdown(context.Background())
	if h := hostFor(t, agg.Snapshot(), "127.0.9.24"); h.Count != 1 {
		t.Errorf("silent client recorded %d times, want 1", h.Count)
	}
}

func TestPerIPCap(t *testing.T) {
	agg := NewAggregator(10)
	s, addr := startTrap(t, Options{Aggregator: agg})
	var clients []*client
	for i := range 10 {
		c := dialFrom(t, addr, "127.0.9.30")
		clients = append(clients, c)
		got := c.line()
		if i < DefaultMaxPerIP {
			if got != "220 trap.test ESMTP" {
				t.Errorf("connection %d: %q, want banner", i+1, got)
			}
		} else {
			if got != "421 4.7.0 Too many connections" {
				t.Errorf("connection %d: %q, want 421", i+1, got)
			}
			c.expectClosed()
		}
	}
	// Another address is not affected.
	session(t, addr, "127.0.9.31", "other", "a@b")
	for _, c := range clients {
		c.nc.Close()
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if h := hostFor(t, agg.Snapshot(), "127.0.9.30"); h.Count != 10 {
		t.Errorf("capped address recorded %d times, want 10 (refusals are evidence)", h.Count)
	}
}

func TestGlobalCap(t *testing.T) {
	_, addr := startTrap(t, Options{MaxConns: 2})
	a := dialFrom(t, addr, "127.0.9.40")
	b := dialFrom(t, addr, "127.0.9.41")
	a.line()
	b.line()
	c := dialFrom(t, addr, "127.0.9.42")
	if got := c.line(); got != "421 4.7.0 Too many connections" {
		t.Fatalf("third connection: %q, want 421", got)
	}
}

func TestFloodDoesNotStarveOthers(t *testing.T) {
	const flood = 2000
	agg := NewAggregator(10)
	s, addr := startTrap(t, Options{Aggregator: agg})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		next := make(chan int)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range next {
					nc, err := dialRaw(addr, "127.0.9.50")
					if err != nil {
						t.Error(err)
						continue
					}
					// Reading the first line proves the server accepted
					// it, so every flood connection is a hit.
					if _, err := bufio.NewReader(nc).ReadString('\n'); err != nil {
						t.Error(err)
					}
					nc.Close()
				}
			}()
		}
		for i := range flood {
			next <- i
		}
		close(next)
		wg.Wait()
	}()
	session(t, addr, "127.0.9.51", "good", "x@y")
	<-done
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	hosts := agg.Snapshot()
	if h := hostFor(t, hosts, "127.0.9.50"); h.Count != flood {
		t.Errorf("flooding address recorded %d times, want %d", h.Count, flood)
	}
	if h := hostFor(t, hosts, "127.0.9.51"); h.Count != 1 || h.LastHelo != "good" {
		t.Errorf("normal client recorded as %+v", h)
	}
}

func TestShutdownEndsSessions(t *testing.T) {
	agg := NewAggregator(10)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(Options{Hostname: "trap.test", Aggregator: agg})
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	c := dialFrom(t, ln.Addr().String(), "127.0.9.60")
	c.line()
	c.cmd("HELO waiting")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve after Shutdown: %v", err)
	}
	if got := c.line(); got != replyShutdown {
		t.Errorf("reply %q, want %q", got, replyShutdown)
	}
	c.expectClosed()
	if h := hostFor(t, agg.Snapshot(), "127.0.9.60"); h.LastHelo != "waiting" {
		t.Errorf("recorded %+v", h)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("listener still accepts after Shutdown")
	}
}

func TestCallbackPanicRecovered(t *testing.T) {
	agg := NewAggregator(10)
	s, addr := startTrap(t, Options{Aggregator: agg, OnHit: func(Hit) { panic("boom") }})
	session(t, addr, "127.0.9.70", "a", "b@c")
	session(t, addr, "127.0.9.70", "a", "b@c")
	s.Shutdown(context.Background())
	if h := hostFor(t, agg.Snapshot(), "127.0.9.70"); h.Count != 2 {
		t.Errorf("recorded %d hits, want 2", h.Count)
	}
}

func BenchmarkTrapConnections(b *testing.B) {
	_, addr := startTrap(b, Options{MaxPerIP: 1 << 20, MaxConns: 1 << 20, Aggregator: NewAggregator(0)})
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := trySession(addr, "", "bench.example", "bench@example.org"); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "conns/s")
}
