package maillogin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitTimeout only guards against a hung test; no test asserts timing.
const waitTimeout = 10 * time.Second

func loginLine(hms, user, ip string) string {
	return fmt.Sprintf("Nov 20 %s mail dovecot: imap-login: Login: user=<%s>, method=PLAIN, rip=%s, lip=10.0.0.5, mpid=1, TLS, session=<x>\n", hms, user, ip)
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatalf("opening %s: %v", path, err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatalf("writing %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("closing %s: %v", path, err)
	}
}

// startTailer runs a Tailer on path until the test ends and returns its
// tracker and log.
func startTailer(t *testing.T, path string, fromStart bool, onLogin func(Login)) (*Tracker, testWriter) {
	t.Helper()
	tr := NewTracker(0)
	w := newTestWriter(t)
	tl, err := NewTailer(Options{
		Path: path, Tracker: tr, Poll: 5 * time.Millisecond,
		FromStart: fromStart, Location: time.UTC, OnLogin: onLogin,
		Log: slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("NewTailer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after cancel, want nil", err)
			}
		case <-time.After(waitTimeout):
			t.Error("Run did not return after its context was cancelled")
		}
	})
	return tr, w
}

// testWriter sends the tailer's log to the test log and keeps it, so a
// test can wait for the tailer to reach a state it reports.
type testWriter struct {
	t    *testing.T
	mu   *sync.Mutex
	text *strings.Builder
}

func newTestWriter(t *testing.T) testWriter {
	return testWriter{t: t, mu: new(sync.Mutex), text: new(strings.Builder)}
}

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	w.mu.Lock()
	defer w.mu.Unlock()
	w.text.Write(p)
	return len(p), nil
}

// waitLog waits until the tailer has logged msg.
func (w testWriter) waitLog(msg string) {
	w.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		w.mu.Lock()
		found := strings.Contains(w.text.String(), msg)
		w.mu.Unlock()
		if found {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("tailer never logged %q", msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitUsers waits until the tracker shows every wanted ip → user.
func waitUsers(t *testing.T, tr *Tracker, want map[string]string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		var missing []string
		for ip, user := range want {
			l, ok := tr.Last(netip.MustParseAddr(ip))
			if !ok || l.User != user {
				missing = append(missing, fmt.Sprintf("%s=%s (have %q)", ip, user, l.User))
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tracker never showed %v", missing)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func writeFixture(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile("testdata/dovecot.log")
	if err != nil {
		t.Fatalf("reading fixture: %v", err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatalf("writing log: %v", err)
	}
}

// fixtureLast is the last user per IP in testdata/dovecot.log.
var fixtureLast = map[string]string{
	"10.1.2.3":        "bob@school.test",
	"10.1.2.4":        "bob@school.test",
	"10.1.2.5":        "carol@school.test",
	"2001:db8:10::25": "erin@school.test",
	"2001:db8:10::26": "erin@school.test",
	"10.1.2.7":        "frank",
	"10.1.2.8":        "grace@school.test",
	"10.1.2.9":        "o'brien, jr>, rip=6.6.6.6, x",
	"10.1.2.10":       "henry@school.test",
	"10.1.2.11":       "alice@school.test",
	"10.1.2.13":       "Jürgen Müller",
	"10.1.2.16":       "liam@school.test",
}

func TestTailerAppendAndRotate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	writeFixture(t, path)
	tr, _ := startTailer(t, path, true, nil)
	waitUsers(t, tr, fixtureLast)
	if n := tr.Len(); n != len(fixtureLast) {
		t.Errorf("tracker holds %d IPs, want %d", n, len(fixtureLast))
	}

	// A new user logs in from a known IP.
	appendFile(t, path, loginLine("23:00:00", "zoe@school.test", "10.1.2.4"))
	waitUsers(t, tr, map[string]string{"10.1.2.4": "zoe@school.test"})

	// logrotate renames the file; the writer still appends one line to the
	// old file before it reopens the path, which then holds new lines.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path+".1", loginLine("23:10:00", "yann@school.test", "10.1.2.7"))
	appendFile(t, path, loginLine("23:20:00", "xena@school.test", "10.1.2.5")+
		loginLine("23:21:00", "walt@school.test", "2001:db8:10::25"))
	waitUsers(t, tr, map[string]string{
		"10.1.2.7":        "yann@school.test",
		"10.1.2.5":        "xena@school.test",
		"2001:db8:10::25": "walt@school.test",
	})

	// The tailer now follows the new file.
	appendFile(t, path, loginLine("23:30:00", "vera@school.test", "10.1.2.3"))
	waitUsers(t, tr, map[string]string{"10.1.2.3": "vera@school.test"})
}

func TestTailerTruncate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	writeFixture(t, path)
	tr, _ := startTailer(t, path, true, nil)
	waitUsers(t, tr, fixtureLast)

	// copytruncate: the same file is emptied in place and written again,
	// with less than was there before.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, loginLine("23:40:00", "uma@school.test", "10.1.2.8"))
	waitUsers(t, tr, map[string]string{"10.1.2.8": "uma@school.test"})
}

func TestTailerOnlyNewLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	writeFixture(t, path)
	var mu sync.Mutex
	var seen []Login
	tr, w := startTailer(t, path, false, func(l Login) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, l)
	})
	w.waitLog("following log file")
	// A partial line first: the tailer must wait for the rest of the
	// address rather than take 10.9.9.9 from the cut line.
	appendFile(t, path, strings.TrimSuffix(loginLine("23:50:00", "tess@school.test", "10.9.9.90"), "0, lip=10.0.0.5, mpid=1, TLS, session=<x>\n"))
	time.Sleep(20 * time.Millisecond) // lets a poll see the partial line; not asserted
	appendFile(t, path, "0, lip=10.0.0.5, mpid=1, TLS, session=<x>\n")
	waitUsers(t, tr, map[string]string{"10.9.9.90": "tess@school.test"})
	mu.Lock()
	defer mu.Unlock()
	// Lines are handled in order, so the existing ones would have been
	// seen before the appended one had they been read.
	if len(seen) != 1 || seen[0].User != "tess@school.test" {
		t.Errorf("OnLogin saw %+v, want only the appended login", seen)
	}
	if _, ok := tr.Last(netip.MustParseAddr("10.9.9.9")); ok {
		t.Error("a partial line was taken as a login")
	}
}

func TestTailerWaitsForFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	tr, w := startTailer(t, path, false, nil)
	w.waitLog("waiting for log file")
	// The file appears after Run started: it is read from its start.
	appendFile(t, path, loginLine("23:55:00", "sam@school.test", "10.1.2.20"))
	waitUsers(t, tr, map[string]string{"10.1.2.20": "sam@school.test"})
}

func TestTailerSkipsLongLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	long := strings.TrimSuffix(loginLine("23:56:00", "rex", "10.1.2.21"), "\n") + strings.Repeat("A", MaxLineLen) + "\n"
	appendFile(t, path, long+loginLine("23:57:00", "quinn", "10.1.2.22"))
	tr, _ := startTailer(t, path, true, nil)
	waitUsers(t, tr, map[string]string{"10.1.2.22": "quinn"})
	if _, ok := tr.Last(netip.MustParseAddr("10.1.2.21")); ok {
		t.Error("an over-long line was parsed")
	}
}

func TestNewTailerNeedsPath(t *testing.T) {
	if _, err := NewTailer(Options{}); !errors.Is(err, ErrNoPath) {
		t.Errorf("NewTailer without path: err = %v, want ErrNoPath", err)
	}
}

func TestSplitterPartialAndLong(t *testing.T) {
	s := splitter{max: 16}
	var got []string
	long := 0
	feed := func(chunk string) {
		s.feed([]byte(chunk), func(b []byte) { got = append(got, string(b)) }, func() { long++ })
	}
	feed("one\r\ntw")
	feed("o\nthr")
	if strings.Join(got, "|") != "one|two" {
		t.Fatalf("lines = %q, want one, two (three held)", got)
	}
	feed("ee\n")
	feed(strings.Repeat("x", 10))
	feed(strings.Repeat("y", 10)) // now over 16 without a newline
	feed(strings.Repeat("z", 40))
	feed("tail of the long line\nfour\n")
	feed(strings.Repeat("w", 17) + "\nfive\n") // over-long with its newline
	if want := "one|two|three|four|five"; strings.Join(got, "|") != want {
		t.Errorf("lines = %q, want %s", got, want)
	}
	if long != 2 {
		t.Errorf("over-long lines reported %d times, want 2", long)
	}
	feed("six")
	if n := s.reset(); n != 3 {
		t.Errorf("reset dropped %d bytes, want 3", n)
	}
	feed("\nseven\n")
	if want := "one|two|three|four|five||seven"; strings.Join(got, "|") != want {
		t.Errorf("after reset lines = %q, want %s", got, want)
	}
}
