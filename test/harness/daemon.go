package harness

import (
	"fmt"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Daemon is a program the harness started for a test and stops, by its
// PID, when the test ends.
type Daemon struct {
	// Addr is the host:port it listens on.
	Addr string
	// LogFile collects its stdout and stderr.
	LogFile string

	proc *proc
}

// PID returns the daemon's process ID.
func (d *Daemon) PID() int { return d.proc.pid() }

// StartDaemon starts bin with args, which must make it listen on addr,
// and waits until addr accepts connections (and, when banner is not
// empty, greets with a line starting with it).
func StartDaemon(t testing.TB, name, addr, banner, bin string, args ...string) *Daemon {
	t.Helper()
	d := &Daemon{Addr: addr, LogFile: filepath.Join(InstanceDir(t, name), name+".log")}
	var err error
	if d.proc, err = startProc(d.LogFile, bin, args...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.proc.stop(5 * time.Second); err != nil {
			t.Errorf("stopping %s: %v", name, err)
		}
	})
	if err := waitTCP(addr, banner, 10*time.Second, d.proc.exited()); err != nil {
		t.Fatalf("starting %s: %v\n%s", name, err, tail(readFile(d.LogFile), 3000))
	}
	return d
}

// StartNullSink starts smtp-sink on a free loopback port without dumping
// what it receives: the destination for benchmarks, where writing every
// message to a file would be part of what is measured.
func StartNullSink(t testing.TB) *Daemon {
	t.Helper()
	RequirePostfix(t)
	bin, err := Program("smtp-sink")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := user.Lookup("postfix"); err != nil {
		t.Fatalf("smtp-sink runs as the postfix user: %v", err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	// 256 is the listen backlog: Postfix opens up to
	// default_destination_concurrency_limit (20) connections at once.
	return StartDaemon(t, "nullsink", addr, "220 ", bin, "-u", "postfix", "-4", "-h", "sink.test", addr, "256")
}

// CPUSeconds returns the user plus system CPU time process pid has used,
// from /proc/PID/stat (fields 14 and 15, in clock ticks of 1/100 s on
// Linux).
func CPUSeconds(pid int) (float64, error) {
	stat := readFile(fmt.Sprintf("/proc/%d/stat", pid))
	// The command name (field 2) is in parentheses and may hold spaces.
	_, rest, ok := strings.Cut(stat, ") ")
	if !ok {
		return 0, fmt.Errorf("reading /proc/%d/stat: process gone?", pid)
	}
	f := strings.Fields(rest) // f[0] is field 3
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat has %d fields", pid, len(f)+2)
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime %q %q", pid, f[11], f[12])
	}
	return float64(utime+stime) / 100, nil
}
