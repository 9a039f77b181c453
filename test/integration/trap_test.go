package integration_test

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailwarden/test/harness"
)

// TestTrapRecordsHosts is PRODUCT.md's worm trap: internal machines whose
// port-25 connections the firewall redirects to the trap are told to try
// later, and `mailwarden hosts` shows each one with how often it came and
// the HELO it gave.
func TestTrapRecordsHosts(t *testing.T) {
	t.Parallel()
	trap := trapAddr(t)
	mw := harness.StartMailwarden(t, binary(t), "internal_networks: [\"127.0.71.0/24\"]\n"+trapYAML(trap))

	// Hosts 1 and 3 come twice, the second time with another HELO.
	visits := map[string]int{"127.0.71.1": 2, "127.0.71.2": 1, "127.0.71.3": 2, "127.0.71.4": 1}
	for ip, n := range visits {
		for i := 1; i <= n; i++ {
			helo := fmt.Sprintf("pc%s-try%d.school.test", ip[len("127.0.71."):], i)
			g, h, m := trapSession(t, trap, ip, helo, "worm@"+helo)
			requireTrapped(t, ip, g, h, m)
		}
	}

	for ip, n := range visits {
		wantHelo := fmt.Sprintf("pc%s-try%d.school.test", ip[len("127.0.71."):], n)
		h := waitHost(t, mw, ip, fmt.Sprintf("%d trap hits", n), 10*time.Second, func(h map[string]any) bool {
			return number(lookup(trapOf(h), "count")) >= n
		})
		tr := trapOf(h)
		if got := number(lookup(tr, "count")); got != n {
			t.Errorf("hosts show %s: trap count %d, want %d: %v", ip, got, n, h)
		}
		if got := text(lookup(tr, "last_helo", "helo")); got != wantHelo {
			t.Errorf("hosts show %s: last HELO %q, want %q", ip, got, wantHelo)
		}
		if got := text(lookup(tr, "last_mail_from", "mail_from")); got != "worm@"+wantHelo {
			t.Errorf("hosts show %s: last MAIL FROM %q, want %q", ip, got, "worm@"+wantHelo)
		}
		if got := evidence(h, "trap"); got != n {
			t.Errorf("hosts show %s: trap evidence %d, want %d: %v", ip, got, n, h)
		}
		out := cliOK(t, mw, "hosts", "show", ip).Stdout
		for _, want := range []string{ip, wantHelo} {
			if !strings.Contains(out, want) {
				t.Errorf("hosts show %s does not show %q:\n%s", ip, want, out)
			}
		}
	}

	// The firewall rules that feed the trap redirect the internal
	// network's port 25 to the trap's port.
	rules := mw.Exec(t, "trap", "rules", "--config", mw.ConfigFile)
	_, port, _ := net.SplitHostPort(trap)
	if rules.ExitCode != 0 || !strings.Contains(rules.Stdout, "127.0.71.0/24") || !strings.Contains(rules.Stdout, port) {
		t.Errorf("mailwarden trap rules: exit %d, want rules redirecting 127.0.71.0/24 to port %s:\n%s%s", rules.ExitCode, port, rules.Stdout, rules.Stderr)
	}

	// Each host's hits became trap events, at most one per flush, each
	// saying how many connections and what the host said.
	// The events follow the hits in the same flush: wait for it.
	var trapped map[string]int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		trapped = map[string]int{}
		evs := events(t, mw, "--kind", "trap", "--limit", "1000")
		for _, e := range evs {
			trapped[field(e, "client")] += leadingNumber(field(e, "reason"))
		}
		if maps.Equal(trapped, visits) || time.Now().After(deadline) {
			for _, e := range evs {
				if !strings.Contains(field(e, "reason"), "direct port-25 connection") || !strings.Contains(field(e, "reason"), "HELO pc") {
					t.Errorf("trap event %v", e)
				}
			}
			break
		}
	}
	for ip, n := range visits {
		if trapped[ip] != n {
			t.Errorf("trap events for %s count %d connections, want %d (events: %v)", ip, trapped[ip], n, trapped)
		}
	}
	if out := mw.CLIWords(t, 1, "events", "--kind", "trap").Stdout; !strings.Contains(out, "trap") || !strings.Contains(out, "127.0.71.1") {
		t.Errorf("events --kind trap:\n%s", out)
	}

	listed := map[string]bool{}
	for _, h := range jsonList(t, "hosts list", cliOK(t, mw, "hosts", "list", "--json").Stdout) {
		listed[text(lookup(h, "ip", "client", "addr"))] = true
	}
	plain := cliOK(t, mw, "hosts", "list").Stdout
	for ip := range visits {
		if !listed[ip] {
			t.Errorf("hosts list --json does not list %s: %v", ip, listed)
		}
		if !strings.Contains(plain, ip) {
			t.Errorf("hosts list does not show %s:\n%s", ip, plain)
		}
	}
}

// floodConns is how many connections TestTrapFlood opens from one host:
// a worm retrying in a tight loop for a while.
const floodConns = 3000

// floodRSSLimitKB bounds the daemon's resident memory after the flood.
// An idle daemon uses some tens of MB (the Go runtime, SQLite's page
// cache); the trap keeps one aggregate per client address, so 3,000
// connections from one address should add little. 200 MB is far above
// that and far below what keeping every connection would cost a small
// server over a worm outbreak.
const floodRSSLimitKB = 200 << 10

// TestTrapFlood checks that one host flooding the trap leaves the daemon
// responsive for everyone else and within a memory bound, and that the
// host is still recorded.
func TestTrapFlood(t *testing.T) {
	t.Parallel()
	const flooder, other = "127.0.72.1", "127.0.72.2"
	trap := trapAddr(t)
	mw := harness.StartMailwarden(t, binary(t), "internal_networks: [\"127.0.72.0/24\"]\n"+trapYAML(trap))
	before := vmRSS(t, mw.PID())

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var next, done, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(flooder)}, Timeout: 5 * time.Second}
			for next.Add(1) <= floodConns && ctx.Err() == nil {
				c, err := d.DialContext(ctx, "tcp", trap)
				if err != nil {
					failed.Add(1)
					continue
				}
				c.SetDeadline(time.Now().Add(5 * time.Second))
				fmt.Fprintf(c, "HELO flood.school.test\r\nMAIL FROM:<worm@flood.school.test>\r\n")
				buf := make([]byte, 512)
				for {
					if _, err := c.Read(buf); err != nil {
						break
					}
				}
				c.Close()
				done.Add(1)
			}
		}()
	}

	// While the flood runs the daemon answers /-/ready and traps another
	// host as usual.
	flooding := make(chan struct{})
	go func() { wg.Wait(); close(flooding) }()
	client := &http.Client{Timeout: 2 * time.Second}
	checks, otherDone := 0, false
	for running := true; running; {
		resp, err := client.Get("http://" + mw.HTTPAddr + "/-/ready")
		if err != nil {
			t.Fatalf("during the flood GET /-/ready failed: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("during the flood GET /-/ready answered %s", resp.Status)
		}
		checks++
		if !otherDone {
			g, h, m := trapSession(t, trap, other, "pc2.school.test", "worm@pc2.school.test")
			requireTrapped(t, other, g, h, m)
			otherDone = true
			select {
			case <-flooding:
				t.Errorf("the flood ended before the other host's session did; nothing was shown")
			default:
			}
		}
		select {
		case <-flooding:
			running = false
		case <-time.After(100 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("the flood did not finish within 60s: %d connections done, %d refused", done.Load(), failed.Load())
	}
	t.Logf("flood: %d connections done, %d failed to connect, in %v; %d readiness checks", done.Load(), failed.Load(), elapsed.Round(time.Millisecond), checks)

	h := waitHost(t, mw, flooder, "trap hits", 10*time.Second, func(h map[string]any) bool {
		return number(lookup(trapOf(h), "count")) >= 1
	})
	// The count settles one flush after the last connection.
	time.Sleep(1500 * time.Millisecond)
	h, _, _ = hostShow(t, mw, flooder)
	if n := number(lookup(trapOf(h), "count")); n < 1 || n > floodConns {
		t.Errorf("hosts show %s: trap count %d, want 1..%d", flooder, n, floodConns)
	} else {
		t.Logf("flood: %d hits recorded for %s", n, flooder)
	}
	waitHost(t, mw, other, "its trap hit", 10*time.Second, func(h map[string]any) bool {
		return number(lookup(trapOf(h), "count")) == 1
	})

	// The flood is one trap event per flush, not one per connection.
	evs := events(t, mw, "--kind", "trap", "--host", flooder, "--limit", "10000")
	total := 0
	for _, e := range evs {
		total += leadingNumber(field(e, "reason"))
	}
	if len(evs) == 0 || len(evs) > 200 || total < 1 {
		t.Errorf("flood: %d trap events for %s counting %d connections; want a few, one per flush", len(evs), flooder, total)
	} else {
		t.Logf("flood: %d trap events for %s counting %d connections", len(evs), flooder, total)
	}

	after := vmRSS(t, mw.PID())
	t.Logf("daemon VmRSS: %d kB before the flood, %d kB after", before, after)
	if after > floodRSSLimitKB {
		t.Errorf("daemon VmRSS %d kB after the flood, want under %d kB", after, floodRSSLimitKB)
	}
	if !mw.Running() {
		t.Errorf("the daemon exited during the flood")
	}
}

// leadingNumber is the number a text starts with ("12 direct port-25
// connections ..."), or 0.
func leadingNumber(s string) int {
	n := 0
	for _, r := range s {
		if r < '0' || r > '9' {
			break
		}
		n = n*10 + int(r-'0')
	}
	return n
}
