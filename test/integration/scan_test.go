package integration_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailwarden/test/harness"
)

// TestScanFindsBackdoor is PRODUCT.md's backdoor scanner: it finds a port
// a worm opened on an internal machine, shows it with the host, and never
// scans a range outside the configured ones.
func TestScanFindsBackdoor(t *testing.T) {
	t.Parallel()
	const infected, inside, outside = "127.0.73.2", "127.0.73.0/29", "127.0.74.0/29"
	port := listener(t, infected+":0")
	mw := harness.StartMailwarden(t, binary(t), "internal_networks: [\"127.0.73.0/24\", \"127.0.74.0/24\"]\n"+scanYAML(port, inside))

	res := mw.CLIWords(t, 1, "scan", inside)
	if res.ExitCode != 0 {
		t.Fatalf("mailwarden scan %s: exit %d\nstdout:\n%s\nstderr:\n%s", inside, res.ExitCode, res.Stdout, res.Stderr)
	}
	if !strings.Contains(res.Stdout, infected) || !strings.Contains(res.Stdout, strconv.Itoa(port)) {
		t.Errorf("mailwarden scan %s does not report %s port %d open:\n%s", inside, infected, port, res.Stdout)
	}
	for _, quiet := range []string{"127.0.73.1 ", "127.0.73.3 ", "127.0.73.1:", "127.0.73.3:"} {
		if strings.Contains(res.Stdout, quiet) {
			t.Errorf("mailwarden scan %s reports %s, which has nothing listening:\n%s", inside, strings.TrimSpace(quiet), res.Stdout)
		}
	}
	js := mw.CLIWords(t, 1, "scan", inside, "--json")
	if js.ExitCode != 0 || !strings.Contains(js.Stdout, `"`+infected+`"`) || !strings.Contains(js.Stdout, strconv.Itoa(port)) {
		t.Errorf("mailwarden scan %s --json: exit %d, want the open port %s:%d:\n%s%s", inside, js.ExitCode, infected, port, js.Stdout, js.Stderr)
	}

	res = mw.CLIWords(t, 1, "scan", outside)
	if res.ExitCode == 0 {
		t.Errorf("mailwarden scan %s (outside scan.ranges) succeeded:\n%s", outside, res.Stdout)
	}
	if !strings.Contains(res.Stderr+res.Stdout, outside) {
		t.Errorf("mailwarden scan %s: the refusal does not name the range:\nstdout:\n%s\nstderr:\n%s", outside, res.Stdout, res.Stderr)
	}

	h := waitHost(t, mw, infected, fmt.Sprintf("port %d open", port), 5*time.Second, func(h map[string]any) bool {
		return openPort(h, port)
	})
	if n := evidence(h, "backdoor"); n < 1 {
		t.Errorf("hosts show %s: backdoor evidence %d, want 1: %v", infected, n, h)
	}
	out := cliOK(t, mw, "hosts", "show", infected).Stdout
	if !strings.Contains(out, strconv.Itoa(port)) {
		t.Errorf("hosts show %s does not show port %d:\n%s", infected, port, out)
	}
	if _, _, ok := hostShow(t, mw, "127.0.73.3"); ok {
		t.Errorf("hosts show 127.0.73.3 (nothing listening) shows a host")
	}
}
