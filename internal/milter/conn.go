package milter

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"mailwarden/internal/accept"
)

// maxPacket bounds one milter packet. The MTA sends body chunks of at
// most 64 KiB (milter protocol, SMFIC_BODY) unless a larger size was
// negotiated, which this server never offers; the library itself would
// allocate up to 512 MiB for a forged length.
const maxPacket = 1 << 20

// loggingListener wraps the connections its listener admitted (see
// accept.Tracker.Listener) in frameGuard and logs them. A connection the
// tracker evicts, or closes as idle at shutdown, is closed under the
// library, which sees a read error wrapping net.ErrClosed and ends the
// session quietly; one it refuses never reaches the library.
type loggingListener struct {
	net.Listener // accept.Tracker.Listener: Accept returns *accept.Conn
	log          *slog.Logger
	shutting     *atomic.Bool
}

func (l *loggingListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c := nc.(*accept.Conn)
	l.log.Debug("milter: connection", "remote", c.RemoteAddr().String())
	return &frameGuard{Conn: c, tc: c, log: l.log, shutting: l.shutting, quickAck: quickAcker(c.NetConn())}, nil
}

// frameGuard checks the milter framing (a 4-byte big-endian length, then
// that many bytes) and the shape of the packets go-milter v0.10.2 parses
// without bounds checks, as bytes pass through Read, and refuses a bad
// packet before the library sees its last byte. Unguarded, each of these
// panics in a library goroutine and takes the whole daemon down (found by
// FuzzMilterConnection):
//   - a length of 0 (it indexes the command byte), or a forged huge one;
//   - SMFIC_CONNECT ('C') without a NUL after the host name, or without
//     the family byte after it;
//   - SMFIC_MAIL ('M') and SMFIC_RCPT ('R') without a NUL after the
//     address.
//
// Following the commands, it also knows whether the session is inside a
// message, as the session's inMessage does, and marks the tracked
// connection Idle while the session waits for the MTA outside one, so
// that Shutdown closes it at once (see Server.Shutdown).
type frameGuard struct {
	net.Conn
	tc       *accept.Conn // the tracked connection under Conn; nil in tests of scan
	log      *slog.Logger
	shutting *atomic.Bool
	// quickAck, if set, acknowledges what was just read at once (see
	// quickAcker).
	quickAck func()

	// ahead[r:w] is what the last read from the MTA brought in and the
	// library has not asked for yet; pending is that read's error, given
	// once ahead is drained. ahead is nil while nothing is buffered.
	ahead   *[readAhead]byte
	r, w    int
	pending error

	hdr     [4]byte
	nhdr    int    // header bytes seen of the current packet
	left    uint32 // body bytes still to come of the current packet
	started bool   // the first packet's command byte has been checked

	// Shape of the current packet's body so far.
	cmd      byte // command byte; 0 until seen
	n        int  // body bytes after the command byte
	sawNul   bool // a NUL after the command byte
	afterNul int  // body bytes after that first NUL
	bad      error

	// inMessage is set from the MTA's MAIL (or the macros it sends just
	// before it) until an end of message, abort, quit or new connection
	// has been read. After end of message the reply is still to be
	// written, but the connection is busy until the next Read.
	inMessage bool
}

func (c *frameGuard) Read(p []byte) (int, error) {
	if c.bad != nil {
		return 0, c.bad
	}
	n, err := c.read(p)
	if verr := c.scan(p[:n]); verr != nil {
		c.bad = verr
		c.log.Warn("milter: closing connection on malformed packet", "remote", c.RemoteAddr().String(), "err", verr)
		return 0, verr
	}
	return n, err
}

// readAhead is how much one read from the MTA may bring in. go-milter
// reads each packet's 4-byte length and then its body, two reads per
// packet; the MTA sends a command's macros and the command together, so
// one read usually brings several packets, and the rest are served from
// the buffer instead of the kernel.
const readAhead = 4096

// read serves p from what an earlier read brought in, or else reads from
// the MTA.
func (c *frameGuard) read(p []byte) (int, error) {
	if c.r < c.w {
		n := copy(p, c.ahead[c.r:c.w])
		c.r += n
		c.release()
		return n, nil
	}
	if c.pending != nil {
		err := c.pending
		c.pending = nil
		return 0, err
	}
	if c.tc != nil && !c.inMessage && c.nhdr == 0 && c.left == 0 {
		// The session waits for the MTA's next command outside a
		// message: its SMTP session is between transactions, or it has
		// not negotiated yet. Shutdown closes such a connection at once;
		// one that gets here after Shutdown began ends here.
		c.tc.Idle()
		if c.shutting.Load() {
			return 0, accept.ErrClosedIdle
		}
	}
	if len(p) >= readAhead {
		n, err := c.Conn.Read(p)
		c.acknowledge(n)
		return n, err
	}
	c.ahead = aheadPool.Get().(*[readAhead]byte)
	m, err := c.Conn.Read(c.ahead[:])
	c.acknowledge(m)
	n := copy(p, c.ahead[:m])
	c.r, c.w = n, m
	if err != nil && c.r < c.w {
		// The rest of what came with the error first.
		c.pending, err = err, nil
	}
	c.release()
	return n, err
}

// aheadPool holds the read-ahead buffers of connections that have handed
// the library all they read: most of the time a session waits for the
// MTA with nothing buffered, and a connection lasts one SMTP session.
var aheadPool = sync.Pool{New: func() any { return new([readAhead]byte) }}

// release returns the read-ahead buffer to the pool once drained.
func (c *frameGuard) release() {
	if c.ahead != nil && c.r == c.w {
		aheadPool.Put(c.ahead)
		c.ahead, c.r, c.w = nil, 0, 0
	}
}

// acknowledge has the kernel acknowledge at once the n bytes just read
// (see quickAcker).
func (c *frameGuard) acknowledge(n int) {
	if n > 0 && c.quickAck != nil {
		c.quickAck()
	}
}

// scan advances the framing state over b.
func (c *frameGuard) scan(b []byte) error {
	for len(b) > 0 {
		if c.left > 0 {
			k := min(uint32(len(b)), c.left)
			if err := c.body(b[:k]); err != nil {
				return err
			}
			c.left -= k
			b = b[k:]
			if c.left == 0 {
				if err := c.endPacket(); err != nil {
					return err
				}
			}
			continue
		}
		k := copy(c.hdr[c.nhdr:], b)
		c.nhdr += k
		b = b[k:]
		if c.nhdr < 4 {
			return nil
		}
		c.nhdr = 0
		c.left = binary.BigEndian.Uint32(c.hdr[:])
		if c.left == 0 || c.left > maxPacket {
			return fmt.Errorf("milter: bad packet length %d (want 1 to %d)", c.left, maxPacket)
		}
		c.cmd, c.sawNul, c.afterNul = 0, false, 0
	}
	return nil
}

// body follows the shape of a packet body through one piece of it.
func (c *frameGuard) body(b []byte) error {
	if c.cmd == 0 {
		c.cmd = b[0]
		// Every session starts with option negotiation (milter protocol,
		// SMFIC_OPTNEG 'O'); anything else is not an MTA.
		if !c.started {
			c.started = true
			if c.cmd != 'O' {
				return fmt.Errorf("milter: first command %q is not option negotiation", c.cmd)
			}
		}
		if c.cmd == 'M' {
			c.inMessage = true
		}
		c.n = 0
		b = b[1:]
	}
	// SMFIC_MACRO ('D') names the command its macros are for in its
	// first byte; macros for MAIL mean MAIL follows in the same write.
	if c.cmd == 'D' && c.n == 0 && len(b) > 0 && b[0] == 'M' {
		c.inMessage = true
	}
	c.n += len(b)
	if c.sawNul {
		c.afterNul += len(b)
	} else if i := bytes.IndexByte(b, 0); i >= 0 {
		c.sawNul = true
		c.afterNul = len(b) - i - 1
	}
	return nil
}

// endPacket checks a complete packet's shape and follows the session
// out of a message: once the library has handled SMFIC_BODYEOB ('E',
// its answer written), SMFIC_ABORT ('A'), SMFIC_QUIT ('Q'),
// SMFIC_QUIT_NC ('K') or SMFIC_CONNECT ('C') and reads again, no
// message is open.
func (c *frameGuard) endPacket() error {
	switch c.cmd {
	case 'C':
		c.inMessage = false
		if !c.sawNul || c.afterNul < 1 {
			return fmt.Errorf("milter: connect packet without host name terminator or address family")
		}
	case 'M', 'R':
		if !c.sawNul {
			return fmt.Errorf("milter: %c packet without address terminator", c.cmd)
		}
	case 'E', 'A', 'Q', 'K':
		c.inMessage = false
	}
	return nil
}
