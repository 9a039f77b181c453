package harness

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// EximQueue is a Debian Exim configuration, built as StartExim builds
// one, with no daemon and so no queue runner: messages submitted with
// -odq stay in its spool until a test acts on them.
type EximQueue struct {
	// Binary is the exim4 program.
	Binary string
	// ConfigFile is the file update-exim4.conf generated, for -C.
	ConfigFile string
	// Spool is the spool directory, owned by Debian-exim with mode
	// 0750 as the package makes /var/spool/exim4.
	Spool string
}

// NewEximQueue builds the configuration of a smarthost whose smarthost
// is 127.0.0.1:smarthostPort. Nothing is started.
func NewEximQueue(t testing.TB, smarthostPort int) *EximQueue {
	t.Helper()
	RequireExim(t)
	e := configureExim(t, "eximq", EximConfig{SmarthostPort: smarthostPort})
	return &EximQueue{Binary: filepath.Join(EximRoot, eximBinary), ConfigFile: e.ConfigFile, Spool: e.spool}
}

// EximSubmission is one message for Submit.
type EximSubmission struct {
	From string
	To   []string
	// AuthUser, if set, is recorded as the authenticated user (-oMai,
	// which Exim takes from a trusted caller such as root), with the
	// protocol esmtpa and a loopback client address.
	AuthUser string
}

// Submit queues a message with exim -odq: accepted, written to the
// spool, not delivered. It may be called from several goroutines: a
// failure is reported with t.Errorf and false.
func (q *EximQueue) Submit(t testing.TB, m EximSubmission) bool {
	t.Helper()
	args := []string{"-C", q.ConfigFile, "-odq", "-f", m.From}
	if m.AuthUser != "" {
		args = append(args, "-oMai", m.AuthUser, "-oMr", "esmtpa", "-oMa", "127.0.0.1")
	}
	args = append(args, "--")
	args = append(args, m.To...)
	cmd := exec.Command(q.Binary, args...)
	cmd.Stdin = strings.NewReader(fmt.Sprintf("From: %s\nTo: %s\nSubject: queued\n\nA message that stays queued.\n", m.From, strings.Join(m.To, ", ")))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("exim -odq -f %s: %v\n%s", m.From, err, out)
		return false
	}
	return true
}

// EximQueued is one message as exim -bp lists it.
type EximQueued struct {
	Sender string
	Frozen bool
}

// Queue returns the queue as exim -bp lists it, by message ID, read
// independently of mailwarden.
func (q *EximQueue) Queue(t testing.TB) map[string]EximQueued {
	t.Helper()
	out := q.Run(t, "-bp")
	msgs := map[string]EximQueued{}
	// " 0m   272 1xaM5T-0001bB-1K <alice@school.example> *** frozen ***",
	// then the recipients, indented.
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 4 || strings.HasPrefix(l, "          ") || !strings.HasPrefix(f[3], "<") {
			continue
		}
		msgs[f[2]] = EximQueued{Sender: strings.Trim(f[3], "<>"), Frozen: strings.Contains(l, "*** frozen ***")}
	}
	return msgs
}

// Count returns exim -bpc, the number of messages in the queue.
func (q *EximQueue) Count(t testing.TB) int {
	t.Helper()
	out := strings.TrimSpace(q.Run(t, "-bpc"))
	n, err := strconv.Atoi(out)
	if err != nil {
		t.Fatalf("exim -bpc printed %q", out)
	}
	return n
}

// AuthUser returns the authenticated user Exim recorded for a message,
// from exim -Mvh, which prints its -H file. It may be called from
// several goroutines: a failure is reported with t.Errorf.
func (q *EximQueue) AuthUser(t testing.TB, id string) string {
	t.Helper()
	out, err := exec.Command(q.Binary, "-C", q.ConfigFile, "-Mvh", id).CombinedOutput()
	if err != nil {
		t.Errorf("exim -Mvh %s: %v\n%s", id, err, out)
		return ""
	}
	for _, l := range strings.Split(string(out), "\n") {
		// "-auth_id alice", or "--auth_id alice" when tainted.
		if _, v, ok := strings.Cut(l, "-auth_id "); ok && strings.HasPrefix(l, "-") {
			return v
		}
	}
	return ""
}

// Run runs exim -C ConfigFile ARGS and returns its output, failing the
// test if it fails.
func (q *EximQueue) Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(q.Binary, append([]string{"-C", q.ConfigFile}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("exim %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
