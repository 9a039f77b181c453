package accept

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"mailwarden/internal/logx"
)

// ErrFull is Admit's error for a connection over a cap that could not
// be made room for.
var ErrFull = errors.New("accept: connection limit reached")

// ErrEvicted is what Read returns on a connection the tracker closed to
// admit a newer one. It wraps net.ErrClosed, so code that treats a
// closed connection as a routine end (go-milter does) stays quiet.
var ErrEvicted = fmt.Errorf("accept: connection closed to admit a newer one: %w", net.ErrClosed)

// ErrClosedIdle is what Read returns on a connection CloseIdle closed.
// It wraps net.ErrClosed too.
var ErrClosedIdle = fmt.Errorf("accept: idle connection closed for shutdown: %w", net.ErrClosed)

// reportEvery spaces the tracker's log lines: a flood of connections
// gives one line per interval with counts, not one per connection.
const reportEvery = 10 * time.Second

// TrackerOptions configures a Tracker.
type TrackerOptions struct {
	// Name labels log lines, e.g. "policy server".
	Name string
	Log  *slog.Logger
	// MaxConns caps the connections tracked at once. Values below 1
	// mean 1.
	MaxConns int
	// MaxPerClient caps the connections from one IP address; it is
	// lowered to MaxConns when larger. Connections without an IP
	// address (unix sockets) count toward MaxConns only.
	MaxPerClient int
	// Evict makes room for a connection over a cap by closing the
	// tracked connection, from the same client for the per-client cap,
	// that has waited longest for its peer to send something,
	// connections marked Idle (between requests) before those waiting
	// inside a request or transaction. Without Evict, or when every
	// candidate is busy, the new connection is refused.
	Evict bool
}

// Tracker is the one home of a server's connection accounting: it
// counts connections in total and per client address, admits or refuses
// new ones, and under Evict closes the oldest idle one to make room. A
// server wraps each accepted connection with Admit and serves the
// returned Conn, whose Close releases its place.
//
// Idle, for eviction, means a Read is waiting for the peer, or nothing
// has been read yet; the oldest idle connection is the one whose last
// data arrived (or which was admitted) longest ago. A connection marked
// Idle goes before one waiting in the middle of a request: closing a
// milter connection between messages costs the MTA a reconnect, closing
// one inside a message tempfails that message. A connection whose
// server is working on a request (checks running, an answer being
// written) is busy and never evicted.
//
// Idle, for CloseIdle, is narrower: the server has marked the connection
// Idle (between requests, in its protocol's terms) and no data has
// arrived since. A connection waiting for the rest of a request, or for
// the next command of a transaction, is never closed by CloseIdle.
type Tracker struct {
	o TrackerOptions

	seq atomic.Uint64 // orders Conn.last

	mu sync.Mutex
	// conns is a slice, not a set, because eviction scans it: a slice of
	// a thousand pointers is scanned in about a microsecond.
	conns     []*Conn
	perClient map[netip.Addr]int
	evicted   uint64
	refused   uint64
	// For the rate-limited report: when the last line was logged and
	// what happened since.
	reported     time.Time
	reportedEver bool
	sinceEvicted int
	sinceRefused int
}

// NewTracker returns an empty tracker.
func NewTracker(o TrackerOptions) *Tracker {
	o.Log = logx.Or(o.Log)
	o.MaxConns = max(o.MaxConns, 1)
	o.MaxPerClient = min(max(o.MaxPerClient, 1), o.MaxConns)
	return &Tracker{o: o, perClient: map[netip.Addr]int{}}
}

// Conn states. One atomic word holds them, so that closing a connection
// and data arriving on it are ordered: whichever changes the state first
// wins, and a request whose data has arrived is never dropped by
// CloseIdle.
const (
	connBusy    int32 = iota // the server is working; not evictable
	connWaiting              // a Read waits for the peer; evictable
	connIdle                 // marked Idle, no data since; evictable, closed by CloseIdle
	connEvicted              // closed by the tracker to admit another
	connClosed               // closed by CloseIdle
)

// Conn is a tracked connection. Read must not be called concurrently
// with itself, as with every stream protocol served here.
type Conn struct {
	net.Conn
	t      *Tracker
	client netip.Addr
	idx    int // in t.conns while tracked, -1 after; guarded by t.mu

	state atomic.Int32
	last  atomic.Uint64 // Tracker.seq at admission or the last data read

	// mu orders Interrupt against SetReadDeadline and SetDeadline.
	mu          sync.Mutex
	interrupted bool
}

// Admit tracks nc, making room under Evict when a cap is reached. It
// returns ErrFull when nc cannot be admitted; the caller then answers
// or closes nc as its protocol wants.
func (t *Tracker) Admit(nc net.Conn) (*Conn, error) {
	c := &Conn{Conn: nc, t: t, client: clientAddr(nc)}
	c.last.Store(t.seq.Add(1))
	// A new connection is idle: its server has nothing to work on until
	// the peer sends something. A flood must not fill a cap with
	// connections whose goroutines have not started reading yet.
	c.state.Store(connWaiting)

	t.mu.Lock()
	var (
		victim *Conn
		reason string
	)
	switch {
	case c.client.IsValid() && t.perClient[c.client] >= t.o.MaxPerClient:
		reason = "max_conns_per_client"
		victim = t.evictLocked(c.client)
	case len(t.conns) >= t.o.MaxConns:
		reason = "max_conns"
		victim = t.evictLocked(netip.Addr{})
	}
	if reason != "" && victim == nil {
		t.refused++
		report := t.noteLocked(false, c.client, reason)
		t.mu.Unlock()
		t.report(report)
		return nil, ErrFull
	}
	c.idx = len(t.conns)
	t.conns = append(t.conns, c)
	if c.client.IsValid() {
		t.perClient[c.client]++
	}
	var report *report
	if victim != nil {
		t.evicted++
		report = t.noteLocked(true, c.client, reason)
	}
	t.mu.Unlock()
	if victim != nil {
		// Its Read fails at once with ErrEvicted; the server's usual
		// cleanup then calls Close, which finds nothing left to release.
		victim.Conn.Close()
	}
	t.report(report)
	return c, nil
}

// evictLocked removes and returns the tracked connection, from client
// when it is valid, that has waited longest for its peer (marked Idle
// first), or nil when none waits or Evict is off. The caller closes it.
func (t *Tracker) evictLocked(client netip.Addr) *Conn {
	if !t.o.Evict {
		return nil
	}
	// A candidate that turns busy between the scan and the swap is
	// skipped; a few tries find another when one exists.
	for range 4 {
		var oldest *Conn
		oldestIdle := false
		for _, c := range t.conns {
			if client.IsValid() && c.client != client || !c.waiting() {
				continue
			}
			idle := c.state.Load() == connIdle
			if oldest == nil || idle && !oldestIdle ||
				idle == oldestIdle && c.last.Load() < oldest.last.Load() {
				oldest, oldestIdle = c, idle
			}
		}
		if oldest == nil {
			return nil
		}
		if oldest.state.CompareAndSwap(connWaiting, connEvicted) || oldest.state.CompareAndSwap(connIdle, connEvicted) {
			t.removeLocked(oldest)
			return oldest
		}
	}
	return nil
}

func (t *Tracker) removeLocked(c *Conn) {
	if c.idx < 0 {
		return
	}
	last := t.conns[len(t.conns)-1]
	t.conns[c.idx], last.idx = last, c.idx
	t.conns[len(t.conns)-1] = nil
	t.conns = t.conns[:len(t.conns)-1]
	c.idx = -1
	if c.client.IsValid() {
		if t.perClient[c.client]--; t.perClient[c.client] <= 0 {
			delete(t.perClient, c.client)
		}
	}
}

// report is one rate-limited log line. Its counts cover the time since
// the previous line; client and reason are those of the latest event.
type report struct {
	evicted, refused int
	client           netip.Addr
	reason           string
	open             int
}

// noteLocked counts an eviction or refusal and returns a report to log
// when the last one is reportEvery old, nil otherwise.
func (t *Tracker) noteLocked(evicted bool, client netip.Addr, reason string) *report {
	if evicted {
		t.sinceEvicted++
	} else {
		t.sinceRefused++
	}
	now := time.Now()
	if t.reportedEver && now.Sub(t.reported) < reportEvery {
		return nil
	}
	r := &report{evicted: t.sinceEvicted, refused: t.sinceRefused, client: client, reason: reason, open: len(t.conns)}
	t.reported, t.reportedEver = now, true
	t.sinceEvicted, t.sinceRefused = 0, 0
	return r
}

func (t *Tracker) report(r *report) {
	if r == nil {
		return
	}
	t.o.Log.Warn(t.o.Name+": connection limit reached",
		"limit", r.reason, "evicted", r.evicted, "refused", r.refused, "client", r.client.String(),
		"open", r.open, "max_conns", t.o.MaxConns, "max_conns_per_client", t.o.MaxPerClient)
}

// TrackerStats are a tracker's counts.
type TrackerStats struct {
	// Open is the number of connections tracked now.
	Open int
	// Evicted and Refused count, since the tracker was made, connections
	// closed to make room and new connections refused.
	Evicted, Refused uint64
}

// Stats returns the tracker's counts.
func (t *Tracker) Stats() TrackerStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return TrackerStats{Open: len(t.conns), Evicted: t.evicted, Refused: t.refused}
}

// snapshot returns the tracked connections.
func (t *Tracker) snapshot() []*Conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]*Conn(nil), t.conns...)
}

// Each calls f for every tracked connection, outside the tracker's lock.
func (t *Tracker) Each(f func(*Conn)) {
	for _, c := range t.snapshot() {
		f(c)
	}
}

// CloseIdle closes every connection marked Idle that has had no data
// since, and returns how many it closed. A Read in progress on one
// fails with ErrClosedIdle, and so does every later one; see Conn.Idle.
func (t *Tracker) CloseIdle() int {
	n := 0
	for _, c := range t.snapshot() {
		if c.state.CompareAndSwap(connIdle, connClosed) {
			c.Close()
			n++
		}
	}
	return n
}

// Client returns the connection's client IP address, or the zero Addr
// when it has none.
func (c *Conn) Client() netip.Addr { return c.client }

// NetConn returns the connection Admit wrapped.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Read reads from the connection, marking it idle for eviction while it
// waits for the peer.
func (c *Conn) Read(p []byte) (int, error) {
	if !c.state.CompareAndSwap(connBusy, connWaiting) && !c.waiting() {
		return 0, c.closedErr()
	}
	n, err := c.Conn.Read(p)
	if !c.state.CompareAndSwap(connWaiting, connBusy) && !c.state.CompareAndSwap(connIdle, connBusy) {
		// Closed by the tracker while waiting: whatever arrived
		// meanwhile is dropped with the connection.
		return 0, c.closedErr()
	}
	if n > 0 {
		c.last.Store(c.t.seq.Add(1))
	}
	return n, err
}

// waiting reports whether the connection waits for its peer, marked
// Idle or not.
func (c *Conn) waiting() bool {
	s := c.state.Load()
	return s == connWaiting || s == connIdle
}

// closedErr is Read's error on a connection the tracker closed.
func (c *Conn) closedErr() error {
	if c.state.Load() == connClosed {
		return ErrClosedIdle
	}
	return ErrEvicted
}

// Close releases the connection's place and closes it.
func (c *Conn) Close() error {
	c.t.mu.Lock()
	c.t.removeLocked(c)
	c.t.mu.Unlock()
	return c.Conn.Close()
}

// Idle marks the connection as between requests, so CloseIdle may close
// it until data arrives. It is a server's own notion: the policy server
// calls it before waiting for the first byte of the next request, the
// milter before waiting for the MTA's next command outside a message.
// Such a connection may be evicted too, even before the server's next
// Read starts. The first Read that returns, or Active, ends the mark.
func (c *Conn) Idle() {
	if !c.state.CompareAndSwap(connBusy, connIdle) {
		c.state.CompareAndSwap(connWaiting, connIdle)
	}
}

// Active marks a request as started on a connection marked Idle whose
// data the server got without a Read (from its buffer). It reports
// false when the tracker has closed the connection first.
func (c *Conn) Active() bool {
	for {
		switch s := c.state.Load(); s {
		case connIdle:
			if c.state.CompareAndSwap(connIdle, connBusy) {
				return true
			}
		case connBusy, connWaiting:
			return true
		default:
			return false
		}
	}
}

// Interrupt makes the Read in progress and every later one fail with
// os.ErrDeadlineExceeded, while writes still work: a server can then
// send a last reply. SetReadDeadline and SetDeadline no longer move the
// read deadline, so a server arming its next read cannot undo it.
func (c *Conn) Interrupt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.interrupted = true
	c.Conn.SetReadDeadline(time.Unix(1, 0))
}

// SetReadDeadline sets the read deadline unless Interrupt was called.
func (c *Conn) SetReadDeadline(d time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.interrupted {
		return nil
	}
	return c.Conn.SetReadDeadline(d)
}

// SetDeadline sets both deadlines, the read one unless Interrupt was
// called.
func (c *Conn) SetDeadline(d time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.interrupted {
		return c.Conn.SetWriteDeadline(d)
	}
	return c.Conn.SetDeadline(d)
}

// clientAddr returns the IP address of nc's peer, or the zero Addr when
// it is not an IP connection.
func clientAddr(nc net.Conn) netip.Addr {
	switch a := nc.RemoteAddr().(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}
