package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// readyTimeout bounds how long the daemon may take to answer /-/ready.
const readyTimeout = 20 * time.Second

// Mailwarden is one mailwarden daemon built from this tree, with its own
// config file, data directory, mail log and captured stderr.
type Mailwarden struct {
	// PolicyAddr, MilterAddr and HTTPAddr are the listeners' host:port.
	PolicyAddr, MilterAddr, HTTPAddr string
	// ConfigFile is the YAML the daemon and the CLI are given.
	ConfigFile string
	// DataDir is given as --data; it survives Restart.
	DataDir string
	// MailLogFile receives one line per decision (log.mail_log).
	MailLogFile string
	// StderrFile collects the daemon log of every start.
	StderrFile string

	bin    string
	proc   *proc
	starts int
}

// NewMailwarden writes a config for a daemon on fresh loopback ports. The
// harness writes hostname, listen and log; extraYAML adds other top-level
// sections (greylist, internal_networks, policy_server …) and must not
// repeat those keys. The daemon is stopped when the test ends.
func NewMailwarden(t testing.TB, bin, extraYAML string) *Mailwarden {
	t.Helper()
	base := InstanceDir(t, "mw")
	m := &Mailwarden{
		PolicyAddr:  fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		MilterAddr:  fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		HTTPAddr:    fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		ConfigFile:  filepath.Join(base, "mailwarden.yaml"),
		DataDir:     filepath.Join(base, "data"),
		MailLogFile: filepath.Join(base, "mail.log"),
		StderrFile:  filepath.Join(base, "daemon.log"),
		bin:         bin,
	}
	if err := os.Mkdir(m.DataDir, 0o700); err != nil {
		t.Fatalf("creating data directory: %v", err)
	}
	cfg := fmt.Sprintf(`# Written by test/harness.
hostname: mw.test
listen:
  policy: %q
  milter: %q
  http: %q
log:
  level: debug
  mail_log: %q
%s
`, m.PolicyAddr, m.MilterAddr, m.HTTPAddr, m.MailLogFile, strings.TrimSpace(extraYAML))
	if err := os.WriteFile(m.ConfigFile, []byte(cfg), 0o644); err != nil {
		t.Fatalf("writing mailwarden config: %v", err)
	}
	// The data directory exists, so the daemon will not make a store in
	// it by itself (it could be a disk that is not mounted): make one as
	// an administrator setting up a new installation does.
	if res := m.Exec(t, "store", "init", "--config", m.ConfigFile, "--data", m.DataDir); res.ExitCode != 0 {
		t.Fatalf("mailwarden store init: exit %d\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	t.Cleanup(func() {
		if m.proc != nil && m.proc.running() {
			if err := m.proc.stop(10 * time.Second); err != nil {
				t.Errorf("stopping mailwarden: %v", err)
			}
		}
		if t.Failed() {
			t.Logf("mailwarden config (%s):\n%s", m.ConfigFile, readFile(m.ConfigFile))
			t.Logf("mailwarden stderr (%s):\n%s", m.StderrFile, tail(readFile(m.StderrFile), 8000))
			t.Logf("mailwarden mail log (%s):\n%s", m.MailLogFile, tail(readFile(m.MailLogFile), 6000))
		}
	})
	return m
}

// StartMailwarden is NewMailwarden followed by Start.
func StartMailwarden(t testing.TB, bin, extraYAML string) *Mailwarden {
	t.Helper()
	m := NewMailwarden(t, bin, extraYAML)
	m.Start(t)
	return m
}

// Start runs "mailwarden serve" and waits until GET /-/ready answers 200.
func (m *Mailwarden) Start(t testing.TB) {
	t.Helper()
	if m.proc != nil && m.proc.running() {
		t.Fatalf("mailwarden already running as pid %d", m.proc.pid())
	}
	m.starts++
	note := fmt.Sprintf("# harness: start %d at %s\n", m.starts, time.Now().Format(time.RFC3339Nano))
	appendFile(m.StderrFile, note)
	var err error
	m.proc, err = startProc(m.StderrFile, m.bin, "serve", "--config", m.ConfigFile, "--data", m.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.waitReady(); err != nil {
		t.Fatalf("mailwarden not ready: %v\nstderr:\n%s", err, tail(readFile(m.StderrFile), 6000))
	}
}

// Stop sends SIGTERM to the daemon's PID and fails the test unless it
// exits cleanly within 10s.
func (m *Mailwarden) Stop(t testing.TB) {
	t.Helper()
	if m.proc == nil || !m.proc.running() {
		t.Fatalf("mailwarden is not running")
	}
	if err := m.proc.stop(10 * time.Second); err != nil {
		t.Fatalf("stopping mailwarden: %v", err)
	}
	if m.proc.err != nil {
		t.Fatalf("mailwarden exited with %v after SIGTERM; stderr:\n%s", m.proc.err, tail(readFile(m.StderrFile), 4000))
	}
}

// Restart stops and starts the daemon with the same config and data.
func (m *Mailwarden) Restart(t testing.TB) {
	t.Helper()
	m.Stop(t)
	m.Start(t)
}

// PID returns the daemon's process ID (of the last start).
func (m *Mailwarden) PID() int { return m.proc.pid() }

// Running reports whether the daemon process is alive.
func (m *Mailwarden) Running() bool { return m.proc != nil && m.proc.running() }

func (m *Mailwarden) waitReady() error {
	client := &http.Client{Timeout: 2 * time.Second}
	url := "http://" + m.HTTPAddr + "/-/ready"
	deadline := time.Now().Add(readyTimeout)
	last := errors.New("no answer yet")
	for time.Now().Before(deadline) {
		if !m.proc.running() {
			return fmt.Errorf("daemon exited: %v", m.proc.err)
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("after %v: %w", readyTimeout, last)
}

// CLIResult is one run of a mailwarden admin command.
type CLIResult struct {
	Stdout, Stderr string
	ExitCode       int
}

// CLI runs an admin command against this instance's config and data.
// The first two args are the noun and verb ("greylist", "allow"); the
// harness adds --config and --data after them, then the remaining args.
func (m *Mailwarden) CLI(t testing.TB, args ...string) CLIResult {
	t.Helper()
	return m.CLIWords(t, 2, args...)
}

// CLIWords is CLI for a command of n words: 1 for "events", 2 for
// "latch list". The harness adds --config and --data after them.
func (m *Mailwarden) CLIWords(t testing.TB, n int, args ...string) CLIResult {
	t.Helper()
	if len(args) < n {
		t.Fatalf("CLI needs a command of %d words, got %q", n, args)
	}
	full := append(append(append([]string{}, args[:n]...), "--config", m.ConfigFile, "--data", m.DataDir), args[n:]...)
	return m.Exec(t, full...)
}

// Exec runs the mailwarden binary with exactly args, adding nothing,
// and fails the test if it gives no result within 30s.
func (m *Mailwarden) Exec(t testing.TB, args ...string) CLIResult {
	t.Helper()
	return m.exec(t, nil, args...)
}

// ExecInput is Exec with input on the command's standard input, for a
// command that reads a secret there ("user add --password-stdin").
func (m *Mailwarden) ExecInput(t testing.TB, input string, args ...string) CLIResult {
	t.Helper()
	return m.exec(t, strings.NewReader(input), args...)
}

func (m *Mailwarden) exec(t testing.TB, stdin io.Reader, args ...string) CLIResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, m.bin, args...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := CLIResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("mailwarden %s: no result within 30s", strings.Join(args, " "))
	case errors.As(err, &exit):
		res.ExitCode = exit.ExitCode()
	case err != nil:
		t.Fatalf("running mailwarden %s: %v", strings.Join(args, " "), err)
	}
	return res
}

// MailLog returns the mail log's content so far.
func (m *Mailwarden) MailLog() string {
	b, _ := os.ReadFile(m.MailLogFile)
	return string(b)
}

// Decisions returns the mail log's decision records so far.
func (m *Mailwarden) Decisions() []Record {
	var out []Record
	for _, r := range ParseRecords(m.MailLog()) {
		if r["msg"] == "decision" {
			out = append(out, r)
		}
	}
	return out
}

// WaitDecision polls the mail log until a decision satisfies match and
// returns it, failing the test after timeout.
func (m *Mailwarden) WaitDecision(t testing.TB, match func(Record) bool, timeout time.Duration) Record {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, r := range m.Decisions() {
			if match(r) {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching decision in the mail log within %v; log:\n%s", timeout, tail(m.MailLog(), 4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stderr returns the daemon log of every start so far.
func (m *Mailwarden) Stderr() string { return readFile(m.StderrFile) }

// StderrSize returns the daemon log's current length, to look only at
// what is logged after some action (see WaitStderr).
func (m *Mailwarden) StderrSize() int {
	st, err := os.Stat(m.StderrFile)
	if err != nil {
		return 0
	}
	return int(st.Size())
}

// WaitStderr polls until a daemon log line written after offset satisfies
// match and returns it, failing the test after timeout.
func (m *Mailwarden) WaitStderr(t testing.TB, offset int, match func(line string) bool, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		all := m.Stderr()
		if offset <= len(all) {
			for _, line := range strings.Split(all[offset:], "\n") {
				if match(line) {
					return line
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching daemon log line within %v; new lines:\n%s", timeout, tail(all[min(offset, len(all)):], 4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func appendFile(path, text string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	f.WriteString(text)
}
