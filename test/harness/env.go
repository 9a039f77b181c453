// Package harness starts the real programs mailwarden's integration tests
// run against: the built mailwarden binary, a private Postfix instance on
// loopback, Postfix's smtp-sink as the final destination, and swaks as the
// SMTP client. Every process is started by the test that uses it, on free
// loopback ports, and stopped by PID in t.Cleanup.
package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// UnderCI reports whether the tests run in CI (CI=true), where a test that
// cannot run is a failure instead of a skip.
func UnderCI() bool { return os.Getenv("CI") == "true" }

// SkipOrFail skips the test, or fails it under CI=true: a skipped
// integration test in CI would hide a missing install step.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if UnderCI() {
		t.Fatalf("%s (a skipped integration test under CI=true is a failure; run test/setup.sh)", msg)
	}
	t.Skipf("%s (run test/setup.sh as root)", msg)
}

// RequirePostfix skips (or fails under CI) unless the test runs as root
// with postfix, smtp-sink and swaks installed. Postfix's master must start
// as root, and its config and queue directories must be owned by root.
func RequirePostfix(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "integration tests start Postfix and need root")
	}
	// test/setup.sh installs these.
	for _, p := range []string{"postfix", "smtp-sink", "swaks"} {
		if _, err := Program(p); err != nil {
			SkipOrFail(t, "%v", err)
		}
	}
}

// Program finds an installed program on PATH or in /usr/sbin, where
// Debian puts postfix and smtp-sink (not always on a test's PATH).
func Program(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("harness: program %q not installed", name)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	// The kernel may hand a port it just freed out again: never give one
	// to two callers in this test process (two listeners of one daemon
	// got the same port once).
	givenMu.Lock()
	defer givenMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !given[port] {
			given[port] = true
			return port
		}
	}
	t.Fatalf("finding a free port: 100 tries gave only ports already handed out")
	return 0
}

// given are the ports FreePort has handed out in this process.
var (
	givenMu sync.Mutex
	given   = map[int]bool{}
)

// ModuleRoot returns the directory holding mailwarden's go.mod.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err == nil {
		if mod := strings.TrimSpace(string(out)); mod != "" && mod != os.DevNull {
			return filepath.Dir(mod), nil
		}
	}
	// Without a go command on PATH, walk up from the working directory.
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("harness: finding the module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("harness: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Build compiles ./cmd/mailwarden into dir and returns the binary's path.
// The error carries the compiler's output.
func Build(dir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "mailwarden")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/mailwarden")
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("harness: go build ./cmd/mailwarden: %w\n%s", err, out.String())
	}
	return bin, nil
}

// InstanceDir makes a short, world-traversable directory for one program
// instance and removes it when the test ends. Postfix daemons drop root
// and still need to reach files in it, and Unix socket paths under it must
// stay within 108 bytes, so t.TempDir (0700, long names) does not fit.
func InstanceDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mw"+prefix+"-")
	if err != nil {
		t.Fatalf("creating instance directory: %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("opening instance directory: %v", err)
	}
	t.Cleanup(func() {
		if os.Getenv("HARNESS_KEEP") != "" {
			t.Logf("kept %s (HARNESS_KEEP set)", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

// UniqueID returns a random token to mark one test message.
func UniqueID(t testing.TB) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("reading random bytes: %v", err)
	}
	return hex.EncodeToString(b)
}

// tail returns at most the last n bytes of s, cut at a line start.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return "…\n" + s
}

// waitTCP polls until addr accepts a connection and, when banner is not
// empty, sends a greeting that starts with it.
func waitTCP(addr, banner string, timeout time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("process exited before it was ready")
		default:
		}
		last = probe(addr, banner)
		if last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %v: %w", addr, timeout, last)
}

func probe(addr, banner string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if banner == "" {
		return nil
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		return fmt.Errorf("reading greeting: %w", err)
	}
	if !strings.HasPrefix(string(buf[:n]), banner) {
		return fmt.Errorf("unexpected greeting %q", buf[:n])
	}
	c.Write([]byte("QUIT\r\n"))
	return nil
}
