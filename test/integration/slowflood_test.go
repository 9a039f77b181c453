package integration_test

import (
	"bufio"
	"bytes"
	encbin "encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mailwarden/internal/accept/accepttest"
	"mailwarden/test/harness"
)

// Bounds for TestListenerFlood. A daemon holding 2,000 connections on
// each listener in turn, with the slow and oversized clients beside them,
// should stay within some tens of MB above idle; 200 MB is far above that.
// Its descriptors are bounded by the listeners' caps: 1,000 milter, 1,000
// policy, 256 trap in this config, 256 HTTP (web.max_conns).
const (
	slowClients      = 20
	floodFDLimit     = 1100
	floodRSSLimitMiB = 200
)

// TestListenerFlood floods each of the daemon's four listeners in turn
// with 2,000 held connections from many 127.x addresses, 20 clients
// sending a byte a second and oversized input (a 1 MB line, milter
// length prefixes up to 2^32-1). Meanwhile a real session (a milter
// transaction, a policy request, GET /-/ready, a trap conversation) must
// be served within 100 ms, and the daemon's RSS and open descriptors,
// printed, must stay bounded. Not parallel: it measures latency.
// connflood_test.go covers the milter and policy idle floods through
// Postfix; this covers what is left.
//
// With MAILWARDEN_SOAK=1 the floods are 10,000 connections and the slow
// clients run for 30 s before the real sessions are timed.
func TestListenerFlood(t *testing.T) {
	flood, slowFor := idleFlood, 300*time.Millisecond
	if os.Getenv("MAILWARDEN_SOAK") == "1" {
		flood, slowFor = 10000, 30*time.Second
	}
	raiseNoFile(t, 2*flood+1000)
	trap := trapAddr(t)
	mw := harness.StartMailwarden(t, binary(t), greylistYAML(time.Hour, "127.0.90.0/24", "127.0.90.30", trapYAML(trap)))
	pid := mw.PID()
	t.Logf("idle daemon: RSS %d KiB, %d fds", vmRSS(t, pid), openFDs(t, pid))

	trapGreetings := map[string]int{}
	huge := bytes.Repeat([]byte("a"), 1<<20)
	milterPrefix := func(n uint32) []byte {
		b := encbin.BigEndian.AppendUint32(nil, n)
		return append(b, 'O', 0, 0, 0, 6)
	}
	listeners := []struct {
		name  string
		addr  string
		hello func(net.Conn) error
		bad   [][]byte // each sent on its own connection, which the daemon must close
		legit func(t *testing.T, client string)
	}{
		{"milter", mw.MilterAddr, accepttest.MilterHello,
			[][]byte{milterPrefix(1<<20 + 1), milterPrefix(1 << 30), milterPrefix(1<<31 - 1), milterPrefix(1 << 31), milterPrefix(1<<32 - 1)},
			func(t *testing.T, client string) {
				rcpt, final := milterTransaction(t, mw.MilterAddr, client, "staff@ext.test", "user@dest.test", "")
				if rcpt.StopProcessing() || final == nil {
					t.Errorf("milter transaction during the flood: RCPT %s, end %s; want accepted", describe(rcpt), describe(final))
				}
			}},
		{"policy", mw.PolicyAddr, nil,
			[][]byte{append([]byte("request="), huge...)},
			func(t *testing.T, client string) {
				if _, answer := timePolicyRequest(t, mw.PolicyAddr, client); answer != "action=DUNNO" && !bytes.HasPrefix([]byte(answer), []byte("action=")) {
					t.Errorf("policy request during the flood: %q", answer)
				}
			}},
		{"http", mw.HTTPAddr, nil,
			[][]byte{append([]byte("GET /-/ready HTTP/1.1\r\nHost: x\r\nX-Big: "), huge...)},
			func(t *testing.T, client string) {
				hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
					DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(client)}}).DialContext}}
				resp, err := hc.Get("http://" + mw.HTTPAddr + "/-/ready")
				if err != nil {
					t.Fatalf("GET /-/ready during the flood: %v", err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("GET /-/ready during the flood: %s", resp.Status)
				}
			}},
		{"trap", trap, nil,
			[][]byte{append([]byte("HELO "), huge...)},
			// The trap refuses a connection over max_conns with 421 and
			// records it as a hit rather than evicting (trap.Server):
			// while the flood fills the cap, a new host is answered and
			// recorded, but without its HELO and MAIL.
			func(t *testing.T, client string) {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(client)}, Timeout: 5 * time.Second}
				c, err := d.Dial("tcp", trap)
				if err != nil {
					t.Fatalf("connecting to the trap during the flood: %v", err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				greeting, err := readReply(bufio.NewReader(c))
				if err != nil || !strings.HasPrefix(greeting, "220 ") && greeting != "421 4.7.0 Too many connections" {
					t.Errorf("trap greeting during the flood: %q %v, want 220 or 421 over the cap", greeting, err)
				}
				trapGreetings[greeting[:min(3, len(greeting))]]++
			}},
	}
	for li, l := range listeners {
		t.Run(l.name, func(t *testing.T) {
			// Sources: 127.(100+li*10).x.y for the flood, a byte-a-second
			// client each from 127.0.91.N and one oversized sender per
			// case from 127.0.92.N; the legitimate client is internal.
			src := func(i int) string { a := i / 2; return fmt.Sprintf("127.%d.%d.%d", 100+li*10, a/250, 1+a%250) }
			f := accepttest.Open(t, l.addr, flood, src, l.hello)
			stopSlow := startSlowClients(t, l.addr, slowClients, func(i int) string { return fmt.Sprintf("127.0.91.%d", 1+i) })
			var bad sync.WaitGroup
			for i, data := range l.bad {
				bad.Add(1)
				go func() {
					defer bad.Done()
					sendBad(t, fmt.Sprintf("127.0.92.%d", 1+i), l.addr, data, false)
				}()
			}
			time.Sleep(slowFor) // slow and oversized clients under way

			var took []time.Duration
			for i := range 3 {
				start := time.Now()
				l.legit(t, fmt.Sprintf("127.0.90.%d", 10+li*5+i))
				took = append(took, time.Since(start))
			}
			slices.Sort(took)
			held, closed := f.Count()
			rss, fds := vmRSS(t, pid), openFDs(t, pid)
			bad.Wait()
			slow := stopSlow()
			t.Logf("%s: %d connections opened (%d held, %d closed by the daemon), %d byte-a-second clients (%d closed by the daemon), %d oversized sends closed; legitimate session %v (median of %v); daemon RSS %d KiB, %d fds",
				l.name, flood, held, closed, slowClients, slow, len(l.bad), took[1], took, rss, fds)
			if took[1] > floodAnswer {
				t.Errorf("legitimate %s session served in %v (median of 3), want within %v", l.name, took[1], floodAnswer)
			}
			if rss > floodRSSLimitMiB<<10 {
				t.Errorf("daemon RSS %d KiB during the %s flood, want below %d MiB", rss, l.name, floodRSSLimitMiB)
			}
			if fds > floodFDLimit {
				t.Errorf("daemon holds %d fds during the %s flood, want at most %d", fds, l.name, floodFDLimit)
			}
		})
		if !mw.Running() {
			t.Fatalf("the daemon died in the %s flood", l.name)
		}
	}

	// Every connection to the trap is a hit of its source address, so
	// the trap records exactly the flood's addresses, the slow and
	// oversized senders and the legitimate client, and no HELO from
	// the 1 MB line.
	time.Sleep(1500 * time.Millisecond) // one flush_interval
	res := mw.CLI(t, "hosts", "list", "--json")
	if res.ExitCode != 0 {
		t.Fatalf("hosts list: exit %d: %s", res.ExitCode, res.Stderr)
	}
	hosts := jsonList(t, "hosts list", res.Stdout)
	t.Logf("trap greetings to the legitimate clients during the flood: %v", trapGreetings)
	for i := range 3 {
		client := fmt.Sprintf("127.0.90.%d", 25+i)
		if _, _, ok := hostShow(t, mw, client); !ok {
			t.Errorf("the trap did not record %s, which connected during the flood", client)
		}
	}
	want := flood/2 + slowClients + 1 + 3
	t.Logf("trap recorded %d hosts after the floods, want at most %d", len(hosts), want)
	if len(hosts) > want {
		t.Errorf("trap recorded %d hosts, want at most %d (one per source address)", len(hosts), want)
	}
	if h, _, ok := hostShow(t, mw, "127.0.92.1"); ok {
		if helo := field(trapOf(h), "helo"); len(helo) > 255 {
			t.Errorf("trap recorded a %d-byte HELO from the oversized line", len(helo))
		}
	}
}

// startSlowClients connects n clients, the i-th from src(i), each
// sending "HELO " one byte a second until stop, which returns how many
// the daemon closed meanwhile.
func startSlowClients(t *testing.T, addr string, n int, src func(int) string) (stop func() int) {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	closed := 0
	for i := range n {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src(i))}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("slow client %d: %v", i, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			msg := []byte("HELO slow.example.test")
			for j := 0; ; j++ {
				c.SetWriteDeadline(time.Now().Add(time.Second))
				if _, err := c.Write(msg[j%len(msg) : j%len(msg)+1]); err != nil {
					mu.Lock()
					closed++
					mu.Unlock()
					return
				}
				select {
				case <-done:
					return
				case <-time.After(time.Second):
				}
			}
		}()
	}
	return func() int {
		close(done)
		wg.Wait()
		return closed
	}
}

// openFDs counts the daemon's open file descriptors.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("reading the daemon's fds: %v", err)
	}
	return len(ents)
}

// TestSlowClientTimeouts configures every listener's idle and
// per-command timeouts short and checks that each fires: a silent
// client and one sending a byte a second are disconnected by the
// configured deadline, not held for the defaults' minutes.
func TestSlowClientTimeouts(t *testing.T) {
	t.Parallel()
	trap := trapAddr(t)
	mw := harness.StartMailwarden(t, binary(t), fmt.Sprintf(`internal_networks: ["127.0.93.0/24"]
milter: {read_timeout: 1s}
policy_server: {idle_timeout: 1s, request_timeout: 2s}
web: {read_header_timeout: 1s, idle_timeout: 1s}
trap:
  enabled: true
  listen: %q
  read_timeout: 1500ms
  session_timeout: 3s
  flush_interval: 1s
`, trap))
	cases := []struct {
		name  string
		addr  string
		hello func(net.Conn) error
		slow  string        // sent once a second; "" sends nothing
		want  time.Duration // the configured timeout that should fire
	}{
		{"milter idle after negotiation (read_timeout)", mw.MilterAddr, accepttest.MilterHello, "", time.Second},
		{"policy idle (idle_timeout)", mw.PolicyAddr, nil, "", time.Second},
		{"policy request a byte a second (request_timeout)", mw.PolicyAddr, nil, "b", 2 * time.Second},
		{"http idle (read_header_timeout)", mw.HTTPAddr, nil, "", time.Second},
		{"http headers a byte a second (read_header_timeout)", mw.HTTPAddr, nil, "b", time.Second},
		{"trap idle (read_timeout)", trap, nil, "", 1500 * time.Millisecond},
		// read_timeout bounds each command line, not each byte.
		{"trap command a byte a second (read_timeout)", trap, nil, "b", 1500 * time.Millisecond},
		{"trap a NOOP a second (session_timeout)", trap, nil, "NOOP\r\n", 3 * time.Second},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			took := timeToClose(t, c.addr, fmt.Sprintf("127.0.93.%d", 10+i), c.hello, c.slow)
			t.Logf("closed by the daemon after %v (configured %v)", took.Round(10*time.Millisecond), c.want)
			// Slack: a 2-core machine running other tests, and the
			// byte-a-second writer's own tick.
			if took < c.want-100*time.Millisecond || took > c.want+1500*time.Millisecond {
				t.Errorf("closed after %v, want about %v", took, c.want)
			}
		})
	}
}

// timeToClose connects from client, runs hello, then stays silent or
// sends slow once a second ("b": the next byte of a request), and returns how long after hello the
// daemon closed the connection. It fails after 10s.
func timeToClose(t *testing.T, addr, client string, hello func(net.Conn) error, slow string) time.Duration {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(client)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("connecting from %s: %v", client, err)
	}
	defer c.Close()
	if hello != nil {
		if err := hello(c); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	done := make(chan struct{})
	defer close(done)
	if slow != "" {
		go func() {
			msg := []byte("request=smtpd_access_policy HELO GET / X")
			for j := 0; ; j++ {
				next := msg[j%len(msg) : j%len(msg)+1]
				if slow != "b" {
					next = []byte(slow)
				}
				if _, err := c.Write(next); err != nil {
					return
				}
				select {
				case <-done:
					return
				case <-time.After(time.Second):
				}
			}
		}()
	}
	c.SetReadDeadline(start.Add(10 * time.Second))
	buf := make([]byte, 4096)
	for {
		if _, err := c.Read(buf); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("still open after 10s")
			}
			return time.Since(start)
		}
	}
}

// raiseNoFile raises the test process's soft RLIMIT_NOFILE to at least
// n, up to the hard limit: every flood connection is a descriptor here
// too.
func raiseNoFile(t *testing.T, n int) {
	t.Helper()
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur >= uint64(n) {
		return
	}
	rl.Cur = min(max(rl.Cur, uint64(n)), rl.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur < uint64(n) {
		t.Skipf("RLIMIT_NOFILE hard limit %d is below the %d descriptors the flood needs", rl.Max, n)
	}
}
