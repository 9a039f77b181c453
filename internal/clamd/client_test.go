package clamd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func newTestClient(t *testing.T, o Options) (*Client, *logBuf) {
	t.Helper()
	lb := &logBuf{}
	if o.Log == nil {
		o.Log = lb.logger()
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, lb
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("never happened: %s", what)
}

// plainReader hides any Seek method, like a network stream.
type plainReader struct{ r io.Reader }

func (p plainReader) Read(b []byte) (int, error) { return p.r.Read(b) }

func TestScanVerdicts(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef\r\n"), 20000) // several chunks
	cases := []struct {
		name    string
		msg     []byte
		infectd bool
	}{
		{"clean", []byte("Subject: hi\r\n\r\nhello\r\n"), false},
		{"eicar", []byte("Subject: x\r\n\r\n" + eicar + "\r\n"), true},
		{"several chunks", big, false},
		{"eicar after several chunks", append(append([]byte{}, big...), eicar...), true},
		{"empty", nil, false},
	}
	for _, network := range []string{"tcp", "unix"} {
		f := newFake(t, network)
		c, _ := newTestClient(t, Options{Servers: []string{f.addr}})
		for _, tc := range cases {
			t.Run(network+"/"+tc.name, func(t *testing.T) {
				res, err := c.Scan(t.Context(), plainReader{bytes.NewReader(tc.msg)}, int64(len(tc.msg)))
				if err != nil {
					t.Fatal(err)
				}
				if res.Infected != tc.infectd || res.Server != f.addr {
					t.Errorf("got %+v, want infected=%v from %s", res, tc.infectd, f.addr)
				}
				if tc.infectd && res.Virus != "Eicar-Test-Signature" {
					t.Errorf("virus %q", res.Virus)
				}
				if !bytes.Equal(f.lastStream(), tc.msg) {
					t.Errorf("clamd got %d bytes, want the %d sent", len(f.lastStream()), len(tc.msg))
				}
			})
		}
	}
}

func TestClientCapNeverContactsOrOversends(t *testing.T) {
	f := newFake(t, "tcp")
	const max = 100_000 // more than one chunk, so some of it is streamed
	c, _ := newTestClient(t, Options{Servers: []string{f.addr}, MaxSize: max})

	_, err := c.Scan(t.Context(), strings.NewReader("x"), max+1)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("declared size over the cap: err %v, want ErrTooLarge", err)
	}
	if n := f.conns.Load(); n != 0 {
		t.Errorf("clamd was contacted %d times for a message known to be too large", n)
	}

	_, err = c.Scan(t.Context(), bytes.NewReader(make([]byte, max+5000)), -1)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("reader over the cap: err %v, want ErrTooLarge", err)
	}
	waitFor(t, "fake sees the connection closed", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.open) == 0 && f.conns.Load() == 1
	})
	if got := f.received.Load(); got > max {
		t.Errorf("streamed %d bytes, over the %d cap", got, max)
	}
	if f.lastStream() != nil {
		t.Error("an over-cap stream was ended as if complete")
	}

	res, err := c.Scan(t.Context(), bytes.NewReader(make([]byte, max)), max)
	if err != nil || res.Infected {
		t.Errorf("message of exactly the cap: %+v, %v", res, err)
	}
}

func TestClamdSizeLimitIsFinal(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			small, other := newFake(t, network), newFake(t, network)
			small.maxStream = 64 << 10
			c, lb := newTestClient(t, Options{Servers: []string{small.addr, other.addr}})
			// 2 MB: clamd answers and closes while the client is still
			// writing, so the answer must be read after a failed write.
			_, err := c.Scan(t.Context(), bytes.NewReader(make([]byte, 2<<20)), 2<<20)
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("err %v, want ErrTooLarge", err)
			}
			if other.conns.Load() != 0 {
				t.Error("a size refusal was failed over to another server")
			}
			if !strings.Contains(lb.String(), small.addr) {
				t.Errorf("log does not name the server:\n%s", lb)
			}
		})
	}
}

func TestBadAnswers(t *testing.T) {
	cases := []struct {
		mode fakeMode
		want string
	}{
		{modeGarbage, `"HELLO WORLD"`},
		{modeHalf, "cut off"},
		{modeSilent, "no answer within 200ms"},
		{modeDead, ""}, // closed at once: EOF or a reset, whichever comes first
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint("mode ", tc.mode), func(t *testing.T) {
			bad := newFake(t, "tcp")
			bad.setMode(tc.mode)
			c, lb := newTestClient(t, Options{Servers: []string{bad.addr}, ScanTimeout: 200 * time.Millisecond,
				ProbeInterval: 50 * time.Millisecond})
			_, err := c.Scan(t.Context(), strings.NewReader("hello"), 5)
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), bad.addr) {
				t.Fatalf("err %v, want ErrUnavailable saying %s", err, tc.want)
			}
			if tc.mode == modeSilent && !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("silent server: err %v is not a timeout", err)
			}
			if tc.mode == modeGarbage || tc.mode == modeHalf {
				if !errors.Is(err, ErrProtocol) {
					t.Errorf("err %v, want ErrProtocol", err)
				}
			}
			log := lb.String()
			if !strings.Contains(log, "clamd scan failed") || !strings.Contains(log, bad.addr) {
				t.Errorf("no log line naming the server:\n%s", log)
			}

			// The same answer from the first server fails over to a good one.
			good := newFake(t, "unix")
			c2, _ := newTestClient(t, Options{Servers: []string{bad.addr, good.addr}, ScanTimeout: 200 * time.Millisecond,
				ProbeInterval: 50 * time.Millisecond})
			res, err := c2.Scan(t.Context(), strings.NewReader(eicar), int64(len(eicar)))
			if err != nil || !res.Infected || res.Server != good.addr {
				t.Errorf("failover: %+v, %v", res, err)
			}
		})
	}
}

func TestCancelStopsAWait(t *testing.T) {
	f := newFake(t, "tcp")
	f.setMode(modeSilent)
	c, _ := newTestClient(t, Options{Servers: []string{f.addr}, ScanTimeout: time.Hour})
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		waitFor(t, "scan reaches the server", func() bool { return f.scans.Load() == 1 })
		cancel()
	}()
	_, err := c.Scan(ctx, strings.NewReader("hello"), 5)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}

func TestTruncatedMessage(t *testing.T) {
	boom := errors.New("spool file vanished")
	cases := []struct {
		name string
		r    io.Reader
		size int64
		want error
	}{
		{"reader fails", io.MultiReader(bytes.NewReader(make([]byte, 100_000)), iotest.ErrReader(boom)), -1, boom},
		{"shorter than declared", strings.NewReader("only this"), 1000, io.ErrUnexpectedEOF},
		{"longer than declared", strings.NewReader("rather more than four"), 4, io.ErrUnexpectedEOF},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			first, second := newFake(t, "tcp"), newFake(t, "tcp")
			c, lb := newTestClient(t, Options{Servers: []string{first.addr, second.addr}})
			_, err := c.Scan(t.Context(), tc.r, tc.size)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if first.lastStream() != nil {
				t.Error("clamd was told a truncated message was complete")
			}
			if second.conns.Load() != 0 {
				t.Error("a broken message was sent to another server")
			}
			if !strings.Contains(lb.String(), "reading the message") {
				t.Errorf("no log line about the message:\n%s", lb)
			}
		})
	}
}

func TestFailoverAndAllDown(t *testing.T) {
	down := refusedAddr(t)
	good := newFake(t, "tcp")
	c, lb := newTestClient(t, Options{Servers: []string{down, good.addr}})
	res, err := c.Scan(t.Context(), plainReader{strings.NewReader("hello")}, 5)
	if err != nil || res.Server != good.addr {
		t.Fatalf("got %+v, %v; want a clean answer from %s", res, err, good.addr)
	}
	if log := lb.String(); !strings.Contains(log, down) || !strings.Contains(log, "connection refused") {
		t.Errorf("log does not say which server refused:\n%s", log)
	}
	if st := c.Status(); st[0].Up || !st[1].Up {
		t.Errorf("status after failover: %+v", st)
	}

	down2 := refusedAddr(t)
	c2, _ := newTestClient(t, Options{Servers: []string{down, down2}})
	_, err = c2.Scan(t.Context(), strings.NewReader("hello"), 5)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), down) || !strings.Contains(err.Error(), down2) {
		t.Errorf("all down: err %v, want ErrUnavailable naming both", err)
	}
	if err := c2.Ping(t.Context()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("ping with all down: %v", err)
	}
}

func TestHealthChecks(t *testing.T) {
	f1, f2 := newFake(t, "tcp"), newFake(t, "unix")
	f2.version = "ClamAV 1.4.6"
	c, lb := newTestClient(t, Options{Servers: []string{f1.addr, f2.addr}})
	ctx := t.Context()
	scanOn := func() string {
		t.Helper()
		res, err := c.Scan(ctx, strings.NewReader("hi"), 2)
		if err != nil {
			t.Fatal(err)
		}
		return res.Server
	}

	c.checkAll(ctx)
	st := c.Status()
	if !st[0].Up || st[0].Version.DBVersion != 27463 || st[1].Version.Engine != "ClamAV 1.4.6" || st[0].Checked.IsZero() {
		t.Fatalf("both up: %+v", st)
	}

	f1.setMode(modeDead)
	c.checkAll(ctx)
	if st := c.Status(); st[0].Up || st[0].LastError == "" || !st[1].Up {
		t.Fatalf("f1 dead: %+v", st)
	}
	if !strings.Contains(lb.String(), "clamd is down") {
		t.Errorf("no log line for the server going down:\n%s", lb)
	}
	f1.setMode(modeNormal) // back, but no check has seen it yet
	scans := f1.scans.Load()
	if got := scanOn(); got != f2.addr || f1.scans.Load() != scans {
		t.Errorf("scan went to %s; a server marked down must be skipped", got)
	}
	c.checkAll(ctx)
	if got := scanOn(); got != f1.addr {
		t.Errorf("scan went to %s after f1 came back", got)
	}

	// All down: Scan still tries each in order rather than give up.
	f1.setMode(modeDead)
	f2.setMode(modeDead)
	c.checkAll(ctx)
	if st := c.Status(); st[0].Up || st[1].Up {
		t.Fatalf("all dead: %+v", st)
	}
	f2.setMode(modeNormal)
	if got := scanOn(); got != f2.addr {
		t.Errorf("with all marked down, scan went to %s", got)
	}
	if v, err := c.Version(ctx); err != nil || v.Engine != "ClamAV 1.4.6" || v.Server != f2.addr {
		t.Errorf("Version: %+v, %v", v, err)
	}
}

func TestStartRunsChecks(t *testing.T) {
	f := newFake(t, "tcp")
	c, _ := newTestClient(t, Options{Servers: []string{f.addr}, HealthInterval: 10 * time.Millisecond})
	c.Start(t.Context())
	waitFor(t, "first check", func() bool { return !c.Status()[0].Checked.IsZero() })
	f.setMode(modeDead)
	waitFor(t, "marked down", func() bool { return !c.Status()[0].Up })
	f.setMode(modeNormal)
	waitFor(t, "marked up", func() bool { return c.Status()[0].Up })
	c.Close()
	// A check dialed just before Close returned may be accepted by the
	// fake a little later; a loop left running goes on every 10 ms.
	time.Sleep(20 * time.Millisecond)
	n := f.conns.Load()
	time.Sleep(50 * time.Millisecond)
	if f.conns.Load() != n {
		t.Error("health checks go on after Close")
	}
}
