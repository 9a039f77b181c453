package harness

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Sink is Postfix's smtp-sink(1) test server standing in for the final
// destination: it accepts every message and dumps each transaction to its
// own file, so a test reads exactly what Postfix relayed.
type Sink struct {
	// Addr is the sink's host:port on 127.0.0.1.
	Addr string
	// Port is the sink's TCP port.
	Port int
	// Dir holds one dump file per delivered message.
	Dir string

	log  string
	proc *proc
}

// StartSink starts smtp-sink on a free loopback port and stops it when the
// test ends.
func StartSink(t testing.TB) *Sink {
	t.Helper()
	RequirePostfix(t)
	bin, err := Program("smtp-sink")
	if err != nil {
		t.Fatal(err)
	}
	base := InstanceDir(t, "sink")
	s := &Sink{Dir: filepath.Join(base, "mail"), log: filepath.Join(base, "smtp-sink.log")}
	if err := os.Mkdir(s.Dir, 0o755); err != nil {
		t.Fatalf("creating sink dump directory: %v", err)
	}
	// smtp-sink refuses to run as root (-u is required) and writes its
	// dumps as that user, so the directory must belong to it.
	const runAs = "postfix"
	u, err := user.Lookup(runAs)
	if err != nil {
		t.Fatalf("looking up user %s for smtp-sink: %v", runAs, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(s.Dir, uid, gid); err != nil {
		t.Fatalf("handing the sink directory to %s: %v", runAs, err)
	}

	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s.Port = FreePort(t)
		s.Addr = fmt.Sprintf("127.0.0.1:%d", s.Port)
		// The dump template is expanded by strftime(3) and gets a random
		// suffix, so each message lands in its own file.
		s.proc, lastErr = startProc(s.log, bin, "-u", runAs, "-4", "-h", "sink.test",
			"-d", filepath.Join(s.Dir, "msg."), s.Addr, "64")
		if lastErr != nil {
			t.Fatal(lastErr)
		}
		lastErr = waitTCP(s.Addr, "220 ", 5*time.Second, s.proc.exited())
		if lastErr == nil {
			break
		}
		s.proc.stop(2 * time.Second) // the port was taken meanwhile: try another
	}
	if lastErr != nil {
		t.Fatalf("starting smtp-sink: %v\n%s", lastErr, readFile(s.log))
	}
	t.Cleanup(func() {
		if err := s.proc.stop(5 * time.Second); err != nil {
			t.Errorf("stopping smtp-sink: %v", err)
		}
		if t.Failed() {
			t.Logf("smtp-sink output (%s):\n%s", s.log, tail(readFile(s.log), 4000))
			for i, m := range s.Messages() {
				t.Logf("sink message %d:\n%s", i+1, tail(m, 3000))
			}
		}
	})
	return s
}

// Messages returns every message dumped so far, oldest first. Each starts
// with smtp-sink's X-Client-Addr, X-Mail-Args and X-Rcpt-Args lines,
// followed by the message as Postfix relayed it.
func (s *Sink) Messages() []string {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil
	}
	type dump struct {
		mod  time.Time
		text string
	}
	var dumps []dump
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.Dir, e.Name()))
		if err != nil {
			continue
		}
		dumps = append(dumps, dump{info.ModTime(), string(b)})
	}
	sort.SliceStable(dumps, func(i, j int) bool { return dumps[i].mod.Before(dumps[j].mod) })
	msgs := make([]string, len(dumps))
	for i, d := range dumps {
		msgs[i] = d.text
	}
	return msgs
}

// WaitFor polls until a delivered message satisfies match and returns it,
// failing the test after timeout.
func (s *Sink) WaitFor(t testing.TB, match func(msg string) bool, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, m := range s.Messages() {
			if match(m) {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching message reached the sink within %v (%d messages there)", timeout, len(s.Messages()))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitForID waits for the message carrying the header "X-Test-ID: id".
func (s *Sink) WaitForID(t testing.TB, id string, timeout time.Duration) string {
	t.Helper()
	return s.WaitFor(t, func(msg string) bool { return HasHeader(msg, "X-Test-ID", id) }, timeout)
}

// Count returns how many delivered messages satisfy match.
func (s *Sink) Count(match func(msg string) bool) int {
	n := 0
	for _, m := range s.Messages() {
		if match(m) {
			n++
		}
	}
	return n
}

// HeaderValues returns the values of every header field called name in
// the header section of msg, unfolded (RFC 5322 §2.2.3).
func HeaderValues(msg, name string) []string {
	head := msg
	if i := strings.Index(msg, "\n\n"); i >= 0 {
		head = msg[:i]
	}
	head = strings.ReplaceAll(head, "\r\n", "\n")
	var vals []string
	var cur *string
	for _, line := range strings.Split(head, "\n") {
		if line != "" && (line[0] == ' ' || line[0] == '\t') {
			if cur != nil {
				*cur += " " + strings.TrimSpace(line)
			}
			continue
		}
		cur = nil
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			vals = append(vals, strings.TrimSpace(v))
			cur = &vals[len(vals)-1]
		}
	}
	return vals
}

// HasHeader reports whether msg has a header name whose value is value.
func HasHeader(msg, name, value string) bool {
	for _, v := range HeaderValues(msg, name) {
		if v == value {
			return true
		}
	}
	return false
}

// readFile returns a file's content, or a note saying why it could not.
func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	return string(b)
}
