package integration_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"mailwarden/test/harness"
)

// TestTrapRecordsOriginalDestination redirects a connection the way the
// firewall rules from `mailwarden trap rules` do, with a real nftables
// rule, and checks that the trap records where the machine was trying to
// go (SO_ORIGINAL_DST). The rule lives in a table of the test's own and
// matches only 127.0.78.25 port 25, so nothing else on the machine is
// redirected; the table is deleted when the test ends.
func TestTrapRecordsOriginalDestination(t *testing.T) {
	nft := requireNft(t)
	trapPort := harness.FreePort(t)
	trap := fmt.Sprintf("127.0.0.1:%d", trapPort)
	mw := harness.StartMailwarden(t, binary(t), "internal_networks: [\"127.0.78.0/24\"]\n"+trapYAML(trap))

	b := make([]byte, 4)
	rand.Read(b)
	table := "mailwarden_test_" + hex.EncodeToString(b)
	runNft := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(nft, args...).CombinedOutput(); err != nil {
			t.Fatalf("nft %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	runNft("add", "table", "ip", table)
	t.Cleanup(func() { exec.Command(nft, "delete", "table", "ip", table).Run() })
	// Locally generated connections pass the output hook, not prerouting.
	runNft("add", "chain", "ip", table, "out", "{ type nat hook output priority -100; }")
	runNft("add", "rule", "ip", table, "out", "ip", "daddr", "127.0.78.25", "tcp", "dport", "25",
		"redirect", "to", fmt.Sprintf(":%d", trapPort))

	const src, dst = "127.0.78.5", "127.0.78.25:25"
	g, h, m := trapSession(t, dst, src, "infected.school.test", "worm@evil.test")
	requireTrapped(t, src, g, h, m)
	got := waitHost(t, mw, src, "a trap hit with its original destination", 10*time.Second, func(h map[string]any) bool {
		return text(lookup(trapOf(h), "last_dst")) != ""
	})
	if d := text(lookup(trapOf(got), "last_dst")); d != dst {
		t.Errorf("trap recorded original destination %q, want %q", d, dst)
	}
}

// requireNft returns the nft binary, skipping the test where nftables
// cannot run (not root, not installed) except under CI.
func requireNft(t *testing.T) string {
	t.Helper()
	skip := func(why string) {
		if harness.UnderCI() {
			t.Fatalf("%s; a skipped integration test under CI=true is a failure (test/setup.sh installs nftables)", why)
		}
		t.Skip(why)
	}
	if os.Geteuid() != 0 {
		skip("redirect test needs root for nftables")
	}
	nft, err := exec.LookPath("nft")
	if err != nil {
		skip("nft (nftables) not installed")
	}
	return nft
}
