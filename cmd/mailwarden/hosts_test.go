package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailwarden/internal/adminapi"
	"mailwarden/internal/hosts"
	"mailwarden/internal/scan"
	"mailwarden/internal/sites"
	"mailwarden/internal/store"
	"mailwarden/internal/store/sqlite"
)

// startHostsAdmin serves the admin API with a real host registry over a
// temporary SQLite store, and scan, on admin.sock in a fresh data
// directory. The store holds a latched host 10.1.2.3 that hit the trap
// with an attacker-chosen HELO.
func startHostsAdmin(t *testing.T, scanFn adminapi.ScanFunc) (string, *sqlite.Store) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	st, err := sqlite.OpenWith(t.TempDir(), log, sqlite.Options{Mirror: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	sr, err := sites.New([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		[]sites.Site{{Name: "lincoln", Networks: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := hosts.New(hosts.Options{Store: st, Sites: func() *sites.Registry { return sr }, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, now := context.Background(), time.Now()
	if _, err := st.AddLatch(ctx, store.Latch{Kind: store.LatchClient, Key: "10.1.2.3", Rule: "sender_domain",
		Reason: "envelope sender domain evil.example not allowed", Evidence: "boss@evil.example"}, now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := st.AppendEvents(ctx, store.Event{Time: now.Add(-time.Hour), Kind: store.EventLatch, Check: "sender",
		Action: "reject", Client: "10.1.2.3", Reason: "envelope sender domain evil.example not allowed",
		Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddTrapHits(ctx, store.TrapRecord{Client: "10.1.2.3", FirstSeen: now.Add(-2 * time.Hour),
		LastSeen: now.Add(-90 * time.Minute), Count: 7, LastHelo: "pc17\x1b[2J", LastMailFrom: "x@spam.example",
		LastDst: "192.0.2.25:25"}); err != nil {
		t.Fatal(err)
	}
	if err := st.RecordLogin(ctx, store.MailLogin{Client: "10.1.2.3", User: "alice", Service: "imap", Time: now.Add(-3 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	srv := adminapi.NewServer(adminapi.Options{Backend: st, Hosts: reg, Scan: scanFn, Log: log})
	ln, err := srv.Listen(filepath.Join(data, "admin.sock"), 0o660, "", "")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return data, st
}

func TestHostsCommands(t *testing.T) {
	data, _ := startHostsAdmin(t, nil)

	code, stdout, stderr := runCmd("hosts", "list", "--data", data)
	for _, want := range []string{"IP", "LAST MAIL USER", "10.1.2.3", "lincoln", "latched", "alice", "(1h ago)"} {
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("hosts list lacks %q: code %d\n%s%s", want, code, stdout, stderr)
		}
	}
	if code, stdout, _ := runCmd("hosts", "list", "--status", "disinfected", "--data", data); code != 0 || strings.TrimSpace(stdout) != "no suspect hosts" {
		t.Errorf("hosts list --status disinfected: code %d, %q", code, stdout)
	}
	if code, _, stderr := runCmd("hosts", "list", "--status", "sick", "--data", data); code != 2 || !strings.Contains(stderr, "--status") {
		t.Errorf("bad --status: code %d, %q", code, stderr)
	}
	code, stdout, _ = runCmd("hosts", "list", "--json", "--since", "7d", "--data", data)
	var hs []adminapi.Host
	if err := json.Unmarshal([]byte(stdout), &hs); code != 0 || err != nil || len(hs) != 1 || hs[0].Evidence["trap"] != 7 {
		t.Errorf("hosts list --json: code %d, %v, %q", code, err, stdout)
	}

	code, stdout, stderr = runCmd("hosts", "show", "10.1.2.3", "--data", data)
	for _, want := range []string{"Status:", "latched", "Trap hits:", "7, ", "last MAIL FROM:", "x@spam.example",
		"192.0.2.25:25", "Active latch:", "sender_domain", "alice (imap)", "Recent events:"} {
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("hosts show lacks %q: code %d\n%s%s", want, code, stdout, stderr)
		}
	}
	if strings.ContainsRune(stdout, 0x1b) || !strings.Contains(stdout, `"pc17\x1b[2J"`) {
		t.Errorf("hosts show printed the trap HELO unquoted:\n%q", stdout)
	}
	if code, _, stderr := runCmd("hosts", "show", "10.9.9.9", "--data", data); code != 1 || !strings.Contains(stderr, "nothing is known about 10.9.9.9") {
		t.Errorf("unknown host: code %d, %q", code, stderr)
	}
	if code, _, _ := runCmd("hosts", "show", "not-an-ip", "--data", data); code != 2 {
		t.Errorf("bad IP: code %d", code)
	}

	if code, stdout, stderr := runCmd("hosts", "note", "10.1.2.3", "owner", "is in room 12", "--data", data); code != 0 ||
		!strings.Contains(stdout, "noted on 10.1.2.3 (by "+currentUser(t)+"): owner is in room 12") {
		t.Errorf("hosts note: code %d, %q %q", code, stdout, stderr)
	}
	if code, _, stderr := runCmd("hosts", "disinfect", "10.1.2.3", "--data", data); code != 2 || !strings.Contains(stderr, "--note is required") {
		t.Errorf("disinfect without --note: code %d, %q", code, stderr)
	}
	code, stdout, stderr = runCmd("hosts", "disinfect", "10.1.2.3", "--note", "reimaged", "--data", data)
	if code != 0 || !strings.Contains(stdout, "10.1.2.3 declared disinfected; cleared latches ") {
		t.Errorf("hosts disinfect: code %d, %q %q", code, stdout, stderr)
	}
	code, stdout, _ = runCmd("hosts", "show", "10.1.2.3", "--data", data)
	for _, want := range []string{"Active latches:", "none", "owner is in room 12", "Disinfected:", "reimaged"} {
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("hosts show after disinfect lacks %q:\n%s", want, stdout)
		}
	}

	code, stdout, _ = runCmd("hosts", "timeline", "--since", "30d", "--data", data)
	trapAt, forgeryAt := strings.Index(stdout, "trap"), strings.Index(stdout, "forgery")
	if code != 0 || trapAt < 0 || forgeryAt < trapAt {
		t.Errorf("hosts timeline: want the trap hit before the forgery: code %d\n%s", code, stdout)
	}
	if code, _, _ := runCmd("hosts", "purge", "--data", data); code != 2 {
		t.Errorf("unknown verb: code %d", code)
	}
}

func TestScanCommand(t *testing.T) {
	allowed := netip.MustParsePrefix("10.1.0.0/16")
	fake := func(_ context.Context, targets []netip.Prefix) (scan.Summary, []scan.Finding, error) {
		for _, p := range targets {
			if !allowed.Contains(p.Addr()) || p.Bits() < allowed.Bits() {
				return scan.Summary{}, nil, errors.Join(scan.ErrOutsideRange, errors.New(p.String()+" is outside 10.1.0.0/16"))
			}
		}
		return scan.Summary{Probed: 254, Open: 1, Closed: 253, Duration: 2 * time.Second},
			[]scan.Finding{{Addr: netip.MustParseAddr("10.1.0.5"), Port: 1080, Open: true, Time: time.Now()}}, nil
	}
	data, _ := startHostsAdmin(t, fake)
	code, stdout, stderr := runCmd("scan", "10.1.0.0/24", "--data", data)
	if code != 0 || !strings.Contains(stdout, "10.1.0.5") || !strings.Contains(stdout, "1080") ||
		!strings.Contains(stdout, "probed 254: 1 open, 253 closed, 0 errors in 2.0s") {
		t.Errorf("scan: code %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, _ = runCmd("scan", "--json", "--data", data)
	var res adminapi.ScanResult
	if err := json.Unmarshal([]byte(stdout), &res); code != 0 || err != nil || res.Open != 1 {
		t.Errorf("scan --json: code %d, %v, %q", code, err, stdout)
	}
	code, _, stderr = runCmd("scan", "192.0.2.0/24", "--data", data)
	if code != 1 || !strings.Contains(stderr, "192.0.2.0/24 is outside 10.1.0.0/16") {
		t.Errorf("refused scan: code %d, %q", code, stderr)
	}
	if code, _, _ := runCmd("scan", "10.1.0.0/99", "--data", data); code != 2 {
		t.Errorf("bad CIDR: code %d", code)
	}
}

func TestTrapRules(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "mailwarden.yaml")
	write := func(s string) {
		if err := os.WriteFile(cfg, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`internal_networks: [10.0.0.0/16, "2001:db8::/48"]
sites:
  - name: north
    networks: [172.16.0.0/16]
trap:
  listen: "0.0.0.0:10025"
  mail_servers: [10.0.0.25]
`)
	code, stdout, stderr := runCmd("trap", "rules", "--config", cfg)
	for _, want := range []string{
		"table inet mailwarden_trap {",
		"ip saddr { 10.0.0.25 } tcp dport 25 return",
		"ip saddr { 10.0.0.0/16, 172.16.0.0/16 } tcp dport 25 redirect to :10025",
		"ip6 saddr { 2001:db8::/48 } tcp dport 25 redirect to :10025",
		"iptables -t nat -A MAILWARDEN_TRAP -s 172.16.0.0/16 -p tcp -j REDIRECT --to-ports 10025",
	} {
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("trap rules lacks %q: code %d\n%s%s", want, code, stdout, stderr)
		}
	}
	if stderr != "" {
		t.Errorf("unexpected warning for a wildcard listener: %q", stderr)
	}

	write("trap:\n  listen: \"127.0.0.1:2525\"\n")
	code, stdout, stderr = runCmd("trap", "rules", "--config", cfg)
	if code != 0 || !strings.Contains(stdout, "redirect to :2525") || !strings.Contains(stderr, "loopback") {
		t.Errorf("loopback listener: code %d, stderr %q", code, stderr)
	}

	write("trap:\n  listen: \"\"\n")
	code, stdout, stderr = runCmd("trap", "rules", "--config", cfg)
	if code != 2 || stdout != "" || !strings.Contains(stderr, "has no port") {
		t.Errorf("no port: code %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if code, _, _ := runCmd("trap", "flush"); code != 2 {
		t.Errorf("unknown verb: code %d", code)
	}
}
