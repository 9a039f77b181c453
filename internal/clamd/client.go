package clamd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Client scans messages with one or more clamd servers. It is safe for
// concurrent use.
type Client struct {
	opts    Options
	servers []*server
	// session selects IDSESSION connections kept in a per-server pool;
	// without it every scan gets a connection of its own. Sessions are
	// the default: against clamd 1.4.6 here they scanned 2 KB messages
	// 1.06 to 1.26 times as fast (BenchmarkScan), and over TCP they spare
	// a TIME_WAIT socket per message.
	session bool
	bufs    sync.Pool // *[]byte of bufSize, for writeStream

	mu       sync.Mutex
	closed   bool
	stop     context.CancelFunc // ends the health checks and probes
	done     chan struct{}      // closed when the health checks have ended
	probeCtx context.Context    // set by Start: probes run in it
	probes   sync.WaitGroup     // the probes running (breaker.go)
	changed  chan struct{}      // closed at a change between up and down

	summaryEvery time.Duration // summaryEvery, shorter in tests
}

// bufSize holds the longest command, one chunk and two chunk headers.
const bufSize = 16 + chunkSize + 8

// New checks o and returns a Client. It does not contact any server;
// call Start for health checks. Every problem in o is reported at once.
func New(o Options) (*Client, error) {
	o, eps, err := o.normalize()
	if err != nil {
		return nil, err
	}
	c := &Client{opts: o, session: true, changed: make(chan struct{}), summaryEvery: summaryEvery}
	c.bufs.New = func() any { b := make([]byte, bufSize); return &b }
	for _, ep := range eps {
		// A server counts as up until a check or a scan says otherwise.
		c.servers = append(c.servers, &server{endpoint: ep, status: ServerStatus{Addr: ep.name, Up: true}})
	}
	return c, nil
}

// Scan sends the message read from r to clamd. size is its length in
// bytes, or -1 if unknown; a size over MaxSize gets ErrTooLarge without
// contacting clamd, and so does a reader that yields more than MaxSize.
//
// A message is read once. If r is an io.Seeker, Scan seeks back and
// fails over to the next server after a connection error; otherwise it
// fails over only while nothing has been read. ScanOpen always can.
//
// An infected or clean answer is final, and so are ErrTooLarge, an error
// from r and the end of ctx. When no server gave an answer the error
// wraps ErrUnavailable and each server's error; a server skipped for not
// answering (breaker.go) gives ErrDown.
func (c *Client) Scan(ctx context.Context, r io.Reader, size int64) (Result, error) {
	src := &readerSource{r: &countingReader{r: r}}
	if s, ok := r.(io.Seeker); ok {
		if pos, err := s.Seek(0, io.SeekCurrent); err == nil {
			src.seeker, src.start = s, pos
		}
	}
	return c.scan(ctx, src, size)
}

// ScanOpen is Scan for a message that open can produce again from its
// start, so that a scan can move to a fresh connection or another server
// after any failure. Each reader open returns is closed.
func (c *Client) ScanOpen(ctx context.Context, open func() (io.ReadCloser, error), size int64) (Result, error) {
	src := &openSource{open: open}
	defer src.close()
	return c.scan(ctx, src, size)
}

// source gives the message from its start for each attempt.
type source interface {
	// reader returns the message from its start, or errNoRewind.
	reader() (io.Reader, error)
}

var errNoRewind = errors.New("the message was partly sent and cannot be read again")

// readerSource is a plain io.Reader, rewound by Seek when it can be.
type readerSource struct {
	r      *countingReader
	seeker io.Seeker
	start  int64
	used   bool
}

func (s *readerSource) reader() (io.Reader, error) {
	switch {
	case !s.used || s.r.n == 0:
	case s.seeker == nil:
		return nil, errNoRewind
	default:
		if _, err := s.seeker.Seek(s.start, io.SeekStart); err != nil {
			return nil, &sourceError{fmt.Errorf("seeking back to resend: %w", err)}
		}
		s.r.n = 0
	}
	s.used = true
	return s.r, nil
}

// countingReader counts the bytes read, to know whether a failed attempt
// consumed any of the message.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// openSource reopens the message for each attempt.
type openSource struct {
	open func() (io.ReadCloser, error)
	rc   io.ReadCloser
}

func (s *openSource) reader() (io.Reader, error) {
	s.close()
	rc, err := s.open()
	if err != nil {
		return nil, &sourceError{fmt.Errorf("opening: %w", err)}
	}
	s.rc = rc
	return rc, nil
}

func (s *openSource) close() {
	if s.rc != nil {
		s.rc.Close()
		s.rc = nil
	}
}

// final reports whether err ends a scan instead of moving to another
// connection or server.
func final(ctx context.Context, err error) bool {
	var se *sourceError
	return ctx.Err() != nil || errors.Is(err, ErrTooLarge) || errors.As(err, &se)
}

func (c *Client) scan(ctx context.Context, src source, size int64) (Result, error) {
	if size > c.opts.MaxSize {
		return Result{}, fmt.Errorf("%w: %d bytes is over the %d-byte cap", ErrTooLarge, size, c.opts.MaxSize)
	}
	order, hung := c.order()
	var errs []error
	for _, s := range hung {
		errs = append(errs, c.skip(s, time.Now()))
	}
	for i, s := range order {
		next := "trying the next server"
		if i == len(order)-1 {
			next = "no server left"
		}
		// A pooled connection that dies under the scan is retried once on
		// a fresh one, as clamd may have closed it (its IdleTimeout).
		for pooled := c.session; ; pooled = false {
			start := time.Now()
			res, reused, err := c.scanOn(ctx, s, src, size, pooled)
			if err == nil {
				c.markUp(s)
				return res, nil
			}
			log := c.opts.Log.With("server", s.name, "err", err)
			err = fmt.Errorf("clamd %s: %w", s.name, err)
			if errors.Is(err, errNoRewind) {
				log.Warn("clamd scan failed and cannot fail over")
				errs = append(errs, err)
				return Result{}, fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(errs...))
			}
			if final(ctx, err) {
				log.Warn("clamd scan failed")
				return Result{}, err
			}
			errs = append(errs, err)
			if reused && !errors.Is(err, ErrProtocol) && !errors.Is(err, os.ErrDeadlineExceeded) {
				log.Warn("clamd scan failed on a reused connection", "next", "retrying on a new connection")
				continue
			}
			c.scanFailed(ctx, s, err, start, next)
			break
		}
	}
	return Result{}, fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(errs...))
}

// scanFailed records that a scan begun at start failed on s with err and
// logs it: a warning when it takes s down or s is up, a count to
// summarise when s was down already. A timeout on a server that is up is
// first checked with a probe: if clamd answers that, the message, not
// the server, was the trouble, and s stays up.
func (c *Client) scanFailed(ctx context.Context, s *server, err error, start time.Time, next string) {
	log := c.opts.Log.With("server", s.name, "err", err, "next", next)
	if isTimeout(err) && c.isUp(s) {
		perr := c.ping(ctx, s, c.opts.ProbeInterval)
		if perr == nil {
			log.Warn("clamd scan failed; the server answers a probe, so it stays up")
			return
		}
		if ctx.Err() != nil {
			log.Warn("clamd scan failed")
			return
		}
	}
	switch wentDown, stale := c.markDown(s, err, start); {
	case wentDown:
		c.logDown(s, "clamd scan failed, marking the server down", err, "next", next)
	case stale:
		log.Warn("clamd scan failed")
	default:
		log.Debug("clamd scan failed on a server that is down")
		c.failedWhileDown(s, time.Now())
	}
}

// isUp reports whether s is marked up.
func (c *Client) isUp(s *server) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status.Up
}

// scanOn makes one attempt at s. reused reports that the attempt used a
// pooled connection, which may have been closed by clamd meanwhile.
func (c *Client) scanOn(ctx context.Context, s *server, src source, size int64, pooled bool) (res Result, reused bool, err error) {
	// The message is opened first: when it cannot be sent again there is
	// no point in connecting.
	r, err := src.reader()
	if err != nil {
		return Result{}, false, err
	}
	var cn *conn
	if pooled {
		cn = s.get(time.Now())
	}
	reused = cn != nil
	if cn == nil {
		if cn, err = s.dial(ctx, c.opts.ConnectTimeout, c.session); err != nil {
			return Result{}, false, describe(ctx, err, c.opts.ConnectTimeout)
		}
	}
	keep := false
	defer func() {
		if keep && cn.session {
			s.put(cn, time.Now())
		} else {
			cn.nc.Close()
		}
	}()
	disarm := cn.arm(ctx, c.opts.ScanTimeout)
	virus, err := c.exchange(cn, r, size)
	if !disarm() {
		return Result{}, reused, context.Cause(ctx)
	}
	if err != nil {
		return Result{}, reused, describe(ctx, err, c.opts.ScanTimeout)
	}
	keep = true
	return Result{Infected: virus != "", Virus: virus, Server: s.name}, reused, nil
}

// exchange streams the message on cn and reads clamd's verdict.
func (c *Client) exchange(cn *conn, r io.Reader, size int64) (string, error) {
	bp := c.bufs.Get().(*[]byte)
	werr := writeStream(cn.nc, *bp, cn.command("INSTREAM"), r, size, c.opts.MaxSize)
	c.bufs.Put(bp)
	var se *sourceError
	if errors.Is(werr, ErrTooLarge) || errors.As(werr, &se) {
		return "", werr
	}
	reply, rerr := cn.reply()
	if werr != nil {
		// clamd answers and closes as soon as a stream passes its
		// StreamMaxLength, so a failed write may still have an answer.
		if rerr == nil {
			if _, err := parseScanReply(reply); errors.Is(err, ErrTooLarge) {
				return "", err
			}
		}
		return "", fmt.Errorf("sending the message: %w", werr)
	}
	if rerr != nil {
		return "", fmt.Errorf("reading the answer: %w", rerr)
	}
	return parseScanReply(reply)
}

// order is the servers to try: those up in configured order, then those
// marked down, in case they have come back since the last check. Hung
// servers are left out while probes watch them and returned apart.
func (c *Client) order() (try, hung []*server) {
	skip := c.skipsHung()
	var up, down []*server
	for _, s := range c.servers {
		s.mu.Lock()
		switch {
		case s.status.Up:
			up = append(up, s)
		case skip && s.brk.hung:
			hung = append(hung, s)
		default:
			down = append(down, s)
		}
		s.mu.Unlock()
	}
	return append(up, down...), hung
}

// Ping asks the servers, in scan order, for PONG and returns nil at the
// first that answers. Hung servers are skipped as scans skip them.
func (c *Client) Ping(ctx context.Context) error {
	var errs []error
	order, hung := c.order()
	for _, s := range hung {
		errs = append(errs, fmt.Errorf("clamd %s: %w", s.name, ErrDown))
	}
	for _, s := range order {
		if err := c.ping(ctx, s, c.opts.ScanTimeout); err != nil {
			errs = append(errs, fmt.Errorf("clamd %s: %w", s.name, err))
			continue
		}
		return nil
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(errs...))
}

// Version asks the first server that answers, in scan order, for its
// engine and signature versions.
func (c *Client) Version(ctx context.Context) (Version, error) {
	var errs []error
	order, hung := c.order()
	for _, s := range hung {
		errs = append(errs, fmt.Errorf("clamd %s: %w", s.name, ErrDown))
	}
	for _, s := range order {
		v, err := c.version(ctx, s, c.opts.ScanTimeout)
		if err != nil {
			errs = append(errs, fmt.Errorf("clamd %s: %w", s.name, err))
			continue
		}
		return v, nil
	}
	return Version{}, fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(errs...))
}

// ping sends s a PING, given timeout to answer.
func (c *Client) ping(ctx context.Context, s *server, timeout time.Duration) error {
	reply, err := c.simple(ctx, s, "PING", timeout)
	if err == nil && reply != "PONG" {
		err = fmt.Errorf("%w: PING answered %s", ErrProtocol, clip([]byte(reply)))
	}
	return err
}

// version asks s for VERSION, given timeout to answer.
func (c *Client) version(ctx context.Context, s *server, timeout time.Duration) (Version, error) {
	reply, err := c.simple(ctx, s, "VERSION", timeout)
	if err != nil {
		return Version{}, err
	}
	v, err := parseVersion(reply)
	v.Server = s.name
	return v, err
}

// simple runs one command without data on a connection of its own, so
// that it checks that a new connection can be made, and gives clamd
// timeout to answer (and at most that to connect).
func (c *Client) simple(ctx context.Context, s *server, name string, timeout time.Duration) (string, error) {
	connect := min(c.opts.ConnectTimeout, timeout)
	cn, err := s.dial(ctx, connect, false)
	if err != nil {
		return "", describe(ctx, err, connect)
	}
	defer cn.nc.Close()
	disarm := cn.arm(ctx, timeout)
	reply, err := cn.roundTrip(name)
	if !disarm() {
		return "", context.Cause(ctx)
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, describe(ctx, err, timeout))
	}
	return reply, nil
}

// Close stops the health checks and probes and closes pooled
// connections. Scans still running finish; later ones open connections
// they do not keep, and try hung servers again, as nothing probes them.
func (c *Client) Close() {
	c.mu.Lock()
	c.closed = true
	stop, done := c.stop, c.done
	c.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
	c.probes.Wait()
	for _, s := range c.servers {
		s.closeIdle()
	}
}
