package harness

import (
	"errors"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Signal sends sig to the daemon's PID (of the last start), failing the
// test if the daemon is not running.
func (m *Mailwarden) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if m.proc == nil || !m.proc.running() {
		t.Fatalf("sending %v: mailwarden is not running", sig)
	}
	if err := m.proc.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("sending %v to pid %d: %v", sig, m.proc.pid(), err)
	}
}

// WaitExit waits up to timeout for the daemon to exit and returns its
// exit code, or -1 when a signal killed it; exited is false when it is
// still running. It does not stop the daemon.
func (m *Mailwarden) WaitExit(timeout time.Duration) (code int, exited bool) {
	if m.proc == nil || !m.proc.wait(timeout) {
		return 0, false
	}
	var exit *exec.ExitError
	switch {
	case m.proc.err == nil:
		return 0, true
	case errors.As(m.proc.err, &exit):
		return exit.ExitCode(), true
	}
	return -1, true
}
