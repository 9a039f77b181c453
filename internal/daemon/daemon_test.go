package daemon

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mailwarden/internal/config"
	"mailwarden/internal/store"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func testConfig(t *testing.T) config.Config {
	cfg := config.Default()
	// A directory that does not exist yet: the daemon's first start
	// makes a store there (an existing empty one it refuses).
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.Listen = config.Listen{Policy: freePort(t), Milter: freePort(t), HTTP: freePort(t)}
	return cfg
}

func writeConfig(t *testing.T, path string, cfg config.Config) {
	t.Helper()
	b, err := cfg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func start(t *testing.T, cfg config.Config, path string) (*Daemon, *syncBuf, *syncBuf) {
	t.Helper()
	stderr, stdout := &syncBuf{}, &syncBuf{}
	d := startWith(t, cfg, Options{ConfigPath: path, Stderr: stderr, Stdout: stdout, Version: "test"})
	return d, stderr, stdout
}

// startWith starts a daemon with o and shuts it down when the test ends.
func startWith(t *testing.T, cfg config.Config, o Options) *Daemon {
	t.Helper()
	d, err := Start(cfg, o)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d.Shutdown(ctx)
	})
	return d
}

// policyAction sends one RCPT-stage policy request and returns the action.
func policyAction(t *testing.T, addr, client string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=%s\nclient_name=unknown\nhelo_name=x\nsender=a@example.org\nrecipient=u@dest.test\n\n", client)
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading policy answer: %v", err)
	}
	return strings.TrimSpace(strings.TrimPrefix(line, "action="))
}

func TestPortInUseIsAClearError(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := testConfig(t)
	cfg.Listen.Milter = busy.Addr().String()
	_, port, _ := net.SplitHostPort(cfg.Listen.Milter)
	_, err = Start(cfg, Options{Stderr: io.Discard, Stdout: io.Discard})
	if err == nil {
		t.Fatal("Start succeeded on a port in use")
	}
	if !strings.Contains(err.Error(), "milter listener: port "+port) || !strings.Contains(err.Error(), "already in use") {
		t.Errorf("error does not name the listener and port: %v", err)
	}
	// Nothing was left behind: the policy port is free again.
	ln, err := net.Listen("tcp", cfg.Listen.Policy)
	if err != nil {
		t.Errorf("policy port still held after failed start: %v", err)
	} else {
		ln.Close()
	}
}

func TestServesAndReportsHealth(t *testing.T) {
	cfg := testConfig(t)
	_, _, stdout := start(t, cfg, "")
	if got := policyAction(t, cfg.Listen.Policy, "192.0.2.1"); !strings.HasPrefix(got, "451 4.7.1") {
		t.Errorf("new triplet: action = %q, want 451 4.7.1", got)
	}
	// The mail log is flushed within mailLogFlush.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(stdout.String(), "action=tempfail") {
		if time.Now().After(deadline) {
			t.Fatalf("mail log (stdout) has no decision line: %q", stdout.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, path := range []string{"/-/healthy", "/-/ready", "/metrics"} {
		resp, err := http.Get("http://" + cfg.Listen.HTTP + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: status %d", path, resp.StatusCode)
		}
		if path == "/metrics" && !strings.Contains(string(body), `mailwarden_decisions_total{action="tempfail",check="greylist",frontend="policy",stage="rcpt"} 1`) {
			t.Errorf("metrics lack the decision counter:\n%s", body)
		}
	}
}

func TestReloadKeepsRunningConfigWhenNewOneIsInvalid(t *testing.T) {
	cfg := testConfig(t)
	path := filepath.Join(t.TempDir(), "mailwarden.yaml")
	writeConfig(t, path, cfg)
	d, stderr, _ := start(t, cfg, path)

	os.WriteFile(path, []byte("greylist:\n  delay: soon\n"), 0o600)
	if err := d.Reload(); err == nil {
		t.Fatal("Reload accepted an invalid config")
	}
	if !strings.Contains(stderr.String(), "keeping the running configuration") {
		t.Errorf("no log line for the failed reload:\n%s", stderr)
	}
	if got := policyAction(t, cfg.Listen.Policy, "192.0.2.1"); !strings.HasPrefix(got, "451") {
		t.Errorf("after failed reload: action = %q, want greylisting still on", got)
	}

	cfg.Greylist.Enabled = false
	writeConfig(t, path, cfg)
	if err := d.Reload(); err != nil {
		t.Fatalf("valid reload: %v", err)
	}
	if got := policyAction(t, cfg.Listen.Policy, "198.51.100.1"); got != "DUNNO" {
		t.Errorf("after reload with greylisting off: action = %q, want DUNNO", got)
	}
}

func TestStatePersistsAcrossRestart(t *testing.T) {
	cfg := testConfig(t)
	cfg.Greylist.Delay = config.Duration(time.Second)
	d, _, _ := start(t, cfg, "")
	if got := policyAction(t, cfg.Listen.Policy, "192.0.2.1"); !strings.HasPrefix(got, "451") {
		t.Fatalf("first attempt: %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	start(t, cfg, "")
	if got := policyAction(t, cfg.Listen.Policy, "192.0.2.1"); !strings.HasPrefix(got, "PREPEND X-Greylist: delayed") {
		t.Errorf("retry after restart: action = %q, want the delayed pass", got)
	}
}

// TestFreezeAndLatchShowInMetrics: an administrator's alerting sees a
// freeze in force and how many hosts are latched.
func TestFreezeAndLatchShowInMetrics(t *testing.T) {
	cfg := testConfig(t)
	d, _, _ := start(t, cfg, "")
	ctx := context.Background()
	now := time.Now()
	if err := d.store.SetFreeze(ctx, store.Freeze{Scope: store.FreezeAll, Since: now, By: "test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.store.AddLatch(ctx, store.Latch{Kind: store.LatchClient, Key: "10.1.2.3", Rule: "sender_domain"}, now); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + cfg.Listen.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`mailwarden_freezes_active{scope="all"} 1`, `mailwarden_freezes_active{scope="domain"} 0`,
		`mailwarden_latches_active{kind="client"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestTrapHitsReachTheHostRegistry: a machine that tries to talk SMTP to
// the trap shows up as a host with its count and HELO once the
// aggregated hits are flushed.
func TestTrapHitsReachTheHostRegistry(t *testing.T) {
	cfg := testConfig(t)
	cfg.Trap.Enabled = true
	cfg.Trap.Listen = freePort(t)
	// The ticker never fires during the test: the test flushes once both
	// sessions are in, so a slow machine cannot split them over two
	// flushes.
	cfg.Trap.FlushInterval = config.Duration(time.Hour)
	d, _, _ := start(t, cfg, "")
	for i := range 2 {
		c, err := net.DialTimeout("tcp", cfg.Trap.Listen, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		r.ReadString('\n') // banner
		fmt.Fprintf(c, "HELO infected-%d\r\nMAIL FROM:<worm@evil.example>\r\n", i)
		r.ReadString('\n')
		if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "451") {
			t.Errorf("MAIL FROM answered %q, want a 451 temporary failure", line)
		}
		c.Close()
	}
	ip := netip.MustParseAddr("127.0.0.1")
	deadline := time.Now().Add(10 * time.Second)
	for {
		snap := d.hp.trapAgg.Snapshot()
		if len(snap) == 1 && snap[0].Count == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trap aggregator after two sessions: %+v", snap)
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.flushTrap()
	for {
		h, err := d.hp.registry.Get(context.Background(), ip)
		if err == nil && h.Trap.Count == 2 && h.Trap.LastHelo == "infected-1" && h.Trap.LastMailFrom != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("host registry after two trap sessions: %+v, %v", h.Trap, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The two connections were flushed together: one trap event, not
	// one per connection.
	evs, err := d.events.Query(context.Background(), store.EventFilter{Kind: store.EventTrap})
	if err != nil || len(evs) != 1 || evs[0].Client != "127.0.0.1" ||
		!strings.HasPrefix(evs[0].Reason, "2 direct port-25 connections") || !strings.Contains(evs[0].Reason, "HELO infected-1") {
		t.Fatalf("trap events after two sessions in one flush: %+v, %v", evs, err)
	}
}
