package integration_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailwarden/test/harness"
)

// TestMailLoginLastUser is PRODUCT.md's "who last read mail from this
// machine": the daemon follows Dovecot's login log from its start,
// through appended lines and a rotation, and `hosts show` names the
// newest user of every suspect host.
func TestMailLoginLastUser(t *testing.T) {
	t.Parallel()
	fixture, err := os.ReadFile("testdata/dovecot.log")
	if err != nil {
		t.Fatalf("reading the fixture: %v", err)
	}
	log := filepath.Join(harness.InstanceDir(t, "dovecot"), "dovecot.log")
	if err := os.WriteFile(log, fixture, 0o644); err != nil {
		t.Fatalf("writing the login log: %v", err)
	}
	trap := trapAddr(t)
	mw := harness.StartMailwarden(t, binary(t), "internal_networks: [\"127.0.77.0/24\"]\n"+trapYAML(trap)+"\n"+mailLoginYAML(log))

	// Only hosts with evidence are shown: each gets a trap hit.
	hosts := []string{"127.0.77.1", "127.0.77.2", "127.0.77.3"}
	for _, ip := range hosts {
		g, h, m := trapSession(t, trap, ip, "pc.school.test", "worm@school.test")
		requireTrapped(t, ip, g, h, m)
	}
	requireUsers := func(when string, want map[string]string) {
		t.Helper()
		for ip, user := range want {
			h := waitHost(t, mw, ip, fmt.Sprintf("last mail user %q (%s)", user, when), 10*time.Second, func(h map[string]any) bool {
				return number(lookup(trapOf(h), "count")) >= 1 && lastUser(h) == user
			})
			if user != "" {
				out := cliOK(t, mw, "hosts", "show", ip).Stdout
				if !strings.Contains(out, user) {
					t.Errorf("hosts show %s (%s) does not show user %s:\n%s", ip, when, user, out)
				}
			} else if u := lastUser(h); u != "" {
				t.Errorf("hosts show %s (%s): last user %q from a failed login", ip, when, u)
			}
		}
	}
	// bob logged in after alice; mallory only failed to log in.
	requireUsers("from the fixture", map[string]string{
		"127.0.77.1": "bob@school.test", "127.0.77.2": "carol@school.test", "127.0.77.3": ""})

	appendLines(t, log, dovecotLogin(time.Now(), "dan@school.test", "127.0.77.2"))
	requireUsers("after an appended line", map[string]string{
		"127.0.77.1": "bob@school.test", "127.0.77.2": "dan@school.test"})

	// logrotate's default: rename, then a new file at the same path.
	if err := os.Rename(log, log+".1"); err != nil {
		t.Fatalf("rotating the login log: %v", err)
	}
	appendLines(t, log, dovecotLogin(time.Now(), "erin@school.test", "127.0.77.1"))
	requireUsers("after a rotation", map[string]string{
		"127.0.77.1": "erin@school.test", "127.0.77.2": "dan@school.test"})
}
