package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCmd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageAndUnknownCommand(t *testing.T) {
	if code, _, stderr := runCmd(); code != 2 || !strings.Contains(stderr, "mailwarden serve") {
		t.Errorf("no args: code %d, stderr %q", code, stderr)
	}
	if code, _, stderr := runCmd("frobnicate"); code != 2 || !strings.Contains(stderr, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: code %d, stderr %q", code, stderr)
	}
	if code, stdout, _ := runCmd("version"); code != 0 || !strings.HasPrefix(stdout, "mailwarden ") {
		t.Errorf("version: code %d, stdout %q", code, stdout)
	}
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("greylist:\n  delay: 2m\n"), 0o600)
	if code, stdout, stderr := runCmd("config", "check", good); code != 0 || !strings.Contains(stdout, "OK") {
		t.Errorf("good config: code %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if code, stdout, _ := runCmd("config", "check", "--print", good); code != 0 || !strings.Contains(stdout, "delay: 2m\n") {
		t.Errorf("--print: code %d, stdout %q", code, stdout)
	}
	// A webhook's signing secret is not printed.
	hook := filepath.Join(dir, "hook.yaml")
	os.WriteFile(hook, []byte("alerts:\n  receivers:\n    - name: chat\n      webhook: {url: \"https://chat.example/hooks/x\", secret: \"s3cr3t-value\"}\n"), 0o600)
	if code, stdout, stderr := runCmd("config", "check", "--print", hook); code != 0 || strings.Contains(stdout, "s3cr3t-value") ||
		!strings.Contains(stdout, "(set, not shown)") {
		t.Errorf("--print with a webhook secret: code %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// Nor is a Redis password, in the URL or on its own; and a Redis
	// store fails greylisting open unless the file says otherwise.
	rds := filepath.Join(dir, "redis.yaml")
	os.WriteFile(rds, []byte("store:\n  kind: redis\n  url: redis://mw:pw-in-url@127.0.0.1:6379/1\n  password: pw-alone\n"), 0o600)
	if code, stdout, stderr := runCmd("config", "check", "--print", rds); code != 0 || strings.Contains(stdout, "pw-in-url") ||
		strings.Contains(stdout, "pw-alone") || !strings.Contains(stdout, "fail_open:\n  - greylist\n") {
		t.Errorf("--print of a Redis store: code %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("greylst:\n  delay: 2m\nlisten:\n  milter: nowhere\n"), 0o600)
	code, _, stderr := runCmd("config", "check", bad)
	if code != 1 {
		t.Errorf("bad config: code %d", code)
	}
	// Both errors at once, each with the file and line.
	for _, want := range []string{bad + ":1:", bad + ":4:"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("bad config: stderr lacks %q:\n%s", want, stderr)
		}
	}
	// A whitelist file that does not exist is caught by the same check
	// construction serve uses.
	wl := filepath.Join(dir, "wl.yaml")
	os.WriteFile(wl, []byte("greylist:\n  whitelist_client_files: [/nonexistent/whitelist_clients]\n"), 0o600)
	if code, _, stderr := runCmd("config", "check", wl); code != 1 || !strings.Contains(stderr, "/nonexistent/whitelist_clients") {
		t.Errorf("missing whitelist file: code %d, stderr %q", code, stderr)
	}
	if code, _, _ := runCmd("config", "check"); code != 2 {
		t.Errorf("config check without FILE: code %d", code)
	}
}

// TestConfigCheckRefusesWhatServeRefuses: the systemd unit runs config
// check as ExecStartPre, so what would stop serve must stop it too
// (issue 19: a hostname with CR LF passed config check).
func TestConfigCheckRefusesWhatServeRefuses(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, yaml, want string }{
		{"header injection in hostname", "hostname: \"bad host\\r\\nX-Injected: yes\"\n", "is not a host name"},
		{"hostname with antivirus off", "hostname: \"mx one\"\nantivirus: {enabled: false}\n", "is not a host name"},
		{"unknown admin group", "admin: {group: no-such-group-mw}\n", `group "no-such-group-mw": no such group`},
		{"unknown admin owner", "admin: {owner: no-such-user-mw}\n", `owner "no-such-user-mw": no such user`},
	} {
		path := filepath.Join(dir, "c.yaml")
		os.WriteFile(path, []byte(tc.yaml), 0o600)
		code, _, stderr := runCmd("config", "check", path)
		if code != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: config check exit %d, stderr %q, want 1 and %q", tc.name, code, stderr, tc.want)
		}
		code, _, serveErr := runCmd("serve", "--config", path, "--data", filepath.Join(dir, "data"))
		if code == 0 || !strings.Contains(serveErr, tc.want) {
			t.Errorf("%s: serve exit %d, stderr %q, want a refusal with %q", tc.name, code, serveErr, tc.want)
		}
	}
}

// TestConfigCheckRefusesHugeFile: a config of megabytes is a mistake and
// is refused at once rather than parsed for seconds.
func TestConfigCheckRefusesHugeFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "huge.yaml")
	os.WriteFile(path, []byte("# "+strings.Repeat("x", 50<<20)+"\n"), 0o600)
	code, _, stderr := runCmd("config", "check", path)
	if code != 1 || !strings.Contains(stderr, "larger than 1024 KiB") {
		t.Errorf("50 MB config: exit %d, stderr %q", code, stderr)
	}
}

// initStore makes a store in dir as an administrator does once for a
// new installation; the commands that work without the daemon never
// make one themselves.
func initStore(t *testing.T, dir string) {
	t.Helper()
	if code, stdout, stderr := runCmd("store", "init", "--data", dir); code != 0 || !strings.Contains(stdout, "created store") {
		t.Fatalf("store init: code %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestGreylistCommandsOnEmptyStore(t *testing.T) {
	data := t.TempDir()
	// No store yet: the commands say so and make none (issue 21: they
	// created an empty database where the real one had gone missing).
	for _, args := range [][]string{{"greylist", "stats"}, {"greylist", "list"}, {"user", "list"}} {
		code, _, stderr := runCmd(append(args, "--data", data)...)
		if code != 1 || !strings.Contains(stderr, "no store") || !strings.Contains(stderr, "store init") {
			t.Errorf("%s on a directory without a store: code %d, stderr %q", strings.Join(args, " "), code, stderr)
		}
	}
	if ents, _ := os.ReadDir(data); len(ents) != 0 {
		t.Errorf("the commands left %d files in a directory without a store", len(ents))
	}
	initStore(t, data)
	if code, stdout, stderr := runCmd("greylist", "stats", "--data", data); code != 0 || !strings.Contains(stdout, "pending triplets:         0") {
		t.Errorf("stats: code %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if code, stdout, _ := runCmd("greylist", "list", "--data", data, "--json"); code != 0 || strings.TrimSpace(stdout) != "[]" {
		t.Errorf("list --json: code %d, stdout %q", code, stdout)
	}
	// allow goes through the daemon, which is not running here.
	if code, _, stderr := runCmd("greylist", "allow", "192.0.2.1", "a@b", "c@d", "--data", data); code != 1 || !strings.Contains(stderr, "cannot reach the mailwarden daemon") {
		t.Errorf("allow without the daemon: code %d, stderr %q", code, stderr)
	}
	if code, _, _ := runCmd("greylist", "purge"); code != 2 {
		t.Errorf("unknown greylist verb: code %d", code)
	}
}

func TestPrintableQuotesControlCharacters(t *testing.T) {
	if got := printable("a@b.example"); got != "a@b.example" {
		t.Errorf("plain address changed: %q", got)
	}
	if got := printable("x\x1b[2Jy@evil"); strings.ContainsRune(got, 0x1b) {
		t.Errorf("escape survived: %q", got)
	}
}
