package accept

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// pair is one loopback TCP connection: the client's end and the
// server's end before tracking.
type pair struct {
	client, server net.Conn
}

// connector dials a loopback listener from chosen source addresses.
type connector struct {
	t  *testing.T
	ln net.Listener
}

func newConnector(t *testing.T) *connector {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &connector{t: t, ln: ln}
}

// dial connects from src (an IPv4 loopback address) and returns both ends.
func (c *connector) dial(src string) pair {
	c.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	cl, err := d.Dial("tcp", c.ln.Addr().String())
	if err != nil {
		c.t.Fatal(err)
	}
	sv, err := c.ln.Accept()
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close(); sv.Close() })
	return pair{client: cl, server: sv}
}

// admit dials from src and tracks the server's end.
func (c *connector) admit(tr *Tracker, src string) (*Conn, pair, error) {
	c.t.Helper()
	p := c.dial(src)
	conn, err := tr.Admit(p.server)
	return conn, p, err
}

// reader keeps a Read pending on c, as a server waiting for its peer
// does, and reports each result.
type reader struct {
	c    *Conn
	got  chan error
	data chan string
}

func startReading(t *testing.T, c *Conn) *reader {
	t.Helper()
	r := &reader{c: c, got: make(chan error, 1), data: make(chan string, 16)}
	go func() {
		buf := make([]byte, 64)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				r.data <- string(buf[:n])
			}
			if err != nil {
				r.got <- err
				return
			}
		}
	}()
	waitState(t, c, connWaiting)
	return r
}

// admitReading admits a connection from each of srcs, in order, and
// keeps a Read pending on each.
func admitReading(t *testing.T, cn *connector, tr *Tracker, srcs ...string) ([]*Conn, []pair, []*reader) {
	t.Helper()
	var (
		conns   []*Conn
		pairs   []pair
		readers []*reader
	)
	for _, src := range srcs {
		c, p, err := cn.admit(tr, src)
		if err != nil {
			t.Fatal(err)
		}
		conns, pairs = append(conns, c), append(pairs, p)
		readers = append(readers, startReading(t, c))
	}
	return conns, pairs, readers
}

func waitState(t *testing.T, c *Conn, want int32) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.state.Load() != want {
		if time.Now().After(deadline) {
			t.Fatalf("connection state %d, want %d", c.state.Load(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// send writes s from the client and waits for the server's reader to
// have it and to be waiting again.
func (r *reader) send(t *testing.T, p pair, s string) {
	t.Helper()
	if _, err := io.WriteString(p.client, s); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-r.data:
		if got != s {
			t.Fatalf("server read %q, want %q", got, s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("server did not read the data")
	}
	waitState(t, r.c, connWaiting)
}

func (r *reader) wantEvicted(t *testing.T) {
	t.Helper()
	select {
	case err := <-r.got:
		if !errors.Is(err, ErrEvicted) || !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read = %v, want ErrEvicted wrapping net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the evicted connection's Read did not end")
	}
}

func (r *reader) wantOpen(t *testing.T) {
	t.Helper()
	select {
	case err := <-r.got:
		t.Fatalf("connection ended: %v", err)
	default:
	}
}

// wantClosedByServer checks the client sees the server close p.
func wantClosedByServer(t *testing.T, p pair) {
	t.Helper()
	p.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := p.client.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("client read %d bytes, %v; want EOF", n, err)
	}
}

func stats(t *testing.T, tr *Tracker, want TrackerStats) {
	t.Helper()
	if got := tr.Stats(); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

func TestTrackerTotalCapRefusesWithoutEvict(t *testing.T) {
	cn := newConnector(t)
	tr := NewTracker(TrackerOptions{Name: "test", MaxConns: 2, MaxPerClient: 2})
	a, _, err := cn.admit(tr, "127.0.1.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cn.admit(tr, "127.0.1.2"); err != nil {
		t.Fatal(err)
	}
	startReading(t, a) // idle, but eviction is off
	if _, _, err := cn.admit(tr, "127.0.1.3"); !errors.Is(err, ErrFull) {
		t.Fatalf("third connection: %v, want ErrFull", err)
	}
	stats(t, tr, TrackerStats{Open: 2, Refused: 1})
	// Closing releases the place, once however often it is closed.
	a.Close()
	a.Close()
	if _, _, err := cn.admit(tr, "127.0.1.3"); err != nil {
		t.Fatalf("after a close: %v", err)
	}
	stats(t, tr, TrackerStats{Open: 2, Refused: 1})
}

func TestTrackerPerClientCap(t *testing.T) {
	cn := newConnector(t)
	tr := NewTracker(TrackerOptions{Name: "test", MaxConns: 10, MaxPerClient: 2})
	for range 2 {
		if _, _, err := cn.admit(tr, "127.0.2.1"); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := cn.admit(tr, "127.0.2.1"); !errors.Is(err, ErrFull) {
		t.Fatalf("third from one address: %v, want ErrFull", err)
	}
	if _, _, err := cn.admit(tr, "127.0.2.2"); err != nil {
		t.Fatalf("another address: %v", err)
	}
	stats(t, tr, TrackerStats{Open: 3, Refused: 1})
}

func TestTrackerEvictsOldestIdle(t *testing.T) {
	cn := newConnector(t)
	var logs bytes.Buffer
	tr := NewTracker(TrackerOptions{Name: "test server", MaxConns: 3, MaxPerClient: 3, Evict: true,
		Log: slog.New(slog.NewTextHandler(&logs, nil))})
	conns, pairs, readers := admitReading(t, cn, tr, "127.0.3.1", "127.0.3.2", "127.0.3.3")
	// The first connection has data again, so the second is now the
	// one that has waited longest.
	readers[0].send(t, pairs[0], "hello")

	d, _, err := cn.admit(tr, "127.0.3.4")
	if err != nil {
		t.Fatalf("fourth connection: %v, want one evicted for it", err)
	}
	readers[1].wantEvicted(t)
	wantClosedByServer(t, pairs[1])
	readers[0].wantOpen(t)
	readers[2].wantOpen(t)
	stats(t, tr, TrackerStats{Open: 3, Evicted: 1})
	if !strings.Contains(logs.String(), "test server: connection limit reached") ||
		!strings.Contains(logs.String(), "limit=max_conns evicted=1") {
		t.Errorf("log does not report the eviction:\n%s", logs.String())
	}
	// The server's cleanup closes the evicted connection again: nothing
	// more is released.
	conns[1].Close()
	stats(t, tr, TrackerStats{Open: 3, Evicted: 1})

	// Next in line: the third (admitted before the first's data came),
	// then the first, then the fourth (admitted after it), which is idle
	// though nothing ever read from it.
	if _, _, err := cn.admit(tr, "127.0.3.5"); err != nil {
		t.Fatal(err)
	}
	readers[2].wantEvicted(t)
	readers[0].wantOpen(t)
	if _, _, err := cn.admit(tr, "127.0.3.6"); err != nil {
		t.Fatal(err)
	}
	readers[0].wantEvicted(t)
	if _, _, err := cn.admit(tr, "127.0.3.7"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Read(make([]byte, 1)); !errors.Is(err, ErrEvicted) {
		t.Errorf("Read on the evicted fourth connection = %v, want ErrEvicted", err)
	}
	stats(t, tr, TrackerStats{Open: 3, Evicted: 4})
}

func TestTrackerPerClientEvictsThatClientsOldest(t *testing.T) {
	cn := newConnector(t)
	tr := NewTracker(TrackerOptions{Name: "test", MaxConns: 10, MaxPerClient: 2, Evict: true})
	other, _, err := cn.admit(tr, "127.0.4.9") // older than all below
	if err != nil {
		t.Fatal(err)
	}
	otherR := startReading(t, other)
	var readers []*reader
	for range 2 {
		c, _, err := cn.admit(tr, "127.0.4.1")
		if err != nil {
			t.Fatal(err)
		}
		readers = append(readers, startReading(t, c))
	}
	if _, _, err := cn.admit(tr, "127.0.4.1"); err != nil {
		t.Fatalf("third from one address: %v, want its oldest evicted", err)
	}
	readers[0].wantEvicted(t)
	readers[1].wantOpen(t)
	otherR.wantOpen(t)
	stats(t, tr, TrackerStats{Open: 3, Evicted: 1})
	if n := tr.perClient[netipMust("127.0.4.1")]; n != 2 {
		t.Errorf("per-client count %d, want 2", n)
	}
}

func TestTrackerRefusesWhenAllBusy(t *testing.T) {
	cn := newConnector(t)
	tr := NewTracker(TrackerOptions{Name: "test", MaxConns: 2, MaxPerClient: 2, Evict: true})
	a, ap, err := cn.admit(tr, "127.0.5.1")
	if err != nil {
		t.Fatal(err)
	}
	b, bp, err := cn.admit(tr, "127.0.5.2")
	if err != nil {
		t.Fatal(err)
	}
	// Both have read a request and are busy serving it.
	readOnce(t, a, ap)
	readOnce(t, b, bp)
	if _, _, err := cn.admit(tr, "127.0.5.3"); !errors.Is(err, ErrFull) {
		t.Fatalf("with every connection busy: %v, want ErrFull", err)
	}
	stats(t, tr, TrackerStats{Open: 2, Refused: 1})
	r := startReading(t, a)
	if _, _, err := cn.admit(tr, "127.0.5.3"); err != nil {
		t.Fatalf("with one idle: %v", err)
	}
	r.wantEvicted(t)
	stats(t, tr, TrackerStats{Open: 2, Evicted: 1, Refused: 1})
}

// readOnce has the server read what the client sends, leaving c busy.
func readOnce(t *testing.T, c *Conn, p pair) {
	t.Helper()
	if _, err := io.WriteString(p.client, "request"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, len("request"))); err != nil {
		t.Fatal(err)
	}
	waitState(t, c, connBusy)
}

func TestTrackerReleasesEverything(t *testing.T) {
	cn := newConnector(t)
	tr := NewTracker(TrackerOptions{Name: "test", MaxConns: 5, MaxPerClient: 2, Evict: true})
	var conns []*Conn
	for i := range 20 {
		src := []string{"127.0.6.1", "127.0.6.2", "127.0.6.3"}[i%3]
		c, _, err := cn.admit(tr, src)
		if err != nil {
			t.Fatal(err)
		}
		startReading(t, c)
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Close()
	}
	st := tr.Stats()
	if st.Open != 0 || len(tr.conns) != 0 || len(tr.perClient) != 0 {
		t.Errorf("after closing all: %+v, %d tracked, per-client %v", st, len(tr.conns), tr.perClient)
	}
	if st.Evicted != 15 {
		t.Errorf("evicted %d, want 15", st.Evicted)
	}
}

func TestTrackerUnixSocketsCountTowardTotalOnly(t *testing.T) {
	path := t.TempDir() + "/s"
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tr := NewTracker(TrackerOptions{Name: "test", MaxConns: 3, MaxPerClient: 1})
	for i := range 4 {
		cl, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		sv, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer sv.Close()
		_, err = tr.Admit(sv)
		if i < 3 && err != nil {
			t.Fatalf("unix connection %d: %v", i+1, err)
		}
		if i == 3 && !errors.Is(err, ErrFull) {
			t.Fatalf("unix connection over the total: %v, want ErrFull", err)
		}
	}
}

func TestTrackerReportIsRateLimited(t *testing.T) {
	cn := newConnector(t)
	var logs bytes.Buffer
	tr := NewTracker(TrackerOptions{Name: "test", MaxConns: 1, MaxPerClient: 1,
		Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if _, _, err := cn.admit(tr, "127.0.7.1"); err != nil {
		t.Fatal(err)
	}
	for range 50 {
		if _, _, err := cn.admit(tr, "127.0.7.2"); !errors.Is(err, ErrFull) {
			t.Fatalf("got %v, want ErrFull", err)
		}
	}
	if n := strings.Count(logs.String(), "connection limit reached"); n != 1 {
		t.Errorf("%d log lines for 50 refusals, want 1:\n%s", n, logs.String())
	}
	stats(t, tr, TrackerStats{Open: 1, Refused: 50})
}

func TestCloseIdle(t *testing.T) {
	cn := newConnector(t)
	tr := NewTracker(TrackerOptions{Name: "test", MaxConns: 5, MaxPerClient: 5})
	idle, ip, _ := cn.admit(tr, "127.0.8.1")
	active, _, _ := cn.admit(tr, "127.0.8.2")
	idle.Idle()
	active.Idle()
	if !active.Active() {
		t.Fatal("Active on an open idle connection = false")
	}
	tr.CloseIdle()
	wantClosedByServer(t, ip)
	if idle.Active() {
		t.Error("Active after CloseIdle closed the connection = true")
	}
	if !active.Active() {
		t.Error("the active connection was closed")
	}
	stats(t, tr, TrackerStats{Open: 1})
}

// TestCloseIdleOnlyWhileWaiting: a connection marked Idle is closed
// only while no data has arrived on it since; one whose next request
// has arrived is busy and kept until it is marked Idle again.
func TestCloseIdleOnlyWhileWaiting(t *testing.T) {
	cn := newConnector(t)
	tr := NewTracker(TrackerOptions{Name: "test", MaxConns: 5, MaxPerClient: 5})
	waiting, wp, _ := cn.admit(tr, "127.0.8.3")
	arrived, ap, _ := cn.admit(tr, "127.0.8.4")
	midRequest, _, _ := cn.admit(tr, "127.0.8.5")

	waiting.Idle()
	readErr := make(chan error, 1)
	go func() {
		_, err := waiting.Read(make([]byte, 8))
		readErr <- err
	}()
	arrived.Idle()
	readOnce(t, arrived, ap)
	// A server waiting for the rest of a request reads without Idle.
	r := startReading(t, midRequest)

	if n := tr.CloseIdle(); n != 1 {
		t.Errorf("CloseIdle closed %d connections, want 1", n)
	}
	select {
	case err := <-readErr:
		if !errors.Is(err, ErrClosedIdle) || !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read on the closed idle connection = %v, want ErrClosedIdle wrapping net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the Read on the closed idle connection did not end")
	}
	wantClosedByServer(t, wp)
	if !arrived.Active() {
		t.Error("Active on the connection whose request arrived = false")
	}
	r.wantOpen(t)
	stats(t, tr, TrackerStats{Open: 2})

	arrived.Idle()
	if n := tr.CloseIdle(); n != 1 {
		t.Errorf("second CloseIdle closed %d connections, want 1 (the one idle again)", n)
	}
	if arrived.Active() {
		t.Error("Active after CloseIdle closed the connection = true")
	}
	r.wantOpen(t)
}

func TestInterruptPinsTheReadDeadline(t *testing.T) {
	cn := newConnector(t)
	tr := NewTracker(TrackerOptions{Name: "test", MaxConns: 5, MaxPerClient: 5})
	c, p, _ := cn.admit(tr, "127.0.9.1")
	var wg sync.WaitGroup
	wg.Add(1)
	var readErr error
	go func() {
		defer wg.Done()
		_, readErr = c.Read(make([]byte, 1))
	}()
	waitState(t, c, connWaiting)
	c.Interrupt()
	wg.Wait()
	if !errors.Is(readErr, os.ErrDeadlineExceeded) {
		t.Fatalf("interrupted Read = %v, want a deadline error", readErr)
	}
	c.SetReadDeadline(time.Now().Add(time.Hour))
	c.SetDeadline(time.Now().Add(time.Hour))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read after re-arming = %v, want the deadline kept expired", err)
	}
	if _, err := c.Write([]byte("421 bye\r\n")); err != nil {
		t.Errorf("Write after Interrupt: %v", err)
	}
	p.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, _ := io.ReadAll(io.LimitReader(p.client, 9)); string(line) != "421 bye\r\n" {
		t.Errorf("client got %q", line)
	}
}

func netipMust(s string) netip.Addr { return netip.MustParseAddr(s) }

// TestTrackerEvictsBetweenRequestsFirst: a connection its server marked
// Idle (a milter session between messages) is closed to make room before
// an older one waiting in the middle of a request (a message in flight,
// which closing would tempfail); with none marked Idle, the oldest
// waiting one goes.
func TestTrackerEvictsBetweenRequestsFirst(t *testing.T) {
	cn := newConnector(t)
	tr := NewTracker(TrackerOptions{Name: "test server", MaxConns: 3, MaxPerClient: 3, Evict: true,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	conns, pairs, readers := admitReading(t, cn, tr, "127.0.3.1", "127.0.3.2", "127.0.3.3")
	conns[1].Idle()
	// The third gets data and waits for the rest of its request: the
	// first is now the one that waited longest, the second the only one
	// between requests.
	readers[2].send(t, pairs[2], "MAIL")

	if _, _, err := cn.admit(tr, "127.0.3.4"); err != nil {
		t.Fatalf("fourth connection: %v, want one evicted for it", err)
	}
	readers[1].wantEvicted(t)
	readers[0].wantOpen(t)
	readers[2].wantOpen(t)

	if _, _, err := cn.admit(tr, "127.0.3.5"); err != nil {
		t.Fatal(err)
	}
	readers[0].wantEvicted(t)
	readers[2].wantOpen(t)
	stats(t, tr, TrackerStats{Open: 3, Evicted: 2})
}
