package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnit checks etc/mailwarden.service with systemd-analyze
// verify, which catches misspelt settings and bad values, and checks that
// the sandboxing the unit promises is there. Without systemd-analyze
// (containers, CI images without systemd) the verify half is skipped.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("../../etc/mailwarden.service")
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, line := range strings.Split(string(unit), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			settings[k] = v
		}
	}
	for k, want := range map[string]string{
		"User": "mailwarden", "Group": "mailwarden", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
		"ProtectHome": "yes", "PrivateTmp": "yes", "UMask": "0027",
		// The default config writes only into data_dir, /var/lib/mailwarden.
		"StateDirectory": "mailwarden", "StateDirectoryMode": "0750",
	} {
		if got := settings[k]; got != want {
			t.Errorf("etc/mailwarden.service: %s=%s, want %s", k, got, want)
		}
	}
	if !strings.Contains(settings["ExecStart"], "serve --config /etc/mailwarden/mailwarden.yaml") {
		t.Errorf("ExecStart=%s", settings["ExecStart"])
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed: the unit file was not verified")
	}
	// verify insists that the programs the unit runs exist; the binary
	// is not installed here, so the unit runs this test binary instead.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "mailwarden.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/mailwarden", self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify etc/mailwarden.service: %v\n%s", err, out)
	}
}
