package harness

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// proc is one child process whose output goes to a file. It is stopped
// only through its own PID, never by name.
type proc struct {
	cmd  *exec.Cmd
	out  *os.File
	done chan struct{}
	err  error // Wait's result, valid once done is closed
}

// startProc starts path with args, appending stdout and stderr to logFile.
func startProc(logFile, path string, args ...string) (*proc, error) {
	out, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", logFile, err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = os.Environ()
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("starting %s: %w", path, err)
	}
	p := &proc{cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	return p, nil
}

// pid returns the child's process ID.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited is closed once the child has exited and been reaped.
func (p *proc) exited() <-chan struct{} { return p.done }

// running reports whether the child has not exited yet.
func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// wait waits up to timeout for the child to exit and reports whether it
// did; its exit status is then in p.err.
func (p *proc) wait(timeout time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// stop sends SIGTERM and waits up to timeout; a child still running then
// is killed and stop reports that it did not exit on its own.
func (p *proc) stop(timeout time.Duration) error {
	if !p.running() {
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && p.running() {
		return fmt.Errorf("sending SIGTERM to pid %d: %w", p.pid(), err)
	}
	if p.wait(timeout) {
		return nil
	}
	p.cmd.Process.Kill()
	p.wait(5 * time.Second)
	return fmt.Errorf("pid %d did not exit within %v of SIGTERM; killed", p.pid(), timeout)
}
