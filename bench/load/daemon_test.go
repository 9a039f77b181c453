package load

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"mailwarden/internal/config"
	"mailwarden/internal/daemon"
)

// freeAddrs returns n distinct free loopback addresses. daemon.Start binds
// exactly the addresses it is given and does not report the port a ":0"
// got, so the ports are picked here first; all n are held open together
// so they differ.
func freeAddrs(tb testing.TB, n int) []string {
	tb.Helper()
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		defer ln.Close()
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs
}

// startDaemon starts mailwarden in-process with its defaults (the embedded
// store in a temporary directory) and greylisting on or off, and returns
// the policy and milter addresses. It is shut down when tb ends.
func startDaemon(tb testing.TB, greylist bool) (policyAddr, milterAddr string) {
	tb.Helper()
	dir := tb.TempDir()
	// A data directory that does not exist yet: the first start makes
	// the store.
	cfg, err := daemon.LoadConfig("", filepath.Join(dir, "data"))
	if err != nil {
		tb.Fatal(err)
	}
	addrs := freeAddrs(tb, 2)
	cfg.Listen = config.Listen{Policy: addrs[0], Milter: addrs[1]}
	cfg.Log.MailLog = filepath.Join(dir, "mail.log")
	cfg.Greylist.Enabled = greylist
	d, err := daemon.Start(cfg, daemon.Options{Stderr: io.Discard, Stdout: io.Discard, Version: "bench"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := d.Shutdown(ctx); err != nil {
			tb.Errorf("shutting mailwarden down: %v", err)
		}
	})
	return addrs[0], addrs[1]
}

// TestLoadAgainstDaemon checks that the load reaches mailwarden's
// decisions: with greylisting on, triplets never seen before are all
// deferred with 451 (RFC 6647 §2); with it off, every transaction goes
// through to end of message and is accepted.
func TestLoadAgainstDaemon(t *testing.T) {
	ctx := context.Background()
	common := Common{N: 200, C: 4, Uniq: 1_000_000, Seed: 42}
	tests := []struct {
		greylist               bool
		wantMilter, wantPolicy string
	}{
		{true, "code451", "451"},
		{false, "accept", "DUNNO"},
	}
	for _, tt := range tests {
		policyAddr, milterAddr := startDaemon(t, tt.greylist)

		mo := MilterOptions{Common: common}
		mo.Addr = milterAddr
		r, err := RunMilter(ctx, mo)
		if err != nil {
			t.Fatalf("greylist=%v: milter: %v", tt.greylist, err)
		}
		if r.N != 200 || r.Verdicts[tt.wantMilter] != 200 {
			t.Errorf("greylist=%v: milter N=%d verdicts=%v, want %s:200 (first error %q)",
				tt.greylist, r.N, r.Verdicts, tt.wantMilter, r.FirstError)
		}

		po := PolicyOptions{Common: common}
		po.Addr = policyAddr
		po.Seed++ // triplets the milter run did not send
		r, err = RunPolicy(ctx, po)
		if err != nil {
			t.Fatalf("greylist=%v: policy: %v", tt.greylist, err)
		}
		if r.N != 200 || r.Verdicts[tt.wantPolicy] != 200 {
			t.Errorf("greylist=%v: policy N=%d verdicts=%v, want %s:200 (first error %q)",
				tt.greylist, r.N, r.Verdicts, tt.wantPolicy, r.FirstError)
		}
	}
}
