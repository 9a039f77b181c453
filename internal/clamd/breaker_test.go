package clamd

import (
	"errors"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// timedScan scans a small clean message and says how long it took.
func timedScan(t *testing.T, c *Client) (time.Duration, Result, error) {
	t.Helper()
	start := time.Now()
	res, err := c.Scan(t.Context(), strings.NewReader("hello"), 5)
	return time.Since(start), res, err
}

// startedClient is a client of servers with probes every probe, started,
// after its first health check.
func startedClient(t *testing.T, scanTimeout, probe time.Duration, servers ...string) (*Client, *logBuf) {
	t.Helper()
	c, lb := newTestClient(t, Options{Servers: servers, ScanTimeout: scanTimeout, ProbeInterval: probe,
		HealthInterval: time.Hour})
	c.Start(t.Context())
	waitFor(t, "first health check", func() bool {
		for _, st := range c.Status() {
			if st.Checked.IsZero() {
				return false
			}
		}
		return true
	})
	return c, lb
}

// countLines counts the log lines containing every one of words.
func countLines(log string, words ...string) int {
	n := 0
	for line := range strings.Lines(log) {
		all := true
		for _, w := range words {
			all = all && strings.Contains(line, w)
		}
		if all {
			n++
		}
	}
	return n
}

// skippedInUpLine returns the scans_skipped count of the "up again" line.
func skippedInUpLine(t *testing.T, log string) int {
	t.Helper()
	m := regexp.MustCompile(`clamd is up again.* scans_skipped=(\d+)`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("no \"clamd is up again\" line with scans_skipped:\n%s", log)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestHungServerFailsFast is issue 21 item 7: a clamd that stops
// answering (SIGSTOP) holds the first scan for the scan timeout; the
// scans after it fail at once, without contacting it, until a probe gets
// an answer, and the next scan then goes through. The outage is one
// warning, one info line and one change each way on Changed.
func TestHungServerFailsFast(t *testing.T) {
	const scanTimeout, probe = time.Second, 50 * time.Millisecond
	f := newFake(t, "tcp")
	c, lb := startedClient(t, scanTimeout, probe, f.addr)
	if _, _, err := timedScan(t, c); err != nil {
		t.Fatal(err)
	}
	changed := c.Changed()

	f.setMode(modeSilent)
	took, _, err := timedScan(t, c)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("first scan of a hung server: err %v, want ErrUnavailable and a timeout", err)
	}
	if took < scanTimeout {
		t.Errorf("first scan gave up after %v, before the %v scan timeout", took, scanTimeout)
	}
	select {
	case <-changed:
	default:
		t.Error("the server going down was not announced on Changed")
	}
	if st := c.Status()[0]; st.Up || !strings.Contains(st.LastError, "no answer within") {
		t.Errorf("status after the timeout: %+v, want down with the timeout", st)
	}

	scans := f.scans.Load()
	const n = 20
	var slowest time.Duration
	for range n {
		took, _, err := timedScan(t, c)
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrDown) || !strings.Contains(err.Error(), f.addr) {
			t.Fatalf("scan while hung: err %v, want ErrUnavailable and ErrDown naming %s", err, f.addr)
		}
		slowest = max(slowest, took)
	}
	t.Logf("first scan failed after %v (scan timeout %v); the next %d failed within %v", took, scanTimeout, n, slowest)
	if slowest > scanTimeout/10 {
		t.Errorf("a scan while the server is hung took %v; it must fail at once, not wait (scan timeout %v)", slowest, scanTimeout)
	}
	if got := f.scans.Load() - scans; got != 0 {
		t.Errorf("%d scans were sent to the hung server", got)
	}

	changed = c.Changed()
	f.setMode(modeNormal)
	back := time.Now()
	for {
		_, res, err := timedScan(t, c)
		if err == nil {
			if res.Server != f.addr {
				t.Errorf("scanned by %q", res.Server)
			}
			break
		}
		if !errors.Is(err, ErrDown) {
			t.Fatalf("scan after the server came back: %v", err)
		}
		if time.Since(back) > 10*scanTimeout {
			t.Fatalf("no scan went through %v after the server answered again", time.Since(back))
		}
		time.Sleep(5 * time.Millisecond)
	}
	recovered := time.Since(back)
	t.Logf("a scan went through %v after the server answered again (probe every %v)", recovered, probe)
	if recovered > scanTimeout {
		t.Errorf("scans went through only %v after the server answered again; probes run every %v", recovered, probe)
	}
	select {
	case <-changed:
	default:
		t.Error("the server coming back was not announced on Changed")
	}
	if st := c.Status()[0]; !st.Up || st.LastError != "" || st.Version.DBVersion != 27463 {
		t.Errorf("status after coming back: %+v", st)
	}

	log := lb.String()
	if got := countLines(log, "level=WARN"); got != 1 || countLines(log, "level=WARN", "marking the server down", f.addr, "probe") != 1 {
		t.Errorf("want one warning, saying the server is down and probed; got %d:\n%s", got, log)
	}
	if got := countLines(log, "level=INFO", "clamd is up again", f.addr); got != 1 {
		t.Errorf("want one \"up again\" line, got %d:\n%s", got, log)
	}
	if got := skippedInUpLine(t, log); got < n {
		t.Errorf("the up again line counts %d skipped scans, want at least %d", got, n)
	}
}

// TestHungServerFailsOver: with a second server, only the first scan
// waits; the others go straight to the server that answers.
func TestHungServerFailsOver(t *testing.T) {
	const scanTimeout, probe = 500 * time.Millisecond, 50 * time.Millisecond
	hung, good := newFake(t, "tcp"), newFake(t, "unix")
	c, _ := startedClient(t, scanTimeout, probe, hung.addr, good.addr)
	hung.setMode(modeSilent)

	took, res, err := timedScan(t, c)
	if err != nil || res.Server != good.addr {
		t.Fatalf("first scan: %+v, %v; want it failed over to %s", res, err, good.addr)
	}
	if took < scanTimeout {
		t.Errorf("first scan took %v, less than the scan timeout it had to wait", took)
	}
	scans := hung.scans.Load()
	var slowest time.Duration
	for range 10 {
		took, res, err := timedScan(t, c)
		if err != nil || res.Server != good.addr {
			t.Fatalf("scan while the first server hangs: %+v, %v", res, err)
		}
		slowest = max(slowest, took)
	}
	if slowest > scanTimeout/10 {
		t.Errorf("a scan took %v with the hung server skipped (scan timeout %v)", slowest, scanTimeout)
	}
	if got := hung.scans.Load() - scans; got != 0 {
		t.Errorf("%d scans were sent to the hung server", got)
	}

	hung.setMode(modeNormal)
	waitFor(t, "hung server back up", func() bool { return c.Status()[0].Up })
	if _, res, err := timedScan(t, c); err != nil || res.Server != hung.addr {
		t.Errorf("scan after the first server came back: %+v, %v", res, err)
	}
}

// TestSlowMessageKeepsServerUp: a scan that times out on a server that
// still answers a probe was one slow message; the server stays up and
// the next scan goes to it.
func TestSlowMessageKeepsServerUp(t *testing.T) {
	f := newFake(t, "tcp")
	c, lb := startedClient(t, 200*time.Millisecond, 50*time.Millisecond, f.addr)
	f.setMode(modeSlowScan)
	changed := c.Changed()
	_, _, err := timedScan(t, c)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err %v, want a timeout", err)
	}
	if st := c.Status()[0]; !st.Up {
		t.Errorf("a server that answers PING was marked down for one slow scan: %+v", st)
	}
	select {
	case <-changed:
		t.Error("a change was announced for one slow scan")
	default:
	}
	if !strings.Contains(lb.String(), "answers a probe, so it stays up") {
		t.Errorf("no log line about the slow scan:\n%s", lb)
	}
	scans := f.scans.Load()
	f.setMode(modeNormal)
	if _, res, err := timedScan(t, c); err != nil || f.scans.Load() != scans+1 {
		t.Errorf("next scan: %+v, %v; want it sent to the server", res, err)
	}
}

// TestDownSummary: a long outage logs a count of the scans it cost at
// most once per summaryEvery, not a line per scan, and probes stop with
// Close.
func TestDownSummary(t *testing.T) {
	const probe = 20 * time.Millisecond
	f := newFake(t, "tcp")
	c, lb := startedClient(t, 200*time.Millisecond, probe, f.addr)
	c.summaryEvery = 50 * time.Millisecond
	f.setMode(modeSilent)
	timedScan(t, c)
	scans := 0
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		if _, _, err := timedScan(t, c); !errors.Is(err, ErrDown) {
			t.Fatalf("scan while hung: %v", err)
		}
		scans++
	}
	log := lb.String()
	summaries := countLines(log, "level=WARN", "clamd is still down", "scans_skipped=")
	t.Logf("%d scans skipped in 300ms, %d summary lines", scans, summaries)
	if summaries < 1 || summaries > scans/4 {
		t.Errorf("%d summary lines for %d skipped scans, want at least one and far fewer than the scans:\n%s", summaries, scans, log)
	}

	c.Close()
	// A probe dialed just before Close returned may be accepted by the
	// fake a little later (seen once under the race detector); a prober
	// left running would go on connecting every probe interval.
	time.Sleep(2 * probe)
	n := f.conns.Load()
	time.Sleep(5 * probe)
	if got := f.conns.Load(); got != n {
		t.Errorf("%d probes after Close", got-n)
	}
}

// TestNotStartedTriesHungServer: without Start nothing would probe a
// hung server, so scans keep trying it rather than skip it for good.
func TestNotStartedTriesHungServer(t *testing.T) {
	f := newFake(t, "tcp")
	c, _ := newTestClient(t, Options{Servers: []string{f.addr}, ScanTimeout: 100 * time.Millisecond,
		ProbeInterval: 20 * time.Millisecond})
	f.setMode(modeSilent)
	for range 2 {
		if _, _, err := timedScan(t, c); !errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, ErrDown) {
			t.Fatalf("err %v, want a timeout from the server itself", err)
		}
	}
	f.setMode(modeNormal)
	if _, _, err := timedScan(t, c); err != nil {
		t.Fatal(err)
	}
}
